"""Subscriptions at their edges (the review of issue 18's subscriptions): a close behind
dropped frames, sizes in bytes, errors that never name an open subscription, several
readers, interrupted opens, bad keys, many subscriptions on one connection, a connection
that takes nothing, the heartbeat's failures, routing ids, and the blocking client's
thread. Real ZeroMQ (inproc) on both sides: the gateway's subscriber endpoint (its actor
the scripted transport of ``test_gateway_batches``), the client's link, or a raw socket
speaking the protocol by hand where a real peer would never misbehave."""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any, Callable

import pytest
import zmq
from aiohttp.test_utils import make_mocked_request
from test_gateway_batches import GATEWAY, ScriptedTransport, make, settle
from test_subscription_flow import COUNTERS, Client, Gateway, turns

from actorsys.client.sublink import Subscriber, Where
from actorsys.client.subscriptions import Subscription, options, target_of
from actorsys.client.subthread import BlockingSubscription, SubscriptionThread
from actorsys.errors import BadRequest, MessageTooLarge, SubscriptionClosed
from actorsys.gateway import sockets, subscribers
from actorsys.gateway.admission import Admission
from actorsys.gateway.auth import Refused
from actorsys.gateway.rooms import CONNECT, DISCONNECT, MESSAGE, SocketState
from actorsys.gateway.subscribers import ENVELOPE, STALLED, Subscribers
from actorsys.protocol import subs, wire

pytestmark = pytest.mark.timeout(30)

MAX_FRAME = 65536


@pytest.fixture
def ctx() -> Any:
    """A ZeroMQ context whose sockets are all closed at the end, passed or failed (a
    socket left open would hang the context's end)."""
    c: zmq.Context[Any] = zmq.Context()
    yield c
    c.destroy(linger=0)


class HeldTransport(ScriptedTransport):
    """Commits every batch, once ``go`` is set."""

    def __init__(self) -> None:
        super().__init__(*({"ok": True, "effects": []} for _ in range(40)))
        self.go = asyncio.Event()

    async def ask(self, *args: Any) -> Any:
        await self.go.wait()
        return await super().ask(*args)


def endpoint(ctx: zmq.Context[Any], address: str, heartbeat: float = 60.0,
             transport: ScriptedTransport | None = None):
    """A gateway's hub and subscriber endpoint, its ROUTER as the gateway makes it."""
    loop = asyncio.get_running_loop()
    transport = transport or ScriptedTransport(*({"ok": True, "effects": []} for _ in range(40)))
    hub, _effects, _delivery, counters = make(loop, transport)
    for c in (*COUNTERS, "auto_responses"):
        counters.setdefault(c, 0)
    sock = subscribers.bind(ctx, address, MAX_FRAME)
    side = Subscribers(loop, hub, sock, {"Room"}, heartbeat, MAX_FRAME, counters)
    return hub, transport, counters, side


def client_sub(ctx: zmq.Context[Any], address: str, window: int = 4, key: str = "r") -> Subscription[Any]:
    where = Where(address, None, "router")
    return Subscription(Subscriber(ctx), lambda: where, "Room", key, tag=None, query={},
                        decode=None, window=window, timeout=5.0)


def only_socket(hub: Any) -> Any:
    (sock,) = hub.sockets.values()
    return sock


def events_of(transport: ScriptedTransport) -> list[Any]:
    return [ev for args in transport.asks for ev in args[3]]


async def opened_on_fake(ctx: zmq.Context[Any], address: str) -> tuple[Gateway, Subscription[Any], int]:
    """A subscription opened by a raw gateway (window 4 frames, 1000 bytes; messages of at
    most 100 bytes)."""
    g = Gateway(ctx, address)
    sub = client_sub(ctx, address)
    opening = asyncio.create_task(sub.open())
    req = await g.next()
    await g.open(req[1])
    await opening
    return g, sub, req[1]


