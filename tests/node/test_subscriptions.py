"""Python subscriptions against real nodes (router, workers, gateway processes, ZeroMQ,
LevelDB): ``client.subscribe(...)`` and ``aclient.subscribe(...)`` receive what an actor
sends its connections, with the guarantees of a WebSocket (issue 18).

Most tests share the module's node (its gateway's heartbeat is 0.2 s, so a vanished
client is closed within a second); the ones that kill the gateway or need a node without
one, or a tcp node, start their own. The actors are in ``tests/actors/sub_actors.py``.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from typing import Any, Iterator

import pytest
import zmq
from helpers import make_config, module_node

import actorsys
from actorsys.config.keyfiles import load_public, load_secret
from actorsys.config.layout import free_port
from actorsys.gateway.sockets import MAX_UNSENT_BYTES
from actorsys.net.keys import keygen
from actorsys.protocol import subs, wire
from actorsys.testing import kill_worker
from actorsys.testing.nodes import role_pid, wait_until

ACTORS = {"Feed": "sub_actors:Feed", "Shy": "sub_actors:Shy"}
BEAT = 0.2
WAIT = 10.0


def feed_config(data_dir: str, **gateway: Any) -> dict[str, Any]:
    cfg = make_config(data_dir)
    cfg["actors"].update(ACTORS)
    cfg["gateway"] = {"listen": "127.0.0.1:0", "subscriber_heartbeat": BEAT, **gateway}
    return cfg


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    yield from module_node(feed_config(str(tmp_path_factory.mktemp("subs") / "data")))


@pytest.fixture(scope="module")
def client(node: actorsys.Node) -> Iterator[actorsys.Client]:
    with node.client() as c:
        yield c


def gateway_status(node: actorsys.Node) -> dict[str, Any]:
    return next(p for p in node.status()["processes"] if p["role"] == "gateway")


def subscriber_endpoint(client: actorsys.Client) -> str:
    """Where the router's map says the gateway takes subscribers."""
    info = client._threads.newest.info
    assert info is not None and info.subscribers is not None, "the map names the endpoint"
    return info.subscribers


class Raw:
    """A raw DEALER on the subscriber endpoint: what a client never sends, and a client
    that goes silent."""

    def __init__(self, endpoint: str, routing_id: bytes | None = None) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if routing_id is not None:
            self.sock.setsockopt(zmq.ROUTING_ID, routing_id)
        self.sock.connect(endpoint)

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def request(self, *msg: Any) -> None:
        self.send(wire.pack(list(msg)))

    def next(self, skip_pings: bool = True) -> list[Any]:
        """The gateway's next message (pings skipped)."""
        while True:
            assert self.sock.poll(WAIT * 1000), "the gateway answers within 10 s"
            msg = wire.unpack(self.sock.recv())
            if not (skip_pings and msg == [subs.PING]):
                return msg

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


# -- receiving ------------------------------------------------------------------------------
def test_a_blocking_subscription_gets_broadcasts_sends_and_its_tag(client):
    feed = client.ref("Feed", "blocking")
    with client.subscribe(feed, tag="red", query={"who": "ada"}, decode=json.loads) as red, \
            client.subscribe(("Feed", "blocking")) as plain:
        hello = red.receive(WAIT)
        assert hello == {"hello": red.id, "kind": "python", "tags": ["red"], "query": {"who": "ada"},
                         "user": None, "remote": None}, \
            "on_connect saw a Python connection, tagged from its connect, with its query"
        assert json.loads(plain.receive(WAIT))["tags"] == [], "an untagged subscription has no tag"
        assert sorted(feed.ask("kinds")) == [["python", []], ["python", ["red"]]], \
            "the actor's roster lists both, from the moment subscribe() returned"
        assert feed.ask("publish", {"to": "all"}) == 2
        assert feed.ask("publish", ["reds only"], tag="red") == 1
        assert feed.ask("publish", b"\x00\x01") == 2
        assert red.receive(WAIT) == {"to": "all"}, "a dict arrives as JSON text (decoded here)"
        assert red.receive(WAIT) == ["reds only"], "a tagged broadcast reaches the tagged only"
        assert plain.receive(WAIT) == '{"to":"all"}', "undecoded: the JSON text as sent"
        assert plain.receive(WAIT) == b"\x00\x01", "a binary frame arrives as bytes"
        with pytest.raises(json.JSONDecodeError):
            red.receive(WAIT)                 # b"\x00\x01" is no JSON: the decoder's error
        red.send('echo:["just me"]')
        assert red.receive(WAIT) == ["just me"], "conn.send reaches the subscription alone"
        plain.send(b"abc")
        assert plain.receive(WAIT) == b"cba", "a binary message arrives as bytes in on_message"
        red.send({"say": "hi"})
        assert red.receive(WAIT) == {"n": 1, "data": '{"say":"hi"}'}, "send() went to on_message"
        assert json.loads(plain.receive(WAIT)) == {"n": 1, "data": '{"say":"hi"}'}
        with pytest.raises(TimeoutError, match="nothing arrived within 0.2 s"):
            plain.receive(0.2)
    wait_until(lambda: feed.ask("counts")["disconnects"] == 2,
               "leaving the with blocks to run on_disconnect for both")
    assert feed.ask("counts")["connects"] == 2


