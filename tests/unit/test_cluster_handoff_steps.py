"""The handoff state machine (actorsys/cluster/handoff.py) with a fake ownership store and
fake workers: the steps in order, a rollback when the copy fails, and a copy to a node
that leaves the cluster given up at once. (The real thing, against etcd and real
nodes, is tests/node/test_cluster_handoff.py.)"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actorsys.cluster.handoff import Handoff, HandoffFailed
from actorsys.cluster.membership import Member
from actorsys.cluster.ownership import Owned
from actorsys.errors import NodeUnavailable

SHARDS = 4


class FakeOwnership:
    """Records in memory; change() compares revisions as etcd's transaction does."""

    def __init__(self, records: dict[int, Owned]) -> None:
        self.records, self.revision, self.log = dict(records), 100, []

    async def change(self, changes: dict[int, tuple[Owned, Owned]]) -> dict[int, Owned] | None:
        if any(self.records[s].revision != seen.revision for s, (seen, _new) in changes.items()):
            return None
        self.revision += 1
        out = {s: new._replace(revision=self.revision) for s, (_seen, new) in changes.items()}
        self.records.update(out)
        self.log.append({s: (r.owner, r.epoch, r.to) for s, r in out.items()})
        return out


def member(nid: str) -> Member:
    return Member(nid, f"tcp://{nid}:1", None, (f"tcp://{nid}:2",), bytes(SHARDS))


def run(handoff_args: dict[str, Any], calls: list, call_behaviour) -> Any:
    async def main() -> Any:
        own = FakeOwnership({s: Owned("a", 1, 7) for s in range(SHARDS)})
        served: list[tuple[str, list[int]]] = []

        async def call(endpoint: str, cmd: str, args: dict[str, Any], timeout: float) -> Any:
            calls.append((endpoint, cmd))
            return await call_behaviour(endpoint, cmd, args)

        async def stop(shards: list[int]) -> None:
            served.append(("stop", shards))

        async def again(shards: list[int]) -> None:
            served.append(("again", shards))

        h = Handoff(own, "a", call, ["tcp://a:2"], bytes(SHARDS), stop, again, **handoff_args)
        try:
            result = await h.move(member("b"), dict(own.records))
        except HandoffFailed as exc:
            result = exc
        return result, own, served
    return asyncio.run(main())


def test_a_move_marks_stops_copies_flips_and_drops_in_that_order():
    calls: list = []

    async def ok(endpoint: str, cmd: str, args: dict[str, Any]) -> Any:
        return {"items": [[b"k", b"v"]], "next": None} if cmd == "export" else {}

    result, own, served = run({}, calls, ok)
    assert [c for _e, c in calls] == ["export", "import", "drop"]
    assert served == [("stop", list(range(SHARDS)))]
    assert own.log[0][0] == ("a", 2, "b") and own.log[1][0] == ("b", 3, None)
    assert result[0].owner == "b" and result[0].epoch == 3


