"""The worker side of replicated shards (actorsys/runtime/replication.py), driven with
raw SHARDS grants against two real single nodes A and B (no etcd): A's worker leads a
shard with B's worker as its one voter follower (quorum 2 of 2). An ask on A returns
only once B holds the write; a follower that does not answer makes A's asks fail with
ShardUnavailable after ack_timeout, and they work again once it is back (caught up);
a follower with nothing (or that lost its copy) gets a snapshot; a follower fenced at
a newer epoch refuses A's batches and A stops serving the shard at once. Over tcp with
CURVE, A's link to B uses B's public key from the grant and connects again once B lets
A's key in."""
from __future__ import annotations

import os
import signal
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

SHARDS, ASK, STATUS = wire.SHARDS, wire.ASK, wire.STATUS
pytestmark = pytest.mark.timeout(60)


class Raw:
    """A DEALER peer of one worker: requests with ids, replies in arrival order."""

    def __init__(self, ctx: zmq.Context, endpoint: str,
                 curve: tuple[bytes, bytes, bytes] | None = None,
                 routing_id: bytes | None = None) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if routing_id is not None:
            self.sock.setsockopt(zmq.ROUTING_ID, routing_id)
        if curve is not None:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = curve
        self.sock.connect(endpoint)
        self.rid = 0

    def call(self, *msg: Any, timeout: float = 15.0) -> list[Any]:
        self.rid += 1
        self.sock.send(wire.pack([msg[0], self.rid, *msg[1:]]))
        while True:
            assert self.sock.poll(timeout * 1000), f"no reply to {msg[:3]!r}"
            reply = msgpack.unpackb(self.sock.recv(), raw=False, strict_map_key=False)
            if reply[1] == self.rid:
                return reply

    def ok(self, *msg: Any, timeout: float = 15.0) -> Any:
        reply = self.call(*msg, timeout=timeout)
        assert reply[0] == wire.OK, f"expected OK to {msg[:3]!r}, got {reply!r}"
        return reply[2]

    def ask(self, key: str, method: str, *args: Any) -> list[Any]:
        return self.call(ASK, "Mover", key, method, list(args), {})

    def grant(self, shards: dict[int, int], epoch: int = 7, **more: Any) -> dict[str, Any]:
        return self.ok(SHARDS, "grant", {"shards": shards, "epoch": epoch, "node": "na", **more})

    def position(self, shard: int, **more: Any) -> dict[str, Any]:
        return self.ok(SHARDS, "position", {"shards": [shard], **more})

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def pair(tmp_path, zctx):
    """Nodes A and B, raw links to their slot-1 workers, and a key of a shard homed there."""
    with actorsys.Node(mover_config(str(tmp_path / "a"))) as a, \
            actorsys.Node(mover_config(str(tmp_path / "b"))) as b:
        m = a.client().map
        assert m.owner == b.client().map.owner
        key = next(f"m-{i}" for i in range(10_000) if m.owner[shard_of("Mover", f"m-{i}", m.shards)] == 1)
        shard = shard_of("Mover", key, m.shards)
        wa, wb = Raw(zctx, m.endpoints[1]), Raw(zctx, b.client().map.endpoints[1])
        try:
            yield a, b, wa, wb, key, shard
        finally:
            wa.close()
            wb.close()


def replicate(wa: Raw, wb_endpoint: str, shard: int, epoch: int = 3, ack_timeout: float = 1.0,
              key: str | None = None, **more: Any) -> dict[str, Any]:
    return wa.grant({shard: epoch}, peers=[["nb", wb_endpoint, key]],
                    replicas={shard: [[0, True]]}, ack="majority", ack_timeout=ack_timeout, **more)


def worker_pid(node: actorsys.Node, slot: int) -> int:
    return next(p["pid"] for p in node.status()["processes"]
                if p["role"] == "worker" and p["slot"] == slot)