def test_an_async_subscription_iterates_and_ends_with_the_actors_close(node):
    async def scenario() -> list[Any]:
        async with actorsys.connect_async(node.endpoint) as ac:
            feed = ac.ref("Feed", "async")
            got: list[Any] = []
            sub = await ac.subscribe(feed, decode=json.loads)
            assert isinstance(sub, actorsys.client.Subscription) and sub.id is not None
            await feed.ask("publish", [1])
            sub.send([2])                     # on_message broadcasts it
            sub.send("bye")                   # and then closes the connection (1000)
            async for event in sub:           # ends quietly at a close with 1000
                got.append(event)
            with pytest.raises(actorsys.SubscriptionClosed) as ended:
                await sub.receive(1)
            assert ended.value.close_code == 1000
            async with ac.subscribe(feed, tag="t") as other:
                assert json.loads(await other.receive(WAIT))["tags"] == ["t"]
                other.send("close")
                with pytest.raises(actorsys.SubscriptionClosed) as closed:
                    await other.receive(WAIT)
                assert closed.value.close_code == 4001 and closed.value.reason == "asked to"
                assert "closed by the actor (4001: asked to)" in str(closed.value)
            return got

    got = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert got[0]["kind"] == "python" and got[1:] == [[1], {"n": 1, "data": "[2]"}], got


def test_refusals_at_subscribe(client):
    with pytest.raises(actorsys.UnknownActorType, match="Nope"):
        client.subscribe(("Nope", "x"))
    with pytest.raises(actorsys.SubscriptionClosed) as refused:
        client.subscribe(("Shy", "x"))
    assert refused.value.close_code == 4003 and "no subscribers here" in str(refused.value)
    with pytest.raises(ValueError, match="window"):
        client.subscribe(("Feed", "x"), window=0)
    with pytest.raises(TypeError, match="query"):
        client.subscribe(("Feed", "x"), query={"n": 1})       # type: ignore[dict-item]
    with pytest.raises(TypeError, match="ref, a proxy or a"):
        client.subscribe("Feed/x")                              # type: ignore[arg-type]
    with pytest.raises(actorsys.BadRequest, match="NUL"):
        client.subscribe(("Feed", "a\x00b"))                    # refused before it is sent


# -- guarantees -----------------------------------------------------------------------------
def test_a_stream_across_a_worker_kill_arrives_exactly_once(node, client):
    """Messages a subscription sends are socket events: the turns that commit broadcast
    each number once, in order, across a kill -9 of the actor's worker (the batch the
    kill hits is delivered again, and its delivery mark applies it once); the turn that
    raises broadcasts nothing."""
    total, kill_at, pause_at, boom_at = 400, 100, 250, 150
    feed = client.ref("Feed", "stream")
    gateway_pid = role_pid(node, "gateway")
    got: list[Any] = []
    new_pid: list[int] = []
    with client.subscribe(feed, decode=json.loads) as sub:
        assert sub.receive(WAIT)["kind"] == "python"

        def read() -> None:
            while len(got) < total - 1:
                got.append(sub.receive(30))
        reader = threading.Thread(target=read)
        reader.start()
        killer = threading.Thread(target=lambda: new_pid.append(kill_worker(node, feed)))
        old_pid = next(w["pid"] for w in node.status()["processes"]
                       if w["role"] == "worker" and w["slot"] == client.map.slot_of("Feed", "stream"))
        for i in range(total):
            if i == kill_at:
                killer.start()
            if i == pause_at:
                killer.join(30)           # (the rest go to the restarted worker)
            sub.send("boom" if i == boom_at else f"m{i}")
            time.sleep(0.001)
        reader.join(40)
        assert new_pid and new_pid[0] != old_pid, "the actor's worker was killed mid-stream"
        assert not reader.is_alive(), f"every broadcast arrives; got {len(got)} of {total - 1}"
    ns = [g["n"] for g in got]
    assert ns == list(range(1, total)), \
        f"each committed turn's broadcast exactly once, in order: {_gaps(ns)}"
    assert [g["data"] for g in got] == [f"m{i}" for i in range(total) if i != boom_at], \
        "the messages in the order sent, without the failed turn's"
    assert feed.ask("counts")["n"] == total - 1
    gw = gateway_status(node)
    assert gw["pid"] == gateway_pid, "(the gateway itself ran on)"
    print(f"redeliveries {gw['redeliveries']}, duplicates {gw['duplicates']}, "
          f"duplicate effects {gw['duplicate_effects']}")


