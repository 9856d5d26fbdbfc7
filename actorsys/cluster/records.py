"""A node's copy of the shards' ownership records, and the count of changes seen (issue 15).

:class:`ShardRecords` keeps :attr:`~ShardRecords.owned` (shard -> its record) current
from the records the node reads and writes (:meth:`~ShardRecords.merge`) and from etcd's
events (:meth:`~ShardRecords.watch_shards`: a watch that breaks is made again, after a
full read, every second). :meth:`~ShardRecords.changed` counts every change to ``owned``
or to the members (the coordinator calls it for the members too), then calls
``on_change`` (the coordinator's: wake its loops, publish the map, grant).

Invariants: a record is replaced only by one with an equal or higher ``mod_revision``
(a watch event can be applied while a read is on its way back; a DELETE event removes
it); :attr:`~ShardRecords.changes` only grows, by one after each change, so two equal
counts mean the same records and members (a pass that planned from one count and found
nothing to do may skip the next at the same count: ``Replicas.drive``,
``Following.drop_released``).
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from ..log import get_logger
from .ownership import Owned, Ownership, parse

log = get_logger("cluster")


class ShardRecords:
    """The ownership records as last read, written or watched, and the change counter."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        #: called after each change is counted
        self.on_change = on_change
        #: shard -> its ownership record, as last read or watched
        self.owned: dict[int, Owned] = {}
        #: counts the changes seen in etcd (:meth:`changed`, called after every change
        #: to ``owned`` or the members): equal counts, the same records
        self.changes = 0

    async def watch_shards(self, own: Ownership) -> None:
        """Keep :attr:`owned` current from etcd's events; a watch that breaks (etcd
        restarted, this node cut off) is made again, after a full read, every second."""
        while True:
            try:
                events = await own.client.watch_prefix(own.shards_prefix)
                self.merge(await own.read())         # (after the watch began: nothing missed)
                async for ev in events:
                    self._on_shard_event(own, ev)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching the shards' owners in etcd failed (%s: %s); watching "
                            "again in 1 s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    def _on_shard_event(self, own: Ownership, ev: Any) -> None:
        s = own.shard_of(ev.kv.key)
        if s is None:
            return
        if ev.kind == "DELETE":
            self.owned.pop(s, None)
        else:
            try:
                rec = parse(ev.kv.value, ev.kv.mod_revision)
            except ValueError as exc:
                log.warning("%s", exc)
                return
            old = self.owned.get(s)
            if old is None or rec.revision >= old.revision:
                self.owned[s] = rec
        self.changed()

    def merge(self, records: dict[int, Owned]) -> None:
        """Take in records read or written: each only if no newer one was seen (a watch
        event can be applied while a read is on its way back)."""
        owned = self.owned
        for s, r in records.items():
            old = owned.get(s)
            if old is None or r.revision >= old.revision:
                owned[s] = r
        self.changed()

    def changed(self) -> None:
        """Something in etcd changed: count it, then tell the coordinator (``on_change``)."""
        self.changes += 1
        self.on_change()
