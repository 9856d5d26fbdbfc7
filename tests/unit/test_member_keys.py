"""CURVE between cluster members (actorsys/net/members.py, Guard.admit_extra): a node
process lets in the other members' keys set at run time, over real tcp sockets; a new
set replaces the old; bad keys change nothing; a client picks each node's server key
from the cluster map."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from actorsys.config.layout import free_port
from actorsys.errors import BadRequest
from actorsys.net.keys import CurveKeys, NodeKeys
from actorsys.net.listener import Listener
from actorsys.net.members import apply_member_keys, member_keys, server_keys
from actorsys.protocol.shardmap import ShardMap

DONE = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH


def pair() -> tuple[bytes, bytes]:
    return zmq.curve_keypair()


async def handshake(ctx: zmq.Context[Any], endpoint: str, keys: CurveKeys, timeout: float = 5.0) -> str:
    """Connect with ``keys``: "ok" if the node lets the key in, "refused" if not."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    s.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    s.setsockopt(zmq.CURVE_SERVERKEY, keys.server)
    mon = s.get_monitor_socket(DONE)
    s.connect(endpoint)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if mon.poll(0):
                event = parse_monitor_message(mon.recv_multipart())["event"]
                return "ok" if event == zmq.EVENT_HANDSHAKE_SUCCEEDED else "refused"
            await asyncio.sleep(0.005)       # the guard answers ZAP on this loop
        raise AssertionError(f"no handshake outcome within {timeout} s")
    finally:
        s.disable_monitor()
        mon.close(0)
        s.close(0)


def test_members_keys_are_let_in_at_run_time_and_replaced():
    node_public, node_secret = pair()
    member_public, member_secret = pair()
    other_public, _ = pair()
    endpoint = f"tcp://127.0.0.1:{free_port('127.0.0.1')}"

    async def main() -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        counters: dict[str, int] = {}
        listener = Listener(ctx, asyncio.get_running_loop(), NodeKeys.make(node_public, node_secret, []),
                            counters, endpoint, 1 << 20)
        member = CurveKeys(member_public, member_secret, node_public)
        try:
            assert listener.guard is not None
            assert await handshake(ctx, endpoint, member) == "refused"
            assert counters["auth_refused"] == 1
            # the router sends the members' keys (its own key among them is harmless)
            keys = member_keys([member_public.decode(), None, node_public.decode()],
                               own=node_public.decode())
            assert keys == [member_public.decode()]
            assert apply_member_keys(listener.guard, keys) == 1
            assert counters["member_keys"] == 1
            assert await handshake(ctx, endpoint, member) == "ok"
            # the node's own key still gets in; a grant without keys changes nothing
            assert await handshake(ctx, endpoint, CurveKeys(node_public, node_secret, node_public)) == "ok"
            assert apply_member_keys(listener.guard, None) == 1
            assert await handshake(ctx, endpoint, member) == "ok"
            # bad keys: refused as a whole, the set stays
            for bad in (["short"], [member_public.decode(), "~" * 40], "not-a-list", [42]):
                with pytest.raises(BadRequest):
                    apply_member_keys(listener.guard, bad)
            assert await handshake(ctx, endpoint, member) == "ok"
            # the member left: a new set without it refuses its next handshake
            assert apply_member_keys(listener.guard, [other_public.decode()]) == 1
            assert await handshake(ctx, endpoint, member) == "refused"
            assert counters["auth_refused"] == 2
            assert apply_member_keys(listener.guard, []) == 0 and counters["member_keys"] == 0
        finally:
            listener.close()
            ctx.term()

    asyncio.run(main())


def test_no_guard_checks_keys_and_admits_nothing():
    public, _ = pair()
    assert apply_member_keys(None, [public.decode()]) == 0
    with pytest.raises(BadRequest):
        apply_member_keys(None, ["nope"])


def test_admit_extra_takes_raw_keys_only():
    from actorsys.net.guard import Guard

    ctx: zmq.Context[Any] = zmq.Context()
    loop = asyncio.new_event_loop()
    public, secret = pair()
    guard = Guard(ctx, loop, NodeKeys.make(public, secret, []), {})
    try:
        with pytest.raises(ValueError):
            guard.admit_extra({public})          # Z85 text, not the raw key
        guard.admit_extra({z85.decode(public)})
        assert guard.extra == {z85.decode(public)}
    finally:
        guard.close()
        loop.close()
        ctx.term()


