"""Replicated shards and the gateway (issue 16): "the gateway's delivery marks are shard
data: they replicate and fail over with it, so WebSocket batches are still applied
once". A three-node cluster, ``replicas = 3``, a gateway on every node, ``lease_ttl`` 2 s,
loopback hosts and CURVE between the nodes.

Sockets held by node A's gateway stream numbered messages (``"n:17"``, a few every 10 ms
each, not waiting for answers) to a ``Numbers`` actor whose shard node B leads; the actor
appends every number to its state and acknowledges it (``"ack:17"``, an effect: it
leaves once the batch's turn committed on a quorum of the shard's replicas). B is killed
-9 mid-stream (frozen an instant before, so numbers are surely in flight on it); the
shard fails over to a follower; the sockets stay open on A and keep
sending. What the gateway promises (docs/concepts/gateway.md, docs/cluster.md "HTTP and
WebSockets on any node"): the sockets stay open while the actor is unreachable for less
than ``max(ask_timeout, turn_timeout + 5 s)``, the batch in flight is delivered again,
and a delivery mark committed with each batch makes it apply once with its effects
reaching the sockets once. So at the end:

* every socket is still open (no close frame);
* every number sent is in the actor's state exactly once (the acknowledged ones
  included), and each socket's numbers are in the order it sent them;
* each socket got exactly one acknowledgement per number it sent, in order.

And the actor's broadcasts after the failover (from an ask, by HTTP) reach its sockets
on both live gateways: first from the new leader's fresh activation (it knows no
sockets), then after a batch from one gateway has handed that activation its roster.

One cluster and one kill serve both tests (:func:`run`); the module takes 10-15 s.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import aiohttp
import pytest
from helpers import ACTORS_DIR

from actorsys.cluster.placement import ranked
from actorsys.protocol.shardmap import shard_of
from actorsys.config.layout import free_port
from actorsys.testing.cluster import Cluster, ClusterNode

TTL = 2.0
N, R, SHARDS = 3, 3, 64
IDS = [f"n{i + 1}" for i in range(N)]
#: A (the sockets' gateway), B (the shard's leader, killed), C (its first follower)
A, B, C = 0, 1, 2
#: how many sockets stream, and the pause between two of a socket's messages
SENDERS, PACE = 3, 0.01
#: seconds any one frame may take to arrive (a loaded 2-core machine)
FRAME = 20.0
#: how long the gateway goes on delivering a batch again (the defaults'
#: max(ask_timeout, turn_timeout + 5 s)), plus margin: every sent message is answered by then
PATIENCE = 35.0 + 10.0

pytestmark = pytest.mark.timeout(180)


#: node id -> its gateway's HOST:PORT
LISTEN: dict[str, str] = {}


def config(node: ClusterNode) -> dict[str, Any]:
    listen = LISTEN[node.node_id] = f"{node.host.address}:{free_port(node.host.address)}"
    return {"gateway": {"listen": listen}, "node": {"shards": SHARDS},
            "cluster": {"replicas": R}}


def settled(view: dict[str, Any]) -> bool:
    """Every node alive, every shard led by its rendezvous choice with R live voters."""
    live = [n for n in view["nodes"] if n["alive"]]
    return (view.get("replicas") == R and sorted(n["id"] for n in live) == IDS
            and view.get("under_replicated") == 0 and view.get("unavailable") == 0
            and sum(n["shards"] for n in live) == SHARDS
            and all(n["shards"] > 0 and not n["moving"] for n in live))


def key_ranked(prefix: str, order: list[str]) -> str:
    """A ``Numbers`` key whose shard's rendezvous order is ``order``: its leader, then the
    follower a failover promotes when both are at the same position."""
    for i in range(100_000):
        key = f"{prefix}-{i}"
        if ranked(shard_of("Numbers", key, SHARDS), IDS) == order:
            return key
    raise AssertionError(f"no key ranked {order}")


ORDER = [IDS[B], IDS[C], IDS[A]]
STREAM = key_ranked("stream", ORDER)      # the numbers
ROOM = key_ranked("room", ORDER)          # the broadcasts


@dataclass
class Sender:
    """One socket streaming numbers ``base + i``; what it sent and what came back."""
    ws: aiohttp.ClientWebSocketResponse
    base: int
    sent: list[int] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    #: when each number was sent / acknowledged (loop time)
    sent_at: dict[int, float] = field(default_factory=dict)
    acked_at: dict[int, float] = field(default_factory=dict)
    other: list[Any] = field(default_factory=list)
    closed: Any = None

    async def stream(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        i = 0
        while not stop.is_set():
            n = self.base + i
            i += 1
            self.sent_at[n] = loop.time()
            self.sent.append(n)
            await self.ws.send_str(f"n:{n}")
            await asyncio.sleep(PACE)

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith("ack:"):
                n = int(msg.data[4:])
                self.acks.append(n)
                self.acked_at.setdefault(n, loop.time())
            else:
                self.other.append(msg.data)
        self.closed = (self.ws.close_code, self.ws.exception())


@dataclass
class Outcome:
    senders: list[Sender] = field(default_factory=list)
    got: list[int] = field(default_factory=list)
    #: seconds from the kill -9 to the first acknowledgement of a number sent once every
    #: process of B was gone
    failover: float | None = None
    #: seconds from the end of the stream until every number sent was acknowledged
    drained: float | None = None
    #: numbers sent and not yet acknowledged when B was gone
    in_flight: int = 0
    #: A's gateway's counters after the stream (redeliveries, duplicates, dropped events)
    counters: dict[str, Any] = field(default_factory=dict)
    #: new leader of the shard
    leader: str = ""
    #: broadcast -> the listeners (by gateway) that received it
    heard: dict[str, dict[str, bool]] = field(default_factory=dict)


async def frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = FRAME) -> Any:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg}"
    try:
        return json.loads(msg.data)
    except ValueError:
        return msg.data


def leader_of(cluster: Cluster, via: int, key: str) -> str:
    with cluster.connect(via, timeout=30.0) as c:
        c.ask("Numbers", key, "got", timeout=30.0)       # refreshes the map if it moved
        m = c.map
        node = m.node_of_slot(m.slot_of("Numbers", key))
        assert node is not None
        return str(node["id"])


def gateway_counters(cluster: Cluster, node: int) -> dict[str, Any]:
    with cluster.connect(node, timeout=30.0) as c:
        st = c.status()
    return next(p for p in st["processes"] if p.get("role") == "gateway")


async def post(http: aiohttp.ClientSession, node: int, key: str, method: str, *args: Any) -> Any:
    """An HTTP ask through node ``node``'s gateway (503: retried until FRAME passes)."""
    deadline = time.monotonic() + FRAME
    while True:
        async with http.post(f"http://{LISTEN[IDS[node]]}/actors/Numbers/{key}/{method}",
                             json=list(args)) as r:
            if r.status == 200:
                return await r.json()
            body = await r.text()
        assert r.status == 503 and time.monotonic() < deadline, f"{method}: {r.status} {body}"
        await asyncio.sleep(0.2)


