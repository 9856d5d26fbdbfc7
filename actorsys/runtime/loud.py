"""Loud failures: what a worker logs about turns that fail, tells it drops, and turns
that block its event loop.

* **Failed turns** (:meth:`FailureLog.failed`): every turn that fails (an ask, a tell,
  an alarm, a batch of socket events, a supervised child's start or stop) is logged
  once, at ERROR, by the worker, with the actor's type and key, what the turn was
  (``tell 'add'``, ``alarm 'tick'``, ``on_start``) and the traceback. The caller of an
  ask also gets the error; a tell has no caller, so this is the only trace of it. A
  turn refused by a storage fault that the store has logged (read-only after a failed
  commit) is not logged again; arguments that do not fit a handler and messages to a
  stopped child are logged in one line, without a traceback (no actor code failed).
* **Dropped tells** (:meth:`FailureLog.dropped`): a tell refused before its turn
  (unknown type or method, a stopped child, a full mailbox, a worker shutting down)
  or that an actor sent and could not leave is logged at WARNING with the reason.
* **Rate limit**: per actor type, at most :data:`~actorsys.config.defaults.LOG_BURST`
  failed turns, and as many dropped tells, are logged in each window of
  :data:`~actorsys.config.defaults.LOG_WINDOW` seconds; past that one line per window
  says how many were left out (:class:`~actorsys.lograte.RateLimit`). The ``status``
  counters (``failures``, ``bad_frames``, ``overloaded``, ...) still count every one.
* **Slow turns** (:class:`SlowTurnWatch`): the event loop writes, at the start of each
  sync turn and of each step of an async turn, which actor and message runs and since
  when (:class:`StepClock`: three assignments, and one when it ends); a daemon thread
  reads it and logs a WARNING when one step has run longer than ``slow_turn``, while it
  still runs (every other actor of the worker waits meanwhile), and once more when it
  ends. No locks: the record is written in an order (``since`` last at a start, alone
  at an end) that lets the reader check it read one step's record. The same thread
  labels the running step on the node's slot board (actor and method, stamped with its
  start: :mod:`~actorsys.protocol.board`), where the router's ``status`` reads what a
  worker busy in a long sync turn is doing.
* **Stalls outside turns** (the same thread): the worker's heartbeat also writes
  :attr:`StepClock.beat`; when no turn runs and the beat is older than
  ``max(slow_turn, STALL_MIN)`` seconds, the loop is blocked by the runtime itself (a
  commit, a replication batch, a grant): a WARNING names where, from the loop thread's
  stack (``sys._current_frames``), once while it lasts and once when it ends. (A look
  that sees a turn run counts as a beat: the heartbeat overdue after a long turn is not
  a stall.) When the thread itself wakes late, either the whole process was stopped or
  starved of CPU (it used less CPU than the time that passed: nobody is blamed) or the
  interpreter was held (a long C call or collection: a WARNING says for how long).
"""
from __future__ import annotations

import collections.abc
import logging
import os
import sys
import threading
import traceback
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Generator

from ..config.defaults import LOG_BURST, LOG_MAX_TYPES, LOG_WINDOW
from ..errors import ActorStopped, BadArguments
from ..log import get_logger
from ..lograte import RateLimit
from ..protocol import wire
from ..protocol.ws import METHOD as WS_METHOD
from .activation import ALARM, ENDING, START, Activation, Call, Internal, method_label

if TYPE_CHECKING:
    from .activation import Mail
    from ..protocol.board import SlotBoard

log = get_logger("turns")
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_OPS = {wire.ASK: "ask", wire.TELL: "tell", wire.SPAWN: "spawn"}
_PACKAGE_DIR = os.path.dirname(os.path.dirname(_RUNTIME_DIR)) + os.sep
#: seconds without a heartbeat, outside any turn, before a stall is logged (at least)
STALL_MIN = 1.0
#: the innermost frames of the loop thread's stack a stall warning names
STALL_FRAMES = 6


def describe(msg: Mail | None) -> str:
    """What a turn was, for the log: ``tell 'add'``, ``alarm 'tick'``, ``on_start``..."""
    if isinstance(msg, Internal):
        if msg.kind is START:
            return "on_start"
        if msg.kind is ALARM:
            return f"alarm {msg.name[:100]!r}"
        if msg.kind in ENDING:
            return f"on_stop ({msg.kind.value})"
        return msg.kind.value
    if msg is None:
        return "?"
    if msg.method == WS_METHOD:
        return "socket events"
    return f"{_OPS.get(msg.op, '?')} {msg.method[:100]!r}"


