"""Handing shards between the nodes of a real cluster (issue 15), on network-namespace
hosts (loopback addresses where namespaces are unavailable), with a real etcd:

* a node that joins takes its share of the shards with all their data: state, storage,
  history, the listing entry, and a pending alarm, which then fires exactly once, on the
  new owner;
* a move is crash-safe: kill -9 of its source mid-move rolls the move back at the
  source's next start and it is done again; kill -9 of its target mid-move makes the
  source roll back and serve again, and the move completes when the target returns. A
  client writes all along: no acknowledged write is lost, no actor runs on two nodes at
  once (the chaos run's ``Tally`` audit), and every shard ends with exactly one owner;
* the gateway of any node serves any actor over HTTP, wherever its shard is;
* a client reaches a node's actors again once the node, down meanwhile, has returned
  (its map, which marked the node down, is fetched again).

``ACTORSYS_TEST_LOOPBACK=1`` runs them on loopback hosts even as root.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers import ACTORS_DIR

import actorsys
from actorsys.config.layout import free_port
from actorsys.protocol.shardmap import shard_of
from actorsys.testing.chaos.audit import actor_key, check_actor
from actorsys.testing.cluster import Cluster
from actorsys.testing.nodes import wait_until

pytestmark = pytest.mark.timeout(600)

#: network namespaces where this process may make them (root), else loopback addresses
HOSTS = "netns" if os.geteuid() == 0 and not os.environ.get("ACTORSYS_TEST_LOOPBACK") else "loopback"
ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")
DAY = 86400
ACTORS = {"Keeper": {"class": "cluster_actors:Keeper", "history_window": DAY},
          "Bulk": "cluster_actors:Bulk",
          "Tally": "actorsys.testing.chaos.actors:Tally"}


def cluster(tmp_path, n: int, **kw: Any) -> Cluster:
    kw.setdefault("workers", 1)
    kw.setdefault("lease_ttl", 3.0)
    return Cluster(tmp_path, n, HOSTS, actors=ACTORS, python_path=[ACTORS_DIR], **kw)


def balanced(live: int):
    """A CLUSTER view predicate: ``live`` live nodes, each with shards, none moving."""
    def check(view: dict[str, Any]) -> bool:
        nodes = [n for n in view["nodes"] if n["alive"]]
        return (len(nodes) == live and all(n["shards"] and n["moving"] == 0 for n in nodes)
                and sum(n["shards"] for n in view["nodes"]) == 4096)
    return check


def settle(c: Cluster, live: int, what: str = "", timeout: float = 120.0) -> None:
    """Wait until node 0 sees ``live`` live nodes, balanced (with the nodes' logs if not)."""
    try:
        c.wait_view(0, balanced(live), f"{live} live nodes, balanced{what}", timeout=timeout)
    except AssertionError as exc:
        logs = "\n".join(f"--- {n.node_id}:\n{c.log_tail(n.index, 15)}" for n in c.nodes)
        raise AssertionError(f"{exc}\n{logs}") from None


def start(c: Cluster, live: int) -> None:
    for i in range(len(c.nodes)):
        c.wait_ready(i, timeout=60)
    settle(c, live)


@contextmanager
def running(tmp_path, n: int, **kw: Any) -> Iterator[tuple[Cluster, actorsys.Client]]:
    """A started, balanced cluster of ``n`` nodes and a client of all its routers."""
    with cluster(tmp_path, n, **kw) as c:
        start(c, n)
        with actorsys.connect(c.endpoints) as client:
            yield c, client


def owner_of(client: actorsys.Client, type_name: str, key: str) -> str:
    """The id of the node whose worker the client's map says serves the actor."""
    m = client.map
    slot = m.owner[shard_of(type_name, key, m.shards)]
    assert slot >= 0 and m.nodes is not None, f"{type_name}/{key}: shard of a dead node"
    for n in m.nodes:
        first, count = n["slots"]
        if first <= slot < first + count:
            return str(n["id"])
    raise AssertionError(f"slot {slot} is no node's")


def node_of_pid(c: Cluster, pid: int) -> str | None:
    for node in c.nodes:
        if pid in c.pids(node.index):
            return node.node_id
    return None


def shard_records(c: Cluster) -> dict[int, dict[str, Any]]:
    """Every shard's ownership record in etcd (read through etcd's JSON gateway)."""
    assert c.etcd is not None
    prefix = f"/actorsys/{c.name}/shards/".encode()
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    body = json.dumps({"key": base64.b64encode(prefix).decode(),
                       "range_end": base64.b64encode(end).decode()}).encode()
    req = urllib.request.Request(c.etcd.url + "/v3/kv/range", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        kvs = json.loads(r.read()).get("kvs", [])
    return {int(base64.b64decode(kv["key"])[len(prefix):]): json.loads(base64.b64decode(kv["value"]))
            for kv in kvs}


def moves_under_way(c: Cluster) -> dict[int, dict[str, Any]]:
    return {s: r for s, r in shard_records(c).items() if r.get("to")}


def granted(c: Cluster, i: int) -> int:
    """How many shards node ``i``'s workers serve now (their grants)."""
    with c.connect(i) as client:
        procs = client.status()["processes"]
    return sum(p.get("granted") or 0 for p in procs if p["role"] == "worker")


def assert_one_owner_each(c: Cluster, live: list[int]) -> None:
    """Every shard has one owner, a live node, and no move under way; each node's
    workers serve exactly the shards etcd says it owns (so no shard is served twice)."""
    records = shard_records(c)
    assert sorted(records) == list(range(4096)), "a shard without an owner"
    ids = {c.nodes[i].node_id: i for i in live}
    assert {r["owner"] for r in records.values()} <= set(ids), "a shard of a node not live"
    assert not [s for s, r in records.items() if r.get("to")], "a move left unfinished"
    count = {nid: sum(1 for r in records.values() if r["owner"] == nid) for nid in ids}
    wait_until(lambda: all(granted(c, i) == count[nid] for nid, i in ids.items()),
               f"every node serving exactly the shards it owns ({count})", timeout=30)


# -- 1. a joiner takes its share with all the data ------------------------------------

def test_a_joining_node_takes_its_shards_with_all_their_data(tmp_path):
    keys = [f"k{i}" for i in range(150)]
    with running(tmp_path, 2) as (c, client):
        # past the join (which must have settled 3 s before: asserted below); a join
        # settles in about 4 s here, beside other cluster tests only (tests/conftest.py)
        alarm_in = 12.0
        due = time.time() + alarm_in
        for i, k in enumerate(keys):
            client.ask("Keeper", k, "fill", i, due)
            client.ask("Keeper", k, "bump")
        before = {k: client.ask("Keeper", k, "info") for k in keys}
        history = {k: client.ref("Keeper", k).history() for k in keys}
        assert all(len(h) == 2 for h in history.values()), history[keys[0]]
        assert client.list_actors("Keeper", limit=10000) == sorted(keys)

        j = c.add_node()
        c.wait_ready(j, timeout=60)
        started = time.monotonic()
        settle(c, 3)
        took = time.monotonic() - started
        assert time.time() < due - 3, f"the join took {took:.1f} s, past the alarms' time"
        client.refresh_map()
        moved = [k for k in keys if owner_of(client, "Keeper", k) == "n3"]
        assert len(moved) > len(keys) // 6, f"only {len(moved)} of {len(keys)} actors moved to n3"

        for k in keys:
            assert client.ask("Keeper", k, "info") == before[k], k
            assert client.ref("Keeper", k).history() == history[k], k
        for k in moved:
            assert node_of_pid(c, client.ask("Keeper", k, "where")) == "n3", k
        listed = client.list_actors("Keeper", limit=10000)
        assert listed == sorted(keys), "each actor listed exactly once across the cluster"
        ls = subprocess.run([ACTORSYS, "ls", "--all", "-e", c.endpoints[2], "Keeper"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert ls.returncode == 0, ls.stderr
        assert sorted(ls.stdout.split()) == sorted(keys)

        # the alarms fire once each, on the node that owns the actor then
        def fired() -> dict[str, list]:
            out = {k: client.ask("Keeper", k, "info")["state"]["fired"] for k in keys}
            return out if all(out.values()) else {}
        wait_until(fired, "every alarm fired", timeout=alarm_in + 60)
        time.sleep(2.0)           # a second firing (an old owner's) would show by now
        final = fired()
        pids = {i: set(c.pids(i)) for i in range(3)}
        for k in keys:
            assert [f["name"] for f in final[k]] == ["ring"], (k, final[k])
            where = [i for i, p in pids.items() if final[k][0]["pid"] in p]
            assert [c.nodes[i].node_id for i in where] == [owner_of(client, "Keeper", k)], (k, final[k])
        assert all(client.ask("Keeper", k, "info")["alarms"] == {} for k in moved)


# -- 2. kill -9 of either side of a move --------------------------------------------

class Writer(threading.Thread):
    """Adds to ``Tally`` actors in turn (each ask retried with its request id by the
    client), counting what was attempted and acknowledged."""

    def __init__(self, endpoints: list[str], actors: int) -> None:
        super().__init__(daemon=True)
        self.client = actorsys.connect(endpoints)
        self.acked, self.attempted = [0] * actors, [0] * actors
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        i, n = 0, len(self.acked)
        while not self.stop.is_set():
            a = i % n
            self.attempted[a] += 1
            try:
                self.client.ask("Tally", actor_key(a), "add", timeout=10.0)
                self.acked[a] += 1
            except actorsys.ActorError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)
            i += 1

    def finish(self) -> None:
        """Stop writing (idempotent); the client is closed."""
        self.stop.set()
        if self.is_alive():
            self.join(30)
        assert not self.is_alive()
        self.client.close()


BULK = 2000
ENTRIES, SIZE = 16, 8192


def patient(client: actorsys.Client, type_name: str, key: str, method: str, *args: Any,
            timeout: float = 60.0) -> Any:
    """An ask retried (same arguments) while its node is briefly fenced (a loaded machine
    can delay a lease renewal) or unreachable, up to ``timeout``: for set-up and reads."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.ask(type_name, key, method, *args, timeout=30)
        except (actorsys.ShardUnavailable, actorsys.AskTimeout, actorsys.WorkerLost):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def load_bulk(client: actorsys.Client) -> None:
    for i in range(BULK):
        patient(client, "Bulk", f"b{i}", "fill", ENTRIES, SIZE)


def wait_move(c: Cluster, source: str, timeout: float = 120.0) -> dict[int, dict[str, Any]]:
    """Wait until a move away from ``source`` is under way (a record with ``to``)."""
    return wait_until(lambda: {s: r for s, r in moves_under_way(c).items() if r["owner"] == source},
                      f"a move from {source} under way", timeout=timeout)


def audit(c: Cluster, writer: Writer, live: list[int]) -> None:
    writer.finish()
    with actorsys.connect(c.endpoints) as client:
        check_all(client, writer)
    assert_one_owner_each(c, live)


def check_all(client: actorsys.Client, writer: Writer) -> None:
    problems = []
    for a in range(len(writer.acked)):
        read = patient(client, "Tally", actor_key(a), "read")
        problems += check_actor(a, writer.acked[a], writer.attempted[a], read)
    assert not problems, problems
    assert sum(writer.acked) > 0
    sizes = [patient(client, "Bulk", f"b{i}", "size") for i in range(BULK)]
    assert min(sizes) >= ENTRIES * SIZE, "a bulk actor lost storage entries"


def test_kill_9_of_the_source_mid_move_rolls_back_and_the_move_is_redone(tmp_path):
    with cluster(tmp_path, 2) as c:
        start(c, 2)
        with actorsys.connect(c.endpoints) as client:
            load_bulk(client)
        writer = Writer(c.endpoints, 40)
        writer.start()
        try:
            j = c.add_node()
            c.wait_ready(j, timeout=60)
            for _attempt in range(5):
                wait_move(c, "n1")
                c.kill_node(0)
                stuck = {s for s, r in moves_under_way(c).items() if r["owner"] == "n1"}
                if stuck:
                    break
                c.start_node(0)          # killed between two batches: try again
                c.wait_ready(0, timeout=60)
            assert stuck, "no kill landed mid-move (n1 had no move under way)"
            # n1 stays down past its lease (the others see it gone); its shards wait for it
            time.sleep(c.lease_ttl * 1.5)
            assert {s for s, r in moves_under_way(c).items() if r["owner"] == "n1"} == stuck
            c.start_node(0)
            c.wait_ready(0, timeout=60)
            # its start rolled the unfinished move back (before serving anything) ...
            wait_until(lambda: f"rolled back {len(stuck)} shard move(s)" in open(c.nodes[0].log_path).read(),
                       "n1 saying it rolled its move back", timeout=30)
            settle(c, 3, " after n1's restart", timeout=180)
            # ... and did it again: those shards belong to n3 now
            records = shard_records(c)
            assert {records[s]["owner"] for s in stuck} == {"n3"}
            audit(c, writer, [0, 1, 2])
        finally:
            writer.finish()


def test_kill_9_of_the_target_mid_move_rolls_back_and_the_move_completes_later(tmp_path):
    with cluster(tmp_path, 2) as c:
        start(c, 2)
        with actorsys.connect(c.endpoints) as client:
            load_bulk(client)
        writer = Writer(c.endpoints, 40)
        writer.start()
        try:
            j = c.add_node()
            c.wait_ready(j, timeout=60)
            wait_move(c, "n1")
            c.kill_node(j)
            # the sources' copies to n3 fail: they roll back and serve those shards again
            # (a batch whose copy had ended before the kill may still complete: n3 owns
            # it, down, until it returns)
            wait_until(lambda: not moves_under_way(c), "the sources rolled their moves back",
                       timeout=90)
            wait_until(lambda: any("to n3 failed" in line and "rolled back" in line
                                   and "rolled back: no" not in line
                                   for i in (0, 1) for line in open(c.nodes[i].log_path)),
                       "a source saying it rolled a move to n3 back", timeout=30)
            records = shard_records(c)
            down = {s for s, r in records.items() if r["owner"] == "n3"}
            acked = sum(writer.acked)
            try:
                wait_until(lambda: sum(writer.acked) > acked + 20, "the writer acknowledged again",
                           timeout=60)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; its last errors: {writer.errors[-3:]}") from None
            with actorsys.connect(c.endpoints) as client:
                served = [k for k in (f"b{i}" for i in range(BULK))
                          if shard_of("Bulk", k, 4096) not in down]
                for k in served[::10]:
                    assert patient(client, "Bulk", k, "size") >= ENTRIES * SIZE
            c.start_node(j)
            c.wait_ready(j, timeout=60)
            settle(c, 3, " after n3's return", timeout=180)
            audit(c, writer, [0, 1, 2])
        finally:
            writer.finish()


# -- 3. any node's gateway serves any actor ----------------------------------------

def test_the_gateway_of_any_node_serves_an_actor_of_another_node(tmp_path):
    def gateway(node: Any) -> dict[str, Any]:
        port = 8080 if HOSTS == "netns" else free_port(node.host.address)
        return {"gateway": {"listen": f"{node.host.address}:{port}"}}

    # n2 joins once n1 has claimed the shards (on this branch's base a gateway whose first
    # map was fetched before the claim kept answering "(no owner yet)": see the next test)
    with running(tmp_path, 1, extra_config=gateway) as (c, client):
        c.wait_ready(c.add_node(), timeout=60)
        settle(c, 2)
        client.refresh_map()
        urls = []
        for node in c.nodes:
            with open(node.config_path) as f:
                listen = next(line for line in f if line.startswith('"listen"'))
            urls.append("http://" + json.loads(listen.split("=", 1)[1]))
        keys = {nid: next(f"g{i}" for i in range(1000)
                          if owner_of(client, "Keeper", f"g{i}") == nid) for nid in ("n1", "n2")}

        def post(url: str, key: str, method: str, body: Any) -> Any:
            req = urllib.request.Request(f"{url}/actors/Keeper/{key}/{method}",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as exc:
                raise AssertionError(f"POST {req.full_url}: {exc.code} {exc.read()[:500]!r}\n"
                                     f"{c.log_tail(0, 10)}\n{c.log_tail(1, 10)}") from None

        for via, owner in ((0, "n2"), (1, "n1")):
            key = keys[owner]
            assert post(urls[via], key, "add", [5]) == 5
            assert post(urls[via], key, "add", {"by": 2}) == 7
            assert client.ask("Keeper", key, "add", 0) == 7
            assert node_of_pid(c, post(urls[via], key, "where", [])) == owner


# -- a client's map after a node's return ---------------------------------------------

def test_a_client_reaches_a_node_again_once_it_returns(tmp_path):
    with running(tmp_path, 2) as (c, client):
        key = next(f"g{i}" for i in range(1000) if owner_of(client, "Keeper", f"g{i}") == "n2")
        assert client.ask("Keeper", key, "add", 1) == 1
        c.kill_node(1)
        # (the map marks n2 down once its lease expires: ShardUnavailable at once)

        def unavailable() -> bool:
            try:
                client.ask("Keeper", key, "add", 0, timeout=5)
            except actorsys.ShardUnavailable:
                return True
            except actorsys.ActorError:
                pass
            return False
        wait_until(unavailable, "n2's actors unavailable", timeout=30)
        c.start_node(1)
        c.wait_ready(1, timeout=60)
        settle(c, 2)
        with actorsys.connect(c.endpoints) as fresh:
            assert fresh.ask("Keeper", key, "add", 0) == 1       # a new client: served
        wait_until(lambda: not unavailable(), "the same client served again", timeout=20)
        assert client.ask("Keeper", key, "add", 1) == 2
