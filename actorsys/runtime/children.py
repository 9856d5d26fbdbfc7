"""Supervised children: the worker's side of SPAWN, STOP and EXIT (the tree's side is
``supervisors/tree.py``).

* The tree starts a child with a SPAWN carrying its supervisor, child id, start
  arguments and incarnation, persisted beside the actor's state (``prefix + b"m"``,
  a :class:`~.activation.SupRecord`). A SPAWN adopts only a running child of the same
  supervisor and id; any other live activation leaves memory (``on_stop``) and starts
  again with the child's arguments. The reply comes after the START turn commits.
* A child that crashes (a handler raises and its type's ``on_error`` is "stop", the
  default for children; see :func:`exits_on_crash`) or stops itself (``self.stop()``)
  is reported to the tree with an EXIT once its last turn is committed
  (:func:`exit_notice`); its messages wait in its mailbox until the tree restarts it
  (SPAWN) or stops it (STOP), after which they fail with ``ActorStopped``.
* STOP runs ``on_stop`` within the child's shutdown time, or cancels it at once
  (``brutal_kill``, :meth:`Children.kill`); a killed turn that still awaits is discarded
  when it ends (its caller gets ``ActorStopped``). STOP with ``forget`` drops the
  supervision record: the address is a plain actor again.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ActorStopped, BadArguments, BadRequest, NodeUnavailable, StorageError
from ..protocol import wire
from ..protocol.messages import Exit
from ..storage.keys import supervision_key
from .activation import (ALARM, DEAD, ENDING, EXITING, PASSIVATE, RUNNING, SHUTDOWN, START,
                         STARTING, STOPPED, Activation, Envelope, Internal, Kind, SupRecord)

if TYPE_CHECKING:
    import asyncio

    from ..storage.slot import SlotStore
    from .alarm_turns import AlarmTurns
    from .catalog import Catalog
    from .commit import GroupCommit
    from .turns import Turns

_MAX_INC = 2 ** 63 - 1
#: a STOP's default shutdown time (milliseconds)
DEFAULT_SHUTDOWN_MS = 5000


def stopped_error(act: Activation) -> ActorStopped:
    """What a message to a child its supervisor stopped gets."""
    sup = act.sup
    return ActorStopped(f"{act.type_name}/{act.key:.200} is not running: its supervisor "
                        f"'{sup.sup if sup else None}' stopped it (child "
                        f"'{sup.child if sup else None}'). It runs "
                        f"again when a supervisor starts it (restart_child, or start_child "
                        f"if the child was removed), or answers as a plain actor after "
                        f"delete_child")


def exits_on_crash(act: Activation, kind: Kind | None, exc: BaseException,
                   on_error: dict[str, str]) -> bool:
    """Whether a failed turn ends a running supervised child (an EXIT to the tree).

    A crash does, unless the child's type's ``on_error`` is "restart"; the EXIT after
    ``self.stop()`` always does. A failed START or PASSIVATE does not (the tree learns
    of a failed start from its reply), nor does a refused write (the disk's fault, not
    the child's: the child reloads its last commit at its next message) or arguments
    that did not fit the handler (the caller's fault).
    """
    return (act.sup is not None and act.status is RUNNING and kind is not START
            and kind is not PASSIVATE and not isinstance(exc, (StorageError, BadArguments))
            and (kind is EXITING or on_error.get(act.type_name, "stop") == "stop"))


def exit_notice(act: Activation, reason: str, detail: str) -> Exit | None:
    """The child exited: it is DEAD from now on, and this is the EXIT for the tree
    (None: the tree stopped it meanwhile, so it already knows)."""
    sup = act.sup
    assert sup is not None
    if act.status is not RUNNING:
        return None
    act.status = DEAD
    return Exit(0, sup.sup, sup.child, act.type_name, act.key, sup.inc, reason, detail[:2000])


def _bad_inc(inc: Any) -> bool:
    return type(inc) is not int or not 0 <= inc <= _MAX_INC


def bad_spawn_opts(opts: dict[str, Any]) -> str | None:
    """Why the options of a SPAWN from the tree are unusable (None: they are fine)."""
    for name in ("sup", "child", "args", "kwargs", "inc"):
        if name not in opts:
            return f"spawn options need sup, child, args, kwargs and inc; '{name}' is missing"
    if not isinstance(opts["sup"], str) or not isinstance(opts["child"], str):
        return "spawn options 'sup' and 'child' must be strings"
    if not isinstance(opts["args"], list):
        return "spawn option 'args' must be an array"
    kwargs = opts["kwargs"]
    if not isinstance(kwargs, dict) or any(not isinstance(k, str) for k in kwargs):
        return "spawn option 'kwargs' must be a map with string keys"
    if _bad_inc(opts["inc"]):
        return f"spawn option 'inc' must be an integer in 0..{_MAX_INC}"
    return None


def bad_stop_opts(opts: dict[str, Any]) -> str | None:
    """Why the options of a STOP from the tree are unusable (None: they are fine)."""
    if "forget" in opts and type(opts["forget"]) is not bool:
        return "stop option 'forget' must be a boolean"
    if "shutdown" in opts:
        sd = opts["shutdown"]
        if not (sd in ("brutal_kill", "infinity") if isinstance(sd, str)
                else type(sd) is int and 0 <= sd <= _MAX_INC):
            return ("stop option 'shutdown' must be a non-negative integer (milliseconds), "
                    "\"brutal_kill\" or \"infinity\"")
    if "inc" in opts and _bad_inc(opts["inc"]):
        return f"stop option 'inc' must be an integer in 0..{_MAX_INC}"
    return None


class Children:
    """Carries out the tree's SPAWN and STOP requests on this worker's activations.

    Refusals (bad options, a worker shutting down, an address the catalog refuses) are
    raised as :class:`~actorsys.errors.ActorError` for the worker to answer at once;
    everything else is answered through the group commit.
    """

    def __init__(self, catalog: Catalog, commit: GroupCommit, turns: Turns, alarms: AlarmTurns,
                 store: SlotStore, call_later: Callable[..., asyncio.TimerHandle],
                 counters: dict[str, int], slot: int) -> None:
        self.catalog, self.commit, self.turns, self.alarms = catalog, commit, turns, alarms
        self.store, self.call_later, self.counters, self.slot = store, call_later, counters, slot

    def start(self, reply_to: Envelope, rid: int, type_name: str, key: str,
              opts: dict[str, Any]) -> None:
        """Start (or adopt, if already running) a supervised child; reply after commit."""
        if self.turns.stopping:
            raise NodeUnavailable(f"worker slot {self.slot} is shutting down")
        why = bad_spawn_opts(opts)
        if why is not None:
            self.counters["bad_frames"] += 1
            raise BadRequest(why)
        rec = SupRecord(opts["sup"], opts["child"], opts["args"], opts["kwargs"], opts["inc"], True)
        act = self.catalog.resident(type_name, key)
        prev, act.sup = act.sup, rec
        self.store.stage({supervision_key(act.prefix): wire.pack(rec.to_stored())}, act.prefix)
        if (prev is not None and prev.running and prev.sup == rec.sup
                and prev.child == rec.child and act.status is RUNNING
                and act.instance is not None):
            # this child of this supervisor is already running (the tree restarted and
            # restores its children): adopt it
            self.commit.reply(reply_to, wire.ok(rid, "adopted"))
            return self.commit.schedule()
        # until its START has run, nothing that happens to the activation (a plain turn
        # still in flight, an on_start still running) is an exit of this child
        act.status = STARTING
        mailbox = act.mail()
        mailbox.appendleft(Internal(START, reply_to, rid))
        if act.instance is not None:
            # a live plain activation (or another supervisor's child): it leaves memory
            # first (on_stop), then START runs on_start with this child's arguments
            mailbox.appendleft(Internal(PASSIVATE))
        if not act.running:
            self.turns.pump(act)
        self.commit.schedule()

    def stop(self, reply_to: Envelope, rid: int, type_name: str, key: str,
             opts: dict[str, Any]) -> None:
        """Stop a supervised child (``shutdown``: ms, "brutal_kill" or "infinity"), or with
        ``forget`` drop its supervision record so the address is a plain actor again."""
        why = bad_stop_opts(opts)
        if why is not None:
            self.counters["bad_frames"] += 1
            raise BadRequest(why)
        act = self.catalog.resident(type_name, key)
        mk = supervision_key(act.prefix)
        if opts.get("forget"):
            act.sup = None
            self.store.stage({mk: None}, act.prefix)
            if act.status is not RUNNING:
                act.status = RUNNING
                self.turns.pump(act)
            self.commit.reply(reply_to, wire.ok(rid, "forgotten"))
            return self.commit.schedule()
        if act.sup is not None:
            act.sup = act.sup._replace(running=False)
            self.store.stage({mk: wire.pack(act.sup.to_stored())}, act.prefix)
        act.status = STOPPED
        self._fail_queued(act)
        shutdown = opts.get("shutdown", DEFAULT_SHUTDOWN_MS)
        if act.instance is None:
            self.commit.reply(reply_to, wire.ok(rid, "not_running"))
        elif shutdown == "brutal_kill" or shutdown == 0:
            self.kill(act)
            self.commit.reply(reply_to, wire.ok(rid, "killed"))
        else:
            act.mail().appendleft(Internal(SHUTDOWN, reply_to, rid))
            if type(shutdown) is int:
                act.kill_timer = self.call_later(shutdown / 1000, self._shutdown_overdue,
                                                 act, reply_to, rid)
            if not act.running:
                self.turns.pump(act)
        self.commit.schedule()

    def _fail_queued(self, act: Activation) -> None:
        """Answer every queued message (and start) of a child that will not run them."""
        keep: deque[Any] = deque()
        error = None
        for m in act.mailbox:
            if type(m) is Internal and m.kind in ENDING:
                keep.append(m)
            elif type(m) is Internal and m.kind is ALARM:
                self.alarms.lost(act, m.name, m.due)
                if m.reply_to is not None:     # a fired alarm's caller (testing_asks.py)
                    error = error or stopped_error(act).to_wire()
                    self.commit.reply(m.reply_to, wire.err(m.rid, error))
            elif m.reply_to is not None:
                error = error or stopped_error(act).to_wire()
                self.commit.reply(m.reply_to, wire.err(m.rid, error))
            elif not isinstance(m, Internal):     # a tell: only the log says it is dropped
                self.turns.loud.dropped(act.type_name, act.key, m.method, stopped_error(act))
        act.mailbox = keep

    def kill(self, act: Activation) -> None:
        """brutal_kill: drop the instance now, no on_stop; an async turn in progress is
        cancelled and its changes discarded.

        The activation moves to a new generation at once: a cancelled turn that still
        awaits (in its ``except CancelledError``) is a zombie whose outcome is discarded
        when it ends, and a START does not wait for it."""
        if act.host is not None:
            # what the killed instance still sends goes nowhere: its refs made from now on
            # name a detached record (generation -1), its earlier refs a past generation
            act.host.detach()
        act.instance = act.host = None
        keep: deque[Any] = deque()
        for m in act.mailbox:      # a queued timed STOP is answered, not dropped
            if type(m) is Internal and m.kind in ENDING:
                if m.kind is SHUTDOWN and m.reply_to is not None:
                    self.commit.reply(m.reply_to, wire.ok(m.rid, "killed"))
            else:
                keep.append(m)
        act.mailbox = keep
        act.gen += 1     # (its sockets' Connection objects are of the old generation now)
        act.ws, act.ws_out, act.ws_batch, act.ws_parts = None, (), None, None
        act.cancel_kill_timer()   # an earlier timed STOP must not kill a later incarnation
        if act.task is not None:
            act.task.cancel()
            act.task = None
            act.running = False
            act.tells = ()
        if act.nest is not None:
            self.turns.unnest(act)     # its nested turns are killed too; held asks queue
        self.turns.pump(act)

    def _shutdown_overdue(self, act: Activation, reply_to: Envelope, rid: int) -> None:
        act.kill_timer = None
        if act.instance is None:
            # nothing left to kill, yet the STOP is pending: answer it, never hold it
            act.mailbox = deque(m for m in act.mailbox
                                if not (type(m) is Internal and m.kind is SHUTDOWN
                                        and m.reply_to == reply_to and m.rid == rid))
            self.commit.reply(reply_to, wire.ok(rid, "not_running"))
        else:
            self.kill(act)
            self.commit.reply(reply_to, wire.ok(rid, "killed"))
        self.commit.schedule()
