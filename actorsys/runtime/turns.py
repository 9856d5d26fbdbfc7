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
* **Failure** (:meth:`Turns.fail`): a turn that raises, or whose result or state cannot
  be committed, is discarded: the instance is dropped (the next message reactivates it
  from its last commit) and nothing it would have sent leaves. Separate decisions
  follow: whether a supervised child exits (:func:`.children.exits_on_crash`), whether an
  alarm is retried (:meth:`.alarm_turns.AlarmTurns.failed`), and the shape of the error
  reply (:func:`failure_reply`).
* **Deadlines.** An async turn running past ``turn_timeout`` is cancelled (the actor's
  crash). A sync turn cannot be interrupted: its start time is written to memory shared
  with the node supervisor (``beats``), which kills a worker whose sync turn overruns.
* **Loud.** Every failed turn is logged once (:class:`.loud.FailureLog`, rate-limited per
  type); each sync turn and each step of an async one is written in a
  :class:`.loud.StepClock`, which a thread reads to warn of turns blocking the loop.
* **Generations.** A kill moves the activation to a new generation at once; an async
  turn of an earlier generation that ends later is discarded (:meth:`Turns._discard`).
"""
from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any

from .. import tracing
from ..actor import incarnate
from ..config.defaults import NODE, REQUEST_REPLY_BYTES
from ..errors import ActorError, ActorStopped, BadArguments, Deadlock, MessageTooLarge, StorageError
from ..protocol import wire
from ..protocol.messages import WsEffects
from ..storage import history
from ..storage.keys import listing_key, listing_value, mark_key, state_key
from ..storage.requests import RequestWindow, WindowLimits
from ..storage.view import Storage
from . import ws_turns
from .activation import (ALARM, DEAD, ENDING, EXITING, NO_MAIL, RUNNING, SHUTDOWN, START, STARTING,
                         STOPPED, Activation, Call, Internal, Kind, Mail, Waiting, method_label)
from .children import exit_notice, exits_on_crash, stopped_error
from .commit import Reply, encode_end
from .destroy import end_destroyed, holds_data
from .host import Host, Services
from .hot import HotActors
from .loud import FailureLog, StepClock, clocked
from .chains import own_chain
from .nested import NestedTurns, chain_context
from .system import SYSTEM_METHODS

if TYPE_CHECKING:
    from ..metrics import ProcessMetrics
    from ..tracing import Tracing
    from ..storage.slot import SlotStore
    from .alarm_turns import AlarmTurns
    from .catalog import Catalog
    from .commit import GroupCommit
    from .system import SystemAsks

_ASK, _SPAWN = wire.ASK, wire.SPAWN
_EMPTY_STATE = wire.pack({})
#: kinds that run while a dead child's other mail is held (see pump)
_NOT_HELD = ENDING | {START}


class Turns(NestedTurns):
    """Runs the turns of a worker's activations (see the module docstring); its half that
    runs nested turns (call-chain reentrancy) is :class:`~.nested.NestedTurns`."""

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
        #: type name -> "stop" or "restart": what a supervised child's crash does
        self.on_error = on_error
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
        #: the process's metrics, when the node serves them (None: not timed)
        self.metrics: ProcessMetrics | None = None
        #: the busiest actors of the last minute (client.top, actorsys top)
        self.hot = HotActors(time.monotonic())
        #: this process's tracer when the node traces (None: no span is made)
        self.tracing: Tracing | None = None
        #: the span of each activation's running turn (only while tracing)
        self.spans: dict[Activation, Any] = {}
        #: when each activation's running turn started (its duration: metrics, hot actors;
        #: a nested turn's time is inside the turn that awaited it)
        self.started: dict[Activation, float] = {}
        #: the request-id window kept per actor (exactly-once asks, storage/requests.py)
        self.request_limits = request_limits or WindowLimits(
            NODE["request_window"].default, NODE["request_window_seconds"].default)

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
        elif type(msg) is Call and msg.ctx and self._repeated(act, msg):
            return None        # answered with the recorded reply: the handler ran once
        act.running = True
        act.tells = ()
        self.started[act] = now = time.monotonic()
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
            if self.tracing is not None:
                traced = self._start_span(act, msg)
            if act.instance is None:
                if type(msg) is Internal and msg.kind in ENDING:
                    return self._finish(act, msg, None)
                r = self._activate(act)
                if inspect.isawaitable(r):
                    return self._go_async(act, msg, r, started=False)
            r = self._invoke(act, msg)
            if inspect.isawaitable(r):
                return self._go_async(act, msg, r, started=True)
        except BaseException as exc:  # SystemExit or CancelledError from a handler: that actor's crash only
            return self.fail(act, msg, exc)
        finally:
            if beats is not None:
                beats[self._busy] = 0.0
            if clock is not None:
                clock.since = 0.0
            if traced is not None:
                tracing.Tracing.detach(traced)
        self._finish(act, msg, r)

    def _start_span(self, act: Activation, msg: Call | Internal) -> Any:
        """Start the turn's span (a child of the caller's; an alarm's links to the turn
        that set it) and make it current; the token that undoes that."""
        assert self.tracing is not None
        attrs: dict[str, Any] = {"actorsys.type": act.type_name, "actorsys.key": act.key,
                                 "actorsys.method": method_label(msg), "actorsys.shard": act.shard,
                                 "actorsys.slot": self.slot}
        caller = set_by = None
        if isinstance(msg, Call):
            kind = tracing.ASK if msg.op == _ASK else tracing.TELL
            caller = msg.ctx.get("trace") if msg.ctx else None
        else:
            kind = tracing.INTERNAL
            if msg.kind is ALARM:
                attrs["actorsys.alarm"] = msg.name
                set_by = self.alarms.set_by(act, msg.name)
        left = self.spans.pop(act, None)
        if left is not None:        # (a turn that ended by a path that made no end: closed now)
            tracing.Tracing.end_span(left, ActorStopped("the turn ended without an outcome"))
        span, token = self.tracing.start_span(f"{act.type_name}.{attrs['actorsys.method']}",
                                              caller, kind, attrs, set_by)
        self.spans[act] = span
        return token

    def _ended(self, act: Activation, msg: Call | Internal, exc: BaseException | None) -> float:
        """A turn ended (``exc``: why it failed, or None): its time to the metrics and the
        hot actors, its span ended; returns the time it ended."""
        end = time.monotonic()
        took = end - self.started.pop(act, end)
        if self.metrics is not None:
            self.metrics.turn(act.type_name, method_label(msg), exc is None, took)
        self.hot.turn(act.type_name, act.key, took, exc is None, len(act.mailbox), end)
        if self.spans:
            self._end_span(act, exc)
        return end

    def _end_span(self, act: Activation, exc: BaseException | None) -> None:
        span = self.spans.pop(act, None)
        if span is not None:
            tracing.Tracing.end_span(span, exc)

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
            return self.alarms.run(act, inst, msg.name, msg.due)
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
                return self._discard(act, msg)
            why = exc.args[0] if exc.args else "the handler was cancelled"
            self.fail(act, msg, (TimeoutError if "turn_timeout" in str(why) else
                                 asyncio.CancelledError)(why))
        except BaseException as exc:
            if act.gen != gen:
                return self._discard(act, msg)
            self.fail(act, msg, exc)
        else:
            if act.gen != gen:
                return self._discard(act, msg)
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
            self.fail(act, msg, exc)

    def _end_turn(self, act: Activation, msg: Call | Internal, result: Any) -> None:
        kind = msg.kind if type(msg) is Internal else None
        ending = kind is not None and kind in ENDING
        reply_to, rid = msg.reply_to, msg.rid
        inst = act.instance
        if inst is None and not ending:
            if act.status is STOPPED:   # killed by its supervisor while the turn was awaiting
                return self.fail(act, msg, stopped_error(act))
            # a failed group commit invalidated this actor while the turn was awaiting
            return self.fail(act, msg, StorageError(
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
                return self.fail(act, msg, exc)
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
                return self.fail(act, msg, self.store.broken)
            if changed:
                act.snapshot = b"" if state_bytes == _EMPTY_STATE else state_bytes
            if writes:
                self._stage(act, writes, old_state, state_bytes == _EMPTY_STATE)
            if reply is not None and type(msg) is Call and msg.ctx and (
                    writes or act.tells or act.ws_out or (act.nest is not None and act.nest.committed)):
                self._record(act, msg, reply)
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
        act.last_used = self._ended(act, msg, None)
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
                    self._report_exit(act, msg.name, "")
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
            self.fail(act, msg, TypeError(f"turn result is not msgpack-able: {exc}"))
            return False, None
        if reply is not None and len(reply) > self.max_message_bytes:
            self.fail(act, msg, MessageTooLarge(
                f"reply of {len(reply)} bytes; max_message_bytes is {self.max_message_bytes}"))
            return False, None
        if self.store.broken is not None:
            self.fail(act, msg, self.store.broken)
            return False, None
        assert act.instance is not None
        storage: Storage = act.instance.storage  # type: ignore[assignment]  # the one _activate made
        end_destroyed(self.store, self.commit, self.alarms, act, storage, ending)
        if reply is not None and type(msg) is Call and msg.ctx:
            # exactly-once: the deletion took the actor's request-id window; a retry of
            # this ask must find its reply, not run on a fresh actor (and destroy it again)
            act.requests = None
            self._record(act, msg, reply)
        return True, reply
    # -- exactly-once asks (storage/requests.py) ---------------------------------------
    def _window(self, act: Activation) -> RequestWindow:
        window = act.requests
        if window is None:
            window = act.requests = RequestWindow(self.store, act.prefix, self.request_limits)
        return window

    def _repeated(self, act: Activation, msg: Call) -> bool:
        """An ask whose request id is in the actor's window is answered with the recorded
        reply (through the output gate: the record may still be staged)."""
        request_id = msg.ctx.get("id") if msg.ctx else None
        if request_id is None or msg.op != _ASK or msg.reply_to is None or not self.request_limits.size:
            return False
        try:
            recorded = self._window(act).reply(self.store, act.prefix, request_id, msg.rid,
                                               time.time())
        except StorageError as exc:
            recorded = wire.err(msg.rid, exc.to_wire())
        if recorded is None:
            return False
        self.commit.reply(msg.reply_to, recorded)
        self.commit.schedule()
        act.last_used = time.monotonic()
        return True

    def _record(self, act: Activation, msg: Call, reply: bytes) -> None:
        """Record a committing ask's request id and reply, staged with its turn."""
        request_id = msg.ctx.get("id") if msg.ctx else None
        if request_id is not None:
            self._record_id(act, request_id, reply)

    def _record_id(self, act: Activation, request_id: bytes, reply: bytes) -> None:
        if not self.request_limits.size:
            return
        writes: dict[bytes, bytes | None] = {}
        self._window(act).record(act.prefix, request_id, reply, time.time(),
                                 min(self.store.max_value_bytes, REQUEST_REPLY_BYTES), writes)
        self.store.stage(writes, act.prefix)
        self.commit.staged.append(act)   # a failed commit drops the window with the instance

    def _report_exit(self, act: Activation, reason: str, detail: str) -> None:
        notice = exit_notice(act, reason, detail)
        if notice is not None:
            self.counters["exits"] += 1
            self.commit.exit(notice)

    # -- failure -----------------------------------------------------------------
    def fail(self, act: Activation, msg: Call | Internal, exc: BaseException) -> None:
        """The turn is discarded (see the module docstring); then the decisions that
        depend on what the turn was: a timed shutdown's timer, an alarm's retry, a
        supervised child's exit, the error reply, and whether the record stays."""
        kind = msg.kind if type(msg) is Internal else None
        if not (isinstance(exc, StorageError) and self.store.broken is not None):
            self.loud.failed(act, msg, exc)   # (a refused write: the store logged the fault)
        act.crashed()
        self.counters["failures"] += 1
        self._ended(act, msg, exc)
        if kind is SHUTDOWN:
            act.cancel_kill_timer()
        elif type(msg) is Internal and kind is ALARM:
            self.alarms.failed(act, msg.name, msg.due, exc)
        if exits_on_crash(act, kind, exc, self.on_error):
            self._report_exit(act, "crash", f"{type(exc).__name__}: {exc}")
        elif kind is START and act.status in (RUNNING, STARTING):
            act.status = DEAD      # the tree learns of the failed start from the reply
        if msg.reply_to is not None:
            self.commit.reply(msg.reply_to, failure_reply(act, kind, msg.rid, exc))
        if kind in ENDING and not act.mailbox and act.status is not DEAD:
            self.catalog.forget(act)

    def _discard(self, act: Activation, msg: Call | Internal) -> None:
        """A turn of an earlier generation (killed while it awaited) has ended: its outcome
        is dropped (no commit, no EXIT, nothing of the current generation touched) and
        its caller learns the actor was stopped."""
        kind = msg.kind if type(msg) is Internal else None
        self.started.pop(act, None)
        if self.spans:
            self._end_span(act, ActorStopped(f"{act.type_name}/{act.key:.100} was killed while "
                                             f"this turn awaited: its outcome is dropped"))
        if type(msg) is Internal and kind is ALARM:      # not done: it comes back at the end of its lease
            self.alarms.lost(act, msg.name, msg.due)
        if msg.reply_to is not None and kind not in ENDING:   # a killed SHUTDOWN was answered
            self.commit.reply(msg.reply_to, wire.err(msg.rid, stopped_error(act).to_wire()))
            self.commit.schedule()


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
