"""Storage: one LevelDB database per worker slot, and each actor's view of it.

Key layout. Every key of an actor starts with its shard, so shards can move between
slots by copying key ranges; P is the actor's prefix::

    P = b"a" + shard (2 bytes, big-endian) + type + b"\\0" + key + b"\\0"
    P + b"s"                    -> state
    P + b"k" + name             -> storage entry
    P + b"m"                    -> supervision record (worker.py)
    P + b"l" + name             -> alarm record (alarms.py)
    P + b"h" + version (8 bytes) -> history record (history.py)
    P + b"w"                    -> WebSocket delivery mark (websocket.py)

Two slot-wide indexes are not prefixed by shard; rebalancing moves them with the actor
(rebalance.py)::

    b"n" + type + b"\\0" + key   -> shard (2 bytes): the actor has persisted data (listing)
    b"t" + due (8 bytes, microseconds) + P[1:] + name -> b"": alarms in due order

Values are msgpack. A turn's writes are buffered in its :class:`Storage` view; at the end
of the turn they are staged in the slot's pending overlay, and the worker's group commit
writes everything staged in one atomic ``WriteBatch`` (fsynced with ``durability =
"fsync"``) before any reply leaves (the output gate).
"""
from __future__ import annotations

import contextlib
import heapq
import os
from typing import Any, Iterable, Iterator, overload

import plyvel

from . import wire
from .errors import LimitExceeded, StorageError

_MISSING = object()
#: the longest storage key, in bytes of UTF-8 (Durable Objects: 2 KiB)
MAX_STORAGE_KEY_BYTES = 16 * 1024
#: default largest stored value (state, storage entry, alarm payload), node key ``max_value_bytes``
DEFAULT_MAX_VALUE_BYTES = 512 * 1024
#: committed values an activation keeps in memory for repeated reads
CACHE_ENTRIES = 512
#: free bytes beyond twice the log's size before a read-only store tries to reopen
REOPEN_HEADROOM = 1 << 20


def actor_prefix(shard: int, type_name: str, key: str) -> bytes:
    return b"a" + shard.to_bytes(2, "big") + type_name.encode() + b"\x00" + key.encode() + b"\x00"


def split_actor_key(k: bytes) -> tuple[bytes, bytes, bytes] | None:
    """``(type, key, rest)`` of a key ``P + rest`` (rest: ``b"s"``, ``b"k" + name``...),
    or None if ``k`` is not an actor key."""
    parts = k[3:].split(b"\x00", 2)
    if len(parts) != 3 or not parts[2]:
        return None
    return parts[0], parts[1], parts[2]


def listing_key(type_name: str | bytes, key: str | bytes) -> bytes:
    """The slot-wide index entry saying an actor has persisted data (``list_actors``)."""
    t = type_name.encode() if isinstance(type_name, str) else type_name
    k = key.encode() if isinstance(key, str) else key
    return b"n" + t + b"\x00" + k


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


#: LevelDB errors that go away by themselves (space freed, the disk made writable)
_TRANSIENT = ("No space left on device", "Read-only file system", "Disk quota exceeded")


def open_db(path: str, what: str) -> "plyvel.DB":
    """Open (or create) the LevelDB database at ``path``; ``what`` names its owner in errors.

    A directory that already holds files is opened, never re-created: LevelDB would
    silently start an empty database where ``CURRENT`` is missing. Opening checks the
    log and the manifest (``paranoid_checks``). Every failure is a :class:`StorageError`
    naming ``what`` and the path: locked by another process, damaged, or unreadable.
    """
    try:
        # a database whose creation failed (a full disk) leaves only these behind
        existing = bool(set(os.listdir(path)) - {"LOCK", "LOG", "LOG.old"})
    except FileNotFoundError:
        existing = False
    except OSError as exc:
        raise StorageError(f"{what}: cannot read its LevelDB directory {path}: {exc}") from None
    if existing and not os.path.exists(os.path.join(path, "CURRENT")):
        raise StorageError(f"{what}: {path} holds files but no LevelDB CURRENT file: the "
                           f"database is damaged or is not a LevelDB directory; restore it "
                           f"from a backup (or move it away to start this slot empty)")
    try:
        return plyvel.DB(path, create_if_missing=not existing, paranoid_checks=True)
    except plyvel.Error as exc:
        text = error_text(exc)
        if any(t in text for t in _TRANSIENT):
            raise StorageError(f"{what}: the LevelDB database at {path} cannot be opened "
                               f"now: {text}", transient=True) from None
        if "lock" in text.lower():
            why = "is locked by another process (is another node or tool using it?)"
        elif isinstance(exc, plyvel.CorruptionError):
            why = "is damaged (LevelDB reports corruption); restore it from a backup"
        else:
            why = "cannot be opened"
        raise StorageError(f"{what}: the LevelDB database at {path} {why}: {text}") from None