def test_an_ask_returns_once_the_follower_holds_it_and_waits_out_a_silent_follower(pair):
    a, b, wa, wb, key, shard = pair
    eb = b.client().map.endpoints[1]
    wb.grant({})                          # B serves nothing: a follower
    assert wa.ask(key, "add", 5)[2] == 5, "written before the shard was replicated"
    replicate(wa, eb, shard)
    assert wa.ask(key, "add", 1)[2] == 6, "B got a snapshot (its copy was empty), then the batch"
    pos = wb.position(shard)["positions"][shard]
    rep = wa.ok(SHARDS, "replication", {"shards": [shard]})[shard]
    assert pos == [3, rep["seq"]] and rep["epoch"] == 3 and rep["held"] == {"nb": rep["seq"]}, (pos, rep)
    st = wa.ok(STATUS)["replication"]
    assert st["leading"] == 1 and st["waiting_groups"] == 0 and st["behind"] == {}, st
    assert wb.ok(STATUS)["replication"]["following"] == 1
    # B's worker stops answering: the write commits on A but its ask fails after ack_timeout
    pid = worker_pid(b, 1)
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        body = wa.ask(key, "add", 1)[2]
        took = time.monotonic() - t0
        assert body["code"] == "shard_unavailable" and "only 1 of the 2 replicas" in body["message"], body
        assert 0.9 <= took < 4.0, took
        assert wa.ok(STATUS)["replication"]["behind"] == {"nb": 1}
    finally:
        os.kill(pid, signal.SIGCONT)
    # back: caught up from A's log, and asks are acknowledged again
    wait_until(lambda: wa.ask(key, "add", 1)[0] == wire.OK, "asks on A work again once B is back",
               timeout=10)
    n = wa.ask(key, "add", 1)[2]
    assert n >= 9, n          # (the failed write was committed on A and replicated since)
    assert worker_pid(b, 1) == pid, "B's worker was stopped, not restarted"
    # B holds everything A acknowledged: promote it
    wa.grant({})
    wb.grant({shard: 4})
    assert wb.ask(key, "add", 0)[2] == n


def test_the_follower_delivers_the_leaders_reply_to_an_asker_connected_to_it(pair, zctx):
    """Quorum 2: the follower, once it holds the write, sends the leader's reply on to the
    asker (by the asker's routing id, on its connection to the follower's worker); an
    asker not connected there gets it from the leader, naming the follower's worker."""
    a, b, wa, wb, key, shard = pair
    ea, eb = a.client().map.endpoints[1], b.client().map.endpoints[1]
    wb.grant({})
    replicate(wa, eb, shard)
    assert wa.ask(key, "add", 1) == [wire.OK, wa.rid, 1], \
        "an asker with a routing id of ZeroMQ's making: answered by the leader, as before"
    me = b"c-asker-" + os.urandom(4)
    to_a = Raw(zctx, ea, routing_id=me)
    try:
        assert to_a.ask(key, "add", 1) == [wire.OK, 1, 2, eb], "not connected to B: named"
        to_b = Raw(zctx, eb, routing_id=me)
        try:
            to_b.ok(wire.PING)                   # (connected)
            came: list[str] = []
            poller = zmq.Poller()
            poller.register(to_a.sock, zmq.POLLIN)
            poller.register(to_b.sock, zmq.POLLIN)
            for n in range(3, 23):
                to_a.rid += 1
                to_a.sock.send(wire.pack([ASK, to_a.rid, "Mover", key, "add", [1], {}]))
                ready = dict(poller.poll(15_000))
                assert ready, f"no reply to ask {n}"
                sock = to_b.sock if to_b.sock in ready else to_a.sock
                reply = msgpack.unpackb(sock.recv(), raw=False, strict_map_key=False)
                assert reply[:3] == [wire.OK, to_a.rid, n], reply
                came.append("B" if sock is to_b.sock else "A")
                time.sleep(0.01)                 # (a late duplicate from A would show here)
                for s in (to_a.sock, to_b.sock):
                    while s.poll(0):
                        late = msgpack.unpackb(s.recv(), raw=False, strict_map_key=False)
                        assert late[:3] == reply[:3], f"another reply than the first: {late}"
            assert came.count("B") >= 10, f"the follower delivered too few: {came}"
            assert wb.position(shard)["positions"][shard][1] >= 22
            assert wa.ok(STATUS)["replication"]["replies_via_followers"] >= 10
            assert wb.ok(STATUS)["replication"]["replies_forwarded"] >= 10
        finally:
            to_b.close()
    finally:
        to_a.close()


