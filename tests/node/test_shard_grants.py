"""The worker side of cluster shard serving (actorsys/runtime/grants.py), driven with raw
SHARDS frames over ZeroMQ against real single nodes: grants admit only their shards,
a revocation drains (the running turn commits first, queued asks get wrong_shard),
a shard exported from one node's slot and imported into another's is whole there
(state, storage, alarm, listing), a fencing deadline in the past refuses and writes
nothing, and malformed SHARDS requests are bad requests that stop nothing."""
from __future__ import annotations

import time
from typing import Any

import msgpack
import pytest
import zmq
from helpers import mover_config

import actorsys
from actorsys.protocol import wire
from actorsys.protocol.shardmap import shard_of
from actorsys.testing.nodes import wait_until

SHARDS, ASK, STATUS, LIST, PING = wire.SHARDS, wire.ASK, wire.STATUS, wire.LIST, wire.PING


class Raw:
    """A DEALER peer of one worker: requests with ids, replies read in arrival order."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.rid = 0

    def send(self, *msg: Any) -> int:
        self.rid += 1
        self.sock.send(wire.pack([msg[0], self.rid, *msg[1:]]))
        return self.rid

    def recv(self, timeout: float = 10.0) -> list[Any]:
        assert self.sock.poll(timeout * 1000), "expected a reply from the worker"
        return msgpack.unpackb(self.sock.recv(), raw=False, strict_map_key=False)

    def call(self, *msg: Any, timeout: float = 10.0) -> list[Any]:
        rid = self.send(*msg)
        reply = self.recv(timeout)
        assert reply[1] == rid, f"expected the reply to request {rid}, got {reply!r}"
        return reply

    def ok(self, *msg: Any, timeout: float = 10.0) -> Any:
        reply = self.call(*msg, timeout=timeout)
        assert reply[0] == wire.OK, f"expected OK to {msg[:3]!r}, got {reply!r}"
        return reply[2]

    def err(self, *msg: Any) -> dict[str, Any]:
        reply = self.call(*msg)
        assert reply[0] == wire.ERR, f"expected an error to {msg[:3]!r}, got {reply!r}"
        return reply[2]

    def ask(self, key: str, method: str, *args: Any) -> list[Any]:
        return self.call(ASK, "Mover", key, method, list(args), {})

    def grant(self, shards: dict[int, int], epoch: int = 7, **more: Any) -> dict[str, Any]:
        return self.ok(SHARDS, "grant", {"shards": shards, "epoch": epoch, "node": "n1", **more},
                       timeout=20.0)

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def mnode(tmp_path):
    with actorsys.Node(mover_config(str(tmp_path / "data"))) as n:
        yield n


def keys_on_slot(node: actorsys.Node, slot: int, count: int, prefix: str = "m") -> list[tuple[str, int]]:
    """``count`` (key, shard) of Mover actors on ``slot``, each in a different shard."""
    m = node.client().map
    found: dict[int, str] = {}
    for i in range(100_000):
        key = f"{prefix}-{i}"
        shard = shard_of("Mover", key, m.shards)
        if m.owner[shard] == slot and shard not in found:
            found[shard] = key
            if len(found) == count:
                return [(k, s) for s, k in found.items()]
    raise AssertionError("not enough keys")


def worker(node: actorsys.Node, zctx: zmq.Context, slot: int = 0) -> Raw:
    return Raw(zctx, node.client().map.endpoints[slot])


def test_a_grant_admits_only_its_shards(mnode, zctx):
    (ka, sa), (kb, sb) = keys_on_slot(mnode, 0, 2)
    w = worker(mnode, zctx)
    try:
        assert w.ask(kb, "add", 1)[2] == 1, "single-node mode: every shard homed here serves"
        st = w.ok(STATUS)
        assert st["granted"] is None and st["fenced"] is None
        reply = w.grant({sa: 3}, epoch=11)
        assert reply["granted"] == 1 and sb in reply["revoked"] and sa not in reply["revoked"]
        assert w.ask(ka, "add", 2)[2] == 2
        body = w.ask(kb, "add", 1)[2]
        assert body["code"] == "wrong_shard" and body["epoch"] == 11, body
        assert "n1" in body["message"]
        assert w.ok(STATUS)["granted"] == 1
        # through the router, with the client's own resends: the granted one works
        c = mnode.client()
        assert c.ref("Mover", ka).ask("add", 1) == 3
        # granting it back: its committed state is there
        w.grant({sa: 3, sb: 3}, epoch=12)
        assert w.ask(kb, "add", 1)[2] == 2
    finally:
        w.close()


def test_a_revocation_lets_the_running_turn_commit_and_refuses_the_queue(mnode, zctx):
    (ka, sa), = keys_on_slot(mnode, 0, 1)
    w = worker(mnode, zctx)
    try:
        w.grant({sa: 1})
        slow = w.send(ASK, "Mover", ka, "slow_add", [5, 1.0], {})
        # (one connection: the worker reads these in order, the grant last, while the
        # slow turn awaits)
        queued = [w.send(ASK, "Mover", ka, "add", [100], {}) for _ in range(2)]
        grant = w.send(SHARDS, "grant", {"shards": {}, "epoch": 8, "node": "n1"})
        replies = [w.recv() for _ in range(4)]
        order = [r[1] for r in replies]
        assert order == [*queued, slow, grant], replies
        for r in replies[:2]:
            assert r[0] == wire.ERR and r[2]["code"] == "wrong_shard" and r[2]["epoch"] == 8, r
        assert replies[2][0] == wire.OK and replies[2][2] == 5, "the running turn committed first"
        assert replies[3][0] == wire.OK and replies[3][2]["revoked"] == [sa], replies[3]
        st = w.ok(STATUS)
        assert st["granted"] == 0
        w.grant({sa: 2})
        assert w.ask(ka, "add", 1)[2] == 6, "the slow turn was committed, the queued ones not"
    finally:
        w.close()


def export_all(w: Raw, shards: list[int]) -> list[list[bytes]]:
    items: list[list[bytes]] = []
    after = None
    while True:
        page = w.ok(SHARDS, "export", {"shards": shards, "after": after, "max_bytes": 256})
        items += page["items"]
        after = page["next"]
        if after is None:
            return items


def test_a_shard_exported_from_one_node_and_imported_into_another_is_whole_there(tmp_path, zctx):
    with actorsys.Node(mover_config(str(tmp_path / "a"))) as a, \
            actorsys.Node(mover_config(str(tmp_path / "b"))) as b:
        assert a.client().map.owner == b.client().map.owner
        (key, shard), = keys_on_slot(a, 1, 1)
        ca = a.client()
        ref = ca.ref("Mover", key)
        ref.ask("add", 3)
        ref.ask("put", "e", {"x": 1})
        ref.ask("alarm", 5.0)
        wa, wb = worker(a, zctx, 1), worker(b, zctx, 1)
        try:
            wa.grant({})
            items = export_all(wa, [shard])
            kinds = {k[:1] for k, _v in items}
            assert kinds == {b"a", b"n", b"t"}, f"actor keys, listing and due index: {kinds}"
            wb.grant({})
            foreign = next(s for s, o in enumerate(a.client().map.owner) if o != 1)
            refused = wb.err(SHARDS, "import", {"shards": [foreign], "items": []})
            assert refused["code"] == "bad_request" and "homed on another" in refused["message"]
            assert wb.ok(SHARDS, "import", {"shards": [shard], "clear": True,
                                            "items": items})["written"] == len(items)
            # (an actor's listing entry comes with each page holding keys of it)
            assert wa.ok(SHARDS, "drop", {"shards": [shard]})["deleted"] == len({k for k, _v in items})
            wb.grant({shard: 2})
            info = b.client().ref("Mover", key).ask("info")
            assert info["n"] == 3 and info["storage"] == {"e": {"x": 1}} and info["alarms"] == ["a"], info
            assert key in b.client().list_actors("Mover")
            assert key not in ca.list_actors("Mover")
            wait_until(lambda: b.client().ref("Mover", key).ask("info")["fired"] == ["a"],
                       "the alarm fires on the node the shard moved to")
            wa.grant({s: 1 for s in range(len(a.client().map.owner))})
            assert ca.ref("Mover", key).ask("info")["n"] == 0, "nothing of it is left on the old node"
        finally:
            wa.close()
            wb.close()


def test_past_the_fencing_deadline_nothing_is_admitted_or_written(mnode, zctx):
    (ka, sa), (kb, sb) = keys_on_slot(mnode, 0, 2)
    w = worker(mnode, zctx)
    try:
        w.grant({sa: 1, sb: 1})
        assert w.ask(ka, "add", 1)[2] == 1
        w.grant({sa: 1, sb: 1}, until=time.monotonic() - 1.0, why="node n1 could not renew its lease")
        for key in (ka, kb):
            body = w.ask(key, "add", 10)[2]
            assert body["code"] == "shard_unavailable", body
            assert "n1" in body["message"] and "could not renew its lease" in body["message"]
        assert w.ok(STATUS)["fenced"] == "node n1 could not renew its lease"
        # a turn admitted before the deadline and committing after it is not applied
        w.grant({sa: 1, sb: 1}, until=time.monotonic() + 1.0, why="lease lost")
        body = w.ask(ka, "slow_add", 100, 2.0)[2]
        assert body["code"] == "shard_unavailable" and "lease lost" in body["message"], body
        w.grant({sa: 1, sb: 1}, until=None)
        assert w.ok(STATUS)["fenced"] is None
        assert w.ask(ka, "add", 0)[2] == 1, "nothing past the deadline was written"
        assert w.ask(kb, "add", 0)[2] == 0
    finally:
        w.close()


MALFORMED = [
    ("no command", [SHARDS, 1]),
    ("a command that is not a string", [SHARDS, 2, 5, {}]),
    ("arguments that are not a map", [SHARDS, 3, "grant", []]),
    ("integer argument names", [SHARDS, 4, "grant", {1: 2}]),
    ("an extra element", [SHARDS, 5, "grant", {}, 1]),
    ("an unknown command", [SHARDS, 6, "steal", {}]),
    ("a grant without epoch", [SHARDS, 7, "grant", {"shards": {}}]),
    ("a grant of a list", [SHARDS, 8, "grant", {"shards": [1], "epoch": 1}]),
    ("a grant of a shard out of range", [SHARDS, 9, "grant", {"shards": {1 << 20: 1}, "epoch": 1}]),
    ("a grant with a string epoch", [SHARDS, 10, "grant", {"shards": {}, "epoch": "1"}]),
    ("a grant with an infinite until", [SHARDS, 11, "grant", {"shards": {}, "epoch": 1,
                                                              "until": float("inf")}]),
    ("a grant with an unknown argument", [SHARDS, 12, "grant", {"shards": {}, "epoch": 1, "x": 1}]),
    ("an export of a served shard", [SHARDS, 13, "export", {"shards": [0], "max_bytes": 10}]),
    ("an export with a string cursor", [SHARDS, 14, "export", {"shards": [], "after": "x"}]),
    ("an export of zero bytes", [SHARDS, 15, "export", {"shards": [], "max_bytes": 0}]),
    ("an import of bad items", [SHARDS, 16, "import", {"shards": [], "items": [[1, 2]]}]),
    ("a drop of negative shards", [SHARDS, 17, "drop", {"shards": [-1]}]),
]


def test_malformed_shards_requests_are_bad_requests_and_stop_nothing(mnode, zctx):
    pids = {p["slot"]: p["pid"] for p in mnode.status()["processes"] if p["role"] == "worker"}
    w = worker(mnode, zctx)
    router = Raw(zctx, mnode.endpoint)
    try:
        for what, msg in MALFORMED:
            w.sock.send(wire.pack(msg))
            reply = w.recv()
            assert reply[0] == wire.ERR and reply[2]["code"] == "bad_request", (what, reply)
            assert reply[1] == msg[1], (what, reply)
        body = router.err(SHARDS, "grant", {"shards": {}, "epoch": 1})
        assert body["code"] == "bad_request" and "router does not serve shards" in body["message"]
        assert w.ok(PING) == "pong"
        st = w.ok(STATUS)
        assert st["granted"] is None, "no malformed grant took effect"
        assert mnode.client().ref("Mover", "x").ask("add", 1) == 1
    finally:
        w.close()
        router.close()
    after = {p["slot"]: p["pid"] for p in mnode.status()["processes"] if p["role"] == "worker"}
    assert after == pids


def test_a_cluster_workers_actors_reach_others_through_the_routers_map(tmp_path, zctx):
    """A worker of a node with a [cluster] table sends its actors' asks with the map it
    fetched from its router (not its local table). Its router grants what etcd says it
    owns; here every shard is granted (what a one-node cluster owns) by raw frames."""
    from actorsys.config.layout import free_port
    from actorsys.testing.etcd import Etcd
    with Etcd(str(tmp_path / "etcd")) as etcd:
        cfg = mover_config(str(tmp_path / "data"))
        cfg["node"].update(endpoint=f"tcp://127.0.0.1:{free_port('127.0.0.1')}", insecure=True)
        cfg["cluster"] = {"etcd": [etcd.url], "name": "grants", "node_id": "n1", "lease_ttl": 5.0}
        with actorsys.Node(cfg) as n:
            m = n.client().map
            raws = [Raw(zctx, ep) for ep in m.endpoints]
            try:
                for slot, w in enumerate(raws):
                    w.grant({s: 1 for s, o in enumerate(m.owner) if o == slot})
                relay = next(f"r-{i}" for i in range(10_000)
                             if m.owner[shard_of("Relay", f"r-{i}", m.shards)] == 0)
                (target, _), = keys_on_slot(n, 1, 1)
                c = n.client()
                assert c.ref("Relay", relay).ask("forward_ask", "Mover", target, "add", 4) == 4
                assert c.ref("Mover", target).ask("add", 0) == 4
            finally:
                for w in raws:
                    w.close()