def _gaps(ns: list[int]) -> str:
    seen = set(ns)
    dup = sorted({n for n in ns if ns.count(n) > 1})
    missing = sorted(set(range(1, max(ns, default=0) + 1)) - seen)
    return f"{len(ns)} received, duplicates {dup[:10]}, missing {missing[:10]}"


def test_a_slow_subscriber_is_dropped_and_the_gateway_stays_bounded(node, client):
    """A consumer that stops taking frames: the gateway sends a window ahead (4 MiB: eight
    frames of 500 kB) and keeps the rest in the socket's queue, which grows frame by
    frame as the status shows; past 8 MiB it drops the subscriber (1013) and frees the
    queue, its actor gets on_disconnect, and the consumer, once it reads again, gets
    what had reached it and then the clear error."""
    feed = client.ref("Feed", "slow")
    before = gateway_status(node)["slow_closed"]
    text = "y" * 500_000
    with client.subscribe(feed) as sub:
        assert json.loads(sub.receive(WAIT))["kind"] == "python"
        peak = 0
        for _ in range(40):                      # 20 MB, without reading any of it
            feed.ask("publish", text)
            gw = gateway_status(node)
            peak = max(peak, gw["unsent_bytes"])
            if gw["slow_closed"] > before:
                break
        assert gw["slow_closed"] == before + 1, f"the slow subscriber was dropped: {gw}"
        assert MAX_UNSENT_BYTES - 3 * len(text) < peak <= MAX_UNSENT_BYTES, \
            f"the frames past the window waited at the gateway up to its limit (peak {peak}): " \
            f"none went ahead of the credit, none was lost"
        assert gw["unsent_bytes"] == 0 and gw["unsent_frames"] == 0, \
            "what waited for the dropped subscriber is freed"
        queued = len(sub._sub._queue)
        assert queued <= subs.DEFAULT_WINDOW and sum(map(len, sub._sub._queue)) <= subs.WINDOW_BYTES, \
            "the client holds at most a window"
        n = 0
        with pytest.raises(actorsys.SubscriptionClosed) as dropped:
            while True:
                assert sub.receive(WAIT) == text
                n += 1
        assert dropped.value.close_code == 1013 and "not reading fast enough" in str(dropped.value)
        assert 0 < n <= queued + 1, f"what had reached it ({n} frames), then the error"
    wait_until(lambda: feed.ask("counts")["disconnects"] == 1, "the actor's on_disconnect")


def test_a_vanished_client_is_closed_by_the_heartbeat(node, client):
    """A client that goes silent (no close: its host vanished) is closed after three
    missed heartbeats, and its actor gets on_disconnect."""
    feed = client.ref("Feed", "vanish")
    lost = gateway_status(node)["subscribers_lost"]
    raw = Raw(subscriber_endpoint(client))
    try:
        raw.request(subs.SUB, 1, "Feed", "vanish", None, 8, {})
        assert raw.next()[0] == subs.OPEN and raw.next() == [subs.OK, 1]
        assert feed.ask("counts")["connects"] == 1
        t0 = time.monotonic()
        wait_until(lambda: feed.ask("counts")["disconnects"] == 1,
                   "the silent subscriber to be closed and its on_disconnect to commit", timeout=5)
        took = time.monotonic() - t0
    finally:
        raw.close()
    assert took < 10 * BEAT, f"closed within a few heartbeats ({took:.2f} s)"
    assert gateway_status(node)["subscribers_lost"] == lost + 1


