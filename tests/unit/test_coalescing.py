"""Coalescing (issue 19): what one turn of a client's event loop sends to a worker slot
leaves as one BATCH frame, and a worker's replies to one peer likewise; over real
ZeroMQ sockets (the client against the fake node's ipc sockets; the worker's replies
from a real ROUTER over inproc). See actorsys/client/outbox.py and
actorsys/runtime/replies.py."""
from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
import zmq
from client_fakes import FakeNode, with_transport

from actorsys.client.outbox import ALONE_BYTES, BATCH_MESSAGES
from actorsys.client.transport import AsyncTransport
from actorsys.errors import BadRequest
from actorsys.protocol import wire
from actorsys.runtime.replies import ReplyBatches

WAIT = 10.0


def keys_on(t: AsyncTransport, slot: int, n: int) -> list[str]:
    assert t.map is not None
    return [k for k in (f"k{i}" for i in range(100 * n)) if t.map.slot_of("T", k) == slot][:n]


# -- the wire ------------------------------------------------------------------------------

def test_a_batch_carries_whole_messages_and_each_decodes_as_if_alone():
    a = wire.pack([wire.ASK, 1, "T", "k", "add", [1], {}])
    b = wire.pack([wire.TELL, 0, "T", "k", "add", [2], {}])
    envelope, op, rid, rest = wire.decode_frames([b"c" + b"x" * 8, wire.batch([a, b])], 1 << 20)
    assert (op, rid) == (wire.BATCH, 0) and rest == [[a, b]]
    assert wire.decode_payload(envelope, rest[0][0]) == (wire.ASK, 1, ["T", "k", "add", [1], {}])
    assert wire.decode_payload(envelope, rest[0][1])[:2] == (wire.TELL, 0)


@pytest.mark.parametrize("items, words", [
    ("not a list", "batch takes"),
    ([b"one"], "2 to 1024"),
    ([b"x"] * (wire.MAX_BATCH + 1), "2 to 1024"),
    ([b"x", "a string"], "each as bytes"),
])
def test_a_malformed_batch_is_refused_with_what_it_must_be(items, words):
    raw = msgpack.packb([wire.BATCH, 0, items], use_bin_type=True)
    with pytest.raises(wire.Rejected) as e:
        wire.decode_frames([b"peer", raw], 1 << 22)
    assert isinstance(e.value.error, BadRequest) and words in str(e.value.error)


# -- the client: one frame per slot per turn of the loop ------------------------------------