class FailureLog:
    """Logs failed turns and dropped tells, rate-limited per actor type (see the module
    docstring)."""

    def __init__(self, logger: logging.Logger = log, *, burst: int = LOG_BURST,
                 window: float = LOG_WINDOW, max_types: int = LOG_MAX_TYPES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = logger
        self.failures = RateLimit(logger, "failed turns", burst=burst, window=window,
                                  max_keys=max_types, clock=clock)
        self.drops = RateLimit(logger, "dropped tells", burst=burst, window=window,
                               max_keys=max_types, clock=clock)
        #: the epoch a shard is served with (the map's; a cluster's grant's): logged with
        #: each event, beside the actor (``--log-json`` fields; the worker sets it)
        self.epoch_of: Callable[[int], int | None] = lambda _shard: None

    def fields(self, type_name: str, key: str, method: str, shard: int | None) -> dict[str, Any]:
        """An event's structured fields (``--log-json`` writes them as keys of the line)."""
        return {"actor_type": type_name, "actor_key": key[:200], "actor_method": method[:100],
                "shard": shard, "epoch": self.epoch_of(shard) if shard is not None else None}

    def failed(self, act: Activation, msg: Call | Internal, exc: BaseException) -> None:
        """A turn failed (its outcome is discarded): log it once."""
        if not self.failures.allow(act.type_name):
            return
        what = describe(msg)
        extra = self.fields(act.type_name, act.key, method_label(msg), act.shard)
        if isinstance(exc, (BadArguments, ActorStopped)):
            self.log.warning("%s of %s/%.200s refused: %s: %.500s", what, act.type_name, act.key,
                             type(exc).__name__, exc, extra=extra)
            return
        tb = _user_frames(exc.__traceback__)
        self.log.error("%s of %s/%.200s failed: %s: %.2000s", what, act.type_name, act.key,
                       type(exc).__name__, exc, exc_info=(type(exc), exc, tb) if tb else None,
                       extra=extra)

    def dropped(self, type_name: str, key: str, method: str, reason: BaseException,
                sender: str = "") -> None:
        """A tell is dropped before its turn (``reason``: why), or could not leave its sender."""
        if not self.drops.allow(type_name if len(type_name) <= 200 else "*"):
            return
        self.log.warning("dropped a tell %.100r to %.200s/%.200s%s: %s: %.500s", method, type_name,
                         key, sender, type(reason).__name__, reason,
                         extra=self.fields(type_name, key, method, None))

    def sweep(self) -> None:
        """Write the summaries of rate-limit windows that have ended (call now and then)."""
        self.failures.sweep()
        self.drops.sweep()

    def flush(self) -> None:
        """Write every pending summary (the worker stops)."""
        self.failures.flush()
        self.drops.flush()


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from its first frame outside the turn runner (the handler's), or
    the whole of it if every frame is the runner's."""
    first = tb
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIR):
        tb = tb.tb_next
    return tb if tb is not None else first


class StepClock:
    """What runs on the event loop now (written by the loop, read by :class:`SlowTurnWatch`).

    At a step's start the loop writes ``act``, ``msg`` and then ``since``; at its end only
    ``since = 0.0``. A reader that sees the same non-zero ``since`` before and after
    reading ``act`` and ``msg`` has read one step's record (``since`` is a monotonic time,
    never written twice with the same value)."""

    __slots__ = ("act", "msg", "since", "beat")

    def __init__(self) -> None:
        self.act: Activation | None = None
        self.msg: Call | Internal | None = None
        #: monotonic time the running step started; 0.0: no turn runs
        self.since = 0.0
        #: monotonic time of the loop's last heartbeat (0.0: none yet)
        self.beat = 0.0


class Steps:
    """Drives an awaitable one step at a time, writing each step in a :class:`StepClock`
    (what ``await`` does with it is what it does with the awaitable itself)."""

    __slots__ = ("it", "clock", "act", "msg")

    def __init__(self, awaitable: Any, clock: StepClock, act: Activation,
                 msg: Call | Internal) -> None:
        self.it = awaitable.__await__()
        self.clock, self.act, self.msg = clock, act, msg

    def __await__(self) -> Generator[Any, Any, Any]:
        return self     # an iterator with send and throw, as a generator is

    def __iter__(self) -> Steps:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        c = self.clock
        c.act, c.msg, c.since = self.act, self.msg, time.monotonic()
        try:
            return self.it.send(value)
        finally:
            c.since = 0.0

    def throw(self, *exc: Any) -> Any:
        c = self.clock
        c.act, c.msg, c.since = self.act, self.msg, time.monotonic()
        try:
            return self.it.throw(*exc)
        finally:
            c.since = 0.0

    def close(self) -> None:
        self.it.close()


#: a task can run a Steps as its coroutine (asyncio takes any registered Coroutine): no
#: extra coroutine frame per step
collections.abc.Coroutine.register(Steps)


def clocked(coro: Coroutine[Any, Any, None], clock: StepClock, act: Activation,
            msg: Call | Internal) -> Coroutine[Any, Any, None]:
    """``coro`` (an async turn's task body), each of its steps written in ``clock``."""
    return Steps(coro, clock, act, msg)     # (a Coroutine: registered above)


class SlowTurnWatch:
    """A daemon thread that warns of a turn (or one step of an async turn) blocking the
    worker's event loop longer than ``slow_turn`` seconds: once while it runs, once when
    it ends (see the module docstring). :meth:`stop` ends it; it never keeps the process
    alive."""

    def __init__(self, clock: StepClock, slow_turn: float, turn_timeout: float, slot: int,
                 logger: logging.Logger = log, board: SlotBoard | None = None) -> None:
        self.clock, self.slow_turn, self.turn_timeout, self.slot = clock, slow_turn, turn_timeout, slot
        self.log = logger
        #: where the running turn is labelled for the router's ``status`` (None: nowhere)
        self.board = board
        self.poll = min(max(slow_turn / 5, 0.01), 0.2)
        self.stall = max(slow_turn, STALL_MIN)
        #: the thread whose loop is watched (the one that makes the watch)
        self.loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"slow-turns[{slot}]", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _stalls(self, stalled: float, now: float, alive: float, paused: float) -> float:
        """Warn of the loop blocked outside any turn (see the module docstring; ``alive``:
        its last beat, or the last look that saw a turn run; ``paused``: when this thread
        last woke late); returns the ``alive`` warned about (0.0: none)."""
        if stalled:
            if alive != stalled:
                self.log.warning("worker slot %d's event loop was blocked outside any turn for "
                                 "about %.1f s in all%s", self.slot, alive - stalled,
                                 " (the whole process was stopped or starved for part of it)"
                                 if paused > stalled else "")
                return 0.0
            return stalled
        if not alive or self.clock.since or now - alive < self.stall or paused >= alive:
            return 0.0
        frame = sys._current_frames().get(self.loop_thread)  # noqa: SLF001 (documented API)
        where = " <- ".join(
            f"{f.filename.removeprefix(_PACKAGE_DIR)}:{f.lineno} {f.name}"
            for f in reversed(traceback.extract_stack(frame, limit=STALL_FRAMES))) if frame else "?"
        self.log.warning("worker slot %d's event loop has been blocked outside any turn for "
                         "%.1f s (the runtime's own work, or no CPU for this thread: actors, "
                         "replies and replication wait): in %s", self.slot, now - alive, where)
        return alive

    def _woke_late(self, gap: float, cpu: float) -> bool:
        """This thread slept ``gap`` s where it asked for ``poll``: True if the process
        was stopped or starved meanwhile; False (and a warning) if it ran, ``cpu`` s of
        CPU, so that the interpreter was held (a long C call or collection, or a turn)."""
        if cpu < 0.8 * gap:
            return True
        self.log.warning("worker slot %d's event loop held the interpreter for about %.1f s "
                         "(a turn or the runtime; this watch could not run meanwhile)",
                         self.slot, gap)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)

    def _run(self) -> None:
        clock, wait = self.clock, self._stop.wait
        warned = 0.0          # the start of the step warned about (0.0: none)
        who = ""
        stalled = 0.0         # the beat a stall was warned about (0.0: none)
        labelled = 0.0        # the start of the step labelled on the board (0.0: none)
        woke = paused = turned = time.monotonic()   # paused: this thread's last late wake
        cpu = time.process_time()
        while not wait(self.poll):
            now, cpu_now = time.monotonic(), time.process_time()
            if now - woke > self.poll + STALL_MIN / 4 and self._woke_late(now - woke,
                                                                           cpu_now - cpu):
                paused = now
            woke, cpu = now, cpu_now
            if clock.since:
                turned = now           # (a turn runs: the loop is not stalled outside one)
            stalled = self._stalls(stalled, now, max(clock.beat, turned) if clock.beat else 0.0,
                                   paused)
            since = clock.since
            if warned and since != warned:
                self.log.warning("slow turn: %s blocked worker slot %d's event loop for about "
                                 "%.1f s in all", who, self.slot, time.monotonic() - warned)
                warned = 0.0
            if not since or since == warned:
                continue
            act, msg = clock.act, clock.msg
            if clock.since != since or act is None:
                continue      # another step began meanwhile: its record may be mixed
            if self.board is not None and since != labelled:
                labelled = since
                self.board.write_label(self.slot, since, f"{act.type_name}/{act.key}",
                                       method_label(msg) if msg is not None else "?")
            took = time.monotonic() - since
            if took < self.slow_turn:
                continue
            warned = since
            who = f"{act.type_name}/{act.key:.200} {describe(msg)}"
            extra = {"actor_type": act.type_name, "actor_key": act.key[:200], "shard": act.shard,
                     "actor_method": method_label(msg) if msg is not None else None}
            self.log.warning(
                "slow turn: %s has blocked worker slot %d's event loop for %.1f s and still runs "
                "(slow_turn is %g s); every other actor of this worker waits. %s",
                who, self.slot, took, self.slow_turn,
                "An async handler blocks between awaits: await asyncio.sleep, or run blocking "
                "calls in a thread (asyncio.to_thread)." if act.task is not None else
                f"A sync turn running past turn_timeout ({self.turn_timeout:g} s) gets the "
                f"worker killed.", extra=extra)