async def heard(listeners: dict[str, aiohttp.ClientWebSocketResponse], text: str) -> dict[str, bool]:
    """Which listeners receive ``text`` next (each within 5 s)."""
    async def one(ws: aiohttp.ClientWebSocketResponse) -> bool:
        try:
            return await frame(ws, 5.0) == text
        except asyncio.TimeoutError:
            return False
    got = await asyncio.gather(*(one(ws) for ws in listeners.values()))
    return dict(zip(listeners, got))


async def scenario(cluster: Cluster, out: Outcome) -> None:
    loop = asyncio.get_running_loop()
    a = LISTEN[IDS[A]]
    async with aiohttp.ClientSession() as http:
        for i in range(SENDERS):
            ws = await http.ws_connect(f"http://{a}/ws/Numbers/{STREAM}")
            assert "hello" in await frame(ws)
            out.senders.append(Sender(ws, (i + 1) * 1_000_000))
        listeners = {}
        for node in (A, C):
            ws = await http.ws_connect(f"http://{LISTEN[IDS[node]]}/ws/Numbers/{ROOM}")
            assert "hello" in await frame(ws)
            listeners[IDS[node]] = ws
        readers = [asyncio.create_task(s.read()) for s in out.senders]
        stop = asyncio.Event()
        streams = [asyncio.create_task(s.stream(stop)) for s in out.senders]

        async def until(what: str, cond: Any, timeout: float) -> float:
            t0 = loop.time()
            while not cond():
                assert loop.time() - t0 < timeout, f"{what}: not within {timeout:g} s"
                for t in streams + readers:
                    if t.done() and t.exception() is not None:
                        raise t.exception()       # type: ignore[misc]
                await asyncio.sleep(0.02)
            return loop.time() - t0

        # B is killed while numbers are in flight
        await until("20 acknowledgements per socket", lambda: all(len(s.acks) >= 20 for s in out.senders),
                    FRAME)
        # (frozen for an instant first, so that numbers are surely in flight on it when it
        # dies: its turns answer within milliseconds, and a stream paced at 10 ms has gaps)
        await asyncio.to_thread(cluster.pause_node, B)
        await until("numbers in flight on the frozen leader",
                    lambda: sum(len(s.sent) - len(s.acks) for s in out.senders) >= 3 * SENDERS, FRAME)
        out.in_flight = sum(len(s.sent) - len(s.acks) for s in out.senders)
        killing = loop.time()
        await asyncio.to_thread(cluster.kill_node, B)
        killed = loop.time()          # (every process of B gone)
        # the stream goes on; the new leader acknowledges numbers sent after the kill
        await until("an acknowledgement of a number sent after the kill",
                    lambda: any(s.sent_at[n] > killed for s in out.senders for n in s.acked_at), 30.0)
        out.failover = min(t for s in out.senders for n, t in s.acked_at.items()
                           if s.sent_at[n] > killed) - killing
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*streams)
        out.drained = await until("every number sent acknowledged",
                                  lambda: all(len(s.acks) >= len(s.sent) for s in out.senders), PATIENCE)
        await asyncio.sleep(0.5)                 # (a duplicate acknowledgement would come now)
        out.got = await post(http, A, STREAM, "got")
        out.leader = await asyncio.to_thread(leader_of, cluster, A, STREAM)
        out.counters = await asyncio.to_thread(gateway_counters, cluster, A)

        # broadcasts after the failover: the new leader's fresh activation knows no sockets
        await post(http, A, ROOM, "shout", "fresh")
        out.heard["fresh"] = await heard(listeners, "fresh")
        # a batch from A's gateway hands the activation A's roster (not C's)
        await listeners[IDS[A]].send_str("n:1")
        assert await frame(listeners[IDS[A]]) == "ack:1"
        await post(http, A, ROOM, "shout", "after a batch")
        out.heard["after a batch"] = await heard(listeners, "after a batch")

        for s in out.senders:
            await s.ws.close()
        await asyncio.gather(*readers)
        for ws in listeners.values():
            await ws.close()


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """(Overrides the suite's per-test check: the module's cluster runs between its
    tests, and stops with the module.)"""
    yield


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """The module's one scenario (see the docstring), on its own cluster."""
    out = Outcome()
    with Cluster(tmp_path_factory.mktemp("replws"), N, hosts="loopback",
                 actors={"Numbers": "ws_actors:Numbers"}, python_path=[ACTORS_DIR], curve=True,
                 workers=1, lease_ttl=TTL, name="replws", extra_config=config) as cluster:
        for i in range(N):
            cluster.wait_ready(i, timeout=60)
        for i in range(N):
            cluster.wait_view(i, settled, f"the cluster settled with {R} replicas", timeout=60)
        for key in (STREAM, ROOM):
            assert leader_of(cluster, A, key) == IDS[B], f"{key} is not led by {IDS[B]}"
        try:
            asyncio.run(scenario(cluster, out))
        except BaseException:
            for n in cluster.nodes:         # what each node logged, for the failure
                print(f"--- {n.node_id}:\n{cluster.log_tail(n.index, 60)}")
            for s in out.senders:
                print(f"socket {s.base}: sent {len(s.sent)}, acknowledged {len(s.acks)}, "
                      f"closed {s.closed}, other frames {s.other[:5]}")
            raise
    yield out