# -- 1: a close behind frames that were dropped ---------------------------------------------------
def test_a_subscriber_cut_off_after_its_actor_closed_it_is_told_1013_not_the_actors_1000(ctx, monkeypatch):
    """The actor closes (1000) while the writer waits for credit the consumer never gives:
    the writer gives up after SEND_TIMEOUT and drops the frame it held, so the client must
    hear 1013, not the clean end the actor asked for."""
    monkeypatch.setattr(sockets, "SEND_TIMEOUT", 0.1)

    async def scenario():
        hub, _t, _counters, side = endpoint(ctx, "inproc://e1")
        sub = client_sub(ctx, "inproc://e1", window=1)
        await sub.open()
        sock = only_socket(hub)
        hub.push(sock, "one")
        hub.push(sock, "two")                 # window 1: waits for credit that never comes
        await turns(4)
        hub.close(sock, 1000, "")             # the actor's conn.close()
        await asyncio.sleep(0.3)
        got = await sub.receive(1)
        with pytest.raises(SubscriptionClosed) as ended:
            await sub.receive(1)
        side.close()
        sub._subscriber.close()
        return got, ended.value

    got, ended = asyncio.run(scenario())
    assert got == "one", "the frame that had reached the client"
    assert (ended.close_code, ended.reason) == (1013, "not reading"), \
        f"frames were dropped: 1013, not the actor's clean close ({ended.close_code} {ended.reason!r})"


# -- 2: sizes in bytes; an err never names an open subscription ----------------------------------
def test_the_client_counts_bytes_before_sending_and_in_its_window(ctx):
    async def scenario():
        g, sub, sid = await opened_on_fake(ctx, "inproc://e2c")
        with pytest.raises(MessageTooLarge, match="120 bytes"):
            sub.send("é" * 60)                # 60 characters, 120 bytes: over the 100 allowed
        sub.send("é" * 50)                    # 100 bytes: goes
        sent = await g.next()
        g.send(subs.FRAME, sid, 1, "é" * 300)  # 600 bytes of the window's 1000
        g.send(subs.FRAME, sid, 2, "é" * 300)  # 1200: past it (600 characters would fit)
        got = [await sub.receive(2)]
        with pytest.raises(SubscriptionClosed) as ended:
            await sub.receive(2)
        g.sock.close(0)
        sub._subscriber.close()
        return sent, got, ended.value

    sent, got, ended = asyncio.run(scenario())
    assert sent == [subs.MSG, 1, "é" * 50]
    assert got == ["é" * 300] and ended.close_code == 1002 and "past the window" in str(ended)


def test_the_client_takes_an_err_as_a_refusal_only_while_opening(ctx):
    async def scenario():
        g, sub, sid = await opened_on_fake(ctx, "inproc://e2e")
        g.send(subs.ERR, sid, BadRequest("a stray error").to_wire())
        g.send(subs.FRAME, sid, 1, "still open")
        got = await sub.receive(2)
        closed = sub.closed
        g.sock.close(0)
        sub._subscriber.close()
        return got, closed

    got, closed = asyncio.run(scenario())
    assert got == "still open" and not closed, \
        "an err naming an open subscription does not end it (the gateway keeps it open too)"