def test_a_failed_copy_rolls_back_and_serves_again():
    calls: list = []

    async def fail_import(endpoint: str, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "import":
            raise NodeUnavailable("no answer")
        return {"items": [], "next": None}

    result, own, served = run({}, calls, fail_import)
    assert isinstance(result, HandoffFailed)
    assert own.log[-1][0] == ("a", 3, None), "rolled back: ours again, next epoch, unmarked"
    assert served[-1] == ("again", list(range(SHARDS)))
    assert "drop" not in [c for _e, c in calls], "nothing of ours deleted"


def test_a_copy_to_a_node_that_left_is_given_up_at_once():
    calls: list = []

    async def hang(endpoint: str, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "import":
            await asyncio.sleep(60)
        return {"items": [], "next": None}

    import time
    t0 = time.monotonic()
    result, own, _served = run({"is_member": lambda nid: False}, calls, hang)
    assert time.monotonic() - t0 < 5
    assert isinstance(result, HandoffFailed) and "left the cluster" in str(result)
    assert own.log[-1][0] == ("a", 3, None)


def test_a_record_changed_before_the_mark_moves_nothing():
    from actorsys.cluster.handoff import ChangedMeanwhile

    async def main() -> None:
        own = FakeOwnership({s: Owned("a", 1, 7) for s in range(SHARDS)})
        stale = {s: r._replace(revision=6) for s, r in own.records.items()}

        async def never(*_a: Any) -> Any:
            raise AssertionError("no worker is called")

        h = Handoff(own, "a", never, ["x"], bytes(SHARDS), never, never)
        with pytest.raises(ChangedMeanwhile):
            await h.move(member("b"), stale)
        assert own.log == []
    asyncio.run(main())


def test_an_etcd_failure_at_the_flip_leaves_the_move_unresolved_not_served():
    """etcd fails at the flip (the txn may have committed): the move ends Unresolved, so
    the caller serves none of its shards until their records are read again; nothing of
    ours was dropped."""
    from actorsys.cluster.handoff import Unresolved

    async def main() -> None:
        own = FakeOwnership({s: Owned("a", 1, 7) for s in range(SHARDS)})
        real_change = own.change

        async def flaky(changes: dict[int, tuple[Owned, Owned]]) -> Any:
            if own.log:                                   # the mark went through
                raise ConnectionError("etcd unreachable")
            return await real_change(changes)
        own.change = flaky                                # type: ignore[method-assign]
        calls: list[str] = []
        served: list[str] = []

        async def call(endpoint: str, cmd: str, args: dict[str, Any], timeout: float) -> Any:
            calls.append(cmd)
            return {"items": [], "next": None}

        async def stop(_s: list[int]) -> None:
            served.append("stop")

        async def again(_s: list[int]) -> None:
            served.append("again")

        marked: list[dict[int, Owned]] = []
        h = Handoff(own, "a", call, ["x"], bytes(SHARDS), stop, again, on_marked=marked.append)
        with pytest.raises(Unresolved) as err:
            await h.move(member("b"), dict(own.records))
        assert err.value.shards == list(range(SHARDS))
        assert served == ["stop"] and "drop" not in calls
        assert marked and marked[0][0].to == "b", "the caller learnt the marked records"
    asyncio.run(main())


def run_transfer(caught: list[bool], stuck: set[int] | None = None) -> Any:
    """A leadership transfer of replicated shards from a to b (followers b, c): each look
    says b holds every last write or none (``caught``; then none), but never those of
    ``stuck``."""
    async def main() -> Any:
        own = FakeOwnership({s: Owned("a", 3, 7, None, ("b", "c"), ("d",)) for s in range(SHARDS)})
        served: list[tuple[str, list[int]]] = []
        looks: list[int] = []

        async def call(endpoint: str, cmd: str, args: dict[str, Any], timeout: float) -> Any:
            raise AssertionError(f"a transfer copies nothing (called {cmd})")

        async def stop(shards: list[int]) -> None:
            served.append(("stop", shards))

        async def again(shards: list[int]) -> None:
            served.append(("again", shards))

        async def behind(marked: Any) -> set[int]:
            assert all(r.to == "b" and r.epoch == 4 for r in marked.values())
            looks.append(1)
            if stuck is not None:
                return stuck & set(marked)
            return set() if (caught.pop(0) if caught else False) else set(marked)

        h = Handoff(own, "a", call, ["tcp://a:2"], bytes(SHARDS), stop, again)
        try:
            result = await h.transfer("b", dict(own.records), behind)
        except HandoffFailed as exc:
            result = exc
        return result, own, served, looks
    return asyncio.run(main())


def test_a_leadership_transfer_marks_stops_waits_for_the_target_and_flips_without_copy():
    result, own, served, looks = run_transfer([False, False, True])
    assert served == [("stop", list(range(SHARDS)))] and len(looks) == 3
    assert own.log[0][0] == ("a", 4, "b") and own.log[1][0] == ("b", 5, None)
    r = result[0]
    assert (r.owner, r.epoch, r.to, r.followers, r.learners) == ("b", 5, None, ("c", "a"), ("d",))


def test_the_shards_a_target_did_not_catch_up_with_roll_back_and_the_others_flip(monkeypatch):
    monkeypatch.setattr("actorsys.cluster.handoff.CATCH_UP_TIMEOUT", 0.2)
    result, own, served, _looks = run_transfer([], stuck={1})
    assert sorted(result) == [0, 2, 3] and all(r.owner == "b" for r in result.values())
    assert served == [("stop", list(range(SHARDS))), ("again", [1])]
    r = own.records[1]
    assert (r.owner, r.epoch, r.to, r.followers) == ("a", 5, None, ("b", "c")), "rolled back"
    assert own.records[0].owner == "b" and own.records[0].epoch == 5


def test_a_leadership_transfer_whose_target_does_not_catch_up_rolls_back(monkeypatch):
    monkeypatch.setattr("actorsys.cluster.handoff.CATCH_UP_TIMEOUT", 0.2)
    result, own, served, _looks = run_transfer([])
    assert isinstance(result, HandoffFailed) and "did not catch up" in str(result)
    assert served == [("stop", list(range(SHARDS))), ("again", list(range(SHARDS)))]
    r = own.records[0]
    assert (r.owner, r.epoch, r.to, r.followers, r.learners) == ("a", 5, None, ("b", "c"), ("d",))


def hand_back(monkeypatch, sizes: dict[str, int], at_once: int = 8,
              again_fails: bool = False) -> Any:
    """Transfers.run of ``sizes[t]`` shards to each target t, led by a (followers b,
    c); c never catches up. Returns (its result or exception, the coordinator's stand-in,
    the most drains at once, the Replicas, {target: its shards}, the fake ownership)."""
    from types import SimpleNamespace

    from actorsys.cluster.replicas import Replicas

    monkeypatch.setattr("actorsys.cluster.handoff.CATCH_UP_TIMEOUT", 0.3)
    monkeypatch.setattr("actorsys.cluster.replica_transfers.WRITES_AT_ONCE", at_once)
    n = sum(sizes.values())
    shards, first = {}, 0
    for t, k in sizes.items():
        shards[t], first = list(range(first, first + k)), first + k

    async def main() -> Any:
        own = FakeOwnership({s: Owned("a", 3, 7, None, ("b", "c")) for s in range(n)})
        in_drain, most = 0, 0
        moving: set[int] = set()

        async def stop(batch: list[int]) -> None:
            nonlocal in_drain, most
            moving.update(batch)
            in_drain += 1
            most = max(most, in_drain)
            await asyncio.sleep(0.02)
            in_drain -= 1

        async def again(batch: list[int]) -> None:
            moving.difference_update(batch)
            merge(dict(own.records))        # (as Coordinator.serve_again reads them again)
            if again_fails:
                raise NodeUnavailable("worker slot 0 did not take its shard grant")

        def merge(records: dict[int, Owned]) -> None:
            co.owned.update(records)

        co = SimpleNamespace(
            ccfg=SimpleNamespace(replicas=3, ack="majority"), me="a", owned=dict(own.records),
            ownership=own, call=None, workers=["tcp://a:2"], home=bytes(n), moving=moving,
            unresolved=set(), stop_serving=stop, serve_again=again, merge=merge,
            membership=SimpleNamespace(members={x: SimpleNamespace(leaving=False)
                                                for x in "abc"}))
        reps = Replicas(co)  # type: ignore[arg-type]
        reps.transfers.backoff["c"] = (0.0, 0.0)     # (as if once failed, long ago)

        async def progress(batch: list[int]) -> dict[int, dict[str, int]]:
            return {s: {"epoch": 4, "seq": 9} for s in batch}

        async def peer_positions(to: str, batch: list[int]) -> dict[int, tuple[int, int]]:
            return {s: (4, 9 if to == "b" else 8) for s in batch}     # c never catches up

        reps.asks.progress, reps.asks.peer_positions = progress, peer_positions  # type: ignore[method-assign]
        try:
            result: Any = await reps.transfers.run(shards)
        except Exception as exc:
            result = exc
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not left, f"batches left running: {left}"
        return result, co, most, reps, shards, own
    return asyncio.run(main())


def test_a_hand_back_runs_its_batches_at_once_and_a_failed_target_gets_a_backoff(monkeypatch):
    """Transfers.run: the batches of a hand-back (BATCH shards each) overlap; a
    target that does not catch up is rolled back and backed off, the other one is not."""
    from actorsys.cluster.ownership import BATCH
    changed, co, most, reps, shards, _own = hand_back(
        monkeypatch, {"b": 3 * BATCH + 8, "c": BATCH + 2})
    assert changed is True and most >= 4, f"the batches drained one after the other ({most})"
    assert all(co.owned[s].owner == "b" and co.owned[s].epoch == 5 for s in shards["b"])
    assert all(co.owned[s].owner == "a" and co.owned[s].epoch == 5 and co.owned[s].to is None
               for s in shards["c"]), "c's batches were rolled back"
    assert not co.moving and reps.transfers.backoff["c"][1] > 0 and "b" not in reps.transfers.backoff


def test_a_target_whose_batch_failed_gets_no_more_batches_in_the_pass(monkeypatch):
    from actorsys.cluster.ownership import BATCH
    changed, co, _most, reps, shards, own = hand_back(monkeypatch, {"c": 2 * BATCH}, at_once=1)
    assert changed is False and not co.moving
    marked = [s for change in own.log for s, (_o, _e, to) in change.items() if to == "c"]
    assert sorted(marked) == shards["c"][:BATCH], "only the first batch was tried"
    assert reps.transfers.backoff["c"][1] > 0


def test_an_error_out_of_one_batch_is_raised_once_every_batch_ended(monkeypatch):
    from actorsys.cluster.ownership import BATCH
    result, co, _most, _reps, shards, _own = hand_back(
        monkeypatch, {"b": 2 * BATCH, "c": BATCH}, again_fails=True)
    assert isinstance(result, NodeUnavailable), result
    assert all(co.owned[s].owner == "b" for s in shards["b"]), "b's batches went on"


def test_a_streamed_follower_a_few_batches_behind_is_near_enough_for_a_transfer():
    from actorsys.cluster.replica_transfers import TRANSFER_LAG, near
    streamed = {"seq": 10, "streaming": ["b"]}
    assert near({"seq": 10, "held": {"b": 10}}, "b"), "holds the last write"
    assert near({**streamed, "held": {"b": 10 - TRANSFER_LAG}}, "b")
    assert not near({"seq": 10, "held": {"b": 9}}, "b"), "not streamed: being caught up"
    assert not near({**streamed, "held": {"b": 9 - TRANSFER_LAG}}, "b"), "too far behind"
    assert not near({"seq": 10, "held": {"c": 10}}, "b") and not near({"seq": 10}, "b")
    assert not near({**streamed, "held": {"b": 11}}, "b"), "ahead of us: another epoch's count"