def test_websocket_batches_apply_once_across_a_leader_kill(run: Outcome) -> None:
    out = run
    print(f"failover: first acknowledgement {out.failover:.2f} s after the kill, by {out.leader}; "
          f"every number acknowledged {out.drained:.2f} s after the stream stopped; "
          f"{sum(len(s.sent) for s in out.senders)} numbers sent, {out.in_flight} in flight at the kill")
    gw = out.counters
    print(f"A's gateway: {gw['batches']} batches, {gw['redeliveries']} redeliveries, "
          f"{gw['duplicates']} answered dup (committed before the kill, reply lost), "
          f"{gw['dropped_events']} events dropped")
    assert out.in_flight > 0, "nothing was in flight when B was killed"
    assert gw["redeliveries"] > 0, "no batch was delivered again: the kill hit nothing in flight"
    assert gw["dropped_events"] == 0 and gw["failed_events"] == 0, gw
    assert out.leader in (IDS[A], IDS[C]), out.leader
    # the bound (lease_ttl + 2 s), with 2 s for a loaded machine
    assert out.failover is not None and out.failover < TTL + 2.0 + 2.0, out.failover
    got = out.got
    twice = sorted({n for n in got if got.count(n) > 1})
    assert not twice, f"numbers applied twice: {twice[:20]} ({len(twice)})"
    for s in out.senders:
        assert s.closed == (None, None) or s.closed[0] == 1000, f"socket closed by the gateway: {s.closed}"
        assert not s.other, f"unexpected frames: {s.other[:5]}"
        mine = [n for n in got if s.base <= n < s.base + 1_000_000]
        missing = sorted(set(s.acks) - set(mine))
        assert not missing, f"acknowledged, not in the state: {missing[:20]} ({len(missing)})"
        assert mine == s.sent, (f"socket {s.base}: {len(s.sent)} sent, {len(mine)} in the state; "
                                f"not applied: {sorted(set(s.sent) - set(mine))[:20]}")
        assert s.acks == s.sent, (f"socket {s.base}: acknowledgements not once each, in order: "
                                  f"twice {sorted({n for n in s.acks if s.acks.count(n) > 1})[:20]}")


def test_broadcast_after_failover_reaches_both_gateways(run: Outcome) -> None:
    assert run.heard["fresh"] == {IDS[A]: True, IDS[C]: True}, run.heard
    assert run.heard["after a batch"] == {IDS[A]: True, IDS[C]: True}, run.heard
