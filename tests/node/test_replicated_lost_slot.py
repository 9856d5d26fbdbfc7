"""Replicated shards (issue 16): a node whose worker slot LOST its LevelDB never leads with
the empty copy, and no failover promotes an empty copy (``storage/lost.py``,
``runtime/grants.py``'s refusal, ``cluster/replica_repair.py``'s ``Repairs.resign``).

Three nodes on loopback addresses, ``replicas = 3``, ``lease_ttl`` 2 s, 64 shards:

* **a deleted slot, the node back at once.** Counters whose shards n2 leads on its slot
  0 are written; n2 is killed -9, its ``data/slot-0`` deleted, and it is started again
  before its lease expires (no failover has happened). No read of those counters ever
  returns less than what was acknowledged (the empty copy is never served, not even by
  the first grant); the shards are led by n1 or n3 within a bound, n2 is rebuilt (every
  copy at its leader's position) and every acknowledged write is there.
* **a damaged slot.** n3 killed -9, its slot 0's ``CURRENT`` deleted, started again: the
  slot is moved aside (``slot-0.damaged-<time>``, logged) and rebuilt, and every
  acknowledged write is readable.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
import urllib.request
from typing import Any, Iterator

import psutil
import pytest
from helpers import ACTORS, ACTORS_DIR

import actorsys
from actorsys.net.sockets import dealer
from actorsys.protocol import wire
from actorsys.protocol.shardmap import shard_of
from actorsys.testing.cluster import Cluster
from actorsys.testing.nodes import wait_until
from actorsys.testing.processes import describe, leftover_processes

TTL = 2.0
N, R, WORKERS, SHARDS = 3, 3, 2, 64
IDS = [f"n{i + 1}" for i in range(N)]
#: from the node's start to its lost shards answering from another leader
RESIGN_BOUND = 20.0
#: until every copy is at its leader's position again
REBUILD_TIMEOUT = 30.0

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """(The module's cluster runs on between the tests: checked once it is closed.)"""
    yield


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("lostslot"), N, "loopback", actors=ACTORS,
                python_path=[ACTORS_DIR], lease_ttl=TTL, workers=WORKERS, name="lost",
                extra_config={"cluster": {"replicas": R}, "node": {"shards": SHARDS}})
    with c:
        for i in range(N):
            c.wait_ready(i, timeout=60)
        for i in range(N):
            c.wait_view(i, settled, "the cluster settled", timeout=60)
        yield c
    left = leftover_processes(timeout=10)
    assert not left, f"processes left behind: {describe(left)}"


