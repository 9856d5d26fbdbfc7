"""The leader's output gate (actorsys/runtime/replication.py) above storage: a group's
output waits for its quorum and leaves in group order, majority and all count the
voters, a group not at quorum within ack_timeout fails, a refusal stops serving the
shard, a follower behind is caught up from the log, and without replication the flush
is the plain one. The slot's LevelDB is real; the peers are fake links answering as
the test says (the node tests run real ones)."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterator

import pytest
from loops import run_until
from runtime_fakes import SHARDS, Slot

import actorsys
from actorsys.errors import BadRequest
from actorsys.protocol import wire
from actorsys.protocol.shardmap import shard_of
from actorsys.runtime.grants import Grants
from actorsys.runtime.replication import Replication, parse_grant
from actorsys.storage import replica
from actorsys.storage.keys import position_key


class Counter(actorsys.Actor):
    def add(self, by: int = 1) -> int:
        self.state["n"] = self.state.get("n", 0) + by
        return int(self.state["n"])

    def get(self) -> int:
        return int(self.state.get("n", 0))


class FakeLink:
    """A peer that answers ``position`` and ``snapshot`` at once (from ``positions``) and
    keeps ``append`` requests for the test to answer."""

    def __init__(self, loop: Any, ctx: Any, node: str, endpoint: str, keys: Any, window: int) -> None:
        self.loop, self.node, self.endpoint, self.window = loop, node, endpoint, window
        self.positions: dict[int, list[int]] = {}
        self.appends: list[tuple[dict[str, Any], Callable[[bool, Any], None]]] = []

    @property
    def room(self) -> int:
        return self.window - len(self.appends)

    def check(self) -> None:
        pass

    def request(self, cmd: str, args: dict[str, Any], timeout: float,
                cb: Callable[[bool, Any], None]) -> None:
        if cmd == "append":
            self.appends.append((args, cb))
        elif cmd == "position":
            pos = {s: self.positions.get(s, [0, 0]) for s in args["shards"]}
            self.loop.call_soon(cb, True, {"positions": pos, "fences": {}})
        elif cmd == "snapshot":
            for k, v in args["items"]:
                if k[:1] == b"a" and len(k) == 4:
                    self.positions[args["shard"]] = list(wire.unpack(v))
            pos = self.positions.get(args["shard"], [0, 0]) if args["last"] else [0, 0]
            self.loop.call_soon(cb, True, {"written": len(args["items"]), "position": pos})

    def send_call(self, cmd: str, args: dict[str, Any], timeout: float) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.request(cmd, args, timeout,
                     lambda ok, body: fut.set_result(body) if ok else fut.set_exception(body))
        return fut

    async def call(self, cmd: str, args: dict[str, Any], timeout: float) -> Any:
        return await self.send_call(cmd, args, timeout)

    def answer(self, reply: Callable[[list[list[Any]]], dict[str, Any]]) -> list[list[Any]]:
        """Answer the oldest append with ``reply(batches)``; its batches."""
        args, cb = self.appends.pop(0)
        cb(True, reply(args["batches"]))
        return args["batches"]

    def ack(self) -> list[list[Any]]:
        return self.answer(lambda bs: {"held": {b[0]: [b[1], b[4]] for b in bs}, "behind": {},
                                       "refused": {}})

    def close(self) -> None:
        pass


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    s = Slot(str(tmp_path), {"Counter": Counter})
    yield s
    repl = getattr(s, "repl", None)
    if repl is not None:               # its catch-up tasks end before the loop closes
        repl.close()
        run(s)
    s.close()


def run(slot: Slot, seconds: float = 0.02) -> None:
    slot.loop.run_until_complete(asyncio.sleep(seconds))


def replicate(slot: Slot, followers: int = 1, ack: str = "majority", ack_timeout: float = 5.0,
              positions: dict[int, list[int]] | None = None) -> tuple[Replication, list[FakeLink]]:
    grants = Grants(0, slot.map.owner, True, "n1")
    grants.shards = {s: 3 for s in range(SHARDS)}
    repl = Replication(slot.loop, None, None, slot.commit, grants, 1 << 20)  # type: ignore[arg-type]
    def link(*a: Any) -> FakeLink:
        made = FakeLink(*a)
        made.positions = dict(positions or {})
        return made
    repl.link_factory = link         # type: ignore[assignment]
    refused: list[tuple[int, int]] = []
    repl.on_refused = lambda s, fence: refused.append((s, fence))
    repl.refusals = refused          # type: ignore[attr-defined]
    args = parse_grant({"peers": [[f"f{i}", f"ipc://f{i}", None] for i in range(followers)],
                        "replicas": {s: [[i, True] for i in range(followers)] for s in range(SHARDS)},
                        "ack": ack, "ack_timeout": ack_timeout}, SHARDS)
    repl.configure(args, grants.shards)
    slot.repl = repl                 # type: ignore[attr-defined]
    # every copy caught up (empty: a snapshot each), however slow the machine is now
    run_until(slot.loop, lambda: all(tr.sent is not None for p in repl.peers.values()
                                     for tr in p.tracks.values()), 10.0)
    links = [repl.peers[f"ipc://f{i}"].link for i in range(followers)]
    return repl, links  # type: ignore[return-value]


def one_at_quorum_one_sent(slot: Slot) -> tuple[Replication, FakeLink, int, int]:
    """One follower; a write of actor a at quorum ([3, 1]), a second sent to it and not
    yet answered ([3, 2]): the replication, the follower's link, a's shard, the second
    write's request id."""
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.ack()
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    return repl, link, shard, w