def test_a_connection_cannot_take_over_a_subscribers_routing_id(node, client):
    """The subscriber endpoint's ROUTER has no handover: a second connection presenting
    a routing id in use is ignored, and the first keeps its subscription."""
    feed = client.ref("Feed", "handover")
    endpoint = subscriber_endpoint(client)
    # (the second connects only once the first holds the id: whichever connection
    # reaches the ROUTER first holds it)
    first, second = Raw(endpoint, b"taken"), None
    try:
        first.request(subs.SUB, 1, "Feed", "handover", None, 8, {})
        assert first.next()[0] == subs.OPEN and first.next() == [subs.OK, 1]
        assert first.next()[:3] == [subs.FRAME, 1, 1], "the greeting"
        second = Raw(endpoint, b"taken")
        second.request(subs.PING)
        second.request(subs.SUB, 1, "Feed", "handover", None, 8, {})
        first.request(subs.PING)                             # (heartbeats of 0.2 s)
        assert feed.ask("publish", "still mine") == 1
        assert first.next() == [subs.FRAME, 1, 2, "still mine"]
        first.request(subs.PING)
        assert not second.sock.poll(300), "the second connection gets nothing"
    finally:
        first.close()
        if second is not None:
            second.close()


def test_malformed_frames_are_answered_and_the_gateway_goes_on(node, client):
    bad = gateway_status(node)["bad_frames"]
    raw = Raw(subscriber_endpoint(client))
    try:
        raw.send(b"\xc1")
        assert raw.next()[:2] == [subs.ERR, 0], "undecodable: an error for subscription 0"
        raw.send(b"a", b"b")
        err = raw.next()
        assert err[:2] == [subs.ERR, 0] and "one payload frame" in err[2]["message"], err
        raw.request("zap", 7)
        err = raw.next()
        assert err[:2] == [subs.ERR, 7] and "unknown subscriber op" in err[2]["message"], err
        raw.request(subs.SUB, 8, "Feed")
        assert raw.next()[:2] == [subs.ERR, 8]
        raw.request(subs.SUB, 9, "Nope", "k", None, 8, {})
        err = raw.next()
        assert err[:2] == [subs.ERR, 9] and err[2]["code"] == "unknown_type", err
        raw.send(wire.pack({"not": "a list"}))
        assert raw.next()[:2] == [subs.ERR, 0]
        raw.request(subs.SUB, 10, "Feed", "raw", None, 2, {})
        assert raw.next()[0] == subs.OPEN and raw.next() == [subs.OK, 10]
        assert raw.next()[:3] == [subs.FRAME, 10, 1], "the greeting, frame 1"
        raw.request(subs.ACK, 10, 5)                 # frames never sent
        closed = raw.next()
        assert closed[:3] == [subs.CLOSED, 10, 1002] and "protocol error" in closed[3], closed
    finally:
        raw.close()
    assert gateway_status(node)["bad_frames"] == bad + 6, "each counted (not the unknown type)"
    with client.subscribe(("Feed", "raw")) as sub:       # the gateway goes on
        assert json.loads(sub.receive(WAIT))["kind"] == "python"


# -- nodes of their own -----------------------------------------------------------------------
def test_a_gateway_restart_ends_the_subscription_clearly(actorsys_node):
    node = actorsys_node(feed_config("unused"))
    client = node.client()
    sub = client.subscribe(("Feed", "g"))
    assert json.loads(sub.receive(WAIT))["kind"] == "python"
    os.kill(role_pid(node, "gateway"), signal.SIGKILL)
    with pytest.raises(actorsys.SubscriptionClosed) as lost:
        sub.receive(WAIT)
    assert lost.value.close_code == 1006 and "gateway" in str(lost.value), str(lost.value)
    wait_until(lambda: gateway_status(node)["up"], "the node supervisor to restart the gateway", 20)
    again = wait_until(lambda: _try_subscribe(client), "a new subscription after the restart", 20)
    assert json.loads(again.receive(WAIT))["kind"] == "python"
    again.close()


def _try_subscribe(client: actorsys.Client) -> Any:
    try:
        return client.subscribe(("Feed", "g"), timeout=2)
    except actorsys.ActorError:
        return None


