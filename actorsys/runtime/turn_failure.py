"""Failed and discarded turns (a part of :class:`~.turns.Turns`, which owns one
:class:`TurnFailures`).

* **Failure** (:meth:`TurnFailures.fail`): a turn that raises, or whose result or state
  cannot be committed, is discarded: the instance is dropped (the next message
  reactivates it from its last commit) and nothing it would have sent leaves. Separate
  decisions follow: whether a supervised child exits (:func:`.children.exits_on_crash`),
  whether an alarm is retried (:meth:`.alarm_turns.AlarmTurns.failed`), and the shape of
  the error reply (:func:`failure_reply`). Every failed turn is logged once
  (:class:`.loud.FailureLog`, rate-limited per type), but for a write refused because
  storage is read-only (the store logged that fault).
* **Discarded** (:meth:`TurnFailures.discard`): a kill moves the activation to a new
  generation at once; an async turn of an earlier generation that ends later leaves
  nothing: no commit, no EXIT, nothing of the current generation touched; its caller
  learns the actor was stopped.
* **Exits** (:func:`report_exit`): what a supervised child's end (a crash here, a stop
  at the end of its turn) tells its supervision tree, through the group commit.

Invariants: :attr:`~TurnFailures.loud` and :attr:`~TurnFailures.telemetry` are the
owning :class:`~.turns.Turns`' own (one failure log and one set of turn timings per
worker); a failed turn's time and span end here, as an ok turn's end in ``Turns``.
"""
from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from ..errors import ActorStopped, BadArguments, Deadlock, StorageError
from ..protocol import wire
from .activation import ALARM, DEAD, ENDING, RUNNING, SHUTDOWN, START, STARTING, STOPPED, Internal
from .children import exit_notice, exits_on_crash, stopped_error

if TYPE_CHECKING:
    from ..storage.slot import SlotStore
    from .activation import Activation, Call, Kind
    from .alarm_turns import AlarmTurns
    from .catalog import Catalog
    from .commit import GroupCommit
    from .loud import FailureLog
    from .turn_telemetry import TurnTelemetry


class TurnFailures:
    """Settles the turns that fail or are discarded (see the module docstring)."""

    def __init__(self, catalog: Catalog, commit: GroupCommit, store: SlotStore,
                 alarms: AlarmTurns, counters: dict[str, int], on_error: dict[str, str],
                 loud: FailureLog, telemetry: TurnTelemetry) -> None:
        self.catalog, self.commit, self.store, self.alarms = catalog, commit, store, alarms
        self.counters = counters
        #: type name -> "stop" or "restart": what a supervised child's crash does
        self.on_error = on_error
        #: logs failed turns (the same as ``Turns.loud``)
        self.loud = loud
        self.telemetry = telemetry

    def fail(self, act: Activation, msg: Call | Internal, exc: BaseException) -> None:
        """The turn is discarded (see the module docstring); then the decisions that
        depend on what the turn was: a timed shutdown's timer, an alarm's retry, a
        supervised child's exit, the error reply, and whether the record stays."""
        kind = msg.kind if type(msg) is Internal else None
        if not (isinstance(exc, StorageError) and self.store.broken is not None):
            self.loud.failed(act, msg, exc)   # (a refused write: the store logged the fault)
        act.crashed()
        self.counters["failures"] += 1
        self.telemetry.ended(act, msg, exc)
        if kind is SHUTDOWN:
            act.cancel_kill_timer()
        elif type(msg) is Internal and kind is ALARM:
            self.alarms.failed(act, msg.name, msg.due, exc)
        if exits_on_crash(act, kind, exc, self.on_error):
            report_exit(act, "crash", f"{type(exc).__name__}: {exc}", self.counters, self.commit)
        elif kind is START and act.status in (RUNNING, STARTING):
            act.status = DEAD      # the tree learns of the failed start from the reply
        if msg.reply_to is not None:
            self.commit.reply(msg.reply_to, failure_reply(act, kind, msg.rid, exc))
        if kind in ENDING and not act.mailbox and act.status is not DEAD:
            self.catalog.forget(act)

    def discard(self, act: Activation, msg: Call | Internal) -> None:
        """A turn of an earlier generation (killed while it awaited) has ended: its outcome
        is dropped (no commit, no EXIT, nothing of the current generation touched) and
        its caller learns the actor was stopped."""
        kind = msg.kind if type(msg) is Internal else None
        telemetry = self.telemetry
        telemetry.started.pop(act, None)
        if telemetry.spans:
            telemetry.end_span(act, ActorStopped(f"{act.type_name}/{act.key:.100} was killed while "
                                                 f"this turn awaited: its outcome is dropped"))
        if type(msg) is Internal and kind is ALARM:      # not done: it comes back at the end of its lease
            self.alarms.lost(act, msg.name, msg.due)
        if msg.reply_to is not None and kind not in ENDING:   # a killed SHUTDOWN was answered
            self.commit.reply(msg.reply_to, wire.err(msg.rid, stopped_error(act).to_wire()))
            self.commit.schedule()


def report_exit(act: Activation, reason: str, detail: str, counters: dict[str, int],
                commit: GroupCommit) -> None:
    """A supervised child (``act.sup`` set) exited: its EXIT (``reason`` "crash", or
    the one it stopped with) goes to its tree after the group commit; nothing if the tree
    stopped it meanwhile (:func:`.children.exit_notice`)."""
    notice = exit_notice(act, reason, detail)
    if notice is not None:
        counters["exits"] += 1
        commit.exit(notice)


def failure_reply(act: Activation, kind: Kind | None, rid: int, exc: BaseException) -> bytes:
    """The error reply to a failed turn: ActorStopped for a stopped child's message,
    the error itself for a refused write, arguments that do not fit or a Deadlock (a
    call cycle refused anywhere down the chain is the whole chain's: every caller up it
    gets ``actorsys.Deadlock``, not a RemoteError around one), otherwise the handler's
    exception as a remote error with its traceback."""
    if act.status is STOPPED and kind not in ENDING:
        return wire.err(rid, stopped_error(act).to_wire())
    if isinstance(exc, (StorageError, BadArguments, Deadlock)):
        return wire.err(rid, exc.to_wire())
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return wire.err(rid, {"code": "remote", "type": type(exc).__name__, "message": str(exc)[:10_000],
                          "traceback": tb[-20_000:]})
