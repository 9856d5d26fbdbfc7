"""Loud failures below a node (actorsys/runtime/loud.py): failed turns logged once through
the turn runner (runtime_fakes.Slot, caplog), the step clock written at each sync turn
and async step, and the slow-turn watch thread."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from runtime_fakes import Slot

import actorsys
from actorsys.errors import Overloaded, StorageError
from actorsys.protocol import wire
from actorsys.runtime.activation import ALARM, PASSIVATE, START, Call, Internal
from actorsys.runtime.loud import SlowTurnWatch, StepClock, describe

#: what the handlers saw of the step clock: (since, the actor's key) at each step
SEEN: list[tuple[float, str]] = []
CLOCK: list[StepClock] = []


class Loudmouth(actorsys.Actor):
    def boom(self) -> None:
        raise ValueError("boom")

    def add(self, by: int) -> int:
        return by

    def write(self) -> None:
        self.storage.put("k", "v")

    def look(self) -> None:
        SEEN.append((CLOCK[0].since, CLOCK[0].act.key))       # type: ignore[union-attr]

    async def steps(self) -> None:
        self.look()
        await asyncio.sleep(0)
        self.look()
        await asyncio.sleep(0.01)
        self.look()

    async def hang(self) -> None:
        await asyncio.sleep(10)

    def forward(self) -> None:
        self.ref("Loudmouth", "far").tell("add", 1)


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    s = Slot(str(tmp_path), {"Loudmouth": Loudmouth}, turn_timeout=0.05)
    yield s
    s.close()


def turn_records(caplog: Any) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "actorsys.turns"]


def test_a_failed_tell_is_logged_once_with_its_traceback(slot: Slot, caplog: Any) -> None:
    caplog.set_level(logging.INFO, "actorsys")
    slot.tell("Loudmouth", "a", "boom")
    slot.settle()
    [rec] = turn_records(caplog)
    assert rec.levelno == logging.ERROR
    assert rec.getMessage() == "tell 'boom' of Loudmouth/a failed: ValueError: boom"
    assert rec.exc_info is not None and rec.exc_info[0] is ValueError
    assert slot.counters["failures"] == 1


def test_arguments_that_do_not_fit_are_one_warning_line(slot: Slot, caplog: Any) -> None:
    caplog.set_level(logging.INFO, "actorsys")
    rid = slot.ask("Loudmouth", "a", "add", 1, 2, 3)
    assert slot.wait_reply(rid)[0] == wire.ERR
    [rec] = turn_records(caplog)
    assert rec.levelno == logging.WARNING and rec.exc_info is None
    assert rec.getMessage().startswith("ask 'add' of Loudmouth/a refused: BadArguments:")


@pytest.mark.parametrize("clocked", [False, True], ids=["no clock", "step clock"])
def test_an_async_turn_past_turn_timeout_is_logged(slot: Slot, caplog: Any, clocked: bool) -> None:
    caplog.set_level(logging.INFO, "actorsys")
    if clocked:     # the cancellation passes through the clock's wrapper with its reason
        slot.turns.clock = StepClock()
    rid = slot.ask("Loudmouth", "a", "hang")
    assert slot.wait_reply(rid)[0] == wire.ERR
    [rec] = turn_records(caplog)
    assert "ask 'hang' of Loudmouth/a failed: TimeoutError: the turn ran past turn_timeout" \
        in rec.getMessage()


def test_a_write_refused_by_broken_storage_is_not_logged_again(slot: Slot, caplog: Any) -> None:
    caplog.set_level(logging.INFO, "actorsys")
    slot.store.broken = StorageError("test slot: the disk is full")   # (the store logged it)
    rid = slot.ask("Loudmouth", "a", "write")
    assert slot.wait_reply(rid)[0] == wire.ERR
    slot.store.broken = None
    assert turn_records(caplog) == [], "the store logs the fault, once"
    assert slot.counters["failures"] == 1


def test_the_failure_log_is_rate_limited_per_type(slot: Slot, caplog: Any) -> None:
    caplog.set_level(logging.INFO, "actorsys")
    burst = slot.turns.loud.failures.burst
    for _ in range(burst + 5):
        slot.tell("Loudmouth", "a", "boom")
    slot.settle()
    assert len(turn_records(caplog)) == burst
    slot.turns.loud.flush()
    assert turn_records(caplog)[-1].getMessage().startswith(
        "suppressed 5 more failed turns of type 'Loudmouth' in the last")


def test_a_committed_tell_that_cannot_leave_is_logged(slot: Slot, caplog: Any,
                                                      monkeypatch: Any) -> None:
    caplog.set_level(logging.INFO, "actorsys")

    def full(msg: Any) -> None:
        raise Overloaded("send queue to worker slot 1 is full")
    monkeypatch.setattr(slot.out, "tell", full)
    slot.call("Loudmouth", "near", "forward")
    [rec] = turn_records(caplog)
    assert rec.getMessage() == ("dropped a tell 'add' to Loudmouth/far sent by an actor: "
                                "Overloaded: send queue to worker slot 1 is full")
    assert slot.counters["dropped_replies"] == 1


def test_each_sync_turn_and_async_step_is_written_in_the_step_clock(slot: Slot) -> None:
    clock = slot.turns.clock = StepClock()
    CLOCK[:] = [clock]
    SEEN.clear()
    before = time.monotonic()
    slot.call("Loudmouth", "s", "look")
    assert clock.since == 0.0, "no turn runs between turns"
    rid = slot.ask("Loudmouth", "s", "steps")
    slot.wait_reply(rid)
    assert clock.since == 0.0
    assert len(SEEN) == 4 and all(since >= before and key == "s" for since, key in SEEN), SEEN
    assert SEEN[1][0] < SEEN[2][0] < SEEN[3][0], f"each step has its own start: {SEEN}"
    CLOCK.clear()
    clock.act = clock.msg = None     # (holds nothing of the slot once it is closed)


def test_describe_names_what_a_turn_was() -> None:
    assert describe(Call(wire.TELL, None, 0, "add", [], {})) == "tell 'add'"
    assert describe(Call(wire.ASK, (b"p",), 1, "$ws", [], {})) == "socket events"
    assert describe(Internal(START)) == "on_start"
    assert describe(Internal(ALARM, name="tick")) == "alarm 'tick'"
    assert describe(Internal(PASSIVATE)) == "on_stop (passivate)"


def kept(name: str) -> tuple[list[str], threading.Event, logging.Logger]:
    """A logger of its own whose messages are kept in a list, an event set at each one."""
    got: list[str] = []
    seen = threading.Event()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())
            seen.set()

    logger = logging.getLogger(name)
    logger.propagate = False
    logger.addHandler(Keep())
    return got, seen, logger


def test_the_watch_warns_while_a_step_runs_and_once_more_when_it_ends() -> None:
    got, seen, logger = kept("test.slow_turns")
    clock = StepClock()
    act = SimpleNamespace(type_name="T", key="k", task=None, shard=0)
    watch = SlowTurnWatch(clock, 0.05, 60.0, 3, logger)
    watch.start()
    try:
        clock.act, clock.msg, clock.since = act, Call(wire.TELL, None, 0, "m", [], {}), time.monotonic()  # type: ignore[assignment]
        assert seen.wait(5), "expected a warning while the step runs"
        assert len(got) == 1 and got[0].startswith(
            "slow turn: T/k tell 'm' has blocked worker slot 3's event loop for"), got
        assert "still runs" in got[0] and "turn_timeout (60 s)" in got[0]
        seen.clear()
        time.sleep(0.2)       # (the step goes on: no second warning for it)
        assert len(got) == 1, got
        clock.since = 0.0
        assert seen.wait(5), "expected a line when the step ends"
        assert got[1].startswith("slow turn: T/k tell 'm' blocked worker slot 3's event loop "
                                 "for about") and got[1].endswith("s in all"), got
    finally:
        watch.stop()
    assert not watch._thread.is_alive()    # noqa: SLF001
    assert watch._thread.daemon           # noqa: SLF001


def _hold_the_loop(clock: StepClock, seen: threading.Event) -> None:
    clock.beat = time.monotonic()
    assert seen.wait(5), "expected a warning while the loop is blocked"


def test_the_watch_names_where_the_loop_is_blocked_outside_any_turn() -> None:
    got, seen, logger = kept("test.stalls")
    clock = StepClock()
    watch = SlowTurnWatch(clock, 0.05, 60.0, 2, logger)    # (this thread plays the loop)
    watch.stall = 0.3
    watch.start()
    try:
        clock.beat = time.monotonic()
        time.sleep(0.2)               # (beats younger than the stall: nothing to say)
        assert not got, got
        _hold_the_loop(clock, seen)
        assert len(got) == 1 and got[0].startswith(
            "worker slot 2's event loop has been blocked outside any turn for"), got
        assert "test_runtime_loud.py" in got[0] and "_hold_the_loop" in got[0], got
        seen.clear()
        clock.beat = time.monotonic()     # the loop runs again
        assert seen.wait(5), "expected a line when the stall ends"
        assert got[1].startswith("worker slot 2's event loop was blocked outside any turn for "
                                 "about") and got[1].endswith("s in all"), got
        seen.clear()
        clock.since = clock.beat = time.monotonic()    # a turn runs: its own warning, no stall
        watch.slow_turn = 60.0
        time.sleep(0.5)
        assert len(got) == 2, got
        clock.since = 0.0         # it ended; the loop's overdue heartbeat comes soon after
        time.sleep(0.15)
        clock.beat = time.monotonic()
        time.sleep(0.3)
        assert len(got) == 2, f"the turn's time was taken for a stall: {got}"
    finally:
        watch.stop()


def test_a_late_wake_of_the_watch_is_a_stopped_process_unless_the_process_ran() -> None:
    got, _seen, logger = kept("test.late_wakes")
    watch = SlowTurnWatch(StepClock(), 0.5, 60.0, 1, logger)     # (not started: called here)
    assert watch._woke_late(3.0, 0.1) and not got, "stopped or starved: nobody to blame"  # noqa: SLF001
    assert not watch._woke_late(3.0, 2.9)    # noqa: SLF001
    assert got == ["worker slot 1's event loop held the interpreter for about 3.0 s (a turn or "
                   "the runtime; this watch could not run meanwhile)"], got


# -- supervised children: their start and stop turns, and the tells a stop drops ----------

GATE: dict[str, asyncio.Future[Any]] = {}


class Child(actorsys.Actor):
    def on_start(self, n: int = 0) -> None:
        if n < 0:
            raise RuntimeError("cannot start with a negative n")

    def on_stop(self) -> None:
        raise OSError("on_stop failed")

    async def wait(self) -> None:
        await GATE["g"]

    def noop(self) -> None:
        pass


@pytest.fixture
def kids(tmp_path: Any) -> Iterator[Slot]:
    s = Slot(str(tmp_path), {"Child": Child})
    yield s
    s.close()


def start_child(slot: Slot, key: str, n: int, rid: int) -> Any:
    opts = {"sup": "top", "child": key, "args": [n], "kwargs": {}, "inc": 1}
    slot.rt.children.start((b"tree",), rid, "Child", key, opts)
    slot.commit.flush()
    return slot.out.reply_to(rid)


def test_a_childs_failed_start_and_failed_stop_are_logged(kids: Slot, caplog: Any) -> None:
    caplog.set_level(logging.INFO, "actorsys")
    assert start_child(kids, "bad", -1, 900)[0] == wire.ERR
    assert start_child(kids, "good", 1, 901)[0] == wire.OK
    kids.rt.children.stop((b"tree",), 902, "Child", "good", {"shutdown": 1000})
    kids.commit.flush()
    messages = [r.getMessage() for r in turn_records(caplog)]
    assert messages == [
        "on_start of Child/bad failed: RuntimeError: cannot start with a negative n",
        "on_stop (shutdown) of Child/good failed: OSError: on_stop failed"], messages


def test_tells_queued_at_a_child_that_is_stopped_are_logged_as_dropped(kids: Slot, caplog: Any) -> None:
    caplog.set_level(logging.INFO, "actorsys")
    start_child(kids, "busy", 1, 900)
    GATE["g"] = kids.loop.create_future()
    kids.ask("Child", "busy", "wait")
    kids.loop.run_until_complete(asyncio.sleep(0))      # the turn awaits GATE now
    kids.tell("Child", "busy", "noop")                  # queued behind it
    kids.rt.children.stop((b"tree",), 902, "Child", "busy", {"shutdown": "brutal_kill"})
    kids.settle()
    [drop] = [r for r in turn_records(caplog) if "dropped a tell" in r.getMessage()]
    assert drop.levelno == logging.WARNING
    assert drop.getMessage().startswith("dropped a tell 'noop' to Child/busy: ActorStopped: "), \
        drop.getMessage()
