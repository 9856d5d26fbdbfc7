"""The gateway of any node serves any actor's HTTP and WebSockets (issue 15), against real
nodes on loopback hosts, a real etcd and CURVE between the nodes: a socket held by node
A's gateway for an actor on node B gets its batch replies and the pushes of turns that
are not its batches (an ask from a client of another node), in order; a socket of the
same actor on B's gateway gets the broadcasts of A's batches; all of it still works
after the actor's shard moves to a joining third node while the sockets stay open; an
HTTP ask through A's gateway reaches the actor on B."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from helpers import ACTORS_DIR

from actorsys.cluster.placement import owner
from actorsys.protocol.shardmap import shard_of
from actorsys.config.layout import free_port
from actorsys.testing.cluster import Cluster, ClusterNode

#: few shards: a join moves its share quickly on a loaded machine
SHARDS = 64
#: seconds any one frame may take to arrive (a loaded 2-core machine)
FRAME = 20.0


#: node id -> its gateway's HOST:PORT (as with_gateway configured it)
LISTEN: dict[str, str] = {}


def with_gateway(node: ClusterNode) -> dict[str, Any]:
    listen = LISTEN[node.node_id] = f"{node.host.address}:{free_port(node.host.address)}"
    return {"gateway": {"listen": listen}, "node": {"shards": SHARDS}}


def key_moving(frm: list[str], to: list[str], before: str, after: str) -> str:
    """An Echo key whose shard belongs to ``before`` among ``frm`` and to ``after`` among
    ``to`` (placement is rendezvous hashing over node ids: known in advance)."""
    for i in range(100_000):
        key = f"room-{i}"
        s = shard_of("Echo", key, SHARDS)
        if owner(s, frm) == before and owner(s, to) == after:
            return key
    raise AssertionError("no such key")


def wait_balanced(cluster: Cluster, n: int) -> None:
    """Until ``n`` live nodes share the shards, none moving (the logs if not in time)."""
    def check(view: Any) -> bool:
        nodes = [x for x in view["nodes"] if x["alive"]]
        return len(nodes) == n and all(x["shards"] and not x.get("moving") for x in nodes)
    try:
        cluster.wait_view(0, check, f"{n} nodes to share the shards", timeout=120)
    except AssertionError:
        print(*(cluster.log_tail(i, 60) for i in range(len(cluster.nodes))), sep="\n")
        raise


async def frame(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await asyncio.wait_for(ws.receive(), FRAME)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg}"
    try:
        return json.loads(msg.data)
    except ValueError:
        return msg.data


def owner_of(cluster: Cluster, via: int, key: str) -> str:
    with cluster.connect(via) as c:
        c.ask("Echo", key, "add", 0, timeout=30)      # refreshes the map if it moved
        m = c.map
        node = m.node_of_slot(m.slot_of("Echo", key))
        assert node is not None
        return str(node["id"])


def ask(cluster: Cluster, via: int, key: str, method: str, *args: Any) -> Any:
    with cluster.connect(via) as c:
        return c.ask("Echo", key, method, *args, timeout=30)


def python_subscriber(cluster: Cluster, key: str) -> Any:
    """A subscription to Echo/``key`` from a client of node 0 (so held by its gateway),
    once its greeting has come."""
    client = cluster.connect(0)
    sub = client.subscribe(("Echo", key), query={"name": "py"}, timeout=FRAME)
    hello = json.loads(sub.receive(FRAME))
    assert hello["hello"].count(".") == 1 and hello["user"] is None, hello
    return client, sub


def test_sockets_and_http_on_any_node_across_a_shard_move(tmp_path):
    key = key_moving(["n1", "n2"], ["n1", "n2", "n3"], "n2", "n3")
    with Cluster(tmp_path, 2, hosts="loopback", actors={"Echo": "ws_actors:Echo"},
                 python_path=[ACTORS_DIR], curve=True, workers=1, lease_ttl=2.0,
                 extra_config=with_gateway) as cluster:
        for i in range(2):
            cluster.wait_ready(i)
        wait_balanced(cluster, 2)
        assert owner_of(cluster, 0, key) == "n2"
        a, b = LISTEN["n1"], LISTEN["n2"]

        async def scenario() -> None:
            async with aiohttp.ClientSession() as http:
                # HTTP through A's gateway to the actor on B
                async with http.post(f"http://{a}/actors/Echo/{key}/add", json=[2, 3]) as r:
                    assert r.status == 200 and await r.json() == 5
                ws_a = await http.ws_connect(f"http://{a}/ws/Echo/{key}?name=ada")
                hello = await frame(ws_a)
                assert hello["hello"].count(".") == 1
                await ws_a.send_str("one")
                assert await frame(ws_a) == "one"           # a batch's reply
                # a turn that is not a batch, asked through B's router: B's worker sends
                # its effects to A's gateway
                n = await asyncio.to_thread(ask, cluster, 1, key, "shout", "pushed")
                assert n == 1
                assert await frame(ws_a) == "pushed"
                await ws_a.send_str("two")
                assert await frame(ws_a) == "two"

                # a second socket of the same actor, on B's gateway
                ws_b = await http.ws_connect(f"http://{b}/ws/Echo/{key}?name=bob")
                assert "hello" in await frame(ws_b)
                await ws_a.send_str("all:to everyone")        # a batch of A's gateway
                assert await frame(ws_a) == "to everyone"
                assert await frame(ws_b) == "to everyone"
                await ws_b.send_str("who")                     # the roster: both gateways'
                assert await frame(ws_b) == ["ada", "bob"]

                # a third node joins and takes the actor's shard; the sockets stay open
                i = await asyncio.to_thread(cluster.add_node)
                await asyncio.to_thread(cluster.wait_ready, i, 60.0)
                await asyncio.to_thread(wait_balanced, cluster, 3)
                assert await asyncio.to_thread(owner_of, cluster, 0, key) == "n3"
                # a fresh activation on n3 knows no sockets yet: its broadcast reaches
                # every joined socket, on both gateways
                await asyncio.to_thread(ask, cluster, 2, key, "shout", "after the move")
                assert await frame(ws_a) == "after the move"
                assert await frame(ws_b) == "after the move"
                await ws_a.send_str("three")
                assert await frame(ws_a) == "three"
                await ws_b.send_str("others:from bob")
                assert await frame(ws_a) == "from bob"
                # a Python subscription held by A's gateway (issue 18), for the actor on
                # n3, gets the broadcast of a turn asked through B's router
                py_client, subscribed = await asyncio.to_thread(python_subscriber, cluster, key)
                n = await asyncio.to_thread(ask, cluster, 1, key, "shout", "last")
                assert n == 3
                assert await frame(ws_a) == "last"
                assert await frame(ws_b) == "last"
                assert await asyncio.to_thread(subscribed.receive, FRAME) == "last"
                await ws_b.close()
                assert await frame(ws_a) == {"left": "bob"}
                await ws_a.close()
                async with http.post(f"http://{a}/actors/Echo/{key}/counts") as r:
                    counts = await r.json()
                assert counts["connects"] == 3 and counts["messages"] == 6, counts
                assert counts["disconnects"] in (1, 2), counts    # (ada's may be on its way)
                await asyncio.to_thread(py_client.close)

        asyncio.run(scenario())
