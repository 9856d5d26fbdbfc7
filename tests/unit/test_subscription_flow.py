"""Subscriptions in-process (issue 18): the credit bookkeeping both ends share, the
sub-protocol's checks, the gateway's subscriber endpoint writing through the sockets'
one writer, and the client's link, each against real ZeroMQ sockets (inproc) on the
other side, speaking the protocol by hand. No node: the actor's side is the scripted
transport of ``test_gateway_batches``."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import zmq
from test_gateway_batches import ScriptedTransport, make, settle

from actorsys.errors import BadRequest, MessageTooLarge, SubscriptionClosed
from actorsys.client.sublink import Subscriber, Where
from actorsys.client.subscriptions import Subscription, options
from actorsys.protocol.ws import frame_of
from actorsys.gateway.peers import Peer, WebSocketPeer
from actorsys.gateway.rooms import CONNECT, DISCONNECT, SocketState
from actorsys.gateway import sockets
from actorsys.gateway.sockets import MAX_UNSENT_FRAMES
from actorsys.gateway.subscribers import SubscriberPeer, Subscribers
from actorsys.protocol import subs, wire
from actorsys.protocol.subs import Window, check_reply, check_request

pytestmark = pytest.mark.timeout(30)

COUNTERS = ("bad_frames", "subscribers_opened", "subscribers_closed", "subscribers_refused",
            "subscribers_lost", "slow_closed")


# -- the window ---------------------------------------------------------------------------------
def test_a_window_lets_frames_go_up_to_its_count_and_bytes_and_one_whatever_its_size():
    w = Window(3, 100)
    assert w.fits(10_000), "with nothing unacknowledged one frame goes, however large"
    assert w.add(10_000) == 1 and not w.fits(1), "then nothing until it is acknowledged"
    assert w.ack(1) == 1 and (w.unacked, w.unacked_bytes) == (0, 0)
    for seq, size in ((2, 40), (3, 40)):
        assert w.fits(size) and w.add(size) == seq
    assert not w.fits(21) and w.fits(20), "the bytes bound"
    w.add(20)
    assert not w.fits(0), "the count bound (3 frames)"
    assert w.ack(3) == 2 and w.unacked == 1 and w.unacked_bytes == 20
    with pytest.raises(ValueError, match="outside 3..4"):
        w.ack(5)                                   # never sent
    with pytest.raises(ValueError, match="outside 3..4"):
        w.ack(2)                                   # behind what was acknowledged
    assert w.ack(3) == 0, "the same acknowledgement again releases nothing"
    with pytest.raises(ValueError):
        Window(0)


def test_the_protocol_checks_name_what_is_wrong():
    assert check_request([subs.SUB, 1, "Feed", "k", "red", 8, {"a": "b"}]) == \
        (subs.SUB, 1, ["Feed", "k", "red", 8, {"a": "b"}])
    assert check_request([subs.PING]) == (subs.PING, 0, [])
    assert check_request([subs.MSG, 2, b"x"]) == (subs.MSG, 2, [b"x"])
    for bad, says in (({"x": 1}, "msgpack array"), ([subs.SUB, 0, "F", "k", None, 8, {}], "positive"),
                      ([subs.SUB, 1, "F", "k", None, 0, {}], "window"),
                      ([subs.SUB, 1, "F", "k", None, subs.MAX_WINDOW + 1, {}], "window"),
                      ([subs.SUB, 1, "F", "k", "", 8, {}], "tag"),
                      ([subs.SUB, 1, "F", "k", None, 8, {"n": 1}], "query"),
                      ([subs.SUB, 1, "F", "k", None, 8, {"q": "x" * 9000}], "larger than"),
                      ([subs.ACK, 1, -1], "non-negative"), ([subs.MSG, 1, 3], "string"),
                      ([subs.BYE, 1, 2], "bye takes"), ([subs.PING, 1], "no arguments"),
                      (["nope", 1], "unknown subscriber op")):
        with pytest.raises(BadRequest, match=says):
            check_request(bad)
    assert check_reply([subs.FRAME, 1, 2, "x"]) == (subs.FRAME, 1, [2, "x"])
    for bad in ([subs.FRAME, 1, "2", "x"], [subs.CLOSED, 1, 1000], [subs.OPEN, 1, []], ["?", 1]):
        with pytest.raises(BadRequest):
            check_reply(bad)


def test_subscribe_options_and_frames_are_checked_before_sending():
    assert options("t", None, 5) == {} and options(None, {"a": "b"}, 1) == {"a": "b"}
    with pytest.raises(ValueError, match="tag"):
        options("x" * 300, None, 5)
    with pytest.raises(TypeError, match="query"):
        options(None, {"a": 1}, 5)
    with pytest.raises(ValueError, match="window"):
        options(None, None, True)
    assert frame_of({"a": [1]}, "x") == '{"a":[1]}' and frame_of(b"\x00", "x") == b"\x00"
    with pytest.raises(TypeError, match="JSON-able"):
        frame_of(object(), "x")


# -- the gateway's side --------------------------------------------------------------------------
class Client:
    """A raw DEALER speaking the subscriber protocol (what the client library does)."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def request(self, *msg: Any) -> None:
        self.sock.send(wire.pack(list(msg)))

    def drain(self) -> list[list[Any]]:
        """What has arrived (pings left out)."""
        out = []
        while self.sock.poll(0):
            m = wire.unpack(self.sock.recv())
            if m != [subs.PING]:
                out.append(m)
        return out


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0.005)


