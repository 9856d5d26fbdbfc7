"""Turns: running an activation's mailbox one entry at a time.

What a turn guarantees (see ``actorsys/actor/actor.py`` for the user's view):

* **Turns never overlap.** :meth:`Turns.pump` takes the next entry only while no turn of
  the activation runs; an ``async def`` handler keeps its actor busy until it returns,
  while other actors run at its awaits. The one exception is reentrancy: an ask that
  comes back along the call chain of the turn waiting on it runs as a nested turn at
  that turn's await (``nested.py``, ``chains.py``).
* **The end of a turn** (:meth:`Turns._end_turn`) packs ``self.state`` and takes the
  storage view's writes, checks the limits, and stages them with the actor's listing
  entry and its history record (or, after ``self.destroy()``, the actor's deletion:
  ``destroy.py``); its reply, tells and WebSocket effects go to the outbox, released by
  the group commit (``commit.py``).
* **Failure** (:meth:`.turn_failure.TurnFailures.fail`): a turn that raises, or whose
  result or state cannot be committed, is discarded: the instance is dropped (the next
  message reactivates it from its last commit) and nothing it would have sent leaves;
  then whether a supervised child exits, whether an alarm is retried, and the error
  reply (``turn_failure.py``).
* **Deadlines.** An async turn running past ``turn_timeout`` is cancelled (the actor's
  crash). A sync turn cannot be interrupted: its start time is written to memory shared
  with the node supervisor (``beats``), which kills a worker whose sync turn overruns.
* **Loud.** Every failed turn is logged once (:class:`.loud.FailureLog`, rate-limited per
  type); each sync turn and each step of an async one is written in a
  :class:`.loud.StepClock`, which a thread reads to warn of turns blocking the loop.
* **Generations.** A kill moves the activation to a new generation at once; an async
  turn of an earlier generation that ends later is discarded
  (:meth:`.turn_failure.TurnFailures.discard`).

:class:`Turns` schedules and runs the turns (sync and async, their deadline) and ends
them. It owns a helper for each other concern of a turn:
:class:`.turn_telemetry.TurnTelemetry` (its time to the metrics and the hot actors, its
span), :class:`.turn_records.AskRecords` (exactly-once asks) and
:class:`.turn_failure.TurnFailures` (failed and discarded turns); its nested turns are
the :class:`.nested.NestedTurns` mixin's.
"""
from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .. import tracing
from ..actor import incarnate
from ..config.defaults import NODE
from ..errors import ActorError, BadArguments, MessageTooLarge, StorageError
from ..protocol import wire
from ..protocol.messages import WsEffects
from ..storage import history
from ..storage.keys import listing_key, listing_value, mark_key, state_key
from ..storage.requests import WindowLimits
from ..storage.view import Storage
from . import ws_turns
from .activation import (ALARM, DEAD, ENDING, EXITING, NO_MAIL, RUNNING, SHUTDOWN, START, STARTING,
                         STOPPED, Activation, Call, Internal, Kind, Mail, Waiting)
from .children import stopped_error
from .commit import Reply, encode_end
from .destroy import end_destroyed, holds_data
from .host import Host, Services
from .loud import FailureLog, StepClock, clocked
from .chains import own_chain
from .nested import NestedTurns, chain_context
from .system import SYSTEM_METHODS
from .turn_failure import TurnFailures, report_exit
from .turn_records import AskRecords
from .turn_telemetry import TurnTelemetry

if TYPE_CHECKING:
    from ..storage.slot import SlotStore
    from .alarm_turns import AlarmTurns
    from .catalog import Catalog
    from .commit import GroupCommit
    from .system import SystemAsks

_ASK, _SPAWN = wire.ASK, wire.SPAWN
_EMPTY_STATE = wire.pack({})
#: what a handler returns that is surely not awaitable: checked by type before
#: inspect.isawaitable, whose ABC check costs about a microsecond a turn
_PLAIN = frozenset({type(None), int, float, str, bool, bytes, list, dict, tuple})


def _awaitable(r: Any) -> bool:
    return type(r) not in _PLAIN and inspect.isawaitable(r)
#: kinds that run while a dead child's other mail is held (see pump)
_NOT_HELD = ENDING | {START}