def test_output_waits_for_the_quorum_and_leaves_in_group_order(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    assert slot.commit.repl is repl
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    r = slot.ask("Counter", "b", "get")           # reads only: waits behind the write
    slot.commit.flush()
    assert slot.out.replies == [] and len(repl.held) == 2
    shard = shard_of("Counter", "a", SHARDS)
    assert replica.read_position(slot.store.db, shard) == (3, 1), "committed here, with its position"
    (batch,) = link.ack()
    assert batch[:5] == [shard, 3, 3, 0, 1] and [position_key(shard), replica.pack_position((3, 1))] in [
        list(i) for i in batch[5]]
    assert [rep[1] for _to, rep in slot.out.replies] == [w, r]
    assert slot.out.reply_to(w)[2] == 1 and not repl.held


def test_one_ack_timer_serves_groups_in_a_row_and_fails_a_later_one_at_its_own_deadline(
        slot: Slot) -> None:
    repl, (link,) = replicate(slot, ack_timeout=0.3)
    for n in range(1, 21):                         # a writer's asks, each acknowledged
        w = slot.ask("Counter", "a", "add", 1)
        slot.commit.flush()
        link.ack()
        assert slot.out.reply_to(w)[2] == n
    first = repl.timer
    assert first is not None and not first.cancelled(), "armed once, left armed while idle"
    run(slot, 0.2)
    w = slot.ask("Counter", "a", "add", 1)         # held 0.2 s after the timer was armed
    slot.commit.flush()
    run(slot, 0.15)                                # the timer fires early for this group
    assert repl.held and repl.timer is not None and repl.timer is not first, \
        "armed again, for the front group's own deadline"
    run(slot, 0.25)
    err = slot.out.reply_to(w)
    assert err[0] == wire.ERR and "0.3 s" in err[2]["message"], err
    assert not repl.held


def test_majority_counts_the_leader_and_all_needs_every_voter(slot: Slot) -> None:
    repl, (f1, f2) = replicate(slot, followers=2)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    run(slot)                                      # (f2's append leaves a moment later)
    f1.ack()
    assert slot.out.reply_to(w)[2] == 1, "2 of 3 voters hold it"
    slot.out.replies.clear()
    repl.ack = "all"
    for sl in repl.shards.values():
        sl.quorum = 3
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    f1.ack()
    f2.ack()                                       # (the first group's late ack)
    assert slot.out.replies == [], "all: the second follower has not acked the second group"
    f2.ack()
    assert slot.out.reply_to(w)[2] == 2


def test_a_group_short_of_its_quorum_within_ack_timeout_fails(slot: Slot) -> None:
    repl, (link,) = replicate(slot, ack_timeout=0.05)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    run(slot, 0.15)
    err = slot.out.reply_to(w)
    assert err[0] == wire.ERR and err[2]["code"] == "shard_unavailable"
    assert "only 1 of the 2 replicas" in err[2]["message"] and "0.05 s" in err[2]["message"]
    assert slot.act("Counter", "a").instance is None, "it reloads"
    assert not repl.held


def test_a_refusal_stops_serving_the_shard_and_fails_its_groups(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.answer(lambda bs: {"held": {}, "behind": {}, "refused": {shard: 9}})
    err = slot.out.reply_to(w)
    assert err[0] == wire.ERR and "newer leader (epoch 9)" in err[2]["message"]
    assert repl.refusals == [(shard, 9)] and shard not in repl.shards  # type: ignore[attr-defined]


def test_a_follower_behind_is_caught_up_from_the_log(slot: Slot) -> None:
    repl, link, shard, w = one_at_quorum_one_sent(slot)
    link.positions[shard] = [3, 1]
    link.answer(lambda bs: {"held": {}, "behind": {shard: [3, 1]}, "refused": {}})
    run(slot)
    assert slot.out.replies[-1][1][1] != w, "not yet held"
    (batch,) = link.ack()                          # the catch-up's append, from the log
    assert batch[:5] == [shard, 3, 3, 1, 2]
    run(slot)
    assert slot.out.reply_to(w)[2] == 2


def test_copies_behind_on_several_shards_are_caught_up_at_once(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    keys: dict[int, str] = {}
    for i in range(200):
        keys.setdefault(shard_of("Counter", f"k{i}", SHARDS), f"k{i}")
        if len(keys) == 3:
            break
    for k in keys.values():
        slot.ask("Counter", k, "add", 1)
    slot.commit.flush()
    link.ack()
    for k in keys.values():
        slot.ask("Counter", k, "add", 1)
    slot.commit.flush()
    for s in keys:
        link.positions[s] = [3, 1]
    link.answer(lambda bs: {"held": {}, "behind": {s: [3, 1] for s in keys}, "refused": {}})
    run_until(slot.loop, lambda: len(link.appends) >= 3, 5.0)
    assert sorted(b[0] for args, _cb in link.appends for b in args["batches"]) == sorted(keys), \
        "one catch-up append per shard, all in flight together"
    for _ in range(3):
        link.ack()
    run_until(slot.loop, lambda: all(repl.peers["ipc://f0"].tracks[s].sent == (3, 2)
                                     for s in keys), 5.0)


def test_without_replication_the_flush_is_the_plain_one(slot: Slot) -> None:
    repl, _links = replicate(slot)
    repl.configure(None, repl.grants.shards)
    assert slot.commit.repl is None
    assert slot.call("Counter", "a", "add", 1) == 1
    assert replica.read_position(slot.store.db, shard_of("Counter", "a", SHARDS)) == (3, 0), \
        "no position written by the plain flush (the grant's first one stays)"


def test_a_follower_whose_position_is_not_in_the_log_gets_a_snapshot(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    for _ in range(3):
        slot.ask("Counter", "a", "add", 1)
        slot.commit.flush()
        link.ack()
    assert replica.read_position(slot.store.db, shard) == (3, 3)
    # the leader restarts: its log is gone; the follower is at [3, 1]
    repl.close()
    run(slot)
    repl2, (link2,) = replicate(slot, positions={shard: [3, 1]})
    assert repl2.shards[shard].pos == (3, 3) and not repl2.shards[shard].entries
    assert repl2.snapshots == SHARDS, "every empty copy, and shard a's: [3, 1] is in no log"
    assert link2.positions[shard] == [3, 3], "the snapshot's last page carried the position"
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    (batch,) = link2.ack()
    assert batch[:5] == [shard, 3, 3, 3, 4] and slot.out.reply_to(w)[2] == 4


@pytest.mark.parametrize("args, named", [
    ({"peers": [["n", "ipc://x"]]}, "peers"),
    ({"peers": "x"}, "peers"),
    ({"peers": [["n", "ipc://x", None]], "replicas": {0: [[1, True]]}}, "replicas"),
    ({"replicas": {SHARDS: []}}, "replicas"),
    ({"replicas": {0: [[0, 1]]}, "peers": [["n", "ipc://x", None]]}, "replicas"),
    ({"peers": [["n", "inproc://x", None]]}, "peers endpoint"),
    ({"peers": [["n", "tcp://h", None]]}, "peers endpoint"),
    ({"peers": [["n", "tcp://h:99999", None]]}, "peers endpoint"),
    ({"peers": [["n", "tcp://h:1", "short"]]}, "peers public key"),
    ({"ack": "most"}, "ack"),
    ({"ack_timeout": 0}, "ack_timeout"),
    ({"ack_timeout": "5"}, "ack_timeout"),
])
def test_bad_replication_arguments_of_a_grant_are_named(args: dict[str, Any], named: str) -> None:
    with pytest.raises(BadRequest, match=f"grant {named} "):
        parse_grant(args, SHARDS)


def test_replication_arguments_of_a_grant() -> None:
    assert parse_grant({"shards": {}}, SHARDS) is None
    got = parse_grant({"peers": [["n", "ipc://x", None]], "replicas": {3: [[0, False]]},
                       "ack": "all", "ack_timeout": 2}, SHARDS)
    assert got is not None and got.replicas == {3: [(0, False)]} and got.ack == "all"
    assert got.ack_timeout == 2.0 and got.peers == [("n", "ipc://x", None)]


def test_a_learners_ack_does_not_count_and_dropping_a_dead_voter_releases(slot: Slot) -> None:
    repl, (f1, f2) = replicate(slot, followers=2)
    grants = repl.grants
    peers = [["f0", "ipc://f0", None], ["f1", "ipc://f1", None]]
    # f0 voter, f1 learner: majority of 2 voters (leader + f0) needs f0
    repl.configure(parse_grant({"peers": peers, "replicas": {s: [[0, True], [1, False]]
                                                             for s in range(SHARDS)}}, SHARDS),
                   grants.shards)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    run(slot)                                      # (f2's append leaves a moment later)
    f2.ack()
    assert slot.out.replies == [], "a learner's ack does not count"
    # f0 is dead: a grant without it as voter lets the waiting group go
    repl.configure(parse_grant({"peers": peers, "replicas": {s: [[1, False]] for s in range(SHARDS)}},
                               SHARDS), grants.shards)
    assert slot.out.reply_to(w)[2] == 1
    assert "ipc://f0" not in repl.peers, "a peer no grant names is closed"


def test_a_refused_shard_commits_nothing_more_until_granted_again(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.answer(lambda bs: {"held": {}, "behind": {}, "refused": {shard: 9}})
    assert slot.out.reply_to(w)[0] == wire.ERR
    # a turn already running there (or kept by the tree) commits after the refusal
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    err = slot.out.reply_to(w)
    assert err[0] == wire.ERR and "newer leader (epoch 9)" in err[2]["message"]
    assert replica.read_position(slot.store.db, shard) == (3, 1), "not written"
    repl.configure(None, {})
    assert slot.commit.repl is repl, "still the replicated flush while a shard is lost"
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert slot.out.reply_to(w)[0] == wire.ERR
    repl.configure(parse_grant({"peers": [], "replicas": {}}, SHARDS), {shard: 9})
    assert not repl.lost
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert slot.out.reply_to(w)[2] == 2, "granted back: served again (it reloaded [3, 1])"


def test_a_shard_granted_again_starts_from_the_disk_not_its_retired_log(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    grants = repl.grants
    peers = [["f0", "ipc://f0", None]]
    rest = {s: 3 for s in range(SHARDS) if s != shard}
    repl.configure(parse_grant({"peers": peers, "replicas": {s: [[0, True]] for s in rest}}, SHARDS),
                   rest)
    assert repl.shards[shard].retired, "f0 has not acked: kept for catch-up"
    # meanwhile a newer leader's batch lands here
    grants.shards = rest
    repl.follower.append({"batches": [[shard, 5, 3, 1, 1, []]]})
    assert replica.read_position(slot.store.db, shard) == (5, 1)
    assert shard not in repl.shards, "the retired log no longer matches the disk"
    repl.configure(parse_grant({"peers": peers, "replicas": {s: [[0, True]] for s in range(SHARDS)}},
                               SHARDS), {**rest, shard: 6})
    assert repl.shards[shard].pos == (5, 1) and not repl.shards[shard].entries


def test_what_a_peer_holds_is_what_it_last_said_and_an_idle_peer_is_asked_again(
        slot: Slot, monkeypatch: pytest.MonkeyPatch) -> None:
    from actorsys.runtime import repl_catchup
    monkeypatch.setattr(repl_catchup, "IDLE", 0.05)
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.ack()
    answer = repl.replication({"shards": [shard]})[shard]
    assert answer["held"] == {"f0": 1} and answer["streaming"] == ["f0"]
    # the follower restarts with its copy lost (same endpoint): idle, nothing is sent
    snaps = repl.snapshots
    link.positions = {}
    seen = []
    real = link.request
    def spy(cmd: str, args: dict[str, Any], timeout: float, cb: Any) -> None:
        if cmd == "position" and shard in args["shards"]:
            seen.append(link.positions.get(shard, [0, 0]))
        real(cmd, args, timeout, cb)
    link.request = spy                 # type: ignore[method-assign]
    run(slot, 0.3)
    assert [0, 0] in seen, "asked again while idle"
    assert repl.snapshots > snaps and link.positions[shard] == [3, 1], "rebuilt by a snapshot"
    # an append answered behind from below: held is what it says now, not the most ever
    tr = repl.peers["ipc://f0"].tracks[shard]
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.positions[shard] = [0, 0]
    link.answer(lambda bs: {"held": {}, "behind": {shard: [0, 0]}, "refused": {}})
    assert tr.holds == (0, 0)
    assert repl.replication({"shards": [shard]})[shard]["streaming"] == [], \
        "caught up from the log now: not streamed"


def test_a_write_during_a_catch_up_round_trip_is_sent_too(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.positions[shard] = [3, 0]
    link.answer(lambda bs: {"held": {}, "behind": {shard: [3, 0]}, "refused": {}})
    run(slot)
    assert len(link.appends) == 1, "the catch-up's append of [3, 1]"
    w = slot.ask("Counter", "a", "add", 1)        # flushed while that append is out
    slot.commit.flush()
    assert len(link.appends) == 1, "not streamed: the copy is being caught up"
    (batch,) = link.ack()
    assert batch[:5] == [shard, 3, 3, 0, 1]
    run(slot)
    (batch,) = link.ack()
    assert batch[:5] == [shard, 3, 3, 1, 2], "the write of the round trip follows"
    run(slot)
    assert slot.out.reply_to(w)[2] == 2


def test_a_shard_no_longer_replicated_fails_the_groups_short_of_its_quorum(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    w1 = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.ack()
    assert slot.out.reply_to(w1)[2] == 1
    w2 = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    repl.configure(None, repl.grants.shards)       # a grant without replication arguments
    err = slot.out.reply_to(w2)
    assert err[0] == wire.ERR and "before its replicas changed" in err[2]["message"], \
        "not released as if a dropped shard were at quorum"
    assert not repl.held and slot.commit.repl is None


def test_a_peer_link_that_cannot_be_made_leaves_the_grant_applied(slot: Slot) -> None:
    repl, (link,) = replicate(slot, ack_timeout=0.05)
    def broken(*a: Any) -> Any:
        raise OSError("no such endpoint")
    repl.link_factory = broken               # type: ignore[assignment]
    peers = [["f0", "ipc://f0", None], ["f9", "tcp://nowhere:1", None]]
    repl.configure(parse_grant({"peers": peers, "replicas": {s: [[0, True], [1, True]]
                                                             for s in range(SHARDS)}}, SHARDS),
                   repl.grants.shards)
    assert slot.commit.repl is repl and "tcp://nowhere:1" not in repl.peers
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.ack()                                # 2 of 3: at quorum
    assert slot.out.reply_to(w)[2] == 1


def test_after_a_failed_group_later_reads_wait_for_its_batch_at_quorum(slot: Slot) -> None:
    repl, (link,) = replicate(slot, ack_timeout=0.05)
    shard = shard_of("Counter", "a", SHARDS)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    run(slot, 0.15)
    assert slot.out.reply_to(w)[0] == wire.ERR and repl.doubt == {shard: (3, 1)}
    slot.out.replies.clear()
    r = slot.ask("Counter", "a", "get")           # reloads the unreplicated write: 1
    slot.commit.flush()
    assert slot.out.replies == [], "a read of the doubted write waits for its quorum"
    link.ack()                                    # the failed group's batch arrives late
    assert slot.out.reply_to(r)[2] == 1 and not repl.doubt and not repl.held
    r = slot.ask("Counter", "a", "get")
    slot.commit.flush()
    assert slot.out.reply_to(r)[2] == 1, "no doubt left: released at once"


def test_a_read_held_behind_a_group_that_fails_waits_for_its_batch_too(slot: Slot) -> None:
    """A read-only turn held behind a write of the same actor read that write; when the
    write's group fails short of its quorum, the read must not leave until a quorum
    holds the write's batch (found by review: it needed nothing of its own and left)."""
    repl, (link,) = replicate(slot, ack_timeout=0.1)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    run(slot, 0.05)
    r = slot.ask("Counter", "a", "get")           # reads the write still held: 1
    slot.commit.flush()
    assert len(repl.held) == 2
    run_until(slot.loop, lambda: bool(slot.out.replies), 5.0)   # the write's deadline
    assert slot.out.reply_to(w)[0] == wire.ERR
    assert [x[1][1] for x in slot.out.replies] == [w], "the read waits for the failed write's batch"
    link.ack()                                    # the write's batch reaches its quorum late
    assert slot.out.reply_to(r)[2] == 1 and not repl.held


def test_a_refusal_fails_the_reads_held_behind_the_writes_it_fails(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    r = slot.ask("Counter", "a", "get")           # reads the write a newer leader refuses
    slot.commit.flush()
    link.answer(lambda bs: {"held": {}, "behind": {}, "refused": {shard: 9}})
    assert slot.out.reply_to(w)[0] == wire.ERR
    err = slot.out.reply_to(r)
    assert err[0] == wire.ERR and "newer leader (epoch 9)" in err[2]["message"]
    assert not repl.held


def test_a_refusal_not_newer_than_the_leaders_epoch_does_not_stop_serving(slot: Slot) -> None:
    repl, (link,) = replicate(slot, ack_timeout=0.05)
    shard = shard_of("Counter", "a", SHARDS)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.answer(lambda bs: {"held": {}, "behind": {}, "refused": {shard: 3}})
    assert shard in repl.shards and not repl.lost and repl.refusals == []  # type: ignore[attr-defined]


def test_a_failed_local_commit_reads_the_position_from_disk_again(slot: Slot) -> None:
    from actorsys.errors import StorageError
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.ack()
    store = slot.store
    real = store.commit
    def landed_but_failed() -> None:  # the batch lands, its fsync fails
        real()
        store.broken = StorageError("test: fsync failed")
        raise store.broken
    store.commit = landed_but_failed              # type: ignore[method-assign]
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert slot.out.reply_to(w)[0] == wire.ERR and repl.reread == {shard}
    store.commit, store.broken = real, None        # type: ignore[method-assign]
    assert replica.read_position(store.db, shard) == (3, 2) and repl.shards[shard].pos == (3, 1)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert repl.shards[shard].pos == (3, 3), "[3, 2] is never reused with other contents"
    assert replica.read_position(store.db, shard) == (3, 3) and repl.doubt == {shard: (3, 2)}


def test_a_peers_send_queue_is_bounded_and_a_failed_request_drops_it(
        slot: Slot, monkeypatch: pytest.MonkeyPatch) -> None:
    from actorsys.runtime import repl_stream
    repl, (link,) = replicate(slot)
    p = repl.peers["ipc://f0"]
    link.window = 1                                 # one append in flight, the rest queued
    for _ in range(3):
        slot.ask("Counter", "a", "add", 1)
        slot.commit.flush()
    assert len(link.appends) == 1 and len(p.outq) == 2 and p.outq_bytes == sum(n for _b, n in p.outq)
    monkeypatch.setattr(repl_stream, "OUTQ_BYTES", p.outq_bytes)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert not p.outq and p.outq_bytes == 0, "over the bound: off the stream, queue dropped"
    assert all(tr.sent is None or tr.catching for tr in p.tracks.values())
    args, cb = link.appends.pop(0)
    cb(False, OSError("timed out"))                 # a failed request: nothing old is pumped
    assert not p.outq and not link.appends


def test_a_flush_after_close_fails_instead_of_hanging(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    repl.close()
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    err = slot.out.reply_to(w)
    assert err[0] == wire.ERR and "stopping" in err[2]["message"] and not repl.held


def test_catch_up_pauses_when_a_position_answer_leaves_the_lagging_copy_out(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    asked: list[int] = []
    def position_without(cmd: str, args: dict[str, Any], timeout: float, cb: Any) -> None:
        if cmd == "position":
            asked.append(1)
            other = (shard + 1) % SHARDS
            slot.loop.call_soon(cb, True, {"positions": {other: [3, 0]}, "fences": {}})
    link.request = position_without             # type: ignore[method-assign]
    repl.peers["ipc://f0"].tracks[shard].sent = None
    repl.peers["ipc://f0"].wake.set()
    run(slot, 0.3)
    assert 1 <= len(asked) <= 2, f"paced (RETRY between rounds), not a busy loop: {len(asked)}"


def test_a_failed_groups_errors_leave_in_group_order(slot: Slot) -> None:
    from actorsys.errors import ShardUnavailable
    repl, (link,) = replicate(slot)
    sa, sb = shard_of("Counter", "a", SHARDS), shard_of("Counter", "b", SHARDS)
    assert sa != sb
    w1 = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    w2 = slot.ask("Counter", "b", "add", 1)
    slot.commit.flush()
    slot.commit.fence = lambda: ShardUnavailable("test: past the lease")
    w3 = slot.ask("Counter", "c", "add", 1)
    slot.commit.flush()
    slot.commit.fence = None
    # a refusal of b's shard fails w2, the fence failed w3: neither answers before w1
    link.answer(lambda bs: {"held": {sa: [3, 1]} if bs[0][0] == sa else {}, "behind": {},
                            "refused": {}})
    assert [rep[1] for _to, rep in slot.out.replies] == [w1]
    slot.out.replies.clear()
    link.answer(lambda bs: {"held": {}, "behind": {}, "refused": {sb: 9}})
    assert [(rep[0], rep[1]) for _to, rep in slot.out.replies] == [(wire.ERR, w2), (wire.ERR, w3)]
    assert slot.act("Counter", "c").instance is None


def test_a_groups_errors_wait_behind_an_earlier_held_group(slot: Slot) -> None:
    from actorsys.errors import ShardUnavailable
    repl, (link,) = replicate(slot)
    w1 = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    slot.commit.fence = lambda: ShardUnavailable("test: past the lease")
    w2 = slot.ask("Counter", "b", "add", 1)
    slot.commit.flush()
    slot.commit.fence = None
    assert slot.out.replies == [], "the fenced group's error waits for the group before it"
    link.ack()
    assert [(rep[0], rep[1]) for _to, rep in slot.out.replies] == [(wire.OK, w1), (wire.ERR, w2)]


def test_a_peer_whose_public_key_changed_is_connected_again(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    assert len(key) == 40
    repl.configure(parse_grant({"peers": [["f0", "ipc://f0", key]],
                                "replicas": {s: [[0, True]] for s in range(SHARDS)}}, SHARDS),
                   repl.grants.shards)
    p = repl.peers["ipc://f0"]
    assert p.link is not link and p.key == key and all(tr.sent is None for tr in p.tracks.values())
    run(slot)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    p.link.ack()  # type: ignore[attr-defined]
    assert slot.out.reply_to(w)[2] == 1


def test_snapshot_pages_of_another_snapshot_are_refused(slot: Slot) -> None:
    from actorsys.errors import BadRequest
    repl, _links = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    repl.grants.shards = {}                        # a follower of every shard now
    f = repl.follower
    page = {"shard": shard, "epoch": 4, "items": []}
    f.snapshot({**page, "id": 1, "first": True, "last": False})
    with pytest.raises(BadRequest, match="not of the snapshot being received"):
        f.snapshot({**page, "id": 2, "first": False, "last": True})
    f.snapshot({**page, "id": 2, "first": True, "last": False})     # a new one supersedes
    with pytest.raises(BadRequest, match="not of the snapshot being received"):
        f.snapshot({**page, "id": 1, "first": False, "last": False})
    got = f.snapshot({**page, "id": 2, "first": False, "last": True,
                      "items": [[position_key(shard), replica.pack_position((4, 2))]]})
    assert got["position"] == [4, 2] and shard not in f.snaps
    with pytest.raises(BadRequest, match="needs id"):
        f.snapshot({**page, "first": True, "last": True})


def test_status_counts_a_copy_with_a_position_but_no_fence_as_following(slot: Slot) -> None:
    repl, _links = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    assert repl.status()["following"] == 0
    del repl.grants.shards[shard]
    assert replica.read_fence(slot.store.db, shard) == 0
    assert repl.status()["following"] == 1, "its position ([3, 0]) is a copy here"


def test_a_position_read_from_disk_is_in_doubt_until_a_quorum_holds_it(slot: Slot) -> None:
    """A worker restarted (or a shard granted again) on a batch its copies may not hold
    (a group that failed short of its quorum, then the worker was killed): a read of it
    leaves only once a follower is known to hold it."""
    repl, _links = replicate(slot, ack_timeout=0.05)
    shard = shard_of("Counter", "a", SHARDS)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    run(slot, 0.15)
    assert slot.out.reply_to(w)[0] == wire.ERR, "failed short of its quorum: on disk here only"
    repl.close()                      # the worker is killed; a new one reads the disk
    run(slot)
    slot.out.replies.clear()
    grants = repl.grants
    again = Replication(slot.loop, None, None, slot.commit, grants, 1 << 20)  # type: ignore[arg-type]
    made: list[FakeLink] = []

    def link(*a: Any) -> FakeLink:
        made.append(FakeLink(*a))
        made[-1].positions = {shard: [3, 0]}        # the follower never got it
        return made[-1]
    again.link_factory = link                      # type: ignore[assignment]
    slot.repl = again                              # type: ignore[attr-defined]
    again.configure(parse_grant({"peers": [["f0", "ipc://f0", None]],
                                 "replicas": {s: [[0, True]] for s in range(SHARDS)}}, SHARDS),
                    grants.shards)
    assert again.doubt.get(shard) == (3, 1)
    slot.catalog.acts.clear()                      # (the new worker's memory is empty)
    r = slot.ask("Counter", "a", "get")
    slot.commit.flush()
    assert slot.out.replies == [], "a read of a batch no quorum is known to hold waits"
    run(slot)                                      # the catch-up brings the follower to [3, 1]
    assert slot.out.reply_to(r)[2] == 1 and shard not in again.doubt


def test_position_answers_a_served_shard_by_its_epoch_and_the_others_in_full(slot: Slot) -> None:
    repl, _links = replicate(slot)
    f = repl.follower
    served, other = 0, 1
    repl.grants.shards = {served: 7}               # served here; the other one followed
    got = f.position({"shards": [served, other], "fence": {served: 9, other: 9}})
    assert got["served"] == {served: 7}, "a served shard's epoch, for the asker to decide"
    assert served not in got["positions"] and got["positions"][other] == [3, 0]
    assert replica.read_fence(slot.store.db, served) != 9, "a served shard is never fenced"
    assert replica.read_fence(slot.store.db, other) == 9 == got["fences"][other]


@pytest.mark.parametrize("epoch, stops", [(4, True), (3, False)])
def test_a_peer_serving_a_led_shard_stops_it_here_only_with_a_newer_epoch(
        slot: Slot, epoch: int, stops: bool) -> None:
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    def serving(cmd: str, args: dict[str, Any], timeout: float, cb: Any) -> None:
        if cmd == "position":
            pos = {s: [3, 0] for s in args["shards"] if s != shard}
            slot.loop.call_soon(cb, True, {"positions": pos, "fences": {},
                                           "served": {shard: epoch}})
    link.request = serving                      # type: ignore[method-assign]
    p = repl.peers["ipc://f0"]
    for tr in p.tracks.values():
        tr.sent = None
    p.wake.set()
    run(slot, 0.1)
    assert (repl.refusals == [(shard, epoch)]) is stops   # type: ignore[attr-defined]
    assert (shard in repl.lost) is stops
    assert all(tr.sent is not None for s, tr in p.tracks.items() if s != shard), \
        "the other shards' answers were not held back by it"


def test_the_first_position_answer_ends_every_doubt_it_settles_not_one_copy_at_a_time(
        slot: Slot) -> None:
    """A restarted leader's positions are all in doubt: the ones its follower holds
    leave doubt at the first answer, not behind a copy that must be rebuilt first."""
    grants = Grants(0, slot.map.owner, True, "n1")
    grants.shards = {s: 3 for s in range(SHARDS)}
    a, b = sorted({shard_of("Counter", k, SHARDS) for k in ("a", "b", "c", "d")})[:2]
    with slot.store.db.write_batch() as wb:         # what a killed worker left on disk
        for s in (a, b):
            wb.put(position_key(s), replica.pack_position((3, 5)))
    repl = Replication(slot.loop, None, None, slot.commit, grants, 1 << 20)  # type: ignore[arg-type]
    slow: list[Any] = []

    def link(*args: Any) -> FakeLink:
        made = FakeLink(*args)
        made.positions = {a: [0, 0], b: [3, 5]}      # a must be rebuilt; b is in step
        real = made.request
        def request(cmd: str, body: dict[str, Any], timeout: float, cb: Any) -> None:
            if cmd == "snapshot":
                slow.append(body["shard"])           # (answered later than this test looks)
                slot.loop.call_later(0.3, real, cmd, body, timeout, cb)
            else:
                real(cmd, body, timeout, cb)
        made.request = request                      # type: ignore[method-assign]
        return made
    repl.link_factory = link                         # type: ignore[assignment]
    slot.repl = repl                                 # type: ignore[attr-defined]
    repl.configure(parse_grant({"peers": [["f0", "ipc://f0", None]],
                                "replicas": {s: [[0, True]] for s in (a, b)}}, SHARDS),
                   {a: 3, b: 3})
    assert repl.doubt == {a: (3, 5), b: (3, 5)}
    run(slot, 0.1)
    assert slow == [a], "a is being rebuilt"
    assert repl.doubt == {a: (3, 5)}, "b's doubt ended with the first answer"


def test_refusals_of_many_shards_at_once_are_one_log_line(slot: Slot,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    repl, (link,) = replicate(slot)
    caplog.set_level("ERROR", logger="actorsys.worker")
    for s in range(5):
        repl.refused(s, 9, repl.peers["ipc://f0"])
        run(slot, 0.01)                            # (across loop turns, within the second)
    run(slot, 1.0)
    lines = [r.getMessage() for r in caplog.records if "refused shard" in r.getMessage()]
    assert len(lines) == 1 and "and 4 more shards: 1, 2, 3, 4" in lines[0], lines
    assert all(s in repl.lost for s in range(5))


def test_a_follower_delivers_the_replies_of_a_lone_group_of_asks(slot: Slot) -> None:
    repl, (f1, f2) = replicate(slot, followers=2)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    (args, _cb), = f1.appends
    assert [[to, wire.unpack(rep)] for to, rep in args["replies"]] == [
        [b"peer-1", [wire.OK, w, 1]]], "the leader's reply, for the asker's routing id"
    assert not f2.appends, "one follower delivers (quorum 2: leader + it); the other waits"
    f1.answer(lambda bs: {"held": {b[0]: [b[1], b[4]] for b in bs}, "behind": {}, "refused": {},
                          "delivered": [0], "unreachable": []})
    assert slot.out.replies == [] and not repl.held, "delivered by f1: at quorum, not sent again"
    assert repl.status()["replies_via_followers"] == 1
    w2 = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    f1.ack()
    assert slot.out.reply_to(w2)[2] == 2, "(f1 did not say it delivered: the leader sends it)"
    assert not f2.appends
    run(slot, 0.05)
    (args, _cb), = f2.appends
    assert [b[4] for b in args["batches"]] == [1, 2] and "replies" not in args, \
        "f2 got both groups' batches in one append, a moment later"
    f2.ack()
    assert len(slot.out.replies) == 1


def test_a_reply_the_follower_could_not_deliver_names_it_for_the_asker(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.answer(lambda bs: {"held": {b[0]: [b[1], b[4]] for b in bs}, "behind": {}, "refused": {},
                            "delivered": [], "unreachable": [0]})
    assert slot.out.reply_to(w) == [wire.OK, w, 1, "ipc://f0"], "the asker may connect there"
    w = slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.ack()                        # (an answer without a word on the replies: a late one)
    assert slot.out.reply_to(w) == [wire.OK, w, 2]


def test_replies_are_not_delegated_under_load_or_with_other_output_or_a_larger_quorum(
        slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    slot.ask("Counter", "b", "add", 1)
    slot.commit.flush()
    first, second = link.appends
    assert "replies" in first[0] and "replies" in second[0], \
        "behind a group given to the same follower (which sends them on in order)"
    slot.tell("Counter", "c", "add", 1)            # a tell: no reply, nothing to delegate
    slot.commit.flush()
    slot.ask("Counter", "d", "add", 1)
    slot.commit.flush()
    third, fourth = link.appends[2:]
    assert "replies" not in third[0] and "replies" not in fourth[0], \
        "behind a group the leader sends itself, the leader keeps the group order"
    for _ in range(4):
        link.ack()
    assert len(slot.out.replies) == 3 and not repl.held
    for sl in repl.shards.values():
        sl.quorum = 3                              # (ack = "all" with 2 followers, say)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    assert "replies" not in link.appends[0][0]


def test_a_follower_sends_the_replies_on_only_once_it_holds_the_batches(slot: Slot) -> None:
    repl, (link,) = replicate(slot)
    shard = shard_of("Counter", "a", SHARDS)
    slot.ask("Counter", "a", "add", 1)
    slot.commit.flush()
    link.ack()
    grants = repl.grants
    grants.shards = {s: 3 for s in range(SHARDS) if s != shard}     # (following the shard now)
    follower = repl.follower
    slot.out.reachable = {b"cA"}
    reply = wire.ok(7, "done")
    got = follower.append({"batches": [[shard, 5, 3, 1, 2, []]],
                           "replies": [[b"cA", reply], [b"cB", reply]]})
    assert got["held"] == {shard: [5, 2]} and got["delivered"] == [0] and got["unreachable"] == [1]
    assert slot.out.forwarded == [(b"cA", [wire.OK, 7, "done"])]
    got = follower.append({"batches": [[shard, 5, 5, 3, 4, []]], "replies": [[b"cA", reply]]})
    assert got["behind"] == {shard: [5, 2]} and "delivered" not in got, "not held: nothing sent"
    assert len(slot.out.forwarded) == 1
    for bad in ([[b"\x00ab", reply]], [["cA", reply]], [[b"cA"]], "x"):
        with pytest.raises(BadRequest, match="append replies"):
            follower.append({"batches": [[shard, 5, 5, 2, 3, []]], "replies": bad})
    assert replica.read_position(slot.store.db, shard) == (5, 2), "a bad append applies nothing"


def test_a_copy_fenced_above_the_logs_epoch_but_not_the_leaders_gets_a_snapshot(slot: Slot) -> None:
    """A failover that promoted no one fenced the follower at epoch 4 while this leader's
    log holds batches of epoch 3; the shard was taken back here at 5. The copy refuses
    those batches (3 < 4) though no newer leader exists: it gets a full copy at epoch 5
    and the held write is released. (The catch-up sent the same refused batches again
    and again, and every write of the shard failed short of its quorum: the thirteenth
    30-minute chaos run, after a router restart raced a failover.)"""
    repl, link, shard, w = one_at_quorum_one_sent(slot)   # [3, 2]: sent, not yet held
    repl.grants.shards[shard] = 5                        # taken back above the fence
    repl.configure(parse_grant({"peers": [["f0", "ipc://f0", None]],
                                "replicas": {s: [[0, True]] for s in range(SHARDS)},
                                "ack": "majority", "ack_timeout": 5.0}, SHARDS),
                   repl.grants.shards)
    assert repl.shards[shard].epoch == 5 and repl.shards[shard].entries
    link.positions[shard] = [3, 1]
    link.answer(lambda bs: {"held": {}, "behind": {}, "refused": {shard: 4}})
    run_until(slot.loop, lambda: link.appends, 5.0)     # the catch-up's append, from the log
    (batch,) = link.answer(lambda bs: {"held": {}, "behind": {}, "refused": {shard: 4}})
    assert batch[:5] == [shard, 3, 3, 1, 2], "the log's batch, of epoch 3"
    run_until(slot.loop, lambda: link.positions[shard] == [3, 2], 5.0)     # a snapshot
    run_until(slot.loop, lambda: any(r[1] == w for _to, r in slot.out.replies), 5.0)
    assert slot.out.reply_to(w)[2] == 2 and shard not in repl.lost
