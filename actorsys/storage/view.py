"""An actor's view of its slot's storage (``self.storage``): a turn's reads see its own
writes, which are buffered until the turn ends and then staged for the group commit.

The user's API is :class:`Storage`'s ``get``, ``put``, ``delete``, ``list``,
``delete_all``, ``size`` and ``transaction`` (and the alarm calls behind
``Actor.set_alarm`` and friends). The runtime uses the raw half: :meth:`Storage.read_raw`,
:meth:`~Storage.write_raw`, :meth:`~Storage.entries` (full keys, from :mod:`.keys`),
:meth:`~Storage.take_writes` at the end of a turn, :meth:`~Storage.forget`.
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterable, Iterator, overload

from ..errors import LimitExceeded
from ..protocol import wire
from . import alarms as _alarm_ops
from .keys import entry_prefix, prefix_range, sized_ranges, successor
from .overlay import MISSING, merge
from .slot import CACHE_ENTRIES, MAX_STORAGE_KEY_BYTES, SlotStore

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

    __slots__ = ("store", "actor_range", "_prefix", "_buf", "_cache", "_owner", "alarms_changed")

    def __init__(self, store: SlotStore, prefix: bytes, owner: Any = None) -> None:
        #: the slot's store (the view stages nothing itself: the runtime does)
        self.store = store
        #: the actor's prefix ``P`` (:mod:`.keys`): every key of the actor starts with it
        self.actor_range = prefix
        self._prefix = entry_prefix(prefix)
        self._buf: dict[bytes, bytes | None] = {}    # this turn's writes (None deletes)
        self._cache: dict[bytes, bytes | None] | None = None   # committed or staged values
        # the actor instance (its state, for transactions), weakly: the instance holds this
        # view, and a cycle would keep a passivated actor for the collector to find, which
        # a worker runs rarely (runtime/worker.py, GC_THRESHOLDS)
        self._owner = weakref.ref(owner) if owner is not None else None
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

    def read_raw(self, k: bytes) -> bytes | None:
        """The value of a full key as this turn sees it."""
        v = self._buf.get(k, MISSING)
        if v is not MISSING:
            return v  # type: ignore[return-value]
        cache = self._cache
        if cache is not None:
            v = cache.get(k, MISSING)
            if v is not MISSING:
                return v  # type: ignore[return-value]
        else:
            cache = self._cache = {}
        v = self.store.get(k)
        if len(cache) >= CACHE_ENTRIES:
            del cache[next(iter(cache))]
        cache[k] = v
        return v

    def entries(self, lo: bytes, hi: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """This actor's committed and staged entries in ``[lo, hi)`` with this turn's writes."""
        return merge(self.store.range(lo, hi, reverse, self.actor_range), self._buf, lo, hi, reverse)

    def write_raw(self, k: bytes, v: bytes | None) -> None:
        """Write a full key in this turn (None deletes); it commits with the turn."""
        self._buf[k] = v

    def _pack(self, key: str, value: Any) -> bytes:
        try:
            b = wire.pack(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"value of storage key {key!r:.100} is not msgpack-able: {exc}") from None
        limit = self.store.max_value_bytes
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
                v = self.read_raw(self._k(name))
                if v is not None:
                    out[name] = wire.unpack_stored(v)
            return out
        v = self.read_raw(self._k(key))
        return default if v is None else wire.unpack_stored(v)

    def put(self, key: str | dict[str, Any], value: Any = MISSING) -> None:
        """Store ``value`` under ``key``, or every item of a dict; commits with the turn."""
        if isinstance(key, dict):
            if value is not MISSING and value is not None:
                raise TypeError("put(dict) stores the dict's items; it takes no value")
            staged = {self._k(name): self._pack(name, v) for name, v in key.items()}
            self._buf.update(staged)      # all or nothing: a bad item writes none
            return
        if value is MISSING:
            raise TypeError("put(key, value) needs a value (or put({key: value, ...}))")
        self._buf[self._k(key)] = self._pack(key, value)

    def delete(self, key: Any) -> Any:
        """Delete ``key`` and return whether it existed; for a list of keys, return how
        many existed."""
        if isinstance(key, (list, tuple)):
            ks = [self._k(name) for name in key]
            n = 0
            for k in ks:
                n += self.read_raw(k) is not None
                self._buf[k] = None
            return n
        k = self._k(key)
        existed = self.read_raw(k) is not None
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
        lo, hi = prefix_range(self._k(prefix) if prefix else base)
        if start is not None:
            lo = max(lo, self._k(start))
        if start_after is not None:
            lo = max(lo, successor(self._k(start_after)))
        if end is not None:
            hi = min(hi, self._k(end))
        out: dict[str, Any] = {}
        if lo >= hi or (limit is not None and limit <= 0):
            return out
        n = len(base)
        for k, v in self.entries(lo, hi, reverse):
            out[k[n:].decode("utf-8")] = wire.unpack_stored(v)
            if limit is not None and len(out) >= limit:
                break
        return out

    def delete_all(self) -> int:
        """Delete every entry of this actor's storage (not its state or alarms); returns
        how many there were. Commits with the turn, like any write."""
        lo, hi = prefix_range(self._prefix)
        n = 0
        for k, _v in list(self.entries(lo, hi)):
            self._buf[k] = None
            n += 1
        return n

    def size(self) -> int:
        """Bytes this actor stores (keys and values of its state as last committed, its
        storage entries and alarms, with this turn's writes), history excluded."""
        n = len(self.actor_range)
        total = 0
        for lo, hi in sized_ranges(self.actor_range):
            for k, v in self.entries(lo, hi):
                total += len(k) - n + len(v)
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
        owner = self._owner() if self._owner is not None else None
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

    def take_writes(self) -> dict[bytes, bytes | None]:
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

    def forget(self, keys: Iterable[bytes]) -> None:
        """Keys written to the store outside this actor's turns: drop them from the cache."""
        cache = self._cache
        if cache:
            for k in keys:
                cache.pop(k, None)


    # -- alarms (the user's API is Actor.set_alarm and friends; see alarms.py) --------
    def set_alarm(self, when: Any = None, name: str = "default", payload: Any = None, *,
                  cron: str | None = None, every: Any = None, tz: str | None = None) -> float:
        """Schedule the actor's ``on_alarm(name, payload)``, once (``when``) or on a
        schedule (``cron``/``tz`` or ``every``); see :mod:`.alarms` and :mod:`.schedule`."""
        return _alarm_ops.set_alarm(self, when, name, payload, cron=cron, every=every, tz=tz)

    def alarms(self) -> dict[str, dict[str, Any]]:
        """The actor's alarms: ``{name: {"when", "payload", "attempt"}}``, and ``"cron"``
        and ``"tz"`` or ``"every"`` for a recurring one."""
        return _alarm_ops.list_alarms(self)

    def cancel_alarm(self, name: str = "default") -> bool:
        """Cancel an alarm (with this turn's commit); returns whether it was set."""
        return _alarm_ops.cancel_alarm(self, name)