def gateway(ctx: zmq.Context[Any], endpoint: str, heartbeat: float = 60.0):
    """A gateway's hub and subscriber endpoint; every batch its actor is asked commits."""
    loop = asyncio.get_running_loop()
    transport = ScriptedTransport(*({"ok": True, "effects": []} for _ in range(20)))
    hub, effects, delivery, counters = make(loop, transport)
    for c in COUNTERS:
        counters.setdefault(c, 0)
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.bind(endpoint)
    endpoint_side = Subscribers(loop, hub, sock, {"Room"}, heartbeat, 65536, counters)
    return hub, transport, counters, endpoint_side


def test_a_subscriber_gets_a_window_ahead_then_one_frame_per_acknowledgement():
    async def scenario():
        ctx: zmq.Context[Any] = zmq.Context()
        hub, transport, counters, side = gateway(ctx, "inproc://gw1", 60.0)
        c = Client(ctx, "inproc://gw1")
        c.request(subs.SUB, 7, "Room", "r", "red", 2, {"who": "py"})
        await turns()
        opened = c.drain()
        room = hub.rooms[("Room", "r")]
        sock = next(iter(room.sockets.values()))
        peer = sock.peer
        assert isinstance(peer, SubscriberPeer) and peer.kind == "python"
        for i in range(5):
            hub.push(sock, f"f{i}")
        await turns()
        first = c.drain()
        left = (len(sock.unsent), peer.window.unacked)
        c.request(subs.ACK, 7, 1)
        await turns()
        after_one = c.drain()
        c.request(subs.ACK, 7, 3)
        await turns()
        after_two = c.drain()
        c.request(subs.BYE, 7)
        await turns()
        await settle(room)
        events = [ev for args in transport.asks for ev in args[3]]
        side.close()
        c.sock.close(0)
        ctx.term()
        return opened, first, left, after_one, after_two, sock, counters, events

    opened, first, left, after_one, after_two, sock, counters, events = asyncio.run(scenario())
    assert opened[0][:2] == [subs.OPEN, 7] and opened[0][2]["window"] == 2, opened
    assert opened[1] == [subs.OK, 7], "ok once the connect's batch committed"
    assert sock.info["kind"] == "python" and sock.tags == {"red"} and sock.info["query"] == {"who": "py"}
    assert first == [[subs.FRAME, 7, 1, "f0"], [subs.FRAME, 7, 2, "f1"]], "a window (2) ahead"
    assert left == (2, 2), "the rest wait in the socket's queue (one more is with its writer)"
    assert after_one == [[subs.FRAME, 7, 3, "f2"]], "each acknowledged frame lets one more go"
    assert after_two == [[subs.FRAME, 7, 4, "f3"], [subs.FRAME, 7, 5, "f4"]]
    assert sock.state is SocketState.CLOSED and counters["subscribers_closed"] == 1
    assert [e[0] for e in events] == [CONNECT, DISCONNECT] and events[1] == [DISCONNECT, sock.id], \
        "its actor got on_connect, and on_disconnect after the bye"