def test_server_key_per_node_from_the_cluster_map():
    a, b = pair()[0], pair()[0]
    endpoints = ["tcp://10.0.0.1:1", "tcp://10.0.0.1:2", "tcp://10.0.0.2:1", "tcp://10.0.0.3:1"]
    nodes = [{"id": "n1", "endpoint": "tcp://10.0.0.1:7", "alive": True, "slots": [0, 2],
              "public_key": a.decode()},
             {"id": "n2", "endpoint": "tcp://10.0.0.2:7", "alive": True, "slots": [2, 1],
              "public_key": b},
             {"id": "n3", "endpoint": "tcp://10.0.0.3:7", "alive": True, "slots": [3, 1]},
             {"id": "n4", "endpoint": "tcp://10.0.0.4:7", "alive": False, "slots": [4, 0],
              "public_key": "garbage"}]
    keys = server_keys(nodes, endpoints)
    assert keys == {"tcp://10.0.0.1:7": a, endpoints[0]: a, endpoints[1]: a,
                    "tcp://10.0.0.2:7": b, endpoints[2]: b}
    assert server_keys(None, endpoints) == {}
    mine = CurveKeys(b"p" * 40, b"s" * 40, a)
    assert mine.for_server(None) is mine and mine.for_server(a) is mine
    assert mine.for_server(b) == CurveKeys(b"p" * 40, b"s" * 40, b)
    assert "s" * 40 not in repr(mine.for_server(b))


def test_transport_uses_each_nodes_server_key():
    from actorsys.client.transport import AsyncTransport

    a, b = pair()[0], pair()[0]
    endpoints = ["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"]
    cluster_map = ShardMap(epoch=1, shards=2, owner=[0, 1], endpoints=endpoints)
    cluster_map.nodes = [{"id": "n1", "endpoint": "tcp://10.0.0.1:7", "slots": [0, 1],  # type: ignore[attr-defined]
                          "public_key": a.decode()},
                         {"id": "n2", "endpoint": "tcp://10.0.0.2:7", "slots": [1, 1],
                          "public_key": b.decode()}]

    async def main() -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        mine = CurveKeys(b"p" * 40, b"s" * 40, a)
        t = AsyncTransport(ctx, "tcp://10.0.0.1:7", keys=mine)
        try:
            assert t.keys_for(endpoints[1]) == mine       # no cluster map yet
            t.set_map(cluster_map, 1 << 20, None)
            k0, k1 = t.keys_for(endpoints[0]), t.keys_for(endpoints[1])
            assert k0 is not None and k0.server == a
            assert k1 is not None and k1.server == b and k1.public == mine.public
            assert t.keys_for("tcp://10.0.0.9:1") == mine
        finally:
            t.close()
            ctx.term()

    asyncio.run(main())


def test_a_node_back_with_another_key_loses_its_connections_and_their_asks(tmp_path):
    from client_fakes import HOLD, FakeNode

    from actorsys.client.transport import AsyncTransport
    from actorsys.errors import WorkerLost

    a, b = pair()[0], pair()[0]

    def keyed(fake: FakeNode, key: bytes) -> ShardMap:
        m = ShardMap(epoch=2, shards=fake.map.shards, owner=fake.map.owner, endpoints=fake.map.endpoints)
        m.nodes = [{"id": "n1", "endpoint": fake.endpoint, "slots": [0, 2],  # type: ignore[attr-defined]
                    "public_key": key.decode()}]
        return m

    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD if r[0] == 1 else None) as fake:
        async def main() -> None:
            ctx: zmq.Context[Any] = zmq.Context()
            # ipc endpoints use no CURVE: the keys only decide which connections stay
            t = AsyncTransport(ctx, fake.endpoint, keys=CurveKeys(b"p" * 40, b"s" * 40, a))
            try:
                await t.connect(10.0)
                t.set_map(keyed(fake, a), 1 << 20, None)
                fut = t.ask("T", "k", "add", [1])
                await asyncio.sleep(0)        # the ask leaves when the loop goes idle
                fake.wait_for(lambda: fake.requests(0, 1) + fake.requests(1, 1), "the ask")
                t.set_map(keyed(fake, a), 1 << 20, None)          # same keys: nothing happens
                assert not fut.done()
                t.set_map(keyed(fake, b), 1 << 20, None)          # the node came back with key b
                with pytest.raises(WorkerLost):
                    await asyncio.wait_for(fut, 10.0)
            finally:
                t.close()
                ctx.term()

        asyncio.run(main())
