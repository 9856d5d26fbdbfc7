"""fsync mode's group commit off the event loop (issue 19, ``runtime/commit.py``): turns
run while a batch is written on the commit thread, output leaves in commit order only
once durable, reads see the batch in flight, a failed batch fails every later group, and
closing waits for the write.

The store is a real LevelDB database; the only fake is :class:`HeldDB` above it, whose
batches wait for the test's ``threading.Event`` before LevelDB writes them (a slow fsync
made deterministic)."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import plyvel
import pytest
from loops import run_until
from runtime_fakes import Slot

import actorsys
from actorsys.protocol import wire


class Counter(actorsys.Actor):
    def add(self, by: int = 1) -> int:
        self.state["n"] = self.state.get("n", 0) + by
        return int(self.state["n"])

    def get(self) -> int:
        return int(self.state.get("n", 0))

    def add_and_tell(self, other: str) -> None:
        self.state["n"] = self.state.get("n", 0) + 1
        self.ref("Counter", other).tell("add")


class HeldBatch:
    """A real WriteBatch whose write waits for ``gate`` (and then fails if ``fail``)."""

    def __init__(self, wb: Any, db: "HeldDB") -> None:
        self.wb, self.db = wb, db

    def put(self, k: bytes, v: bytes) -> None:
        self.wb.put(k, v)

    def delete(self, k: bytes) -> None:
        self.wb.delete(k)

    def write(self) -> None:
        self.db.writing.set()
        assert self.db.gate.wait(10)
        if self.db.fail:
            raise plyvel.IOError(b"IO error: fsync failed (test)")
        self.wb.write()


class HeldDB:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.gate = threading.Event()
        self.writing = threading.Event()
        self.fail = False

    def write_batch(self, **kwargs: Any) -> HeldBatch:
        return HeldBatch(self.db.write_batch(**kwargs), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    s = Slot(str(tmp_path), {"Counter": Counter}, fsync=True)
    yield s
    if isinstance(s.store.db, HeldDB):
        s.store.db.gate.set()
    s.close()


def hold(slot: Slot) -> HeldDB:
    held = HeldDB(slot.store.db)
    slot.store.db = held
    return held


def replied(slot: Slot, *rids: int) -> None:
    run_until(slot.loop, lambda: all(any(r[1] == rid for _to, r in slot.out.replies)
                                     for rid in rids), 5.0)


def test_turns_run_while_a_batch_is_in_flight_and_the_groups_behind_it_commit_together(
        slot: Slot) -> None:
    held = hold(slot)
    a = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert held.writing.wait(5) and slot.store.inflight is not None
    # the loop is free: more turns run and flush; they wait behind the batch in flight
    b = slot.ask("Counter", "b", "add", 2)
    slot.commit.flush()
    c = slot.ask("Counter", "c", "add", 3)
    slot.tell("Counter", "d", "add_and_tell", "a")
    slot.commit.flush()
    assert slot.counters["turns"] >= 4 and slot.out.replies == [] and slot.out.tells == []
    assert slot.store.commits == 0 and len(slot.commit.waiting) == 2
    held.gate.set()
    replied(slot, a, b, c)
    run_until(slot.loop, lambda: not slot.commit.busy, 5.0)
    # released in commit order, the two waiting groups in one batch
    assert [r[1] for _to, r in slot.out.replies] == [a, b, c]
    assert [slot.out.reply_to(r)[2] for r in (a, b, c)] == [1, 2, 3]
    assert len(slot.out.tells) == 1 and slot.store.commits == 2


def test_a_read_only_group_waits_for_the_batch_in_flight(slot: Slot) -> None:
    assert slot.call("Counter", "a", "add", 1) == 1
    held = hold(slot)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert held.writing.wait(5)
    r = slot.ask("Counter", "a", "get")           # reads the value in flight
    slot.commit.flush()
    assert slot.out.replies[-1][1][1] != r and not any(x[1][1] in (w, r) for x in slot.out.replies)
    held.gate.set()
    replied(slot, w, r)
    assert [x[1][1] for x in slot.out.replies[-2:]] == [w, r]
    assert slot.out.reply_to(r)[2] == 2


def test_reads_see_the_batch_in_flight_committed_reads_do_not(slot: Slot) -> None:
    held = hold(slot)
    store = slot.store
    store.stage({b"k1": b"one", b"k2": b"two"}, b"actor-x")
    store.submit(store.begin())
    assert held.writing.wait(5)
    store.stage({b"k2": None, b"k3": b"three"}, b"actor-x")
    assert store.get(b"k1") == b"one" and store.get(b"k2") is None and store.get(b"k3") == b"three"
    assert list(store.range(b"k", b"l")) == [(b"k1", b"one"), (b"k3", b"three")]
    assert list(store.range(b"k", b"l", reverse=True, actor=b"actor-x")) == [
        (b"k3", b"three"), (b"k1", b"one")]
    assert list(store.range(b"k", b"l", actor=b"actor-y")) == []   # (not its prefix)
    assert list(store.range(b"k", b"l", committed=True)) == []
    # and an actor reloaded while its write is in flight sees it
    slot.ask("Counter", "a", "add", 7)
    store.discard()
    held.gate.set()
    fut = store.inflight
    assert fut is not None and store.landed(fut.result() and fut) is None
    assert store.get(b"k1") == b"one" and list(store.range(b"k", b"l", committed=True)) == [
        (b"k1", b"one"), (b"k2", b"two")]


def test_an_actor_reactivated_during_the_write_reads_it(slot: Slot) -> None:
    held = hold(slot)
    slot.ask("Counter", "a", "add", 5)
    slot.commit.flush()
    assert held.writing.wait(5)
    slot.act("Counter", "a").drop_instance()        # (as after an eviction)
    r = slot.ask("Counter", "a", "get")
    slot.commit.flush()
    held.gate.set()
    replied(slot, r)
    assert slot.out.reply_to(r)[2] == 5


def test_a_failed_batch_fails_its_group_and_every_later_one(slot: Slot) -> None:
    assert slot.call("Counter", "a", "add", 10) == 10
    held = hold(slot)
    held.fail = True
    a = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert held.writing.wait(5)
    b = slot.ask("Counter", "a", "add", 1)       # read 11, in flight: fails too
    slot.commit.flush()
    c = slot.ask("Counter", "c", "add", 1)       # staged, not yet flushed: fails too
    slot.tell("Counter", "d", "add_and_tell", "a")
    then: list[str] = []
    slot.commit.after(lambda: then.append("done"))
    held.gate.set()
    replied(slot, a, b, c)
    for rid in (a, b, c):
        err = slot.out.reply_to(rid)
        assert err[0] == wire.ERR and err[2]["code"] == "storage"
    assert slot.out.tells == [] and then == ["done"]
    assert slot.store.broken is not None and slot.rt.recovery.active
    assert slot.act("Counter", "a").instance is None       # reloads from disk: 10
    assert not slot.commit.busy and not slot.store.pending and slot.store.committing is None
    slot.store.db = held.db
    assert slot.store.try_recover()
    assert slot.call("Counter", "a", "get") == 10 and slot.call("Counter", "c", "get") == 0


def test_then_runs_once_what_was_flushed_is_durable(slot: Slot) -> None:
    held = hold(slot)
    slot.ask("Counter", "a", "add", 1)
    seen: list[int] = []
    slot.commit.flush(then=lambda: seen.append(slot.store.commits))
    assert held.writing.wait(5) and seen == []
    held.gate.set()
    run_until(slot.loop, lambda: seen, 5.0)
    assert seen == [1]
    slot.commit.flush(then=lambda: seen.append(-1))     # nothing in flight: at once
    assert seen == [1, -1]


def test_settle_blocks_until_the_batch_in_flight_is_released(slot: Slot) -> None:
    held = hold(slot)
    a = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert held.writing.wait(5)
    threading.Timer(0.2, held.gate.set).start()
    started = time.monotonic()
    slot.commit.settle()
    assert time.monotonic() - started >= 0.15
    assert slot.out.reply_to(a)[2] == 1 and not slot.commit.busy


def test_close_waits_for_the_write_in_flight(tmp_path: Any) -> None:
    s = Slot(str(tmp_path), {"Counter": Counter}, fsync=True)
    held = hold(s)
    s.ask("Counter", "a", "add", 42)
    s.commit.flush()
    assert held.writing.wait(5)
    threading.Timer(0.2, held.gate.set).start()
    s.store.close()                 # (the store's close alone: the runtime's would settle)
    assert s.store.commits == 0     # (written; its landing was never handed to the loop)
    s.store.db = held.db
    s.loop.close()
    db = plyvel.DB(f"{tmp_path}/slot-0")
    try:
        assert len(list(db.iterator())) > 0
    finally:
        db.close()


def test_process_mode_still_writes_on_the_loop(tmp_path: Any) -> None:
    s = Slot(str(tmp_path), {"Counter": Counter})
    try:
        rid = s.ask("Counter", "a", "add", 1)
        s.commit.flush()
        assert s.store.inflight is None and s.store.commits == 1
        assert s.out.reply_to(rid)[2] == 1
    finally:
        s.close()


def test_a_flush_from_a_then_callback_queues_behind_the_groups_waiting(slot: Slot) -> None:
    held = hold(slot)
    a = slot.ask("Counter", "a", "add", 1)
    late: list[int] = []

    def flush_more() -> None:        # (as an alarm's pump whose turn flushes at once)
        late.append(slot.ask("Counter", "c", "add", 1))
        slot.commit.flush()
    slot.commit.flush(then=flush_more)
    assert held.writing.wait(5)
    b = slot.ask("Counter", "b", "add", 1)
    slot.commit.flush()
    held.gate.set()
    replied(slot, a, b)
    run_until(slot.loop, lambda: late and any(r[1] == late[0] for _to, r in slot.out.replies), 5.0)
    assert [r[1] for _to, r in slot.out.replies] == [a, b, late[0]]