def test_a_subscriber_that_does_not_keep_up_is_closed_and_its_queue_freed():
    async def scenario():
        ctx: zmq.Context[Any] = zmq.Context()
        hub, _transport, counters, side = gateway(ctx, "inproc://gw2", 60.0)
        c = Client(ctx, "inproc://gw2")
        c.request(subs.SUB, 1, "Room", "r", None, 4, {})
        await turns()
        c.drain()
        sock = next(iter(hub.rooms[("Room", "r")].sockets.values()))
        for _ in range(5):
            hub.push(sock, "x")
        await turns()                                # a window (4) went; its writer holds the 5th
        for _ in range(MAX_UNSENT_FRAMES + 1):       # no await: nothing is taken meanwhile
            hub.push(sock, "x")
        closed_at_once = (sock.state, len(sock.unsent), sock.unsent_bytes, counters["slow_closed"])
        await turns()
        got = c.drain()
        c.request(subs.ACK, 1, 4)                    # the consumer reads again
        await turns()
        got += c.drain()
        side.close()
        c.sock.close(0)
        ctx.term()
        return closed_at_once, got

    closed_at_once, got = asyncio.run(scenario())
    assert closed_at_once == (SocketState.CLOSED, 0, 0, 1), closed_at_once
    frames = [m for m in got if m[0] == subs.FRAME]
    assert [m[2] for m in frames] == [1, 2, 3, 4, 5], "its window, then the frame its writer held"
    assert got[-1] == [subs.CLOSED, 1, 1013, "not reading fast enough"], got[-1]


def test_a_subscriber_that_takes_nothing_with_its_window_full_is_cut_off(monkeypatch):
    """The browsers' rule: a frame that waits for the client longer than SEND_TIMEOUT
    (here 0.1 s) closes the socket (1013), whatever waits behind it."""
    monkeypatch.setattr(sockets, "SEND_TIMEOUT", 0.1)

    async def scenario():
        ctx: zmq.Context[Any] = zmq.Context()
        hub, _transport, counters, side = gateway(ctx, "inproc://gw4", 60.0)
        c = Client(ctx, "inproc://gw4")
        c.request(subs.SUB, 1, "Room", "r", None, 1, {})
        await turns()
        c.drain()
        sock = next(iter(hub.rooms[("Room", "r")].sockets.values()))
        hub.push(sock, "one")
        hub.push(sock, "two")                       # waits for credit that never comes
        await asyncio.sleep(0.3)
        got = c.drain()
        side.close()
        c.sock.close(0)
        ctx.term()
        return got, sock, counters

    got, sock, counters = asyncio.run(scenario())
    assert got == [[subs.FRAME, 1, 1, "one"], [subs.CLOSED, 1, 1013, "not reading"]], got
    assert sock.state is SocketState.CLOSED and counters["subscribers_closed"] == 1


def test_a_silent_subscriber_is_lost_after_three_heartbeats_and_bad_input_is_answered():
    async def scenario():
        ctx: zmq.Context[Any] = zmq.Context()
        hub, _transport, counters, side = gateway(ctx, "inproc://gw3", 0.05)
        c = Client(ctx, "inproc://gw3")
        c.request(subs.SUB, 1, "Room", "r", None, 4, {})
        c.request(subs.SUB, 3, "Room", "r3", None, 4, {})
        c.request(subs.SUB, 3, "Room", "r3", None, 4, {})         # the id of an open one again
        c.request(subs.SUB, 2, "Nope", "r", None, 4, {})
        c.sock.send(b"\x93")
        await turns(4)
        answers = c.drain()
        sock = next(iter(hub.rooms[("Room", "r")].sockets.values()))
        await asyncio.sleep(0.35)                    # silent: > 3 heartbeats of 0.05 s
        side.close()
        c.sock.close(0)
        ctx.term()
        return answers, sock, counters

    answers, sock, counters = asyncio.run(scenario())
    errors = {m[1]: m[2] for m in answers if m[0] == subs.ERR}
    closes = {m[1]: m[2:] for m in answers if m[0] == subs.CLOSED}
    assert set(errors) == {0, 2} and errors[2]["code"] == "unknown_type", errors
    assert closes[3][0] == 1002 and "in use" in closes[3][1], \
        "a sub reusing an open subscription's id closes that one (an err never names an open one)"
    assert errors[0]["code"] == "bad_request", "an unreadable message: an error for id 0"
    assert counters["bad_frames"] == 2
    assert sock.state is SocketState.CLOSED and counters["subscribers_lost"] == 1


def test_both_peers_are_what_the_writer_needs():
    """The writer's Protocol is the same for a WebSocket and a subscription: each has
    every member (a structural check; mypy checks the signatures in the gateway)."""
    members = [n for n in vars(Peer) if not n.startswith("_")] + list(Peer.__annotations__)
    for cls in (WebSocketPeer, SubscriberPeer):
        missing = [m for m in members if not hasattr(cls, m)]
        assert not missing, f"{cls.__name__} lacks {missing}"
    assert {WebSocketPeer.kind, SubscriberPeer.kind} == {"websocket", "python"}