def test_a_node_without_a_gateway_refuses_subscriptions_clearly(actorsys_node):
    cfg = make_config("unused", workers=1)
    cfg["actors"].update(ACTORS)
    client = actorsys_node(cfg).client()
    with pytest.raises(actorsys.BadRequest, match=r"has no gateway.*\[gateway\]"):
        client.subscribe(("Feed", "x"))

    async def from_asyncio() -> None:
        async with actorsys.connect_async(client.endpoint) as ac:
            with pytest.raises(actorsys.BadRequest, match="has no gateway"):
                await ac.subscribe(("Feed", "x"))
    asyncio.run(from_asyncio())


def curve_dealer(ctx: zmq.Context[Any], secret: str, server_public: str, endpoint: str) -> zmq.Socket[Any]:
    """A raw DEALER with the key pair ``secret``, connected over CURVE to ``endpoint``."""
    pub, sec = load_secret(secret)
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.curve_publickey, raw.curve_secretkey = pub, sec
    raw.curve_serverkey = load_public(server_public)
    raw.connect(endpoint)
    return raw


def test_on_tcp_the_subscriber_endpoint_is_curve_guarded(tmp_path):
    """On a tcp node the gateway's subscriber endpoint lets in the keys the router does
    (the client subscribes with its connection's keys) and refuses others, counted; a
    key limited to some actor types is refused a subscription to another type."""
    node_public, node_secret = keygen(tmp_path / "keys", "node")
    clients = tmp_path / "keys" / "clients"
    _alice_public, alice_secret = keygen(clients, "alice")
    _bob_public, bob_secret = keygen(clients, "bob", role="client", types="Shy")
    _mallory_public, mallory_secret = keygen(tmp_path / "elsewhere", "mallory")
    cfg = feed_config(str(tmp_path / "data"))
    cfg["node"].update(endpoint=f"tcp://127.0.0.1:{free_port('127.0.0.1')}",
                       curve_secret_key=node_secret, authorized_keys=str(clients))
    with actorsys.Node(cfg) as node, \
            actorsys.connect(node.endpoint, key=alice_secret, server_key=node_public) as alice:
        endpoint = subscriber_endpoint(alice)
        assert endpoint.startswith("tcp://127.0.0.1:"), endpoint
        with alice.subscribe(("Feed", "c"), decode=json.loads) as sub:
            assert sub.receive(WAIT)["kind"] == "python"
            assert alice.ref("Feed", "c").ask("publish", ["over curve"]) == 1
            assert sub.receive(WAIT) == ["over curve"]
        with actorsys.connect(node.endpoint, key=bob_secret, server_key=node_public) as bob:
            with pytest.raises(actorsys.Forbidden, match="may not reach actors of type 'Feed'"):
                bob.subscribe(("Feed", "c"))          # (a key limited to Shy: authz.py)
            assert gateway_status(node)["forbidden"] == 1
        # (nor may a client key use the gateway's node endpoint: effects, status, keys)
        assert node._layout is not None and node._layout.gateway is not None
        ctx0: zmq.Context[Any] = zmq.Context()
        try:
            raw = curve_dealer(ctx0, bob_secret, node_public, node._layout.gateway)
            raw.send(wire.pack([wire.STATUS, 7]))
            raw.send(wire.pack([wire.SHARDS, 8, "keys", {"keys": []}]))
            got = {}
            for _ in range(2):
                assert raw.poll(10_000), "an answer"
                r = wire.unpack(raw.recv())
                got[r[1]] = r
            assert {k: (r[0], r[2]["code"]) for k, r in got.items()} == \
                {7: (wire.ERR, "forbidden"), 8: (wire.ERR, "forbidden")}
            raw.close(0)
        finally:
            ctx0.term()
        assert gateway_status(node)["forbidden"] == 3
        refused = gateway_status(node)["auth_refused"]
        ctx: zmq.Context[Any] = zmq.Context()
        try:
            raw = curve_dealer(ctx, mallory_secret, node_public, endpoint)
            raw.send(wire.pack([subs.SUB, 1, "Feed", "c", None, 4, {}]))
            assert not raw.poll(500), "an unknown key gets no answer"
            raw.close(0)
        finally:
            ctx.term()
        wait_until(lambda: gateway_status(node)["auth_refused"] > refused,
                   "the gateway's guard to count the refused key")
