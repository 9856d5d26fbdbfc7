"""A cluster worker's grants (actorsys/runtime/grants.py) on one slot's runtime in-process
(runtime_fakes.Slot): nothing is served before the first grant, the group commit
refuses past the fencing deadline, and a drain that cannot finish is cut short with
no actor of the revoked shard left resident."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

import pytest
from runtime_fakes import Slot

import actorsys
from actorsys.errors import ShardUnavailable, WrongShard
from actorsys.protocol import wire
from actorsys.protocol.shardmap import shard_of
from actorsys.runtime.grants import Grants, ShardCommands
from actorsys.storage import lost as lost_slot
from actorsys.storage.keys import position_key, shard_range
from actorsys.storage.replica import pack_position


class Counter(actorsys.Actor):
    def add(self, by: int = 1) -> int:
        self.state["n"] = self.state.get("n", 0) + by
        return int(self.state["n"])

    async def slow(self, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return self.add(1)

    async def stubborn(self) -> None:
        """Ignores two cancellations (its turn_timeout's and a drain's), then ends."""
        for _ in range(2):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                continue


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[tuple[Slot, ShardCommands]]:
    s = Slot(str(tmp_path), {"Counter": Counter}, turn_timeout=0.2)
    grants = Grants(0, s.map.owner, False, "n1")
    s.catalog.grants = grants
    cmds = ShardCommands(grants, s.rt, s.out, 0.2)
    yield s, cmds
    s.close()


def shard(key: str) -> int:
    return shard_of("Counter", key, 16)


def grant(s: Slot, cmds: ShardCommands, shards: dict[int, int], rid: int, **more: Any) -> list[Any]:
    cmds.serve((b"router",), rid, "grant", {"shards": shards, "epoch": 5, **more})
    s.settle(until=lambda: any(r[1] == rid and to == (b"router",) for to, r in s.out.replies),
             timeout=5.0)
    return [r for to, r in s.out.replies if r[1] == rid and to == (b"router",)][0]


def test_a_cluster_worker_serves_nothing_before_its_first_grant(slot) -> None:
    s, cmds = slot
    cmds.activate()
    with pytest.raises(WrongShard):
        s.catalog.resident("Counter", "a")
    reply = grant(s, cmds, {shard("a"): 1}, 1000)
    assert reply[0] == wire.OK and reply[2] == {"granted": 1, "revoked": [], "lost": False}
    assert s.call("Counter", "a", "add", 2) == 2
    other = next(k for k in ("b", "c", "d", "e", "f", "g") if shard(k) != shard("a"))
    with pytest.raises(WrongShard):
        s.catalog.resident("Counter", other)


def test_a_lost_slot_never_serves_a_granted_shard_whose_copy_is_empty(slot, tmp_path) -> None:
    """A slot whose database was lost (storage/lost.py) refuses the granted shards at
    position [0, 0] and says so in every grant reply; a shard whose copy was rebuilt (a
    snapshot's last page wrote its position) is served; once every shard homed there is
    complete, the lost marker goes."""
    s, cmds = slot
    path = str(tmp_path / "slot-0")
    lost_slot.mark(path)
    cmds.lost_path = path
    cmds.activate()
    a = shard("a")
    b = next(shard(k) for k in "bcdefgh" if shard(k) != a)
    reply = grant(s, cmds, {a: 3, b: 3}, 1100)[2]
    assert reply == {"granted": 0, "revoked": [], "lost": True, "refused": sorted([a, b])}
    with pytest.raises(WrongShard):
        s.catalog.resident("Counter", "a")
    s.rt.commit.store.db.put(position_key(a), pack_position((3, 0)))     # a rebuilt copy
    reply = grant(s, cmds, {a: 3, b: 3}, 1101)[2]
    assert reply["granted"] == 1 and reply["refused"] == [b] and reply["lost"] is True
    assert s.call("Counter", "a", "add", 2) == 2
    assert lost_slot.is_lost(path, created_now=True), "b is still empty: still lost"
    for sh in range(16):
        s.rt.commit.store.db.put(position_key(sh), pack_position((3, 1)))
    reply = grant(s, cmds, {a: 3, b: 3}, 1102)[2]
    assert reply["granted"] == 2 and reply["refused"] == [] and reply["lost"] is True
    assert not lost_slot.is_lost(path, created_now=True), "every copy complete: marker gone"


def test_a_grant_of_a_lower_epoch_than_one_granted_before_is_not_served(slot) -> None:
    """A grant from a stale view of the owners (an epoch below one this worker was
    granted the shard with) does not make it serve that shard again."""
    s, cmds = slot
    a = shard("a")
    assert grant(s, cmds, {a: 7}, 1001)[2]["granted"] == 1
    assert s.call("Counter", "a", "add", 1) == 1
    assert grant(s, cmds, {}, 1002)[2]["revoked"] == [a]
    assert grant(s, cmds, {a: 6}, 1003)[2]["granted"] == 0, "epoch 6 < 7: stale"
    with pytest.raises(WrongShard):
        s.catalog.resident("Counter", "a")
    assert grant(s, cmds, {a: 9}, 1004)[2]["granted"] == 1
    assert s.call("Counter", "a", "add", 1) == 2


def test_a_group_committed_past_the_deadline_is_not_written(slot) -> None:
    s, cmds = slot
    grant(s, cmds, {shard("a"): 1}, 1000, until=time.monotonic() + 60, why="lease lost")
    rid = s.ask("Counter", "a", "add", 7)
    cmds.grants.until = time.monotonic() - 1      # the deadline passes before the commit
    s.commit.flush()
    reply = s.out.reply_to(rid)
    assert reply[0] == wire.ERR and reply[2]["code"] == ShardUnavailable.code, reply
    assert "n1" in reply[2]["message"] and "lease lost" in reply[2]["message"]
    assert list(s.store.range(*shard_range(shard("a")))) == [], "nothing of the turn was written"
    assert s.act("Counter", "a").instance is None, "the actor reloads its last commit"


def test_a_drain_that_cannot_finish_is_cut_short_and_leaves_nothing_resident(slot) -> None:
    s, cmds = slot
    grant(s, cmds, {shard("a"): 1}, 1000)
    assert s.call("Counter", "a", "add", 1) == 1
    stuck = s.ask("Counter", "a", "stubborn")
    started = time.monotonic()
    reply = grant(s, cmds, {}, 1001)
    assert reply[0] == wire.ERR and "Counter/a" in reply[2]["message"], reply
    assert 1.0 <= time.monotonic() - started < 4.0, "bounded by turn_timeout + 1 s"
    assert ("Counter", "a") not in s.catalog.acts
    s.settle(until=lambda: any(r[1] == stuck for _to, r in s.out.replies), timeout=5.0)
    assert s.out.reply_to(stuck)[0] == wire.ERR


def test_a_grant_during_a_drain_is_answered_after_it(slot) -> None:
    s, cmds = slot
    grant(s, cmds, {shard("a"): 1}, 1000)
    turn = s.ask("Counter", "a", "slow", 0.5)
    router = (b"router",)
    cmds.serve(router, 1001, "grant", {"shards": {}, "epoch": 6})     # revokes: drains
    cmds.serve(router, 1002, "grant", {"shards": {}, "epoch": 6})     # the periodic one
    assert not [r for to, r in s.out.replies if to == router and r[1] in (1001, 1002)], \
        "neither is answered while the turn runs"
    s.settle(until=lambda: len([r for to, r in s.out.replies
                                if to == router and r[1] in (1001, 1002)]) == 2, timeout=5.0)
    order = [r[1] for _to, r in s.out.replies if r[1] in (turn, 1001, 1002)]
    assert order[0] == turn and sorted(order[1:]) == [1001, 1002], order
    assert ("Counter", "a") not in s.catalog.acts


def command(s: Slot, cmds: ShardCommands, rid: int, cmd: str, args: dict[str, Any]) -> list[Any]:
    cmds.serve((b"router",), rid, cmd, args)
    return [r for to, r in s.out.replies if r[1] == rid and to == (b"router",)][0]


def test_a_late_page_of_an_abandoned_move_and_an_older_drop_leave_the_latest_copy_whole(slot) -> None:
    """Imports carry their move's epoch: a page of an attempt given up (arriving after
    the next attempt's clearing page) is refused; a drop decided at an older epoch than
    the move copying a shard in keeps that copy."""
    s, cmds = slot
    cmds.activate()
    a = shard("a")
    lo, _hi = shard_range(a)
    key = lo + b"Counter\x00a\x00s"
    # attempt 1 (epoch 5) began, attempt 2 (epoch 7) began with its own clear
    assert command(s, cmds, 1, "import", {"shards": [a], "clear": True, "items": [],
                                          "epochs": {a: 5}})[0] == wire.OK
    assert command(s, cmds, 2, "import", {"shards": [a], "clear": True,
                                          "items": [[key, wire.pack({"n": 2})]],
                                          "epochs": {a: 7}})[0] == wire.OK
    late = command(s, cmds, 3, "import", {"shards": [a], "clear": False,
                                          "items": [[key, wire.pack({"n": 1})]], "epochs": {a: 5}})
    assert late[0] == wire.ERR and "no longer the latest" in late[2]["message"]
    older = command(s, cmds, 4, "import", {"shards": [a], "clear": True, "items": [],
                                           "epochs": {a: 6}})
    assert older[0] == wire.ERR and "later move" in older[2]["message"]
    kept = command(s, cmds, 5, "drop", {"shards": [a], "epochs": {a: 6}})
    assert kept[0] == wire.OK and kept[2] == {"deleted": 0, "kept": [a]}
    assert wire.unpack_stored(s.store.get(key)) == {"n": 2}
    gone = command(s, cmds, 6, "drop", {"shards": [a], "epochs": {a: 9}})
    assert gone[2]["deleted"] >= 1 and s.store.get(key) is None


def renew(s: Slot, cmds: ShardCommands, rid: int, **args: Any) -> list[Any]:
    cmds.serve((b"router",), rid, "renew", args)
    return [r for to, r in s.out.replies if r[1] == rid and to == (b"router",)][0]


def test_a_renew_extends_only_the_grant_it_names_and_not_after_a_stop(slot) -> None:
    """The router's periodic grant when only ``until`` changed: applied only to the grant
    applied last (by its token), never after a shard was stopped here since (the next
    full grant reports it) nor by a worker that never had a grant."""
    s, cmds = slot
    past = time.monotonic() - 1
    assert renew(s, cmds, 1001, token=b"t1", until=time.monotonic() + 30)[2] == {"renewed": False}
    grant(s, cmds, {shard("a"): 1}, 1002, until=past, token=b"t1")
    with pytest.raises(ShardUnavailable):
        s.catalog.resident("Counter", "a")
    assert renew(s, cmds, 1003, token=b"t0", until=time.monotonic() + 30)[2] == {"renewed": False}
    with pytest.raises(ShardUnavailable):
        s.catalog.resident("Counter", "a")
    assert renew(s, cmds, 1004, token=b"t1", until=time.monotonic() + 30)[2] == {"renewed": True}
    assert s.call("Counter", "a", "add", 1) == 1, "the deadline moved: served again"
    cmds.stop_serving(shard("a"), 9)                # (a newer leader's refusal)
    assert renew(s, cmds, 1005, token=b"t1", until=time.monotonic() + 30)[2] == {"renewed": False}
    grant(s, cmds, {shard("a"): 1}, 1006, until=time.monotonic() + 30, token=b"t2")
    assert renew(s, cmds, 1007, token=b"t2", until=time.monotonic() + 30)[2] == {"renewed": True}
    err = renew(s, cmds, 1008, token="t2", until=float("inf"))
    assert err[0] == wire.ERR and "renew needs token (bytes) and until" in err[2]["message"]