def test_the_gateway_counts_bytes_and_closes_the_subscription_a_bad_message_names(ctx):
    async def scenario():
        hub, transport, counters, side = endpoint(ctx, "inproc://e2g")
        c = Client(ctx, "inproc://e2g")
        for sid in (1, 2, 3, 4):
            c.request(subs.SUB, sid, "Room", f"k{sid}", None, 8, {})
        await turns()
        c.drain()
        c.request(subs.MSG, 1, "é" * (MAX_FRAME // 2 + 1))        # fewer characters than the
        c.request(subs.MSG, 2, b"x" * (MAX_FRAME + ENVELOPE + 1))  # limit, more bytes; too large to read
        c.request(subs.MSG, 3, 3)                                  # malformed, naming an open one
        c.request(subs.MSG, 9, 3)                                  # malformed, naming none
        await turns()
        answers = c.drain()
        sock4 = next(iter(hub.rooms[("Room", "k4")].sockets.values()))
        big = "é" * 1_100_000                                      # 2.2 MB; two are past 4 MiB
        hub.push(sock4, big)
        hub.push(sock4, big)
        await turns()
        hub.push(sock4, "é" * 10)
        window_sent = [m[2] for m in c.drain() if m[0] == subs.FRAME]
        unsent = hub.unsent()
        await turns()
        messages = [e for e in events_of(transport) if e[0] == MESSAGE]
        side.close()
        c.sock.close(0)
        return answers, counters, window_sent, unsent, messages

    answers, counters, window_sent, unsent, messages = asyncio.run(scenario())
    closes = {m[1]: m[2:] for m in answers if m[0] == subs.CLOSED}
    errors = {m[1]: m[2] for m in answers if m[0] == subs.ERR}
    assert closes[1][0] == 1009 and "65536 bytes" in closes[1][1], closes
    assert closes[2][0] == 1009, "too large to read: the subscription its sid names is closed"
    assert closes[3][0] == 1002 and "protocol error" in closes[3][1], closes
    assert list(errors) == [9], f"an err only for a sid that names no open subscription: {answers}"
    assert counters["bad_frames"] == 3 and messages == [], "nothing reached the actor"
    assert window_sent == [1], "the window's 4 MiB count bytes: the second 2.2 MB frame waits"
    assert unsent == (1, 20), "the socket's queue counts bytes: ten 'é' are 20"


# -- 3: several readers ---------------------------------------------------------------------------
def test_two_readers_of_one_subscription_each_get_an_event(ctx):
    async def scenario():
        g, sub, sid = await opened_on_fake(ctx, "inproc://e3")
        readers = [asyncio.create_task(sub.receive(2)) for _ in range(2)]
        await turns(2)                                # both wait
        g.send(subs.FRAME, sid, 1, "a")
        g.send(subs.FRAME, sid, 2, "b")
        got = await asyncio.gather(*readers, return_exceptions=True)
        g.sock.close(0)
        sub._subscriber.close()
        return got

    got = asyncio.run(scenario())
    assert sorted(got) == ["a", "b"], f"each reader got one, none waits forever: {got}"


def serve_open(router: zmq.Socket[Any], peer: dict[str, bytes]) -> threading.Thread:
    """A raw gateway on a thread: answers the first sub with open and ok (the client's
    routing id into ``peer``)."""
    def play() -> None:
        assert router.poll(5000)
        peer_id, payload = router.recv_multipart()
        sid = wire.unpack(payload)[1]
        for msg in ([subs.OPEN, sid, {"id": "g.1", "heartbeat": 60.0, "window": 4,
                                      "window_bytes": 1000, "max_message_bytes": 100}],
                    [subs.OK, sid]):
            router.send_multipart([peer_id, wire.pack(msg)])
        peer["id"] = peer_id
    t = threading.Thread(target=play)
    t.start()
    return t


class RawGateway:
    """A raw ROUTER that opened one blocking subscription (sid 1)."""

    def __init__(self, router: zmq.Socket[Any], peer: bytes) -> None:
        self.router, self.peer = router, peer

    def frame(self, seq: int, data: str) -> None:
        self.router.send_multipart([self.peer, wire.pack([subs.FRAME, 1, seq, data])])


def blocking_sub(ctx: zmq.Context[Any], address: str) -> tuple[RawGateway, SubscriptionThread,
                                                                 BlockingSubscription[Any]]:
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(address)
    runner = SubscriptionThread(ctx)
    where = Where(address, None, "router")
    sub: Subscription[Any] = Subscription(runner.subscriber, lambda: where, "Room", "r", tag=None,
                                          query={}, decode=None, window=4, timeout=5.0)
    peer: dict[str, bytes] = {}
    player = serve_open(router, peer)
    try:
        runner.call(sub.open())
    except BaseException:
        runner.close()
        raise
    finally:
        player.join(5)
    return RawGateway(router, peer["id"]), runner, BlockingSubscription(runner, sub)


def test_two_threads_read_one_blocking_subscription(ctx):
    g, runner, sub = blocking_sub(ctx, "inproc://e3b")
    got: list[Any] = []

    def read() -> None:
        try:
            got.append(sub.receive(3))
        except Exception as exc:                     # (reported by the assertion below)
            got.append(exc)
    readers = [threading.Thread(target=read) for _ in range(2)]
    try:
        for r in readers:
            r.start()
        time.sleep(0.2)                              # both wait on the subscription's loop
        g.frame(1, "a")
        g.frame(2, "b")
        for r in readers:
            r.join(5)
    finally:
        runner.close()
    assert sorted(got, key=str) == ["a", "b"], got


# -- 4: an interrupted open -----------------------------------------------------------------------
def test_an_open_cancelled_before_its_on_connect_committed_is_unsubscribed(ctx):
    async def scenario():
        transport = HeldTransport()
        hub, _t, counters, side = endpoint(ctx, "inproc://e4", transport=transport)
        sub = client_sub(ctx, "inproc://e4")
        opening = asyncio.create_task(sub.open())
        for _ in range(200):
            await asyncio.sleep(0.005)
            if hub.sockets:
                break
        room = only_socket(hub).room
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        await turns()
        transport.go.set()                          # the actor's on_connect commits only now
        for _ in range(200):
            await settle(room)
            if len(events_of(transport)) >= 2:
                break
            await asyncio.sleep(0.01)
        left = dict(hub.sockets)
        side.close()
        sub._subscriber.close()
        return left, events_of(transport), sub, counters

    left, events, sub, counters = asyncio.run(scenario())
    assert left == {} and counters["subscribers_closed"] == 1, "the gateway dropped it"
    assert [e[0] for e in events] == [CONNECT, DISCONNECT], "its actor got on_disconnect"
    assert sub.closed


# -- 5: one key check ----------------------------------------------------------------------------
def test_a_key_that_is_no_actors_is_refused_by_the_client_the_endpoint_and_the_gateways_urls(ctx):
    for bad, says in (("a\x00b", "NUL"), ("é" * 513, "1024 bytes")):
        with pytest.raises(BadRequest, match=says):
            target_of(("Room", bad))                   # before anything is sent
        admission = Admission(GATEWAY, "127.0.0.1:1", {"Room"}, None, {})
        request = make_mocked_request("GET", "/ws/Room/x", match_info={"type": "Room", "key": bad})
        with pytest.raises(Refused) as refused:
            asyncio.run(admission.admit(request, None))
        assert refused.value.status == 400 and says in str(refused.value)

    async def scenario():
        hub, transport, _counters, side = endpoint(ctx, "inproc://e5")
        c = Client(ctx, "inproc://e5")
        c.request(subs.SUB, 1, "Room", "a\x00b", None, 4, {})
        c.request(subs.SUB, 2, "Room", "é" * 513, None, 4, {})
        await turns()
        answers = c.drain()
        attached = dict(hub.sockets)
        side.close()
        c.sock.close(0)
        return answers, attached, transport.asks

    answers, attached, asks = asyncio.run(scenario())
    assert [(m[0], m[1], m[2]["code"]) for m in answers] == \
        [(subs.ERR, 1, "bad_request"), (subs.ERR, 2, "bad_request")], answers
    assert attached == {} and asks == [], "nothing reached the actor"


# -- 6: the subscriptions of one connection; a connection that takes nothing -----------------------
def test_the_subscriptions_of_one_connection_share_a_bounded_credit(ctx):
    async def scenario():
        _hub, _t, counters, side = endpoint(ctx, "inproc://e6")
        c = Client(ctx, "inproc://e6")
        for sid in range(1, 9):                      # 8 x (1024 + 3) > 8192
            c.request(subs.SUB, sid, "Room", f"k{sid}", None, subs.MAX_WINDOW, {})
        await turns()
        first = c.drain()
        c.request(subs.BYE, 1)
        c.request(subs.SUB, 9, "Room", "k9", None, subs.MAX_WINDOW, {})
        await turns()
        then = c.drain()
        side.close()
        c.sock.close(0)
        return first, then, counters

    first, then, counters = asyncio.run(scenario())
    opened = [m[1] for m in first if m[0] == subs.OPEN]
    refused = [m for m in first if m[0] == subs.ERR]
    assert opened == [1, 2, 3, 4, 5, 6, 7], first
    assert len(refused) == 1 and refused[0][1] == 8 and refused[0][2]["code"] == "overloaded"
    assert "at most 8192 messages in flight" in refused[0][2]["message"], refused
    assert counters["subscribers_refused"] == 1
    assert [m[:2] for m in then if m[0] == subs.OPEN] == [[subs.OPEN, 9]], "room again after a bye"


def test_a_connection_that_takes_nothing_is_told_1013_once_it_takes_again(ctx, monkeypatch):
    """ZeroMQ's queue for the connection fills (here 4 messages, and 1 at the client; the
    endpoint sets it before it binds, or libzmq would keep its default of 1,000): its
    subscription is closed (1013) and the close is sent when the client reads again,
    not lost with a silent end."""
    monkeypatch.setattr(subscribers, "SEND_QUEUE", 4)

    async def scenario():
        hub, _t, counters, side = endpoint(ctx, "inproc://e6s", heartbeat=0.25)
        c = Client.__new__(Client)
        c.sock = ctx.socket(zmq.DEALER)
        c.sock.setsockopt(zmq.LINGER, 0)
        c.sock.setsockopt(zmq.RCVHWM, 1)
        c.sock.connect("inproc://e6s")
        c.request(subs.SUB, 1, "Room", "r", None, 64, {})
        await turns(10)
        sock = only_socket(hub)
        for i in range(10):
            hub.push(sock, f"f{i}")
        await turns(10)
        stalled = (sock.state, counters["subscribers_lost"])
        got: list[Any] = []
        for _ in range(40):                          # the client reads (and pings) again
            c.request(subs.PING)
            await asyncio.sleep(0.05)
            got += c.drain()
            if got and got[-1][0] == subs.CLOSED:
                break
        sessions = dict(side.sessions)
        side.close()
        c.sock.close(0)
        return stalled, got, sessions

    stalled, got, sessions = asyncio.run(scenario())
    assert stalled == (SocketState.CLOSED, 1), stalled
    assert got[:2] == [[subs.OPEN, 1, got[0][2]], [subs.OK, 1]], got
    frames = [m[3] for m in got if m[0] == subs.FRAME]
    assert frames == [f"f{i}" for i in range(len(frames))], "the frames that were queued, in order"
    assert got[-1] == [subs.CLOSED, 1, 1013, STALLED], f"the true cause reaches the client: {got}"
    assert sessions == {}, "told, then forgotten"


# -- 7: one intake of a client's frame -----------------------------------------------------------
def test_a_closed_subscriptions_auto_response_request_is_not_answered(ctx):
    async def scenario():
        hub, _t, counters, side = endpoint(ctx, "inproc://e7")
        hub.auto_responses["Room"] = ("ping", "pong")
        c = Client(ctx, "inproc://e7")
        c.request(subs.SUB, 1, "Room", "r", None, 4, {})
        await turns()
        sock = only_socket(hub)
        peer = sock.peer
        side.on_frames([peer.session.ident, wire.pack([subs.MSG, 1, "ping"])])
        answered_open = counters["auto_responses"]
        hub.close(sock, 1000, "")                   # its close is queued, not yet sent
        side.on_frames([peer.session.ident, wire.pack([subs.MSG, 1, "ping"])])
        await turns()
        got = c.drain()
        side.close()
        c.sock.close(0)
        return answered_open, counters, got

    answered_open, counters, got = asyncio.run(scenario())
    assert answered_open == 1 and counters["auto_responses"] == 1, \
        "answered while open, not once the socket is closed (as a WebSocket's)"
    assert [m for m in got if m[0] == subs.FRAME] == [[subs.FRAME, 1, 1, "pong"]]


def test_the_client_checks_the_options_the_gateway_checks():
    with pytest.raises(ValueError, match="larger than 8192 bytes"):
        options(None, {"q": "x" * 9000}, 5)
    with pytest.raises(BadRequest, match="larger than 8192 bytes"):
        subs.check_request([subs.SUB, 1, "Room", "k", None, 5, {"q": "x" * 9000}])


# -- 8: the heartbeat ----------------------------------------------------------------------------
def test_the_gateways_heartbeat_goes_on_after_a_failure(ctx):
    async def scenario():
        _hub, _t, _counters, side = endpoint(ctx, "inproc://e8", heartbeat=0.05)
        c = Client(ctx, "inproc://e8")
        c.request(subs.SUB, 1, "Room", "r", None, 4, {})
        await turns(4)
        real: Callable[..., bool] = side._send
        faults: list[int] = []

        def flaky(ident: bytes, msg: list[Any], owed: bool = False) -> bool:
            if msg == [subs.PING] and not faults:
                faults.append(1)
                raise RuntimeError("a fault in the heartbeat")
            return real(ident, msg, owed)
        side._send = flaky                           # type: ignore[method-assign]
        pings = 0
        for _ in range(40):
            c.request(subs.PING)
            await asyncio.sleep(0.01)
            while c.sock.poll(0):
                pings += wire.unpack(c.sock.recv()) == [subs.PING]
        side.close()
        c.sock.close(0)
        return faults, pings

    faults, pings = asyncio.run(scenario())
    assert faults == [1] and pings >= 3, f"the heartbeat went on after its fault ({pings} pings)"


# -- 9: routing ids ------------------------------------------------------------------------------
def test_a_connection_cannot_take_over_another_sessions_routing_id(ctx):
    async def scenario():
        hub, _t, _counters, side = endpoint(ctx, "inproc://e9")
        a, b = (ctx.socket(zmq.DEALER) for _ in range(2))
        for s in (a, b):
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.ROUTING_ID, b"same")
        a.connect("inproc://e9")
        a.send(wire.pack([subs.SUB, 1, "Room", "r", None, 4, {}]))
        await turns()
        b.connect("inproc://e9")
        b.send(wire.pack([subs.PING]))
        await turns()
        hub.push(only_socket(hub), "for a")
        await turns()
        got = {name: [wire.unpack(s.recv()) for _ in range(10) if s.poll(0)]
               for name, s in (("a", a), ("b", b))}
        side.close()
        a.close(0)
        b.close(0)
        return got

    got = asyncio.run(scenario())
    assert [subs.FRAME, 1, 1, "for a"] in got["a"] and got["b"] == [], got


# -- the blocking client's thread ----------------------------------------------------------------
def test_a_call_that_close_leaves_unanswered_fails_clearly(ctx):
    runner = SubscriptionThread(ctx)

    async def stubborn() -> None:                    # survives the cancel of the loop's end
        for _ in range(2):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            runner.call(stubborn())
        except BaseException as exc:                 # (reported by the assertion below)
            outcome.append(exc)
    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    time.sleep(0.1)
    runner.close()
    caller.join(10)
    assert not caller.is_alive(), "the call waits forever"
    assert len(outcome) == 1 and isinstance(outcome[0], SubscriptionClosed), outcome
    with pytest.raises(SubscriptionClosed, match="the client is closed"):
        runner.call(stubborn())


def test_a_frame_taken_for_an_interrupted_blocking_call_is_not_lost(ctx):
    """Ctrl-C arrives while the loop finishes the take (here held 0.3 s after it took the
    frame): the frame goes back, and the next call gets it."""
    g, runner, sub = blocking_sub(ctx, "inproc://e10")
    inner = sub._sub
    g.frame(1, "kept")
    for _ in range(200):                             # until it is in the client's queue
        if inner._queue:
            break
        time.sleep(0.01)
    assert inner._queue, "the frame reached the client"

    async def slow_take() -> "str | bytes":
        data = await inner.next_frame()
        time.sleep(0.3)                              # (holds the loop: the interrupt comes now)
        return data

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        with pytest.raises(KeyboardInterrupt):
            runner.take(inner, slow_take)
        assert sub.receive(2) == "kept", "the frame taken for the interrupted call"
    finally:
        signal.signal(signal.SIGUSR1, previous)
        runner.close()
