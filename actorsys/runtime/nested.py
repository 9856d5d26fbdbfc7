"""Nested turns: call-chain reentrancy (what ``chains.py`` decides, run).

A turn of actor A that awaits an ask may be waiting on a call chain that comes back to
A (A asks B, B asks A). Queued behind the waiting turn, that ask would wait for ever;
instead it runs at once as a **nested turn** on the same instance, interleaved at the
outer turn's await (:meth:`NestedTurns.reenter`, called by the worker's dispatch).
Nested turns nest again (A -> B -> A -> B -> A ...), up to the wire's ``MAX_CHAIN``.

What a nested turn commits and when:

* It sees the outer turn's uncommitted changes: same instance, same ``self.state``
  and ``self.storage``.
* When it ends, the actor's state and storage as they stand then (the outer turn's
  writes so far and its own) are staged as one commit, and its reply and tells leave
  only after that commit (the output gate). That commit is the new rollback point of
  every turn it is nested in: one of them that raises later is discarded back to it,
  not to its own start (a caller has seen those writes, so they stay durable).
* If it raises (or its result or state cannot be committed), only its own changes to
  ``self.state`` and ``self.storage`` are undone, in place, as by
  ``self.storage.transaction()`` opened at its start (or at the last commit of a turn
  nested in it); its tells are dropped; its caller gets the error as for any failed
  turn. The actor is not restarted and the outer turn goes on (attributes other than
  ``state`` and ``storage`` are not undone). It is not a crash of a supervised child.
* If the turn it is nested in ends first (its ask timed out, it was cancelled, or it
  failed), the nested turn is cancelled and its caller gets an error; what it changed
  so far is not undone. A kill discards it with the outer turn.
* The turn of a batch of WebSocket events is never reentered (:data:`WS_NOT_REENTRANT`:
  an ask coming back to it fails at once with ``Deadlock``).
* ``self.destroy()`` in a nested turn takes effect when the outermost turn ends (the
  nested turn's own commit keeps the actor); a nested turn that raises after calling
  it takes its ``destroy()`` back with the rest of its changes.

Only one nested turn runs at a time per level: an ask that comes back to a turn below
the innermost one (B gathered two asks to A) waits until that turn is innermost again,
then runs nested; one still waiting when the outer turn ends goes to the front of the
mailbox.
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import (ActorError, ActorStopped, PartlyRun,
                      StorageError)
from ..protocol import wire
from ..protocol.messages import WsEffects
from ..storage.keys import state_key
from ..storage.view import Storage
from .activation import ENDING, Internal
from .chains import (CALL_CHAIN, TURN_ASK_IDS, AskIds, Link, chain_of, comes_back, own_chain,
                     refused)
from .commit import Reply, encode_end
from .loud import FailureLog, StepClock, clocked
from .turn_failure import failure_reply

if TYPE_CHECKING:
    from ..actor import Actor
    from ..protocol.messages import Tell
    from ..storage.slot import SlotStore
    from .activation import Activation, Call
    from .alarm_turns import AlarmTurns
    from .commit import GroupCommit
    from .turn_records import AskRecords

_EMPTY_STATE = wire.pack({})
#: why a batch of WebSocket events is not reentrant: its delivery mark (what makes a
#: redelivered batch apply once) is written at its end, so a nested commit in the middle
#: would let a batch redelivered after a crash apply its first events twice
WS_NOT_REENTRANT = "a batch of WebSocket events is one turn and is not reentrant"


@dataclass(slots=True, eq=False)
class Frame:
    """One nested turn in progress."""
    call: Call
    chain: list[Link]            #: its own chain: the nested ask's, and its own link (chains.py)
    inst: Actor                  #: the instance it runs on (the outer turn's)
    gen: int                     #: the activation's generation when it began
    #: the outer turn's effects, set aside while it runs (restored when it ends)
    outer_tells: list[Tell] | tuple[()]
    outer_ws_out: list[list[Any]] | tuple[()]
    outer_ws_batch: list[Any] | None
    #: its rollback point: a ``storage.transaction()`` entered at its start or at the
    #: last commit of a turn nested in it; None once closed
    txn: AbstractContextManager[Any] | None = None
    task: asyncio.Task[None] | None = None   #: an async nested turn's task
    #: the turn it was nested in ended first: it is cancelled and leaves nothing
    orphaned: bool = False
    #: whether ``self.destroy()`` had been called before it began (a failure restores it)
    destroying: bool = False


@dataclass(slots=True, eq=False)
class Nest:
    """The nested turns of one outer async turn (``Activation.nest``)."""
    task: asyncio.Task[None]     #: the outer turn's task: the record is that turn's only
    frames: list[Frame] = field(default_factory=list)   #: innermost last
    #: asks that came back to a turn below the innermost: they run when it is innermost
    pending: list[Call] = field(default_factory=list)
    #: a nested turn committed changes (the outer turn's so far among them): the outer
    #: ask is recorded for exactly-once even if its own end changes nothing more
    committed: bool = False


def chain_context(chain: list[Link] | None,
                  request_id: bytes | None = None) -> contextvars.Context | None:
    """The context a turn's task runs in: its call chain in :data:`CALL_CHAIN`, and the
    ids of its asks (derived from ``request_id``, its own ask's) in
    :data:`TURN_ASK_IDS` (None: the current context will do, it has neither)."""
    if chain is None and request_id is None and CALL_CHAIN.get() is None \
            and TURN_ASK_IDS.get() is None:
        return None
    ctx = contextvars.copy_context()
    ctx.run(_set_turn, chain, AskIds(request_id) if request_id else None)
    return ctx


def _set_turn(chain: list[Link] | None, ids: AskIds | None) -> None:
    CALL_CHAIN.set(chain)
    TURN_ASK_IDS.set(ids)


def _open_txn(inst: Actor) -> AbstractContextManager[Any]:
    txn = inst.storage.transaction()
    txn.__enter__()
    return txn


def _close_txn(frame: Frame, exc: BaseException | None = None) -> None:
    """Close a frame's rollback point: keep what changed (``exc`` None) or undo it."""
    txn, frame.txn = frame.txn, None
    if txn is not None:
        if exc is None:
            txn.__exit__(None, None, None)
        else:
            txn.__exit__(type(exc), exc, exc.__traceback__)   # restores; returns False


class NestedTurns:
    """The nested-turn half of :class:`~.turns.Turns` (a mixin; see the module docstring)."""

    if TYPE_CHECKING:
        commit: GroupCommit
        store: SlotStore
        alarms: AlarmTurns
        loop: asyncio.AbstractEventLoop
        counters: dict[str, int]
        turn_timeout: float
        stopping: bool
        max_message_bytes: int
        beats: "memoryview[float] | None"
        _busy: int
        loud: FailureLog
        clock: StepClock | None
        records: AskRecords

        def _invoke(self, act: Activation, msg: Call | Internal) -> Any: ...

        def _stage(self, act: Activation, writes: dict[bytes, bytes | None],
                   old_state: bytes | None, empty_state: bool = False) -> None: ...

    def reenter(self, act: Activation, call: Call) -> bool:
        """An ask with a call chain arrived for a running actor: run it as a nested turn
        if it comes back to the turn waiting in its chain (True), raise Deadlock if the
        type refuses that, hold it if it comes back to a turn below the innermost
        (True); otherwise (False) it waits in the mailbox as usual."""
        task = act.task
        if task is None or act.instance is None:
            return False
        if self.records.repeated(act, call):   # exactly-once: a retry answered from the record
            return True
        chain = chain_of(call.ctx)
        nest = act.nest
        if nest is not None and nest.task is not task:
            nest = act.nest = None          # left over from an earlier turn
        waiting = act.chain
        innermost = nest.frames[-1].chain if nest is not None and nest.frames else waiting
        if comes_back(chain, act.type_name, act.key, innermost):
            if not act.cls.reentrant:
                raise refused(chain, act.type_name, act.key)
            if (nest.frames[0].outer_ws_batch if nest is not None and nest.frames
                    else act.ws_batch) is not None:
                raise refused(chain, act.type_name, act.key, WS_NOT_REENTRANT)
            self._nest(act, call, chain)
            return True
        if nest is not None and nest.frames and (
                comes_back(chain, act.type_name, act.key, waiting)
                or any(comes_back(chain, act.type_name, act.key, f.chain) for f in nest.frames)):
            nest.pending.append(call)
            return True
        return False

    def unnest(self, act: Activation) -> None:
        """The outer turn has ended: nested turns still running are cancelled, asks
        still held go to the front of the mailbox (behind an exit the turn queued)."""
        nest, act.nest = act.nest, None
        if nest is None:
            return
        self._orphan(act, nest.frames)
        if nest.pending:
            mailbox = act.mail()
            # behind an exit the turn queued (self.stop(), self.destroy()): they reach
            # the next instance, as any message after the exit would
            first = mailbox[0] if mailbox else None
            at = 1 if type(first) is Internal and first.kind in ENDING else 0
            for call in reversed(nest.pending):
                mailbox.insert(at, call)

    # -- running one -------------------------------------------------------------
    def _nest(self, act: Activation, call: Call, chain: list[Link]) -> None:
        inst = act.instance
        assert inst is not None and act.task is not None
        nest = act.nest
        if nest is None:
            nest = act.nest = Nest(act.task)
        frame = Frame(call, own_chain(chain, act.type_name, act.key), inst, act.gen, act.tells,
                      act.ws_out, act.ws_batch)
        if act.host is not None:
            frame.destroying = act.host.destroying
        act.tells, act.ws_out, act.ws_batch = (), (), None
        nest.frames.append(frame)
        outer_task, act.task = act.task, None    # while its sync part runs: a sync handler's ask refuses
        beats = self.beats
        now = time.monotonic()       # (one time for both: the slot board matches them)
        if beats is not None:
            beats[self._busy] = now
        clock = self.clock
        if clock is not None:
            clock.act, clock.msg, clock.since = act, call, now
        try:
            frame.txn = _open_txn(inst)
            r = self._invoke(act, call)
        except BaseException as exc:  # as in any turn: the nested turn's failure only
            act.task = outer_task
            return self._nested_failed(act, frame, exc)
        finally:
            act.task = outer_task
            if beats is not None:
                beats[self._busy] = 0.0
            if clock is not None:
                clock.since = 0.0
        if not inspect.isawaitable(r):
            return self._nested_end(act, frame, r)
        coro = self._nested_async(act, frame, r)
        task = self.loop.create_task(coro if clock is None else clocked(coro, clock, act, call),
                                     context=chain_context(frame.chain, (call.ctx or {}).get("id")))
        frame.task = task
        timer = self.loop.call_later(self.turn_timeout, self._nested_overdue, frame)
        task.add_done_callback(lambda _t: timer.cancel())

    def _nested_overdue(self, frame: Frame) -> None:
        task = frame.task
        if task is not None and not task.done():
            self.counters["turn_timeouts"] += 1
            task.cancel(f"the nested turn ran past turn_timeout ({self.turn_timeout:g} s)")

    async def _nested_async(self, act: Activation, frame: Frame, awaitable: Any) -> None:
        try:
            r = await awaitable
        except asyncio.CancelledError as exc:
            if self.stopping:
                _close_txn(frame)
                raise
            why = str(exc.args[0]) if exc.args else "the nested turn was cancelled"
            self._nested_failed(act, frame, (TimeoutError if "turn_timeout" in why else
                                             asyncio.CancelledError)(why))
        except BaseException as exc:
            self._nested_failed(act, frame, exc)
        else:
            self._nested_end(act, frame, r)

    def _live(self, act: Activation, frame: Frame) -> bool:
        nest = act.nest
        return (not frame.orphaned and act.gen == frame.gen and act.instance is frame.inst
                and nest is not None and frame in nest.frames)

    # -- its end -------------------------------------------------------------------
    def _nested_end(self, act: Activation, frame: Frame, result: Any) -> None:
        """Commit the actor's state and storage as they stand (see the module docstring)
        and queue the reply behind that commit."""
        if not self._live(act, frame):
            return self._dropped(act, frame)
        inst, call = frame.inst, frame.call
        try:
            state_bytes, reply_or_none = encode_end(inst.state, call.rid, result, True,
                                                    self.max_message_bytes, self.store.max_value_bytes)
        except (TypeError, ActorError) as exc:
            return self._nested_failed(act, frame, exc)
        assert reply_or_none is not None
        reply = reply_or_none
        storage: Storage = inst.storage  # type: ignore[assignment]  # the one _activate made
        alarm_at = storage.alarms_changed
        writes = storage.take_writes()
        empty = state_bytes == _EMPTY_STATE
        changed = state_bytes != act.snapshot and not (empty and not act.snapshot)
        if changed:   # (as at the end of any turn, turns.py: an emptied state is stored as none)
            writes[state_key(act.prefix)] = None if empty else state_bytes
        if writes and self.store.broken is not None:
            storage.forget(list(writes))
            return self._nested_failed(act, frame, self.store.broken)
        old_state = act.snapshot or None
        if changed:
            act.snapshot = b"" if empty else state_bytes
        if writes:
            self._stage(act, writes, old_state, empty)
        if writes or act.tells:
            if call.ctx:                         # exactly-once: as any turn's (turn_records.py)
                self.records.record(act, call, reply)
            self._partly_committed(act)
        if alarm_at is not None:
            self.alarms.note(alarm_at)
        outbox = self.commit.outbox
        assert call.reply_to is not None
        outbox.append(Reply(call.reply_to, reply))
        if act.tells:
            outbox.extend(act.tells)
        if act.ws_out:
            outbox.append(WsEffects(0, act.type_name, act.key, act.ws_out, None, 0))
        self.counters["turns"] += 1
        _close_txn(frame)
        nest = act.nest
        assert nest is not None
        for outer in nest.frames:   # the commit is their rollback point from now on
            if outer is not frame and outer.txn is not None:
                _close_txn(outer)
                outer.txn = _open_txn(inst)
        self._pop(act, frame)

    def _partly_committed(self, act: Activation) -> None:
        """A nested turn commits the outer turn's changes so far: if the outer turn's ask
        has a request id, a retry of it must not run it again on top of them. Until the
        outer turn ends (and records its reply), its id is recorded with an error saying
        so: a worker lost meanwhile leaves a retry that error, not a second run."""
        nest = act.nest
        if nest is None or nest.committed:
            return
        nest.committed = True
        if act.turn_id is not None:
            self.records.record_id(act, act.turn_id, wire.err(0, PartlyRun(
                f"the turn of this ask on {act.type_name}/{act.key:.100} was interrupted after "
                f"a nested turn (call-chain reentrancy) committed part of its changes; it is "
                f"not run again").to_wire()))

    def _nested_failed(self, act: Activation, frame: Frame, exc: BaseException) -> None:
        """Undo the nested turn's own changes (in place) and answer its caller with the
        error, as for any failed turn; the outer turn goes on."""
        if not self._live(act, frame):
            return self._dropped(act, frame)
        if not (isinstance(exc, StorageError) and self.store.broken is not None):
            self.loud.failed(act, frame.call, exc)   # (a refused write: the store logged it)
        try:
            _close_txn(frame, exc)
        except Exception as undo:  # a state that cannot be restored: the actor's crash
            act.instance = None    # (the outer turn then fails too: see Turns._end_turn)
            exc = undo
        if act.host is not None:
            act.host.destroying = frame.destroying
        self.counters["failures"] += 1
        assert frame.call.reply_to is not None
        self.commit.reply(frame.call.reply_to, failure_reply(act, None, frame.call.rid, exc))
        self._pop(act, frame)

    def _pop(self, act: Activation, frame: Frame) -> None:
        act.tells, act.ws_out, act.ws_batch = frame.outer_tells, frame.outer_ws_out, frame.outer_ws_batch
        act.last_used = time.monotonic()
        nest = act.nest
        assert nest is not None
        i = nest.frames.index(frame)
        self._orphan(act, nest.frames[i + 1:])   # (only if it ended before turns nested in it)
        del nest.frames[i:]
        self.commit.schedule()
        if nest.pending:
            innermost = nest.frames[-1].chain if nest.frames else act.chain
            for call in nest.pending:
                chain = chain_of(call.ctx)
                if comes_back(chain, act.type_name, act.key, innermost):
                    nest.pending.remove(call)
                    return self._nest(act, call, chain)

    def _orphan(self, act: Activation, frames: list[Frame]) -> None:
        for f in frames:
            f.orphaned = True
            _close_txn(f)
            if f.task is not None and not f.task.done():
                f.task.cancel("the turn it was nested in ended first")

    def _dropped(self, act: Activation, frame: Frame) -> None:
        """A nested turn whose outer turn ended first, failed, or was killed: nothing of
        it is committed; its caller learns why."""
        _close_txn(frame)
        nest = act.nest
        if nest is not None and frame in nest.frames:
            nest.frames.remove(frame)
        if act.gen != frame.gen:
            error: ActorError = ActorStopped(f"{act.type_name}/{act.key:.100} was killed or "
                                             f"restarted while a nested turn ran; it was discarded")
        else:
            error = ActorError(f"{act.type_name}/{act.key:.100}: a nested turn was dropped: the "
                               f"turn it was nested in ended first (its ask timed out or it failed)")
        assert frame.call.reply_to is not None
        self.commit.reply(frame.call.reply_to, wire.err(frame.call.rid, error.to_wire()))
        self.commit.schedule()