# -- the client's side ---------------------------------------------------------------------------
class Gateway:
    """A raw ROUTER playing the gateway to one client."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.peer = b""

    async def next(self) -> list[Any]:
        for _ in range(200):
            if self.sock.poll(0):
                self.peer, payload = self.sock.recv_multipart()
                m = wire.unpack(payload)
                if m != [subs.PING]:
                    return m
            else:
                await asyncio.sleep(0.005)
        raise AssertionError("the client sent nothing")

    def send(self, *msg: Any) -> None:
        self.sock.send_multipart([self.peer, wire.pack(list(msg))])

    async def open(self, sid: int, heartbeat: float = 60.0, window: int = 4) -> None:
        self.send(subs.OPEN, sid, {"id": "g.1", "heartbeat": heartbeat, "window": window,
                                   "window_bytes": 1000, "max_message_bytes": 100})
        self.send(subs.OK, sid)


def subscription(ctx: zmq.Context[Any], endpoint: str, **kw: Any) -> Subscription[Any]:
    where = Where(endpoint, None, "router")
    return Subscription(Subscriber(ctx), lambda: where, "Room", "r", tag=None, query={},
                        decode=kw.get("decode"), window=4, timeout=5.0)


def test_the_client_acknowledges_what_its_consumer_takes_once_per_loop_turn():
    async def scenario():
        ctx: zmq.Context[Any] = zmq.Context()
        g = Gateway(ctx, "inproc://c1")
        sub = subscription(ctx, "inproc://c1", decode=json.loads)
        opening = asyncio.create_task(sub.open())
        req = await g.next()
        await g.open(req[1])
        await opening
        for seq in (1, 2, 3):
            g.send(subs.FRAME, req[1], seq, json.dumps([seq]))
        got = [await sub.receive(2) for _ in range(3)]     # taken in one go
        ack = await g.next()
        with pytest.raises(MessageTooLarge):
            sub.send("x" * 101)
        sub.send({"hi": 1})
        msg = await g.next()
        g.send(subs.CLOSED, req[1], 1000, "")
        rest = [e async for e in sub]
        with pytest.raises(SubscriptionClosed) as ended:
            await sub.receive(1)
        await sub.close()
        g.sock.close(0)
        sub._subscriber.close()
        ctx.term()
        return req, got, ack, msg, rest, ended.value

    req, got, ack, msg, rest, ended = asyncio.run(scenario())
    assert req == [subs.SUB, 1, "Room", "r", None, 4, {}]
    assert got == [[1], [2], [3]] and ack == [subs.ACK, 1, 3], \
        "three frames taken in one turn of the loop: one acknowledgement, of the third"
    assert msg == [subs.MSG, 1, '{"hi":1}'], "send() as JSON text; too large refused at the call"
    assert rest == [] and ended.close_code == 1000, "a close with 1000 ends the iteration quietly"


@pytest.mark.parametrize("wrong", ["gap", "past the window", "silent"])
def test_the_client_ends_a_subscription_that_cannot_be_trusted(wrong):
    async def scenario():
        ctx: zmq.Context[Any] = zmq.Context()
        g = Gateway(ctx, "inproc://c2")
        sub = subscription(ctx, "inproc://c2")
        opening = asyncio.create_task(sub.open())
        req = await g.next()
        await g.open(req[1], heartbeat=0.05 if wrong == "silent" else 60.0)
        await opening
        if wrong == "gap":
            g.send(subs.FRAME, 1, 1, "a")
            g.send(subs.FRAME, 1, 3, "c")
        elif wrong == "past the window":
            for seq in range(1, 6):                  # window 4, nothing acknowledged
                g.send(subs.FRAME, 1, seq, "x")
        got = []
        with pytest.raises(SubscriptionClosed) as ended:
            while True:
                got.append(await sub.receive(2))
        g.sock.close(0)
        sub._subscriber.close()
        ctx.term()
        return got, ended.value

    got, ended = asyncio.run(scenario())
    if wrong == "silent":
        assert ended.close_code == 1006 and "sent nothing for" in str(ended), str(ended)
    else:
        assert ended.close_code == 1002 and got in (["a"], ["x"] * 4), (got, str(ended))
        assert ("frames were lost" if wrong == "gap" else "past the window") in str(ended)
