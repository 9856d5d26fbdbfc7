"""Requests the worker serves itself: the ``$`` system asks, LIST and STATUS.

* ``$history``, ``$rewind`` (kwargs ``version`` or ``time``), ``$destroy`` and
  ``$inspect`` (read-only: what the dashboard's inspector shows) are asks
  served in the actor's turn order without running its code (:class:`SystemAsks`), so
  an operator can still rewind or destroy a supervised child whose state makes every
  start fail. Rewind and destroy drop the live instance without ``on_stop`` (its memory
  no longer matches storage); their writes go through the group commit like a turn's.
* LIST (:func:`list_actors`) answers from committed data only: its reply skips the
  output gate.
* STATUS (:func:`status`) reports the worker's counters.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ActorError, BadRequest
from ..protocol import wire
from ..storage import alarms as alarm_ops
from ..storage import history
from ..storage.keys import (alarm_records_range, entry_prefix, listing_key, listing_range,
                            listing_value, prefix_range, state_key, successor)
from .destroy import destroy_writes, drop_queued_alarms

if TYPE_CHECKING:
    from ..storage.slot import SlotStore
    from .activation import Activation, Call
    from .alarm_turns import AlarmTurns
    from .catalog import Catalog
    from .commit import GroupCommit

#: asks served by the worker itself, in the actor's turn order, without running its code
SYSTEM_METHODS = frozenset({"$history", "$rewind", "$destroy", "$inspect"})
#: storage entries one ``$inspect`` answers at most (``limit``'s default and bound), and
#: the bytes of a page past its first entry (a page of large values stops early: ``more``)
INSPECT_PAGE, INSPECT_MAX, INSPECT_BYTES = 50, 500, 256 * 1024


class SystemAsks:
    """Serves ``$history``, ``$rewind`` and ``$destroy`` in an actor's turn order."""

    def __init__(self, store: SlotStore, commit: GroupCommit, alarms: AlarmTurns,
                 history_window: dict[str, float]) -> None:
        self.store, self.commit, self.alarms = store, commit, alarms
        self.history_window = history_window

    def turn(self, act: Activation, msg: Call) -> None:
        """Run one system ask; it is always answered (through the group commit)."""
        reply_to, rid, method = msg.reply_to, msg.rid, msg.method
        assert reply_to is not None     # system asks are asks
        try:
            if method not in ("$history", "$inspect") and self.store.broken is not None:
                raise self.store.broken      # rewind and destroy write
            if method == "$history":
                result: Any = history.bookmarks(self.store, act.prefix)
            elif method == "$inspect":
                result = self._inspect(act, *msg.args, **msg.kwargs)
            elif method == "$rewind":
                result = self._rewind(act, *msg.args, **msg.kwargs)
            else:
                result = self._destroy(act)
        except (TypeError, ValueError) as exc:
            self.commit.reply(reply_to, wire.err(rid, BadRequest(str(exc)[:1000]).to_wire()))
        except ActorError as exc:
            self.commit.reply(reply_to, wire.err(rid, exc.to_wire()))
        except Exception as exc:     # a system ask is always answered
            self.commit.reply(reply_to, wire.err(rid, ActorError(
                f"{method} failed: {type(exc).__name__}: {str(exc):.500}").to_wire()))
        else:
            self.commit.reply(reply_to, wire.ok(rid, result))
        act.last_used = time.monotonic()
        self.commit.schedule()

    def _inspect(self, act: Activation, after: str | None = None,
                 limit: int = INSPECT_PAGE) -> dict[str, Any]:
        """What the dashboard's inspector shows of one actor, read-only and as last
        committed (nothing a crash could take back): whether it is in memory, its
        state, a page of its storage entries (by name, after ``after``), its alarms
        and its history's versions. The actor is not activated."""
        if not (after is None or isinstance(after, str)):
            raise TypeError("$inspect's after is a storage key (a string) or None")
        if type(limit) is not int or not 1 <= limit <= INSPECT_MAX:
            raise ValueError(f"$inspect's limit is 1..{INSPECT_MAX}")
        store, prefix = self.store, act.prefix
        state = next(iter(store.range(state_key(prefix), successor(state_key(prefix)),
                                      committed=True)), None)
        lo, hi = prefix_range(entry_prefix(prefix))
        start = lo if after is None else successor(lo + after.encode("utf-8"))
        entries: list[list[Any]] = []
        more = False
        size = 0
        for k, v in store.range(start, hi, committed=True):
            if len(entries) == limit or (entries and size + len(k) + len(v) > INSPECT_BYTES):
                more = True
                break
            size += len(k) + len(v)
            entries.append([k[len(lo):].decode("utf-8", "replace"), wire.unpack_stored(v)])
        lo, hi = alarm_records_range(prefix)
        alarms = {}
        for k, v in store.range(lo, hi, committed=True):
            alarms[k[len(lo):].decode("utf-8", "replace")] = alarm_ops.listed(wire.unpack_stored(v))
        return {"type": act.type_name, "key": act.key, "shard": act.shard,
                "resident": act.instance is not None, "running": act.running,
                "mailbox": len(act.mailbox), "status": act.status.value,
                "state": wire.unpack_stored(state[1]) if state else None,
                "storage": entries, "more": more, "alarms": alarms,
                "history": history.bookmarks(store, prefix)}

    def _rewind(self, act: Activation, version: int | None = None,
                time: float | None = None) -> dict[str, int]:
        writes, target, earliest = history.rewind_writes(self.store, act.prefix, version, time)
        versions = act.versions or history.Versions(self.store, act.prefix)
        sk = state_key(act.prefix)
        if writes:
            versions.record(self.store, act.prefix, writes, self.store.get(sk),
                            self.history_window.get(act.type_name) or 0.0)
            # back to version 0 is back to no data: no longer listed
            writes[listing_key(act.type_name, act.key)] = listing_value(act.prefix) if target else None
            self.store.stage(writes, act.prefix)
            act.drop_instance()     # (rewinding to the current version changes nothing)
        if earliest is not None:
            self.alarms.note(earliest)
        return {"version": versions.last, "restored": target}

    def _destroy(self, act: Activation) -> dict[str, int]:
        writes, deleted = destroy_writes(self.store, act)
        self.store.stage(writes, act.prefix)
        act.drop_instance()
        act.snapshot = b""
        drop_queued_alarms(act, self.alarms)
        return {"deleted": deleted}