def test_a_killed_follower_fails_asks_after_ack_timeout_and_catches_up_when_back(pair):
    a, b, wa, wb, key, shard = pair
    eb = b.client().map.endpoints[1]
    wb.grant({})
    replicate(wa, eb, shard)
    assert wa.ask(key, "add", 1)[2] == 1
    pid = worker_pid(b, 1)
    os.kill(pid, signal.SIGKILL)
    body = wa.ask(key, "add", 1)[2]
    assert body["code"] == "shard_unavailable" and "within 1 s" in body["message"], body
    # its node restarts it as a single node's worker: it follows nothing until granted
    wait_until(lambda: worker_pid(b, 1) != pid, "B's worker restarted", timeout=10)
    refused = wb.call(SHARDS, "position", {"shards": [shard]})
    assert refused[0] == wire.ERR and "not in cluster mode" in refused[2]["message"], refused
    assert wa.ask(key, "add", 0)[0] == wire.ERR, \
        "a read after a failed write waits until a quorum holds that write (here: never)"
    assert wa.ask(key, "add", 1)[0] == wire.ERR, "A still serves it, but cannot reach its quorum"
    wb.grant({})
    wait_until(lambda: wa.ask(key, "add", 1)[0] == wire.OK, "asks on A work again", timeout=10)
    assert wa.ask(key, "add", 1)[2] >= 5
    seq = wa.ok(SHARDS, "replication", {"shards": [shard]})[shard]["seq"]
    assert wb.position(shard)["positions"][shard] == [3, seq]
    assert wa.ok(STATUS)["replication"]["snapshots"] == 1, "caught up from A's log"


def test_a_follower_that_lost_its_copy_gets_a_snapshot(pair):
    a, b, wa, wb, key, shard = pair
    eb = b.client().map.endpoints[1]
    wb.grant({})
    replicate(wa, eb, shard)
    for i in range(3):
        wa.ask(key, "put", f"e{i}", "x" * 1000)
    assert wa.ask(key, "add", 2)[2] == 2
    assert wb.ok(SHARDS, "drop", {"shards": [shard]})["deleted"] > 0
    assert wb.position(shard)["positions"][shard] == [0, 0]
    assert wa.ask(key, "add", 1)[2] == 3, "B is behind past A's log: snapshot, then the batch"
    seq = wa.ok(SHARDS, "replication", {"shards": [shard]})[shard]["seq"]
    assert wb.position(shard)["positions"][shard] == [3, seq]
    wa.grant({})
    wb.grant({shard: 4})
    info = wb.ask(key, "info")[2]
    assert info["n"] == 3 and sorted(info["storage"]) == ["e0", "e1", "e2"], info


def test_a_follower_fenced_at_a_newer_epoch_refuses_and_the_leader_stops_serving(pair):
    a, b, wa, wb, key, shard = pair
    eb = b.client().map.endpoints[1]
    wb.grant({})
    replicate(wa, eb, shard, ack_timeout=3.0)
    assert wa.ask(key, "add", 1)[2] == 1
    # the failover's promise: B refuses every batch of an epoch below 4 from now on
    got = wb.position(shard, fence={shard: 4})
    assert got["fences"] == {shard: 4} and got["positions"][shard][0] == 3
    t0 = time.monotonic()
    body = wa.ask(key, "add", 1)[2]
    assert body["code"] == "shard_unavailable" and "newer leader (epoch 4)" in body["message"], body
    assert time.monotonic() - t0 < 2.0, "refused at once, not after ack_timeout"
    assert wa.ask(key, "add", 1)[2]["code"] == "wrong_shard"
    # a grant of the older epoch does not give it back
    replicate(wa, eb, shard, ack_timeout=3.0)
    assert wa.ask(key, "add", 1)[2]["code"] == "wrong_shard"
    # a batch of epoch 3 sent directly is refused with the fence
    res = wb.ok(SHARDS, "append", {"batches": [[shard, 3, 3, 1, 99, []]]})
    assert res["refused"] == {shard: 4}
    bad = wb.call(SHARDS, "position", {"shards": [shard], "fence": {shard: "x"}})
    assert bad[0] == wire.ERR and bad[2]["code"] == "bad_request"
    bad = wa.call(SHARDS, "grant", {"shards": {}, "epoch": 1, "replicas": {shard: [[5, True]]}})
    assert bad[0] == wire.ERR and "replicas" in bad[2]["message"], bad