def error_text(exc: BaseException) -> str:
    """plyvel's message of an error (it carries LevelDB's status as bytes)."""
    arg = exc.args[0] if len(exc.args) == 1 else None
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(exc)


class _Unavailable:
    """Stands in for a database that could not be reopened: every use raises."""

    closed = True

    def __init__(self, error: StorageError) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        raise self.error


class SlotStore:
    """A worker slot's LevelDB database plus the overlay of staged, uncommitted writes.

    Storage faults. When a commit fails (disk full, a read-only or failing disk), the
    store turns *read-only*: :attr:`broken` holds the error, turns that would write are
    refused with it, and reads go on from the open database. The failed batch may have
    left a torn record at the end of LevelDB's log, after which LevelDB would still
    accept writes that a crash then loses; so no write is accepted until
    :meth:`try_recover` has reopened the database (which replays the log, drops the torn
    record and starts a new log). It reopens only when the directory takes a test write
    and has room for the reopen, since reopening on a full disk fails and would leave
    no database to read from.
    """

    def __init__(self, path: str, fsync: bool,
                 max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES, what: str | None = None) -> None:
        self.what = what or "storage"
        self.path = path
        #: the error of the commit that failed, while writes are refused (see the class doc)
        self.broken: StorageError | None = None
        try:
            self.db = open_db(path, self.what)
        except StorageError as exc:
            if not exc.transient:
                raise
            # a full or read-only disk: serve errors, and open once it can (try_recover)
            self.broken = exc
            self.db = _Unavailable(exc)
        self.fsync = fsync
        self.max_value_bytes = max_value_bytes
        self.pending: dict[bytes, bytes | None] = {}
        # the actors (prefixes) with staged writes: a range within any other actor needs
        # no merge with the overlay (which costs a pass over everything staged)
        self.pending_actors: set[bytes] = set()
        self.commits = 0
        self.committed_writes = 0

    def get(self, k: bytes) -> bytes | None:
        v = self.pending.get(k, _MISSING)
        if v is _MISSING:
            try:
                return self.db.get(k, verify_checksums=True)
            except plyvel.Error as exc:
                raise self._read_error(exc) from None
        return v  # type: ignore[return-value]

    def _read_error(self, exc: Exception) -> StorageError:
        return StorageError(f"{self.what}: reading the LevelDB database at {self.path} "
                            f"failed: {error_text(exc)}")

    def range(self, lo: bytes, hi: bytes, reverse: bool = False, actor: bytes | None = None,
              committed: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Committed and staged entries in ``[lo, hi)``; ``actor``: the range lies within
        that actor's prefix (so it is unaffected by other actors' staged writes);
        ``committed``: leave out what is staged."""
        it = self._checked(self.db.iterator(start=lo, stop=hi, reverse=reverse, verify_checksums=True))
        if committed or not self.pending or (actor is not None and actor not in self.pending_actors):
            return it
        return _merge(it, self.pending, lo, hi, reverse)

    def _checked(self, it: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from it
        except plyvel.Error as exc:
            raise self._read_error(exc) from None

    def stage(self, writes: dict[bytes, bytes | None], actor: bytes) -> None:
        """Stage an actor's writes (and its index entries) for the next commit."""
        self.pending.update(writes)
        self.pending_actors.add(actor)

    def commit(self) -> None:
        """Write everything staged in one atomic batch. Raises StorageError on failure
        (and from then on until :meth:`try_recover` succeeds)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        self.pending_actors = set()
        if self.broken is not None:
            raise self.broken
        try:
            with self.db.write_batch(sync=self.fsync, transaction=True) as wb:
                for k, v in pending.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
        except Exception as exc:
            self.broken = StorageError(
                f"{self.what} cannot write to {self.path} ({error_text(exc)}); until it can, turns that "
                f"write are refused and reads are served"
                + ("; a batch whose fsync failed may still be applied" if self.fsync else ""))
            raise self.broken from None
        self.commits += 1
        self.committed_writes += len(pending)

    def try_recover(self) -> bool:
        """After a failed commit: reopen the database if the directory is writable again
        and has room; True once writes are accepted again."""
        if self.broken is None:
            return True
        if not self._writable():
            return False
        if not self.db.closed:
            self.db.close()
        try:
            self.db = open_db(self.path, self.what)
        except StorageError as exc:
            self.broken = StorageError(f"{exc}; reads wait for it to reopen", transient=exc.transient)
            self.db = _Unavailable(self.broken)
            return False
        self.broken = None
        return True

    def _writable(self) -> bool:
        """The directory takes a test write and has room to reopen the database (LevelDB
        rewrites its log into a table when it opens)."""
        try:
            logs = sum(e.stat().st_size for e in os.scandir(self.path) if e.name.endswith(".log"))
            st = os.statvfs(self.path)
            if st.f_bavail * st.f_frsize < 2 * logs + REOPEN_HEADROOM:
                return False
            # beside the database, not in it: a probe left by a kill must not look like data
            probe = self.path.rstrip(os.sep) + ".write-probe"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, bytes(64 * 1024))
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()


class Storage:
    """An actor's key-value storage (``self.storage``). Writes commit with the turn.

    Keys are strings (at most 16 KiB of UTF-8), values anything msgpack can encode (at
    most the node's ``max_value_bytes``, 512 KiB by default); past either limit the call
    raises :class:`~actorsys.LimitExceeded`. Every read sees the turn's own writes; a
    per-actor cache of committed values serves repeated reads without LevelDB; all the
    writes of a turn are coalesced into its one commit. ``list`` returns entries ordered
    by key bytes. Like Durable Objects' storage API, ``get``, ``put`` and ``delete`` take
    one key or many.
    """

    __slots__ = ("_store", "_actor", "_prefix", "_buf", "_cache", "_owner", "alarms_changed")

    def __init__(self, store: SlotStore, prefix: bytes, owner: Any = None) -> None:
        self._store = store
        self._actor = prefix                 # the actor's whole key range
        self._prefix = prefix + b"k"
        self._buf: dict[bytes, bytes | None] = {}    # this turn's writes (None deletes)
        self._cache: dict[bytes, bytes | None] | None = None   # committed or staged values
        self._owner = owner                  # the actor instance (its state for transactions)
        #: earliest due time (epoch seconds) of an alarm this turn set, for the worker
        self.alarms_changed: float | None = None

    # -- keys and raw access -------------------------------------------------------
    def _k(self, key: str) -> bytes:
        if not isinstance(key, str):
            raise TypeError(f"storage keys are strings, got {type(key).__name__}")
        b = key.encode("utf-8")
        if len(b) > MAX_STORAGE_KEY_BYTES:
            raise LimitExceeded(f"storage key is {len(b)} bytes; the limit is "
                                f"{MAX_STORAGE_KEY_BYTES}")
        return self._prefix + b

    def _raw(self, k: bytes) -> bytes | None:
        """The value of a full key as this turn sees it."""
        v = self._buf.get(k, _MISSING)
        if v is not _MISSING:
            return v  # type: ignore[return-value]
        cache = self._cache
        if cache is not None:
            v = cache.get(k, _MISSING)
            if v is not _MISSING:
                return v  # type: ignore[return-value]
        else:
            cache = self._cache = {}
        v = self._store.get(k)
        if len(cache) >= CACHE_ENTRIES:
            del cache[next(iter(cache))]
        cache[k] = v
        return v

    def _entries(self, lo: bytes, hi: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """This actor's committed and staged entries in ``[lo, hi)`` with this turn's writes."""
        return _merge(self._store.range(lo, hi, reverse, self._actor), self._buf, lo, hi, reverse)

    def _write(self, k: bytes, v: bytes | None) -> None:
        self._buf[k] = v

    def _pack(self, key: str, value: Any) -> bytes:
        try:
            b = wire.pack(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"value of storage key {key!r:.100} is not msgpack-able: {exc}") from None
        limit = self._store.max_value_bytes
        if len(b) > limit:
            raise LimitExceeded(f"value of storage key {key!r:.100} is {len(b)} bytes; "
                                f"max_value_bytes is {limit}")
        return b

    # -- the API ---------------------------------------------------------------------
    @overload
    def get(self, key: str, default: Any = None) -> Any: ...
    @overload
    def get(self, key: list[str] | tuple[str, ...], default: Any = None) -> dict[str, Any]: ...

    def get(self, key: Any, default: Any = None) -> Any:
        """The value stored under ``key`` (or ``default``); for a list of keys, a dict of
        the ones found."""
        if isinstance(key, (list, tuple)):
            out: dict[str, Any] = {}
            for name in key:
                v = self._raw(self._k(name))
                if v is not None:
                    out[name] = wire.unpack_stored(v)
            return out
        v = self._raw(self._k(key))
        return default if v is None else wire.unpack_stored(v)

    def put(self, key: str | dict[str, Any], value: Any = _MISSING) -> None:
        """Store ``value`` under ``key``, or every item of a dict; commits with the turn."""
        if isinstance(key, dict):
            if value is not _MISSING and value is not None:
                raise TypeError("put(dict) stores the dict's items; it takes no value")
            staged = {self._k(name): self._pack(name, v) for name, v in key.items()}
            self._buf.update(staged)      # all or nothing: a bad item writes none
            return
        if value is _MISSING:
            raise TypeError("put(key, value) needs a value (or put({key: value, ...}))")
        self._buf[self._k(key)] = self._pack(key, value)

    def delete(self, key: Any) -> Any:
        """Delete ``key`` and return whether it existed; for a list of keys, return how
        many existed."""
        if isinstance(key, (list, tuple)):
            ks = [self._k(name) for name in key]
            n = 0
            for k in ks:
                n += self._raw(k) is not None
                self._buf[k] = None
            return n
        k = self._k(key)
        existed = self._raw(k) is not None
        self._buf[k] = None
        return existed

    def list(self, prefix: str | None = None, start: str | None = None, end: str | None = None,
             reverse: bool = False, limit: int | None = None,
             start_after: str | None = None) -> dict[str, Any]:
        """Entries whose key starts with ``prefix`` and lies in ``[start, end)`` (or after
        ``start_after``), in key-byte order (``reverse``: descending), at most ``limit``."""
        if start is not None and start_after is not None:
            raise ValueError("give start or start_after, not both")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ValueError(f"list's limit is a non-negative integer or None, got {limit!r:.50}")
        base = self._prefix
        lo, hi = base, _next_prefix(base)
        if prefix:
            lo, hi = self._k(prefix), _next_prefix(self._k(prefix))
        if start is not None:
            lo = max(lo, self._k(start))
        if start_after is not None:
            lo = max(lo, self._k(start_after) + b"\x00")   # the smallest key after it
        if end is not None:
            hi = min(hi, self._k(end))
        out: dict[str, Any] = {}
        if lo >= hi or (limit is not None and limit <= 0):
            return out
        n = len(base)
        for k, v in self._entries(lo, hi, reverse):
            out[k[n:].decode("utf-8")] = wire.unpack_stored(v)
            if limit is not None and len(out) >= limit:
                break
        return out

    def delete_all(self) -> int:
        """Delete every entry of this actor's storage (not its state or alarms); returns
        how many there were. Commits with the turn, like any write."""
        lo, hi = self._prefix, _next_prefix(self._prefix)
        n = 0
        for k, _v in list(self._entries(lo, hi)):
            self._buf[k] = None
            n += 1
        return n

    def size(self) -> int:
        """Bytes this actor stores (keys and values of its state as last committed, its
        storage entries and alarms, with this turn's writes), history excluded."""
        p = self._actor
        total = 0
        # everything but the history records (P + h...), the supervision record (P + m)
        # and the sockets' delivery mark (P + w)
        for lo, hi in ((p, p + b"h"), (p + b"i", p + b"m"), (p + b"n", p + b"w"),
                       (p + b"x", _next_prefix(p))):
            for k, v in self._entries(lo, hi):
                total += len(k) - len(p) + len(v)
        return total

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Storage"]:
        """A block whose writes apply together or not at all.

        ``with self.storage.transaction():`` -- if the block raises, every storage write,
        alarm change and ``self.state`` change made inside it is undone and the exception
        propagates (catch it to carry on with the turn). Blocks nest. What the block
        wrote commits with the turn, like every write.

        ``self.state`` is restored in place at its top level; a reference to a nested
        value taken before the block (``items = self.state["items"]``) points at the
        discarded version after a rollback: read it again from ``self.state``."""
        saved_buf = dict(self._buf)
        saved_alarm = self.alarms_changed
        owner = self._owner
        saved_state = wire.pack(owner.state) if owner is not None else None
        try:
            yield self
        except BaseException:
            self._buf = saved_buf
            self.alarms_changed = saved_alarm
            if owner is not None and saved_state is not None:
                if isinstance(owner.state, dict):
                    owner.state.clear()          # in place: `s = self.state` stays valid
                    owner.state.update(wire.unpack_stored(saved_state))
                else:
                    owner.state = wire.unpack_stored(saved_state)
            raise

    def _take_writes(self) -> dict[bytes, bytes | None]:
        """This turn's writes, handed to the commit; the cache learns their values."""
        buf, self._buf = self._buf, {}
        if buf:
            cache = self._cache
            if cache is not None:
                for k, v in buf.items():
                    if k in cache or len(cache) < CACHE_ENTRIES:
                        cache[k] = v
        self.alarms_changed = None
        return buf

    def _forget(self, keys: Iterable[bytes]) -> None:
        """Keys written to the store outside this actor's turns: drop them from the cache."""
        cache = self._cache
        if cache:
            for k in keys:
                cache.pop(k, None)