def list_actors(store: SlotStore, type_name: str, start_after: str | None, limit: int,
                served: Callable[[int], bool] | None = None) -> list[str]:
    """Keys of this slot's actors of a type that have persisted data, in key order
    (``served``: only those of the shards it says this slot serves: a cluster node may
    still hold a copy of a shard that moved away, never listed)."""
    lo, hi = listing_range(type_name, start_after)
    n = len(listing_key(type_name, ""))
    out: list[str] = []
    if limit <= 0:
        return out
    for k, v in store.range(lo, hi, committed=True):   # replies skip the output gate
        if served is not None and not served(int.from_bytes(v, "big")):
            continue
        out.append(k[n:].decode("utf-8"))
        if len(out) >= limit:
            break
    return out


def status(slot: int, endpoint: str, catalog: Catalog, alarms: AlarmTurns, store: SlotStore,
           counters: dict[str, int]) -> dict[str, Any]:
    """The worker's STATUS reply."""
    return {"role": "worker", "slot": slot, "pid": os.getpid(),
            "endpoint": endpoint, "resident": len(catalog.acts),
            "supervised": catalog.supervised_count(),
            "alarms_in_flight": alarms.in_flight(),
            "commits": store.commits,
            "queued_bytes": catalog.queued_bytes,
            "storage": "ok" if store.broken is None else "deleted" if store.deleted else "read-only",
            "storage_error": None if store.broken is None else str(store.broken),
            **counters}
