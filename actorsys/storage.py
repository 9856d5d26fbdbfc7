"""Storage: one LevelDB database per worker slot, and each actor's view of it.

Key layout (every key starts with its shard, so shards can move between slots by
copying key ranges)::

    b"a" + shard (2 bytes, big-endian) + type + b"\\0" + key + b"\\0" + b"s"          -> state
    b"a" + shard (2 bytes, big-endian) + type + b"\\0" + key + b"\\0" + b"k" + name   -> storage entry

Values are msgpack. A turn's writes are buffered in its :class:`Storage` view; at the end
of the turn they are staged in the slot's pending overlay, and the worker's group commit
writes everything staged in one atomic ``WriteBatch`` (fsynced with ``durability =
"fsync"``) before any reply leaves (the output gate).
"""
from __future__ import annotations

import heapq
from typing import Any, Iterator

import plyvel

from . import wire
from .errors import StorageError

_MISSING = object()
MAX_STORAGE_KEY_BYTES = 2048


def actor_prefix(shard: int, type_name: str, key: str) -> bytes:
    return b"a" + shard.to_bytes(2, "big") + type_name.encode() + b"\x00" + key.encode() + b"\x00"


def state_key(prefix: bytes) -> bytes:
    return prefix + b"s"


def _next_prefix(p: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``p``."""
    b = bytearray(p)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b"\xff" * (len(p) + 1)
    b[-1] += 1
    return bytes(b)


def _merge(base: Iterator[tuple[bytes, bytes]], overlay: dict[bytes, Any], lo: bytes, hi: bytes,
           reverse: bool) -> Iterator[tuple[bytes, bytes]]:
    """Merge a sorted (key, value) stream with an overlay of writes; ``None`` deletes."""
    over = sorted(((k, v) for k, v in overlay.items() if lo <= k < hi), reverse=reverse)
    if not over:
        yield from base
        return
    # tag 0 = overlay wins ties over tag 1 = base
    keyed_over = (((k if not reverse else _Rev(k)), 0, k, v) for k, v in over)
    keyed_base = (((k if not reverse else _Rev(k)), 1, k, v) for k, v in base)
    last = None
    for _sk, _tag, k, v in heapq.merge(keyed_over, keyed_base):
        if k == last:
            continue
        last = k
        if v is not None:
            yield k, v


class _Rev:
    """Sort key that inverts bytes ordering, for merging reverse iterators."""

    __slots__ = ("b",)

    def __init__(self, b: bytes) -> None:
        self.b = b

    def __lt__(self, other: "_Rev") -> bool:
        return self.b > other.b

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and self.b == other.b


class SlotStore:
    """A worker slot's LevelDB database plus the overlay of staged, uncommitted writes."""

    def __init__(self, path: str, fsync: bool) -> None:
        try:
            self.db = plyvel.DB(path, create_if_missing=True)
        except plyvel.Error as exc:
            raise StorageError(f"cannot open LevelDB at {path}: {exc}") from None
        self.path = path
        self.fsync = fsync
        self.pending: dict[bytes, bytes | None] = {}
        self.commits = 0
        self.committed_writes = 0

    def get(self, k: bytes) -> bytes | None:
        v = self.pending.get(k, _MISSING)
        if v is _MISSING:
            return self.db.get(k)
        return v  # type: ignore[return-value]

    def range(self, lo: bytes, hi: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        it = self.db.iterator(start=lo, stop=hi, reverse=reverse)
        return _merge(it, self.pending, lo, hi, reverse)

    def stage(self, writes: dict[bytes, bytes | None]) -> None:
        self.pending.update(writes)

    def commit(self) -> None:
        """Write everything staged in one atomic batch. Raises StorageError on failure."""
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        try:
            with self.db.write_batch(sync=self.fsync, transaction=True) as wb:
                for k, v in pending.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
        except Exception as exc:
            raise StorageError(f"commit to {self.path} failed: {exc}") from None
        self.commits += 1
        self.committed_writes += len(pending)

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()


class Storage:
    """An actor's key-value storage (``self.storage``). Writes commit with the turn.

    Keys are strings, values anything msgpack can encode. Reads see the turn's own
    writes. ``list`` returns entries ordered by key bytes.
    """

    __slots__ = ("_store", "_prefix", "_buf")

    def __init__(self, store: SlotStore, prefix: bytes) -> None:
        self._store = store
        self._prefix = prefix + b"k"
        self._buf: dict[bytes, bytes | None] = {}

    def _k(self, key: str) -> bytes:
        if not isinstance(key, str):
            raise TypeError(f"storage keys are strings, got {type(key).__name__}")
        b = key.encode("utf-8")
        if len(b) > MAX_STORAGE_KEY_BYTES:
            raise ValueError(f"storage key is {len(b)} bytes; the limit is {MAX_STORAGE_KEY_BYTES}")
        return self._prefix + b

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        k = self._k(key)
        v = self._buf.get(k, _MISSING)
        if v is _MISSING:
            v = self._store.get(k)
        return default if v is None else wire.unpack_stored(v)  # type: ignore[arg-type]

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (msgpack-able) under ``key``; commits at the end of the turn."""
        self._buf[self._k(key)] = wire.pack(value)

    def delete(self, key: str) -> bool:
        """Delete ``key``; returns whether it existed."""
        k = self._k(key)
        existed = self.get(key, _MISSING) is not _MISSING
        self._buf[k] = None
        return existed

    def list(self, prefix: str | None = None, start: str | None = None, end: str | None = None,
             reverse: bool = False, limit: int | None = None) -> dict[str, Any]:
        """Entries whose key starts with ``prefix`` and lies in ``[start, end)``, in key order."""
        base = self._prefix
        lo, hi = base, _next_prefix(base)
        if prefix:
            lo, hi = self._k(prefix), _next_prefix(self._k(prefix))
        if start is not None:
            lo = max(lo, self._k(start))
        if end is not None:
            hi = min(hi, self._k(end))
        out: dict[str, Any] = {}
        if lo >= hi or (limit is not None and limit <= 0):
            return out
        n = len(base)
        for k, v in _merge(self._store.range(lo, hi, reverse), self._buf, lo, hi, reverse):
            out[k[n:].decode("utf-8")] = wire.unpack_stored(v)
            if limit is not None and len(out) >= limit:
                break
        return out

    def _take_writes(self) -> dict[bytes, bytes | None]:
        buf, self._buf = self._buf, {}
        return buf