def test_a_batch_larger_than_a_message_goes_the_snapshot_way(pair):
    a, b, wa, wb, key, shard = pair
    eb = b.client().map.endpoints[1]
    wb.grant({})
    replicate(wa, eb, shard)
    assert wa.ask(key, "add", 1)[2] == 1
    assert wa.ok(STATUS)["replication"]["snapshots"] == 1, "B's empty copy"
    # one group of ~1.2 MB: more than max_message_bytes (1 MiB), so never an append
    assert wa.ask(key, "put_many", "big", 3, 400_000)[0] == wire.OK
    assert wa.ok(STATUS)["replication"]["snapshots"] == 2
    seq = wa.ok(SHARDS, "replication", {"shards": [shard]})[shard]["seq"]
    assert wb.position(shard)["positions"][shard] == [3, seq]
    big, after = [], None
    while True:                  # B's copy, read out page by page
        page = wb.ok(SHARDS, "export", {"shards": [shard], "after": after, "max_bytes": 1 << 19})
        big += [v for k, v in page["items"] if b"kbig" in k]
        if (after := page["next"]) is None:
            break
    assert [len(wire.unpack(v)) for v in big] == [400_000] * 3
    wa.grant({})
    wb.grant({shard: 4})
    assert wb.ask(key, "add", 0)[2] == 1


def test_over_curve_the_link_uses_the_peers_key_and_reconnects_once_let_in(tmp_path, zctx):
    from actorsys.config.keyfiles import load_public, load_secret
    from actorsys.config.layout import free_port
    from actorsys.net.keys import keygen
    clients = str(tmp_path / "clients")
    _alice_pub, alice_sec = keygen(clients, "alice")
    apub, asec = keygen(tmp_path / "ka", "node")
    bpub, bsec = keygen(tmp_path / "kb", "node")

    def cfg(name: str, secret: str) -> dict[str, Any]:
        c = mover_config(str(tmp_path / name))
        c["node"].update(endpoint=f"tcp://127.0.0.1:{free_port('127.0.0.1')}",
                         curve_secret_key=secret, authorized_keys=clients)
        return c
    with actorsys.Node(cfg("a", asec)) as a, actorsys.Node(cfg("b", bsec)) as b:
        m = a.client().map
        key = next(f"m-{i}" for i in range(10_000) if m.owner[shard_of("Mover", f"m-{i}", m.shards)] == 1)
        shard = shard_of("Mover", key, m.shards)
        mine = load_secret(alice_sec)
        eb = b.client().map.endpoints[1]
        wa = Raw(zctx, m.endpoints[1], (*mine, load_public(apub)))
        wb = Raw(zctx, eb, (*mine, load_public(bpub)))
        try:
            wb.grant({})                    # B does not know A's key yet: refused
            replicate(wa, eb, shard, key=load_public(bpub).decode())
            assert wa.ask(key, "add", 1)[2]["code"] == "shard_unavailable"
            wb.grant({}, keys=[load_public(apub).decode()])
            wait_until(lambda: wa.ask(key, "add", 1)[0] == wire.OK, "A's link reconnected once B let "
                       "its key in", timeout=15)
            seq = wa.ok(SHARDS, "replication", {"shards": [shard]})[shard]["seq"]
            assert wb.position(shard)["positions"][shard] == [3, seq]
        finally:
            wa.close()
            wb.close()