class Turns(NestedTurns):
    """Runs the turns of a worker's activations (see the module docstring); its half that
    runs nested turns (call-chain reentrancy) is :class:`~.nested.NestedTurns` (a mixin:
    a nested turn runs on the outer turn's instance, mailbox state and effects, which it
    sets aside and restores). What it owns: :attr:`telemetry`, :attr:`records`,
    :attr:`failures` (set once here, never replaced)."""

    def __init__(self, catalog: Catalog, commit: GroupCommit, store: SlotStore,
                 services: Services, alarms: AlarmTurns, system: SystemAsks,
                 loop: asyncio.AbstractEventLoop, counters: dict[str, int], *,
                 turn_timeout: float, on_error: dict[str, str],
                 history_window: dict[str, float], beats: "memoryview[float] | None" = None,
                 slot: int = 0, loud: FailureLog | None = None,
                 request_limits: WindowLimits | None = None) -> None:
        self.catalog, self.commit, self.store = catalog, commit, store
        self.services, self.alarms, self.system = services, alarms, system
        self.loop, self.counters = loop, counters
        self.turn_timeout = turn_timeout
        #: type name -> seconds of history kept (0 or missing: none)
        self.history_window = history_window
        #: shared with the node supervisor: [heartbeat, sync turn start] per slot
        self.beats = beats
        self._busy = 2 * slot + 1
        self.slot = slot
        #: set once when the worker begins its shutdown: no more EXITs, and async turns
        #: cancelled by it end without a failure
        self.stopping = False
        self.max_message_bytes = services.max_message_bytes
        #: logs failed turns and dropped tells
        self.loud = loud if loud is not None else FailureLog()
        #: written at each sync turn and async step, read by the slow-turn watch (None: off)
        self.clock: StepClock | None = None
        #: each turn's time (metrics, hot actors) and span (the worker sets its metrics
        #: and tracer)
        self.telemetry = TurnTelemetry(alarms, slot)
        #: exactly-once asks: committing asks' replies recorded, their retries answered
        self.records = AskRecords(store, commit, request_limits or WindowLimits(
            NODE["request_window"].default, NODE["request_window_seconds"].default))
        #: settles the turns that fail or are discarded
        self.failures = TurnFailures(catalog, commit, store, alarms, counters, on_error,
                                     self.loud, self.telemetry)

    # -- scheduling ------------------------------------------------------------
    def pump(self, act: Activation) -> None:
        """Run the activation's waiting entries, in order, while no turn of it runs."""
        while act.mailbox and not act.running:
            mailbox: deque[Mail] = act.mailbox   # (not NO_MAIL: it has mail)
            first = mailbox[0]
            if act.status is DEAD and not (type(first) is Internal and first.kind in _NOT_HELD):
                # held until the tree restarts (START) or stops the child; system asks
                # (history, rewind, destroy) run no actor code: an operator can still
                # rewind or destroy a child whose state makes every start fail
                system = next((m for m in mailbox if isinstance(m, (Call, Waiting))
                               and m.op == _ASK and m.method in SYSTEM_METHODS), None)
                if system is None:
                    return
                mailbox.remove(system)
                self._turn(act, self._unqueue(system) if isinstance(system, Waiting) else system)
                continue
            msg = mailbox.popleft()
            self._turn(act, self._unqueue(msg) if type(msg) is Waiting else msg)  # type: ignore[arg-type]
        if not act.mailbox:
            act.mailbox = NO_MAIL

    def run_now(self, act: Activation, msg: Call) -> None:
        """Run a message at once: the activation is idle, its mailbox empty, and it is
        not a dead child (what :meth:`pump` would do with it as the only entry, without
        making a mailbox for it)."""
        self._turn(act, msg)
        if act.mailbox and not act.running:
            self.pump(act)

    def _unqueue(self, msg: Waiting) -> Call:
        """A waiting message's arguments, decoded from its wire bytes (checked on arrival)."""
        raw = msg.raw
        self.catalog.queued_bytes -= len(raw)
        request = wire.unpack(raw)
        return Call(msg.op, msg.reply_to, msg.rid, msg.method, request[5], request[6],
                    request[7] if len(request) > 7 else None)

    def passivate(self, act: Activation) -> None:
        """Queue a PASSIVATE: on_stop runs in turn order, then the actor leaves memory."""
        act.mail().append(Internal(Kind.PASSIVATE))
        if not act.running:
            self.pump(act)
        self.commit.schedule()

    # -- a turn ----------------------------------------------------------------
    def _turn(self, act: Activation, msg: Call | Internal) -> None:
        if type(msg) is Internal:
            if msg.kind is START and act.instance is None:
                act.gen += 1
        elif type(msg) is Call and msg.op == _ASK and msg.method in SYSTEM_METHODS:
            return self.system.turn(act, msg)
        elif type(msg) is Call and msg.ctx and self.records.repeated(act, msg):
            return None        # answered with the recorded reply: the handler ran once
        act.running = True
        act.tells = ()
        telemetry = self.telemetry
        telemetry.started[act] = now = time.monotonic()
        beats = self.beats
        if beats is not None:
            beats[self._busy] = now   # a sync turn runs since now
        clock = self.clock
        if clock is not None:
            clock.act, clock.msg, clock.since = act, msg, now
        # the turn's span is current while its code runs (an async turn's task copies it):
        # what it asks and tells carries its context (actorsys/tracing.py)
        traced = None
        try:
            if telemetry.tracing is not None:
                traced = telemetry.start_span(act, msg)
            if act.instance is None:
                if type(msg) is Internal and msg.kind in ENDING:
                    return self._finish(act, msg, None)
                r = self._activate(act)
                if _awaitable(r):
                    return self._go_async(act, msg, r, started=False)
            r = self._invoke(act, msg)
            if _awaitable(r):
                return self._go_async(act, msg, r, started=True)
        except BaseException as exc:  # SystemExit or CancelledError from a handler: that actor's crash only
            return self.failures.fail(act, msg, exc)
        finally:
            if beats is not None:
                beats[self._busy] = 0.0
            if clock is not None:
                clock.since = 0.0
            if traced is not None:
                tracing.Tracing.detach(traced)
        self._finish(act, msg, r)

    def _activate(self, act: Activation) -> Any:
        if act.snapshot is None:
            act.snapshot = self.store.get(state_key(act.prefix)) or b""
        host = Host(act, self.services)
        inst = incarnate(act.cls, host, act.type_name, act.key)
        inst.state = wire.unpack_stored(act.snapshot) if act.snapshot else {}
        inst.storage = Storage(self.store, act.prefix, inst)
        act.instance, act.host = inst, host
        self.counters["activations"] += 1
        if act.sup is not None:
            return inst.on_start(*act.sup.args, **act.sup.kwargs)
        return inst.on_start()

    def _invoke(self, act: Activation, msg: Call | Internal) -> Any:
        inst = act.instance
        assert inst is not None
        if type(msg) is Call:
            if msg.op == _SPAWN:
                return None          # the activation was the work
            handler = act.handlers[msg.method]
            try:
                if handler is ws_turns.run_batch:    # the $ws turn needs the instance's host
                    assert act.host is not None
                    return handler(act.host, inst, *msg.args, **msg.kwargs)
                return handler(inst, *msg.args, **msg.kwargs)
            except TypeError as exc:
                if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                    # raised by the call itself, before the handler ran: the caller's
                    # arguments do not fit (a bad request, not the actor's crash)
                    raise BadArguments(f"{act.type_name}.{msg.method}(): {exc}") from None
                raise
        assert type(msg) is Internal
        if msg.kind in ENDING:
            return inst.on_stop()
        if msg.kind is ALARM:
            return self.alarms.run(act, inst, msg.name, msg.due, msg.reply_to is not None)
        return None  # START: the activation was the work

    def _go_async(self, act: Activation, msg: Call | Internal, awaitable: Any, started: bool) -> None:
        # this turn's own chain (chains.py): what its asks carry; asks back to it nest
        ctx = msg.ctx if type(msg) is Call else None
        act.chain = chain = own_chain(ctx.get("chain") if ctx else None, act.type_name, act.key)
        act.turn_id = ctx.get("id") if ctx and msg.reply_to is not None else None
        coro = self._turn_async(act, msg, awaitable, started, act.gen)
        clock = self.clock
        task = self.loop.create_task(coro if clock is None else clocked(coro, clock, act, msg),
                                     context=chain_context(chain, act.turn_id))
        act.task = task
        timer = self.loop.call_later(self.turn_timeout, self._turn_overdue, act, task)
        task.add_done_callback(lambda _t: timer.cancel())

    def _turn_overdue(self, act: Activation, task: asyncio.Task[None]) -> None:
        if act.task is task and not task.done():
            self.counters["turn_timeouts"] += 1
            task.cancel(f"the turn ran past turn_timeout ({self.turn_timeout:g} s)")

    async def _turn_async(self, act: Activation, msg: Call | Internal, awaitable: Any,
                          started: bool, gen: int) -> None:
        try:
            r = await awaitable
            if not started and act.gen == gen:
                r = self._invoke(act, msg)
                if inspect.isawaitable(r):
                    r = await r
        except asyncio.CancelledError as exc:
            if self.stopping:
                raise            # the worker's own shutdown cancelling what is left
            if act.gen != gen:
                return self.failures.discard(act, msg)
            why = exc.args[0] if exc.args else "the handler was cancelled"
            self.failures.fail(act, msg, (TimeoutError if "turn_timeout" in str(why) else
                                          asyncio.CancelledError)(why))
        except BaseException as exc:
            if act.gen != gen:
                return self.failures.discard(act, msg)
            self.failures.fail(act, msg, exc)
        else:
            if act.gen != gen:
                return self.failures.discard(act, msg)
            self._finish(act, msg, r)
        if act.nest is not None:
            self.unnest(act)    # its nested turns still running are cancelled
        act.task = None
        self.commit.schedule()
        self.pump(act)

    # -- the end of a turn -------------------------------------------------------
    def _finish(self, act: Activation, msg: Call | Internal, result: Any) -> None:
        try:
            self._end_turn(act, msg, result)
        except BaseException as exc:  # e.g. a handler replaced self.storage: still only its crash
            self.failures.fail(act, msg, exc)

    def _end_turn(self, act: Activation, msg: Call | Internal, result: Any) -> None:
        kind = msg.kind if type(msg) is Internal else None
        ending = kind is not None and kind in ENDING
        reply_to, rid = msg.reply_to, msg.rid
        inst = act.instance
        if inst is None and not ending:
            if act.status is STOPPED:   # killed by its supervisor while the turn was awaiting
                return self.failures.fail(act, msg, stopped_error(act))
            # a failed group commit invalidated this actor while the turn was awaiting
            return self.failures.fail(act, msg, StorageError(
                "an earlier commit of this actor failed; this turn was discarded"))
        commit = self.commit
        reply: bytes | None
        host = act.host      # (set while inst is)
        if host is not None and host.destroying:
            done, reply = self._end_destroyed(act, msg, result, ending)
            if not done:
                return
        elif inst is not None:
            try:
                state_bytes, reply = encode_end(inst.state, rid, result, reply_to is not None,
                                                self.max_message_bytes, self.store.max_value_bytes)
            except (TypeError, ActorError) as exc:
                return self.failures.fail(act, msg, exc)
            storage: Storage = inst.storage  # type: ignore[assignment]  # the one _activate made
            alarm_at = storage.alarms_changed
            writes = storage.take_writes()
            old_state = act.snapshot or None
            changed = state_bytes != act.snapshot and not (state_bytes == _EMPTY_STATE and not act.snapshot)
            if changed:
                # (an actor that never stored anything and still has an empty state
                # leaves nothing on disk: only actors with data exist in list_actors;
                # an emptied state is stored as none)
                writes[state_key(act.prefix)] = None if state_bytes == _EMPTY_STATE else state_bytes
            if writes and self.store.broken is not None:
                # storage is read-only until it recovers: this turn's changes are dropped
                # (the actor reloads its last commit) and its caller learns why
                return self.failures.fail(act, msg, self.store.broken)
            if changed:
                act.snapshot = b"" if state_bytes == _EMPTY_STATE else state_bytes
            if writes:
                self._stage(act, writes, old_state, state_bytes == _EMPTY_STATE)
            if reply is not None and type(msg) is Call and msg.ctx and (
                    writes or act.tells or act.ws_out or (act.nest is not None and act.nest.committed)):
                self.records.record(act, msg, reply)
            if alarm_at is not None:
                self.alarms.note(alarm_at)
        elif ending and reply_to is not None:
            reply = wire.ok(rid, "not_running")
        else:
            reply = None    # only a passivation reaches here with no instance: nobody awaits it
        if kind is SHUTDOWN and reply is not None:
            reply = wire.ok(rid, "shutdown")
            act.cancel_kill_timer()
        if reply is not None:
            commit.outbox.append(Reply(reply_to, reply))  # type: ignore[arg-type]
        if act.tells:
            commit.outbox.extend(act.tells)
            act.tells = ()
        if act.ws_out:
            commit.outbox.append(WsEffects(0, act.type_name, act.key, act.ws_out, act.ws_batch, 0))
            act.ws_out = ()
        act.ws_batch = None
        act.running = False
        act.last_used = self.telemetry.ended(act, msg, None)
        self.counters["turns"] += 1
        if type(msg) is Internal:
            if kind is START:
                if act.status is STARTING:
                    act.status = RUNNING       # from now on, what ends it is an exit of this child
            elif kind is ALARM:
                self.alarms.done(act, msg.name)
            elif ending:
                act.instance = act.host = None
                self.counters["passivations"] += 1
                if kind is EXITING and act.sup is not None and act.status is RUNNING and not self.stopping:
                    report_exit(act, msg.name, "", self.counters, self.commit)
                elif not act.mailbox:
                    self.catalog.forget(act)
                return
        host = act.host
        if host is not None and host.stop_reason is not None:
            # self.stop(reason): on_stop runs next (ahead of queued messages), then the exit
            act.mail().appendleft(Internal(EXITING, name=host.stop_reason))
            host.stop_reason = None

    def _stage(self, act: Activation, writes: dict[bytes, bytes | None],
               old_state: bytes | None, empty_state: bool = False) -> None:
        """Stage a turn's writes for the group commit, with the actor's listing entry (or
        its removal, for an actor left with no data: see destroy.py) and, if its type
        keeps history, this version's undo record."""
        if empty_state and None in writes.values() and not holds_data(self.store, act.prefix, writes):
            writes[listing_key(act.type_name, act.key)] = None
            act.indexed = False
        elif not act.indexed and not (len(writes) == 1 and mark_key(act.prefix) in writes):
            # (an actor whose only write is its sockets' delivery mark has no data)
            writes[listing_key(act.type_name, act.key)] = listing_value(act.prefix)
            act.indexed = True
        window = self.history_window.get(act.type_name)
        if window:
            if act.versions is None:
                act.versions = history.Versions(self.store, act.prefix)
            act.versions.record(self.store, act.prefix, writes, old_state, window)
        self.store.stage(writes, act.prefix)
        self.commit.staged.append(act)

    def _end_destroyed(self, act: Activation, msg: Call | Internal, result: Any,
                       ending: bool) -> tuple[bool, bytes | None]:
        """The end of a turn that called ``self.destroy()`` (see destroy.py): (False,
        None) if the turn failed after all, else (True, its reply)."""
        reply_to = msg.reply_to
        try:
            reply = wire.ok(msg.rid, result) if reply_to is not None else None
        except Exception as exc:
            self.failures.fail(act, msg, TypeError(f"turn result is not msgpack-able: {exc}"))
            return False, None
        if reply is not None and len(reply) > self.max_message_bytes:
            self.failures.fail(act, msg, MessageTooLarge(
                f"reply of {len(reply)} bytes; max_message_bytes is {self.max_message_bytes}"))
            return False, None
        if self.store.broken is not None:
            self.failures.fail(act, msg, self.store.broken)
            return False, None
        assert act.instance is not None
        storage: Storage = act.instance.storage  # type: ignore[assignment]  # the one _activate made
        end_destroyed(self.store, self.commit, self.alarms, act, storage, ending)
        if reply is not None and type(msg) is Call and msg.ctx:
            # exactly-once: the deletion took the actor's request-id window; a retry of
            # this ask must find its reply, not run on a fresh actor (and destroy it again)
            act.requests = None
            self.records.record(act, msg, reply)
        return True, reply