@pytest.fixture
def cluster(rc: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield rc
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for i in range(N):
            print(f"--- {rc.nodes[i].node_id}:\n{rc.log_tail(i, 80)}")


def settled(view: dict[str, Any]) -> bool:
    nodes = view["nodes"]
    return (view.get("replicas") == R and sorted(n["id"] for n in nodes if n["alive"]) == IDS
            and view.get("under_replicated") == 0 and view.get("unavailable") == 0
            and all(n["shards"] > 0 and not n.get("moving") for n in nodes))


def shards_cmd(endpoint: str, cmd: str, args: dict[str, Any], timeout: float = 5.0) -> Any:
    s = dealer(actorsys_ctx(), endpoint, None)
    try:
        s.send(wire.pack([wire.SHARDS, 1, cmd, args]))
        assert s.poll(int(timeout * 1000)), f"{endpoint} did not answer {cmd}"
        reply = wire.unpack(s.recv())
        assert reply[0] == wire.OK, f"{endpoint} refused {cmd}: {reply[2]}"
        return reply[2]
    finally:
        s.close(0)


def actorsys_ctx() -> Any:
    import zmq
    return zmq.Context.instance()


def record(c: Cluster, s: int) -> dict[str, Any]:
    """Shard ``s``'s ownership record in etcd."""
    assert c.etcd is not None
    key = f"/actorsys/{c.name}/shards/{s:05d}".encode()
    body = json.dumps({"key": base64.b64encode(key).decode()}).encode()
    req = urllib.request.Request(c.etcd.url + "/v3/kv/range", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        kvs = json.loads(r.read()).get("kvs") or []
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else {}


def worker_status(endpoint: str) -> dict[str, Any]:
    s = dealer(actorsys_ctx(), endpoint, None)
    try:
        s.send(wire.pack([wire.STATUS, 1]))
        assert s.poll(5000), f"{endpoint} did not answer status"
        reply = wire.unpack(s.recv())
        assert reply[0] == wire.OK, reply
        return dict(reply[2])
    finally:
        s.close(0)


def by_shard(d: dict[Any, Any], s: int) -> Any:
    return d.get(s, d.get(str(s)))


def shard(key: str) -> int:
    return shard_of("Counter", key, SHARDS)


def leader(client: actorsys.Client, key: str) -> tuple[str | None, int]:
    """(node id, its local slot) the client's map sends ``key`` to."""
    m = client.map
    g = m.owner[shard(key)]
    node = m.node_of_slot(g) if g >= 0 else None
    return (None, -1) if node is None else (str(node["id"]), g - node["slots"][0])


def keys_led_by(client: actorsys.Client, node_id: str, slot: int, n: int, base: str) -> list[str]:
    client.refresh_map()
    out = [k for k in (f"{base}-{i}" for i in range(20_000)) if leader(client, k) == (node_id, slot)]
    assert len(out) >= n, f"no {n} keys led by {node_id} on slot {slot}"
    return out[:n]


def worker_of(client: actorsys.Client, node_id: str, slot: int) -> str:
    m = client.map
    first = next(n["slots"][0] for n in m.nodes or () if n["id"] == node_id)
    return str(m.endpoints[first + slot])


def behind(client: actorsys.Client, shards: set[int]) -> list[str]:
    """Each copy of ``shards`` (on every node, the worker homing it there: every node has
    the same home table with the same worker count) not at its leader's position."""
    client.refresh_map()
    m = client.map
    out = []
    for s in sorted(shards):
        g = m.owner[s]
        node = m.node_of_slot(g) if g >= 0 else None
        if node is None:
            out.append(f"shard {s}: no live leader")
            continue
        rep = by_shard(shards_cmd(str(m.endpoints[g]), "replication", {"shards": [s]}), s)
        want = [int(rep["epoch"]), int(rep["seq"])]
        slot = g - node["slots"][0]
        for nid in IDS:
            if nid == node["id"]:
                continue
            pos = by_shard(shards_cmd(worker_of(client, nid, slot), "position",
                                      {"shards": [s]})["positions"], s)
            if pos is None or [int(x) for x in pos] != want:
                out.append(f"shard {s}: leader {node['id']} at {want}, {nid} at {pos}")
    return out


class Acked:
    """What was acknowledged, per key, and reads that saw less (an empty copy served)."""

    def __init__(self) -> None:
        self.n: dict[str, int] = {}
        self.lower: list[str] = []
        self.lock = threading.Lock()

    def add(self, client: actorsys.Client, key: str) -> bool:
        try:
            got = client.ask("Counter", key, "add", 1, timeout=2.0)
        except actorsys.ActorError:
            return False
        with self.lock:
            self.n[key] = max(self.n.get(key, 0), int(got))
        return True

    def read(self, client: actorsys.Client, key: str) -> int | None:
        with self.lock:
            floor = self.n.get(key, 0)
        try:
            got = int(client.ask("Counter", key, "get", timeout=2.0))
        except actorsys.ActorError:
            return None
        if got < floor:
            with self.lock:
                self.lower.append(f"{key}: read {got} after {floor} acknowledged")
        return got


class Reader(threading.Thread):
    """Reads ``keys`` in turn until stopped (every answer checked against the acks)."""

    def __init__(self, endpoints: list[str], keys: list[str], acked: Acked) -> None:
        super().__init__(daemon=True)
        self.client = actorsys.connect(endpoints, timeout=2.0, connect_timeout=20.0)
        self.keys, self.acked, self.halt, self.reads = keys, acked, threading.Event(), 0

    def run(self) -> None:
        while not self.halt.is_set():
            for k in self.keys:
                if self.acked.read(self.client, k) is not None:
                    self.reads += 1
            time.sleep(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        self.client.close()


def write_all(client: actorsys.Client, acked: Acked, keys: list[str], times: int) -> None:
    for _ in range(times):
        for k in keys:
            assert acked.add(client, k), f"an add to {k} was not acknowledged"


def lost_then_rebuilt(c: Cluster, i: int, damage: Any, base: str) -> tuple[list[str], Acked]:
    """Write counters node ``i`` leads on its slot 0, kill -9 it, ``damage(slot dir)``,
    start it at once; checks that no read returned less than acknowledged, that the
    shards are led elsewhere within RESIGN_BOUND, and that every copy is rebuilt."""
    nid = c.nodes[i].node_id
    others = [e for j, e in enumerate(c.endpoints) if j != i]
    acked = Acked()
    with actorsys.connect(others, timeout=5.0, connect_timeout=20.0) as client:
        keys = keys_led_by(client, nid, 0, 4, base)
        write_all(client, acked, keys, 5)
        before = {}
        for k in keys:
            r = record(c, shard(k))
            assert r.get("owner") == nid, r
            before[shard(k)] = int(r["epoch"])
        reader = Reader(c.endpoints, keys, acked)
        reader.start()
        try:
            c.kill_node(i)
            path = os.path.join(c.nodes[i].dir, "data", "slot-0")
            damage(path)
            c.start_node(i)
            t_start = time.monotonic()
            c.wait_ready(i, timeout=60)
            # the shards are led by another node within the bound (or were already, and
            # handed back once rebuilt: two owner changes, so the epoch went up by 2)
            def moved() -> bool:
                recs = {s: record(c, s) for s in before}
                return all(r.get("owner") not in (None, nid) or r.get("epoch", 0) >= before[s] + 2
                           for s, r in recs.items())
            wait_until(moved, f"{nid}'s lost shards led elsewhere", timeout=RESIGN_BOUND)
            took = time.monotonic() - t_start
            assert took < RESIGN_BOUND, took
            write_all(client, acked, keys, 2)
            # rebuilt: every copy (n's too) at its leader's position
            shards = {shard(k) for k in keys}
            deadline = time.monotonic() + REBUILD_TIMEOUT
            while late := behind(client, shards):
                assert time.monotonic() < deadline, f"not rebuilt: {late[:6]}"
                time.sleep(0.2)
        finally:
            reader.stop()
        assert reader.reads > 0
        assert not acked.lower, f"an empty copy was served: {acked.lower[:5]}"
        for k in keys:
            assert acked.read(client, k) == acked.n[k], k
        st = shards_cmd(worker_of(client, nid, 0), "position", {"shards": sorted(shards)})
        assert all(by_shard(st["positions"], s) not in (None, [0, 0]) for s in shards), st
    return keys, acked


def node_log(c: Cluster, i: int) -> str:
    with open(c.nodes[i].log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_a_deleted_slot_is_never_served_and_is_rebuilt(cluster) -> None:
    """(The restarted router revokes its previous lease at start: the lowest member may
    fail its shards over before it registers, or it registers first and resigns them
    itself. Either way the empty copy is never served: test_c forces the second way.)"""
    c = cluster
    lost_then_rebuilt(c, 1, shutil.rmtree, "del")
    assert "was lost (deleted or damaged) and starts empty" in node_log(c, 1)


def test_b_a_damaged_slot_is_moved_aside_and_rebuilt(cluster) -> None:
    c = cluster
    for i in range(N):
        c.wait_view(i, settled, "the cluster settled", timeout=60)
    data = os.path.join(c.nodes[2].dir, "data")

    def damage(path: str) -> None:
        os.unlink(os.path.join(path, "CURRENT"))
    lost_then_rebuilt(c, 2, damage, "dmg")
    aside = [n for n in os.listdir(data) if n.startswith("slot-0.damaged-")]
    assert len(aside) == 1, os.listdir(data)
    assert not os.path.exists(os.path.join(data, aside[0], "CURRENT"))
    log = node_log(c, 2)
    assert "moved it aside to" in log and aside[0] in log


def test_c_a_worker_restarted_on_a_deleted_slot_resigns_its_shards(cluster) -> None:
    """Only n1's slot-0 worker dies (the router keeps its lease: no failover), its
    directory deleted: the restarted worker refuses its led shards as lost at its first
    grant, and n1's router hands them to a follower itself (``Repairs.resign``)."""
    c = cluster
    for i in range(N):
        c.wait_view(i, settled, "the cluster settled", timeout=60)
    before = node_log(c, 0)

    nid = c.nodes[0].node_id
    others = [e for j, e in enumerate(c.endpoints) if j != 0]
    acked = Acked()
    with actorsys.connect(others, timeout=5.0, connect_timeout=20.0) as client:
        keys = keys_led_by(client, nid, 0, 4, "wrk")
        pid = int(worker_status(worker_of(client, nid, 0))["pid"])
        assert worker_status(worker_of(client, nid, 0))["lost"] is False
        write_all(client, acked, keys, 5)
        epochs = {shard(k): int(record(c, shard(k))["epoch"]) for k in keys}
        reader = Reader(c.endpoints, keys, acked)
        reader.start()
        try:
            proc = psutil.Process(pid)
            proc.suspend()                   # (it cannot write into the directory going)
            shutil.rmtree(os.path.join(c.nodes[0].dir, "data", "slot-0"))
            proc.kill()
            t0 = time.monotonic()
            wait_until(lambda: all(record(c, s).get("owner") != nid or
                                   record(c, s).get("epoch", 0) >= e + 2
                                   for s, e in epochs.items()),
                       f"{nid}'s lost shards resigned", timeout=RESIGN_BOUND)
            assert time.monotonic() - t0 < RESIGN_BOUND
            write_all(client, acked, keys, 2)
            deadline = time.monotonic() + REBUILD_TIMEOUT
            while late := behind(client, set(epochs)):
                assert time.monotonic() < deadline, f"not rebuilt: {late[:6]}"
                time.sleep(0.2)
        finally:
            reader.stop()
        assert not acked.lower, f"an empty copy was served: {acked.lower[:5]}"
        for k in keys:
            assert acked.read(client, k) == acked.n[k], k
        st = worker_status(worker_of(client, nid, 0))
        assert st["pid"] != pid and st["lost"] is True, st
    log = node_log(c, 0)[len(before):]
    assert "was lost (deleted or damaged) and starts empty" in log
    assert "whose copy here is empty" in log, "the worker refused its led shards"
    assert "handed to a follower" in log, "the router resigned them"
