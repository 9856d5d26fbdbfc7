"""The supervision tree's own small LevelDB (``data_dir/tree``): what config files cannot
say and a restart of the tree process must not lose.

Keys (``sup`` and ``cid`` are a supervisor's name and a child's id, NUL-separated)::

    d<sup>\\0<cid>   a child added at run time: msgpack {"seq": n, "spec": ChildSpec dict}
    t<sup>\\0<cid>   a child stopped at run time (kept stopped across a tree restart)
    x<sup>\\0<cid>   a declared child deleted at run time (gone until the node restarts)
    a<type>\\0<key>  an actor address the tree supervises (released if the config drops it)
    i               the incarnation floor: incarnations only grow, across restarts

It implements :class:`supervisors.host.RunTimeStore` plus the tree's own records.
"""
from __future__ import annotations

from typing import Any

from actorsys.config.supervision import ChildSpec
from actorsys.protocol import wire
from actorsys.storage.slot import synced_open

INCARNATION_BLOCK = 1_000_000     # incarnations reserved per write of the floor


def record_key(tag: bytes, a: str, b: str | None = None) -> bytes:
    k = tag + a.encode() + b"\0"
    return k if b is None else k + b.encode()


class TreeStore:
    """The tree's LevelDB: dynamic children, stopped and deleted children, supervised
    addresses. ``sync`` (the node's ``durability = "fsync"``): every write is fsynced
    before it returns, so what the tree acknowledged survives a power cut, as the
    workers' commits do; the database is opened as theirs are (``synced_open``)."""

    def __init__(self, path: str, sync: bool = False) -> None:
        self.db = synced_open(path, create_if_missing=True)
        self.sync = sync

    def dynamic(self, sup: str) -> list[tuple[int, dict[str, Any]]]:
        out = [wire.unpack_stored(v) for _k, v in self.db.iterator(prefix=record_key(b"d", sup))]
        return sorted(((d["seq"], d["spec"]) for d in out), key=lambda t: t[0])

    def put_dynamic(self, sup: str, seq: int, spec: ChildSpec) -> None:
        self.db.put(record_key(b"d", sup, spec.id), wire.pack({"seq": seq, "spec": spec.to_dict()}),
                    sync=self.sync)

    def drop_dynamic(self, sup: str, cid: str) -> None:
        self.db.delete(record_key(b"d", sup, cid), sync=self.sync)

    def drop_all_dynamic(self, sup: str) -> None:
        with self.db.write_batch(sync=self.sync) as b:
            for k in self.db.iterator(prefix=record_key(b"d", sup), include_value=False):
                b.delete(k)

    def set_stopped(self, sup: str, cid: str, stopped: bool) -> None:
        if stopped:
            self.db.put(record_key(b"t", sup, cid), b"", sync=self.sync)
        else:
            self.db.delete(record_key(b"t", sup, cid), sync=self.sync)

    def is_stopped(self, sup: str, cid: str) -> bool:
        return self.db.get(record_key(b"t", sup, cid)) is not None

    def set_deleted(self, sup: str, cid: str) -> None:
        self.db.put(record_key(b"x", sup, cid), b"", sync=self.sync)

    def is_deleted(self, sup: str, cid: str) -> bool:
        return self.db.get(record_key(b"x", sup, cid)) is not None

    def clear_stopped(self) -> None:
        """A node start: the config applies afresh (run-time stops and deletions go)."""
        with self.db.write_batch(sync=self.sync) as b:
            for tag in (b"t", b"x"):
                for k in self.db.iterator(prefix=tag, include_value=False):
                    b.delete(k)

    def addresses(self) -> set[tuple[str, str]]:
        out = set()
        for k in self.db.iterator(prefix=b"a", include_value=False):
            t, _, key = k[1:].partition(b"\0")
            out.add((t.decode(), key.decode()))
        return out

    def set_address(self, addr: tuple[str, str], present: bool) -> None:
        k = record_key(b"a", addr[0], addr[1])
        if present:
            self.db.put(k, b"", sync=self.sync)
        else:
            self.db.delete(k, sync=self.sync)

    def incarnation_floor(self, floor: int) -> int:
        """Incarnations only grow, across restarts and clock steps: reserve a block."""
        raw = self.db.get(b"i")
        start = max(floor, int(raw) if raw else 0)
        self.db.put(b"i", str(start + INCARNATION_BLOCK).encode(), sync=True)
        return start

    async def flushed(self) -> None:
        """Every write so far is durable (here at once: a local LevelDB)."""

    def close(self) -> None:
        self.db.close()