def test_what_one_turn_sends_to_a_slot_is_one_frame_in_order(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def body(t: AsyncTransport) -> list[Any]:
            k0, k1 = keys_on(t, 0, 1)[0], keys_on(t, 1, 1)[0]
            futs = []
            for i in range(50):          # one turn: asks and tells to two slots, interleaved
                t.tell("T", k0, "note", [i])
                futs.append(t.ask("T", k0, "add", [i]))
                futs.append(t.ask("T", k1, "add", [i]))
            return await asyncio.gather(*futs)
        results = with_transport(fake, body)
    assert [r[2] for r in results] == [[i] for i in range(50) for _ in (0, 1)]
    assert sorted(fake.batches) == [(0, 100), (1, 50)], "one frame per slot"
    slot0 = fake.requests(0)
    assert [(r[0], r[5]) for r in slot0] == [(op, [i]) for i in range(50)
                                             for op in (wire.TELL, wire.ASK)], "in the order sent"


def test_a_lone_message_is_sent_as_itself(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def body(t: AsyncTransport) -> None:
            k = keys_on(t, 0, 1)[0]
            for i in range(3):            # one per turn of the loop
                await t.ask("T", k, "add", [i])
        with_transport(fake, body)
        assert fake.batches == [] and len(fake.requests(0, wire.ASK)) == 3


def test_a_batch_stops_at_batch_messages_and_at_the_frame_limit(tmp_path):
    n = 2 * BATCH_MESSAGES + 10
    with FakeNode(str(tmp_path)) as fake:
        async def body(t: AsyncTransport) -> None:
            k = keys_on(t, 0, 1)[0]
            futs = [t.ask("T", k, "add", [i]) for i in range(n)]
            await asyncio.gather(*futs)
            blob = "b" * 2000        # 40 of ~2 KB: at most 64 KiB a frame
            futs = [t.ask("T", k, "add", [blob]) for _ in range(40)]
            await asyncio.gather(*futs)
        fake.max_message_bytes = 64 * 1024       # (the node's limit comes with its map)
        with_transport(fake, body)
    sizes = [n for _, n in fake.batches]
    assert BATCH_MESSAGES < wire.MAX_BATCH, "the client's batches stay below the wire's limit"
    assert sizes[:3] == [BATCH_MESSAGES, BATCH_MESSAGES, 10]
    assert sum(sizes[3:]) == 40 and len(sizes[3:]) == 2 and max(sizes[3:]) <= 32
    assert [r[5][0] for r in fake.requests(0, wire.ASK)][:n] == list(range(n)), \
        "order holds across the frames"


def test_the_first_batch_of_a_long_turn_leaves_before_the_turn_ends(tmp_path):
    """Overlap (outbox.py): a full batch is sent at once, while the turn queuing it goes
    on; the node has it before the turn's last message is even queued."""
    with FakeNode(str(tmp_path)) as fake:
        async def body(t: AsyncTransport) -> None:
            k = keys_on(t, 0, 1)[0]
            futs = [t.ask("T", k, "add", [i]) for i in range(BATCH_MESSAGES + 1)]
            fake.wait_for(lambda: fake.batches, "the first batch, mid-turn")   # (blocks the loop)
            futs.append(t.ask("T", k, "add", [-1]))
            await asyncio.gather(*futs)
        with_transport(fake, body)
    assert [n for _, n in fake.batches][:1] == [BATCH_MESSAGES]


def test_a_large_message_goes_at_once_and_alone_after_what_was_queued(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def body(t: AsyncTransport) -> None:
            k = keys_on(t, 0, 1)[0]
            futs = [t.ask("T", k, "add", [1]), t.ask("T", k, "add", [2]),
                    t.ask("T", k, "add", ["x" * ALONE_BYTES]), t.ask("T", k, "add", [3])]
            await asyncio.gather(*futs)
        with_transport(fake, body)
    assert fake.batches == [(0, 2)]
    assert [r[5][0] if r[5][0] != "x" * ALONE_BYTES else "big"
            for r in fake.requests(0, wire.ASK)] == [1, 2, "big", 3]


def test_a_tell_just_before_close_still_leaves(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def body(t: AsyncTransport) -> None:
            k = keys_on(t, 1, 1)[0]
            for i in range(5):
                t.tell("T", k, "note", [i])
            t.close(linger_ms=2000)      # in the same turn as the tells, as the clients close
        with_transport(fake, body)
        got = fake.wait_for(lambda: len(fake.requests(1, wire.TELL)) == 5 and fake.requests(1, wire.TELL),
                            "the tells")
    assert [r[5] for r in got] == [[i] for i in range(5)]


def test_a_blocking_lane_sends_at_the_call(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def body(t: AsyncTransport) -> None:
            k = keys_on(t, 0, 1)[0]
            t.tell("T", k, "note", [1])
            # no turn of the loop: it left already
            fake.wait_for(lambda: fake.requests(0, wire.TELL), "the tell, sent at the call")
            t.tell("T", k, "note", [2])
            await t.ask("T", k, "add", [3])
        with_transport(fake, body, coalesce=False)
        assert fake.batches == []


def test_a_batch_whose_connection_closed_fails_its_asks_and_counts_its_tells(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def body(t: AsyncTransport) -> tuple[Any, int]:
            k = keys_on(t, 0, 1)[0]
            t.tell("T", k, "note", [1])
            fut = t.ask("T", k, "add", [1])
            t.conns.slots[0].close()          # under the queued batch (as a lost node's)
            await asyncio.sleep(0)
            assert t.outbox is not None
            return await asyncio.gather(fut, return_exceptions=True), t.outbox.dropped_tells
        (outcome,), dropped = with_transport(fake, body)
    assert "send to worker slot 0 failed" in str(outcome) and type(outcome).__name__ == "Overloaded"
    assert dropped == 1


def test_a_drop_seen_while_asks_are_queued_fails_only_what_was_sent(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def body(t: AsyncTransport) -> tuple[Any, list[Any]]:
            k = keys_on(t, 0, 1)[0]
            first = t.ask("T", k, "add", [0])
            await asyncio.sleep(0)               # sent
            fake.wait_for(lambda: fake.requests(0, wire.ASK), "the first ask")
            fake.drop(0)
            fake.restore(0)
            later = [t.ask("T", k, "add", [i]) for i in range(1, 1100)]   # queued, and a full batch
            done = await asyncio.gather(first, *later, return_exceptions=True)
            return done[0], done[1:]
        first, later = with_transport(fake, body)
    assert type(first).__name__ == "WorkerLost", first
    failed = [r for r in later if isinstance(r, Exception)]
    assert not failed, failed[:2]


def test_a_node_whose_map_does_not_say_batches_gets_every_message_alone(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        fake.map.batches = False
        async def body(t: AsyncTransport) -> None:
            k = keys_on(t, 0, 1)[0]
            await asyncio.gather(*(t.ask("T", k, "add", [i]) for i in range(20)))
        with_transport(fake, body)
        assert fake.batches == [] and len(fake.requests(0, wire.ASK)) == 20


# -- the worker: one frame of replies per peer per flush -------------------------------------

@pytest.fixture
def router_pair():
    ctx = zmq.Context()
    r = ctx.socket(zmq.ROUTER)
    r.setsockopt(zmq.ROUTER_MANDATORY, 1)
    r.bind("inproc://replies")
    peers = {}
    for name in ("batching", "single"):
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.ROUTING_ID, b"c" + name.encode())   # (the prefix means nothing)
        d.connect("inproc://replies")
        d.send(b"hello")
        peers[name] = d
    ids = {}
    for _ in range(2):
        ident, _hello = r.recv_multipart()
        ids[ident[1:].decode()] = ident
    yield r, peers, ids
    for s in (r, *peers.values()):
        s.close(0)
    ctx.term()


def received(sock: zmq.Socket) -> list[Any]:
    out = []
    while sock.poll(200):
        out.append(wire.unpack(sock.recv()))
    return out


def test_replies_to_a_peer_that_sent_a_batch_leave_as_one_frame_others_alone(router_pair):
    r, peers, ids = router_pair
    soon: list[Any] = []
    kicks: list[int] = []
    out = ReplyBatches(r, 1 << 20, soon.append, {"dropped_replies": 0}, lambda: kicks.append(1))
    out.batch_peer((ids["batching"],))
    for i in range(5):
        out.send((ids["batching"],), wire.ok(i, i * 10))
        out.send((ids["single"],), wire.ok(i, i * 10))
    assert len(soon) == 1, "one flush scheduled"
    soon[0]()
    assert kicks == [1], "a flush of its own re-checks the worker's socket"
    ours, single = received(peers["batching"]), received(peers["single"])
    assert len(ours) == 1 and ours[0][0] == wire.BATCH
    assert [wire.unpack(p) for p in ours[0][2]] == [[wire.OK, i, i * 10] for i in range(5)]
    assert single == [[wire.OK, i, i * 10] for i in range(5)], "sent at once, alone"


def test_reply_batches_respect_the_frame_limit_and_count_what_cannot_leave(router_pair):
    r, peers, ids = router_pair
    counters = {"dropped_replies": 0}
    out = ReplyBatches(r, 10_000, lambda f: None, counters, lambda: None)
    out.batch_peer((ids["batching"],))
    out.batch_peer((b"c-gone-peer",))
    for i in range(10):
        out.send((ids["batching"],), wire.ok(i, "y" * 2000))
    out.send((b"c-gone-peer",), wire.ok(1, 1))
    out.send((b"c-gone-peer",), wire.ok(2, 2))
    assert out.flush()
    frames = received(peers["batching"])
    assert [len(f[2]) if f[0] == wire.BATCH else 1 for f in frames] == [4, 4, 2]
    assert counters["dropped_replies"] == 2, "an unknown peer's batch counts each reply"


def test_the_batch_peers_remembered_are_bounded():
    from actorsys.runtime.replies import MAX_BATCH_PEERS
    out = ReplyBatches(None, 1 << 20, lambda f: None, {}, lambda: None)   # type: ignore[arg-type]
    for i in range(MAX_BATCH_PEERS + 10):
        out.batch_peer((b"p%d" % i,))
    out.batch_peer((b"p5",))           # seen again: the most recent
    assert len(out.peers) == MAX_BATCH_PEERS
    assert b"p0" not in out.peers and b"p5" in out.peers and b"p%d" % (MAX_BATCH_PEERS + 9) in out.peers
