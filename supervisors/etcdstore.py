"""The cluster's supervision tree's record in etcd: ``store.py``'s keys and values, under
``/actorsys/<cluster>/treestore/``, so the tree can move to another node and lose nothing.

Semantics (the same interface as :class:`~supervisors.store.TreeStore`):

* Keys and values mean what they mean in ``store.py`` (``d``, ``t``, ``x``, ``a``
  records and the incarnation floor ``i``), prefixed. Values are small: a child spec
  of a dynamic child at most (etcd refuses a request over 1.5 MiB).
* The supervisors call the store synchronously: reads come from a copy in memory,
  loaded from etcd when this node takes the tree (:meth:`EtcdTreeStore.load`); writes
  change that copy at once and go to etcd in order, in the background, in transactions
  of up to :data:`BATCH` operations.
* Every write is **fenced**: its transaction compares the election key's
  ``create_revision`` with this holder's (``cluster/election.py``). A deposed holder's
  writes fail; it calls ``on_fenced`` and writes no more.
* :meth:`EtcdTreeStore.flushed` returns once every write made so far is in etcd (the
  tree answers an admin command only then: what it reports done survives a move).
  Writes of an event that the holder did not live to send are lost with it; the new
  holder's adoption makes up for what they said about running children (a restarted
  child is restarted again or adopted).
* The incarnation floor: taking the tree reserves a block (awaited); a block used up
  reserves the next in the background. Incarnations also start from the clock
  (``treehost.py``), so a lost reservation only matters between nodes with skewed clocks.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable

from actorsys.config.supervision import ChildSpec
from actorsys.errors import SupervisorError
from actorsys.log import get_logger
from actorsys.protocol import wire

from .store import INCARNATION_BLOCK, record_key

log = get_logger("supervisors.etcdstore")

#: operations per etcd transaction (etcd's default limit is 128)
BATCH = 64
#: seconds between attempts of a write etcd did not answer
RETRY = 0.5


class EtcdTreeStore:
    """The tree's record in etcd (see the module docstring); ``client``: a connected
    ``aetcd.Client`` (set before :meth:`load`)."""

    def __init__(self, client: Any, prefix: bytes, fence_key: bytes,
                 on_fenced: Callable[[], None]) -> None:
        self.client, self.prefix, self.fence_key = client, prefix, fence_key
        self.on_fenced = on_fenced
        self.data: dict[bytes, bytes] = {}
        self.revision: int | None = None       # the election record's create_revision
        self.pending: list[tuple[bytes, bytes | None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._floor = 0

    # -- taking the tree ----------------------------------------------------------------
    async def load(self, revision: int, floor: int) -> int:
        """Read the record (this node took the tree with election record ``revision``)
        and reserve a block of incarnations from at least ``floor``; its start."""
        self.revision = revision
        self.data = {kv.key[len(self.prefix):]: kv.value
                     for kv in await self.client.get_prefix(self.prefix)}
        start = max(floor, int(self.data.get(b"i", b"0")))
        self._floor = start + INCARNATION_BLOCK
        self._write(b"i", str(self._floor).encode())
        await self.flushed()
        return start

    # -- writes -------------------------------------------------------------------------
    def _write(self, k: bytes, v: bytes | None) -> None:
        if v is None:
            self.data.pop(k, None)
        else:
            self.data[k] = v
        self.pending.append((k, v))
        self._idle.clear()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_out())

    async def _write_out(self) -> None:
        c = self.client
        while self.pending and self.revision is not None:
            batch = self.pending[:BATCH]
            ops = [c.transactions.put(self.prefix + k, v) if v is not None
                   else c.transactions.delete(self.prefix + k) for k, v in batch]
            try:
                ok, _ = await c.transaction(
                    compare=[c.transactions.create(self.fence_key) == self.revision],
                    success=ops, failure=[])
            except Exception as exc:      # etcd unreachable: keep them, in order
                log.warning("writing the tree's record to etcd: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(RETRY)
                continue
            if not ok:
                log.error("the tree's record in etcd refused a write: this node no longer "
                          "holds the cluster's supervision tree")
                self.revision = None
                self.on_fenced()
                break
            del self.pending[:len(batch)]
        self._idle.set()

    async def flushed(self) -> None:
        """Wait until every write so far is in etcd (SupervisorError if one was refused)."""
        await self._idle.wait()
        if self.revision is None and self.pending:
            raise SupervisorError("this node no longer holds the cluster's supervision tree: "
                                  "what was asked may not have been recorded")

    # -- RunTimeStore -------------------------------------------------------------------
    def dynamic(self, sup: str) -> list[tuple[int, dict[str, Any]]]:
        p = record_key(b"d", sup)
        out = [wire.unpack_stored(v) for k, v in self.data.items() if k.startswith(p)]
        return sorted(((d["seq"], d["spec"]) for d in out), key=lambda t: t[0])

    def put_dynamic(self, sup: str, seq: int, spec: ChildSpec) -> None:
        self._write(record_key(b"d", sup, spec.id), wire.pack({"seq": seq, "spec": spec.to_dict()}))

    def drop_dynamic(self, sup: str, cid: str) -> None:
        if record_key(b"d", sup, cid) in self.data:
            self._write(record_key(b"d", sup, cid), None)

    def drop_all_dynamic(self, sup: str) -> None:
        p = record_key(b"d", sup)
        for k in [k for k in self.data if k.startswith(p)]:
            self._write(k, None)

    def set_stopped(self, sup: str, cid: str, stopped: bool) -> None:
        k = record_key(b"t", sup, cid)
        if stopped != (k in self.data):
            self._write(k, b"" if stopped else None)

    def is_stopped(self, sup: str, cid: str) -> bool:
        return record_key(b"t", sup, cid) in self.data

    def set_deleted(self, sup: str, cid: str) -> None:
        if record_key(b"x", sup, cid) not in self.data:
            self._write(record_key(b"x", sup, cid), b"")

    def is_deleted(self, sup: str, cid: str) -> bool:
        return record_key(b"x", sup, cid) in self.data

    def clear_stopped(self) -> None:
        for k in [k for k in self.data if k[:1] in (b"t", b"x")]:
            self._write(k, None)

    # -- the tree's own records ---------------------------------------------------------
    def addresses(self) -> set[tuple[str, str]]:
        out = set()
        for k in self.data:
            if k[:1] == b"a":
                t, _, key = k[1:].partition(b"\0")
                out.add((t.decode(), key.decode()))
        return out

    def set_address(self, addr: tuple[str, str], present: bool) -> None:
        k = record_key(b"a", addr[0], addr[1])
        if present != (k in self.data):
            self._write(k, b"" if present else None)

    def incarnation_floor(self, floor: int) -> int:
        """The next block (written in the background: see the module docstring)."""
        start = max(floor, self._floor)
        self._floor = start + INCARNATION_BLOCK
        self._write(b"i", str(self._floor).encode())
        return start

    def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        with contextlib.suppress(Exception):
            self.pending.clear()
