"""Replicated shards (issue 16): the faults of a three-node cluster with ``[cluster]
replicas = 3`` (every shard on every node: its leader and two followers, acknowledging
a write once two of the three hold it), against real nodes on their own hosts (network
namespaces when this process may make them, else loopback addresses: then the partition
is skipped) and a real etcd:

* **kill -9 a leader under write load.** Its shards answer from the other nodes within
  ``lease_ttl`` + 2 s (from the kill to the first acknowledged write on an actor of a
  shard it led); every acknowledged write is there; no actor ran twice at once. Started
  again, it comes back as a follower (leading fewer shards than before, following the
  rest), catches up, and the shards handed back to it answer with every write made
  while it was away.
* **SIGSTOP a leader past its lease, SIGCONT.** Its shards fail over; asks sent straight
  to its workers (queued while it was stopped, and sent right after SIGCONT) are refused
  (``wrong_shard`` or ``shard_unavailable``), the activation it had before the pause
  acknowledges nothing sent after it, and every write it acknowledged before the pause
  is on the new leader (read while it is still stopped).
* **A partition** (its host's link down; namespaces only): a client inside the cut host,
  pinned to it, gets no acknowledgement for any ask sent after the cut; clients of the
  other routers are answered by the new leaders within ``lease_ttl`` + 2 s; healed, the
  old leader follows again, catches up, and takes back its shards with their data.
* **A follower's slot lost.** A node stopped, one worker slot's LevelDB directory
  deleted (a lost disk), started again: meanwhile its shards are served by the other
  two (writes acknowledged); afterwards the slot is rebuilt: the followed shards'
  positions on it equal their leaders', and the shards it leads again (handed back
  after the rebuild) answer with every write.
* **A follower's disk fills** (one slot's directory on a small tmpfs the test mounts:
  root only, else skipped): the shards it follows there go on acknowledging writes (the
  leader and the other follower are a majority) while its positions stay put; once
  there is room again it catches up to its leaders' positions, and nothing acknowledged
  is missing.
* **An alarm due while its leader is dead.** Alarms set (acknowledged) on actors of
  shards one node leads, due 2 s later; that node killed -9 at once: each alarm fires
  exactly once (its ``on_alarm`` turn committed once), on another node, within
  ``lease_ttl`` + a few seconds of its time, and is no longer set; once the killed node
  is back and leads those shards again, none fired again.

* **Leaders back from a failover that promoted no one.** Two of the three nodes paused
  past their lease: the failover raises their one live follower's fence but cannot
  promote it. Resumed, they take their shards back at an epoch above that fence, and
  writes to them are acknowledged again, with every earlier write.
One cluster serves the whole module (the suite's CI budget): the scenarios run one
after the other, and each ends (and begins) by restoring it (:func:`restore`): every
node running, alive in every view, every shard led by a live node with three live
voters and none moving (leadership back at its rendezvous choice), and the followers of
the shards written at their leader's position.

Writes are ``Tally.add`` (``actorsys/testing/chaos/actors.py``): a counter that records
every activation that counted (its worker's pid and range of counts) in the same turn,
so the chaos audit (``actorsys/testing/chaos/audit.py``, :func:`check_actor`) checks per
actor: acknowledged <= count <= attempted (nothing acknowledged was lost, nothing was
applied that was not sent), and activation records tiling ``1 .. count`` (two
activations at once, on one node or two, would break it).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest
import zmq
from helpers import ACTORS, ACTORS_DIR

import actorsys
from actorsys.net.sockets import dealer
from actorsys.protocol import wire
from actorsys.protocol.shardmap import shard_of
from actorsys.testing.chaos import audit
from actorsys.testing.chaos.audit import TALLY, actor_key, check_actor
from actorsys.testing.cluster import Cluster
from actorsys.testing.nodes import wait_until
from actorsys.testing.processes import describe, leftover_processes

#: the lease: short, so that a failover shows within seconds
TTL = 2.0
#: the issue's bound from a leader's death to its shards answering elsewhere
FAILOVER_BOUND = TTL + 2.0
N, R, WORKERS, SHARDS = 3, 3, 2, 4096
IDS = [f"n{i + 1}" for i in range(N)]
#: how long a node's return may take: started, caught up, its shards handed back
RESTORE_TIMEOUT = 60.0
#: tests/actors/alarm_actors.py's actor: records each firing (time, pid) in its state
ALARMIST = "Alarmist"
#: refusals of an ask that was not applied (the worker does not serve the shard)
REFUSED = ("wrong_shard", "shard_unavailable")

pytestmark = pytest.mark.timeout(240)


# -- the module's cluster ------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """(Overrides the suite's per-test check: the module's cluster runs on between the
    tests. What each test starts besides it, it stops itself; the cluster's fixture
    checks that nothing at all is left once the cluster is closed.)"""
    yield


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three nodes, ``replicas = 3``, ``Tally`` and the test actors, restored (settled)."""
    workdir = tmp_path_factory.mktemp("replicated")
    c = Cluster(workdir, N, None, actors={**ACTORS, **audit.ACTORS, ALARMIST: "alarm_actors:Alarmist"},
                python_path=[ACTORS_DIR],
                lease_ttl=TTL, workers=WORKERS, name="repl",
                extra_config={"cluster": {"replicas": R}})
    try:
        with c:
            for i in range(N):
                c.wait_ready(i, timeout=60)
            try:
                restore(c, [], timeout=120)
            except AssertionError:
                print_router_lines(c)
                raise
            yield c
    finally:
        while MOUNTS:
            subprocess.run(["umount", "-l", MOUNTS.pop()], check=False, capture_output=True)
    left = leftover_processes(timeout=10)
    assert not left, f"processes left behind by the replicated cluster: {describe(left)}"


@pytest.fixture
def cluster(rc: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The module's cluster, restored first (a scenario that failed may have left a
    node stopped, paused or cut off)."""
    restore(rc, [])
    yield rc
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print_router_lines(rc)


def print_router_lines(c: Cluster) -> None:
    """What each node's router warned of, and its failovers and transfers: for a failure."""
    for i in range(len(c.nodes)):
        with open(c.nodes[i].log_path, errors="replace") as f:
            said = [line for line in f if "router" in line and "INFO" not in line
                    or "failover" in line or "resign" in line or "leadership" in line]
        print(f"--- {c.nodes[i].node_id} (its router's warnings, failovers and transfers):\n"
              + "".join(said[-60:]))


# -- views, etcd, raw requests -------------------------------------------------------


def nodes_of(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in view["nodes"]}


def count(v: Any) -> int:
    """A view's ``follows``: a count (or a list of shards)."""
    return len(v) if isinstance(v, (list, tuple)) else int(v or 0)


def settled(view: dict[str, Any]) -> bool:
    """Every node alive, every shard led by one of them (its rendezvous choice: none
    moving) with ``R`` live voters; each node leading some and following the others."""
    nodes = nodes_of(view)
    live = [n for n in nodes.values() if n["alive"]]
    return (view.get("replicas") == R and sorted(n["id"] for n in live) == IDS
            and view.get("under_replicated") == 0 and view.get("unavailable") == 0
            and sum(n["shards"] for n in live) == SHARDS
            and all(n["shards"] > 0 and not n["moving"] for n in live)
            and all(n["shards"] + count(n.get("follows")) == SHARDS for n in live))


def etcd_range(c: Cluster, key: str, prefix: bool = False) -> dict[str, Any]:
    """etcd's keys at ``key`` (``prefix``: under it) -> their JSON values."""
    assert c.etcd is not None
    raw = key.encode()
    body: dict[str, str] = {"key": base64.b64encode(raw).decode()}
    if prefix:
        body["range_end"] = base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()
    req = urllib.request.Request(c.etcd.url + "/v3/kv/range", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        kvs = json.loads(r.read()).get("kvs") or []
    return {base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"]))
            for kv in kvs}


def record(c: Cluster, shard: int) -> dict[str, Any]:
    """A shard's ownership record: ``{"owner", "epoch", "followers"?, "learners"?, "to"?}``."""
    key = f"/actorsys/{c.name}/shards/{shard:05d}"
    return etcd_range(c, key).get(key) or {}


def homes(c: Cluster) -> dict[str, bytes]:
    """Each member's home table (shard -> local worker slot), from its etcd record."""
    recs = etcd_range(c, f"/actorsys/{c.name}/nodes/", prefix=True)
    return {k.rsplit("/", 1)[1]: base64.b64decode(v.get("home") or "") for k, v in recs.items()}


def call(endpoint: str, op: int, body: list[Any], timeout: float = 5.0) -> tuple[int, Any] | None:
    """``[op, id, *body]`` straight to a router or worker socket: ``(OK|ERR, body)``, None
    without an answer within ``timeout``."""
    s = dealer(zmq.Context.instance(), endpoint, None)
    try:
        s.send(wire.pack([op, 1, *body]))
        if not s.poll(int(timeout * 1000)):
            return None
        reply = wire.unpack(s.recv())
        return int(reply[0]), reply[2]
    finally:
        s.close(0)


class Refused(Exception):
    """A SHARDS command refused or not answered."""


def shards_cmd(endpoint: str, cmd: str, args: dict[str, Any], timeout: float = 5.0) -> Any:
    """A SHARDS command to a worker; its answer (:class:`Refused` if refused or not
    answered within ``timeout``)."""
    reply = call(endpoint, wire.SHARDS, [cmd, args], timeout)
    if reply is None:
        raise Refused(f"the worker at {endpoint} did not answer {cmd} within {timeout:g} s")
    if reply[0] != wire.OK:
        raise Refused(f"the worker at {endpoint} refused {cmd} {str(args)[:200]}: {reply[1]}")
    return reply[1]


def by_shard(d: dict[Any, Any], shard: int) -> Any:
    return d.get(shard, d.get(str(shard)))


def tally_shard(key: str) -> int:
    return shard_of(TALLY, key, SHARDS)


def leader_of(client: actorsys.Client, key: str) -> str | None:
    """The node whose worker the client's map sends ``key``'s asks to (None: a node down)."""
    m = client.map
    slot = m.owner[shard_of(TALLY, key, m.shards)]
    node = m.node_of_slot(slot) if slot >= 0 else None
    return None if node is None else str(node["id"])


def worker_of(client: actorsys.Client, key: str) -> str:
    """The worker endpoint the client's map sends ``key``'s asks to."""
    m = client.map
    return str(m.endpoints[m.owner[shard_of(TALLY, key, m.shards)]])


def positions_behind(c: Cluster, client: actorsys.Client, shards: set[int]) -> list[str]:
    """Each of ``shards`` whose followers are not at their leader's position: the
    leader's ``replication`` [epoch, seq] against each other node's worker ``position``
    (the worker homing the shard there). Empty: every copy is caught up."""
    try:
        return _positions_behind(c, client, shards)
    except Refused as exc:          # (a map a moment old: asked the wrong worker)
        return [str(exc)]


def _positions_behind(c: Cluster, client: actorsys.Client, shards: set[int]) -> list[str]:
    if not shards:
        return []
    lead = leader_positions(client, shards)
    out = []
    for nid in IDS:
        mine = {s for s, (leader, _) in lead.items() if leader != nid}
        for s, got in positions_on(c, client, nid, mine).items():
            if got != lead[s][1]:
                out.append(f"shard {s}: leader {lead[s][0]} at {lead[s][1]}, follower {nid} at {got}")
    return out


def leader_positions(client: actorsys.Client, shards: set[int]) -> dict[int, tuple[str, list[int]]]:
    """shard -> (its leader, [epoch, seq] by the leader's ``replication`` answer), by a
    fresh map."""
    client.refresh_map()
    m = client.map
    leaders: dict[str, list[int]] = {}
    for s in shards:
        leaders.setdefault(m.endpoints[m.owner[s]], []).append(s)
    out = {}
    for ep, ss in leaders.items():
        rep = shards_cmd(ep, "replication", {"shards": sorted(ss)})
        node = m.node_of_slot(m.owner[ss[0]])
        assert node is not None
        for s in ss:
            r = by_shard(rep, s)
            if r is None:
                raise Refused(f"{ep}'s replication answer lacks shard {s}: {str(rep)[:300]}")
            out[s] = (str(node["id"]), [int(r["epoch"]), int(r["seq"])])
    return out


def positions_on(c: Cluster, client: actorsys.Client, node_id: str,
                 shards: set[int]) -> dict[int, list[int] | None]:
    """shard -> [epoch, seq] of ``node_id``'s copy (the worker ``position`` command to
    the worker homing it there; None: it holds no position)."""
    m = client.map
    home = homes(c)[node_id]
    first = next(n["slots"][0] for n in m.nodes or () if n["id"] == node_id)
    workers: dict[str, list[int]] = {}
    for s in shards:
        workers.setdefault(m.endpoints[first + home[s]], []).append(s)
    out: dict[int, list[int] | None] = {}
    for ep, ss in workers.items():
        pos = shards_cmd(ep, "position", {"shards": sorted(ss)})["positions"]
        for s in ss:
            got = by_shard(pos, s)
            out[s] = None if got is None else [int(x) for x in got]
    return out


#: the tmpfs mounted over a node's slot directory (test_e's disk that fills), unmounted
#: when the module's cluster is gone
MOUNTS: list[str] = []


def slot_dir(c: Cluster, i: int, slot: int) -> str:
    return os.path.join(c.nodes[i].dir, "data", f"slot-{slot}")


def move_slot_to_tmpfs(c: Cluster, i: int, slot: int, size: str = "32m") -> None:
    """(Node ``i`` stopped.) Its slot's LevelDB directory onto a tmpfs of ``size`` mounted
    there: a disk of its own that can fill up. Needs root."""
    path = slot_dir(c, i, slot)
    copy = os.path.join(c.nodes[i].dir, f"slot-{slot}-copy")       # (outside the data dir)
    shutil.copytree(path, copy)
    shutil.rmtree(path)
    os.makedirs(path, mode=0o700)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"mounting a tmpfs needs root: {r.stderr.strip()}"
    MOUNTS.append(path)
    shutil.copytree(copy, path, dirs_exist_ok=True)
    shutil.rmtree(copy)


def fill(path: str) -> str:
    """Fill the filesystem holding ``path`` with a ballast file; its name (written
    unbuffered, as tests/node/test_storage_faults.py does)."""
    ballast = os.path.join(path, "ballast")
    with open(ballast, "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):       # down to the last free byte
            chunk = bytes(size)
            try:
                while f.write(chunk):
                    pass
            except OSError:
                pass
    return ballast


def restore(c: Cluster, keys: list[str], timeout: float = RESTORE_TIMEOUT) -> None:
    """Bring the cluster back to the start of a scenario: every node running (started
    again if stopped, resumed, healed), alive in every node's view, settled
    (:func:`settled`), and the followers of ``keys``' shards at their leaders' position."""
    for i, node in enumerate(c.nodes):
        if c.can_cut:
            c.heal_node(i)
        if node.running:
            c.resume_node(i)
        else:
            c.start_node(i)
    for i in range(N):
        c.wait_ready(i, timeout=60)
    for i in range(N):
        c.wait_view(i, settled, f"the cluster settled with {R} replicas in {c.nodes[i].node_id}'s view",
                    timeout=timeout)
    if keys:
        with connect_all(c) as client:
            shards = {tally_shard(k) for k in keys}
            touch(client, shards)
            deadline = time.monotonic() + timeout
            while behind := positions_behind(c, client, shards):
                assert time.monotonic() < deadline, (
                    f"the followers of {len(shards)} shards not at their leaders' position "
                    f"{timeout:g} s after the cluster settled: {behind[:10]}")
                time.sleep(0.1)


def touch(client: actorsys.Client, shards: set[int]) -> None:
    """One write to each of ``shards`` (a ``Counter`` of that shard, not the scenario's
    ``Tally`` actors): its leader's position is then of the epoch it leads in (a
    leadership handed back bumps the epoch; the position moves at the next write)."""
    todo = set(shards)
    for i in range(1_000_000):
        key = f"touch-{i}"
        s = shard_of("Counter", key, SHARDS)
        if s in todo:
            todo.discard(s)
            after_failover(lambda k=key: client.ask("Counter", k, "add", 1, timeout=5.0))
            if not todo:
                return
    raise AssertionError(f"no Counter key found for shards {sorted(todo)}")


def connect_all(c: Cluster, but: int | None = None) -> actorsys.Client:
    """A client of every router but node ``but``'s."""
    return actorsys.connect([e for i, e in enumerate(c.endpoints) if i != but],
                            timeout=5.0, connect_timeout=20.0)


def keys_led_by(client: actorsys.Client, node_id: str, n: int, base: int,
                slot: int | None = None) -> list[str]:
    """``n`` Tally keys (``actor_key(i)``, ``i`` from ``base``) whose shards ``node_id``
    leads by the client's map (``slot``: on that local worker slot of it)."""
    client.refresh_map()
    m = client.map
    out = []
    for i in range(base, base + 200_000):
        key = actor_key(i)
        g = m.owner[shard_of(TALLY, key, m.shards)]
        node = m.node_of_slot(g) if g >= 0 else None
        if node is not None and node["id"] == node_id and (slot is None or g - node["slots"][0] == slot):
            out.append(key)
            if len(out) == n:
                return out
    raise AssertionError(f"no {n} keys led by {node_id} (slot {slot})")


def keys_followed_on(c: Cluster, client: actorsys.Client, node_id: str, slot: int, n: int,
                     base: int) -> list[str]:
    """``n`` Tally keys whose shards another node leads and ``node_id`` homes on ``slot``."""
    client.refresh_map()
    home = homes(c)[node_id]
    out = []
    for i in range(base, base + 200_000):
        key = actor_key(i)
        if home[tally_shard(key)] == slot and leader_of(client, key) not in (None, node_id):
            out.append(key)
            if len(out) == n:
                return out
    raise AssertionError(f"no {n} keys followed by {node_id} on its slot {slot}")


# -- writers and what they saw ------------------------------------------------------------


@dataclass
class Rec:
    t0: float            #: when the ask was sent (time.monotonic(): one clock for the host)
    t: float             #: when its answer came
    key: str
    ok: int | None = None
    err: str | None = None
    msg: str = ""


class Results:
    """What writing clients saw, ask by ask."""

    def __init__(self) -> None:
        self.recs: list[Rec] = []
        self.lock = threading.Lock()

    def add(self, rec: Rec) -> None:
        with self.lock:
            self.recs.append(rec)

    def extend(self, other: "Results") -> None:
        for r in other.snapshot():
            self.add(r)

    def snapshot(self) -> list[Rec]:
        with self.lock:
            return list(self.recs)

    def acks(self, keys: Any = None, after: float = float("-inf"),
             before: float = float("inf")) -> list[Rec]:
        """Acknowledged asks (of ``keys``) sent after ``after`` and answered before ``before``."""
        return [r for r in self.snapshot() if r.ok is not None and after < r.t0 and r.t < before
                and (keys is None or r.key in keys)]

    def first_ack(self, keys: Any, after: float) -> Rec | None:
        return min(self.acks(keys, after), key=lambda r: r.t, default=None)

    def wait_acks(self, n: int, keys: Any = None, after: float = float("-inf"),
                  timeout: float = 30.0) -> None:
        wait_until(lambda: len(self.acks(keys, after)) >= n, f"{n} acknowledged adds", timeout=timeout)

    def counts(self, key: str) -> tuple[int, int]:
        """(acknowledged, attempted) adds of ``key``."""
        recs = [r for r in self.snapshot() if r.key == key]
        return sum(r.ok is not None for r in recs), len(recs)


class Writer(threading.Thread):
    """``Tally.add`` on ``keys`` in turn, through a client of ``endpoints``, until stopped."""

    def __init__(self, endpoints: list[str], keys: list[str], results: Results,
                 timeout: float = 1.5, pause: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.client = actorsys.connect(endpoints, timeout=timeout, connect_timeout=20.0)
        self.keys, self.results, self.timeout, self.pause = keys, results, timeout, pause
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            key = self.keys[i % len(self.keys)]
            i += 1
            t0 = time.monotonic()
            try:
                v = self.client.ask(TALLY, key, "add", timeout=self.timeout)
                self.results.add(Rec(t0, time.monotonic(), key, ok=int(v)))
            except actorsys.ActorError as exc:
                self.results.add(Rec(t0, time.monotonic(), key, err=type(exc).__name__, msg=str(exc)))
                self.halt.wait(0.01)       # no spin while a shard is unavailable
            self.halt.wait(self.pause)

    def finish(self) -> None:
        self.halt.set()
        self.join(30)
        alive = self.is_alive()
        self.client.close()
        assert not alive, "the writer did not stop"


def writers(c: Cluster, groups: list[list[str]], results: Results, but: int | None = None) -> list[Writer]:
    """One started :class:`Writer` per group of keys, each a client of every router but
    node ``but``'s."""
    eps = [e for i, e in enumerate(c.endpoints) if i != but]
    out = [Writer(eps, keys, results) for keys in groups]
    for w in out:
        w.start()
    return out


def finish(ws: list[Writer]) -> None:
    for w in ws:
        w.finish()


def audit_keys(client: actorsys.Client, keys: list[str], results: Results,
               extra_attempted: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Every key's read (through ``client``'s map); asserts the chaos audit's checks:
    acknowledged <= count <= attempted, activation records tiling 1 .. count."""
    reads, problems = {}, []
    for key in keys:
        acked, attempted = results.counts(key)
        attempted += (extra_attempted or {}).get(key, 0)
        read = reads[key] = after_failover(lambda k=key: client.ask(TALLY, k, "read", timeout=5.0))
        problems += check_actor(int(key.split("-")[1]), acked, attempted, read)
    assert not problems, problems
    return reads


def after_failover(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``fn()``, again while it fails with an error a moving shard gives (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (actorsys.ShardUnavailable, actorsys.WorkerLost, actorsys.AskTimeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def record_of(read: dict[str, Any], value: int) -> tuple[int, dict[str, Any]] | None:
    """The activation record (number, record) that counted ``value``."""
    for number, rec in read["acts"]:
        if rec["first_n"] <= value <= rec["last_n"]:
            return int(number), rec
    return None


class Sampler(threading.Thread):
    """Polls node ``i``'s view every 20 ms: (time, {id: (alive, shards, follows)})."""

    def __init__(self, c: Cluster, i: int) -> None:
        super().__init__(daemon=True)
        self.c, self.i = c, i
        self.samples: list[tuple[float, dict[str, tuple[bool, int, int]]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.02):
            try:
                view = self.c.view(self.i, timeout=1.0)
            except RuntimeError:
                continue
            self.samples.append((time.monotonic(), {
                n["id"]: (bool(n["alive"]), int(n["shards"]), count(n.get("follows")))
                for n in view["nodes"]}))

    def finish(self) -> None:
        self.halt.set()
        self.join(10)

    def first(self, node_id: str, pred: Callable[[tuple[bool, int, int]], bool],
              after: float = float("-inf")) -> tuple[float, tuple[bool, int, int]] | None:
        return next(((t, s[node_id]) for t, s in self.samples
                     if t > after and node_id in s and pred(s[node_id])), None)


# -- the same writer inside a node's host (a cut host reaches nobody else) ----------------

PROBE = r"""
import json, os, sys, time
import actorsys
endpoint, stop, keys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def out(**kw):
    print(json.dumps(kw), flush=True)
c = actorsys.connect(endpoint, connect_timeout=20)
out(ready=True)
i = 0
while not os.path.exists(stop):
    key = keys[i % len(keys)]
    i += 1
    t0 = time.monotonic()
    try:
        out(t0=t0, key=key, ok=c.ask("Tally", key, "add", timeout=1.5), t=time.monotonic())
    except actorsys.ActorError as exc:
        out(t0=t0, key=key, err=type(exc).__name__, msg=str(exc)[:300], t=time.monotonic())
        time.sleep(0.01)
    time.sleep(0.005)
c.close()
"""


class Probe:
    """:data:`PROBE` on node ``i``'s host, asking through that node's router alone."""

    def __init__(self, c: Cluster, i: int, keys: list[str], workdir: str) -> None:
        self.stop_file = os.path.join(workdir, f"probe-stop-{i}-{time.monotonic_ns()}")
        self.results = Results()
        self.proc = c.nodes[i].host.popen(
            [sys.executable, "-c", PROBE, c.endpoints[i], self.stop_file, json.dumps(keys)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            d = json.loads(line)
            if "ready" in d:
                self.ready.set()
            else:
                self.results.add(Rec(d["t0"], d["t"], d["key"], d.get("ok"), d.get("err"),
                                     d.get("msg", "")))

    def close(self) -> None:
        open(self.stop_file, "w").close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read().decode()
        self.proc.stderr.close()
        assert self.proc.returncode == 0, f"the probe failed: {err}"


# -- a: kill -9 a leader under write load ---------------------------------------------------


def test_0_three_nodes_hold_every_shard_three_times_with_leaders_spread(cluster):
    """The settled cluster (the fixture waited for it): every shard on 3 voters, each node
    leading about a third and following the rest; ``actorsys cluster`` says so."""
    view = cluster.view(0)
    assert settled(view), view
    for n in view["nodes"]:
        assert SHARDS // 3 - 300 < n["shards"] < SHARDS // 3 + 300, view
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "actorsys"), "cluster",
                          "-e", cluster.endpoints[1]], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "replicas 3" in out.stdout, out
    assert "under-replicated shards 0" in out.stdout and "FOLLOWS" in out.stdout, out.stdout


def test_1_a_write_s_reply_comes_from_the_follower_that_holds_it(cluster):
    """Quorum 2 of 3: a follower that holds a write sends the leader's reply on to the
    asker (one hop fewer); a client learns which worker to connect to from the first
    reply the leader had to send itself. Blocking and asyncio clients, the writes'
    results in order."""
    c = cluster

    def via_followers() -> int:
        total = 0
        for ep in c.endpoints:
            with actorsys.connect(ep, timeout=10.0) as one:
                total += sum(p.get("replication", {}).get("replies_via_followers", 0)
                             for p in one.status()["processes"] if p["role"] == "worker")
        return total

    before = via_followers()
    with connect_all(c) as client:
        for n in ("n1", "n2", "n3"):     # connected to every worker: a follower delivers on
            for k in keys_led_by(client, n, 8, 710_000):   # the one it has, never hinted
                client.ask(TALLY, k, "read", timeout=5.0)
        key = keys_led_by(client, "n2", 1, 700_000)[0]
        ref = client.ref(TALLY, key)
        assert [ref.ask("add", timeout=3.0) for _ in range(30)] == list(range(1, 31))
    blocking = via_followers() - before
    assert blocking >= 25, f"{blocking} of 30 replies came from a follower"

    async def run() -> list[int]:
        async with actorsys.connect_async(c.endpoints, timeout=5.0) as aclient:
            aref = aclient.ref(TALLY, key)
            return [await aref.ask("add") for _ in range(30)]
    assert asyncio.run(run()) == list(range(31, 61))
    assert via_followers() - before - blocking >= 25


def test_a_killed_leader_s_shards_answer_elsewhere_within_the_lease_and_lose_no_write(cluster):
    c, v = cluster, 2                                  # n3 dies
    vid = c.nodes[v].node_id
    with connect_all(c, but=v) as client:
        led_before = nodes_of(c.view(0))[vid]["shards"]
        victim = keys_led_by(client, vid, 8, 0)
        others = keys_led_by(client, "n1", 4, 0) + keys_led_by(client, "n2", 4, 0)
        results = Results()
        sampler = Sampler(c, 0)
        sampler.start()
        try:
            ws = writers(c, [victim, others], results, but=v)
            try:
                results.wait_acks(40, victim)
                results.wait_acks(40, others)
                t_kill = time.monotonic()
                c.kill_node(v)
                # its shards answer from the others within lease_ttl + 2 s
                wait_until(lambda: results.first_ack(victim, t_kill), f"an acknowledged write "
                           f"on {vid}'s shards after its kill", timeout=FAILOVER_BOUND + 20)
                first = results.first_ack(victim, t_kill)
                assert first is not None
                failover = first.t - t_kill
                assert failover <= FAILOVER_BOUND, (
                    f"{vid}'s shards answered {failover:.2f} s after its kill (bound "
                    f"{FAILOVER_BOUND:g} s): {[r for r in results.snapshot() if r.t0 > t_kill][:8]}")
                for k in victim:                        # every one of them, not only the first
                    results.wait_acks(1, [k], after=t_kill, timeout=10)
                results.wait_acks(10, others, after=t_kill)     # the others' shards answer on
                client.refresh_map()
                assert all(leader_of(client, k) not in (None, vid) for k in victim), \
                    [leader_of(client, k) for k in victim]
                # every shard it led failed over (a dead node leads none)
                c.wait_view(0, lambda v_: not nodes_of(v_)[vid]["alive"]
                            and nodes_of(v_)[vid]["shards"] == 0,
                            f"n1 to see {vid} dead, leading no shard", timeout=30)
                results.wait_acks(20, victim, after=first.t)
                # what it acknowledged before its death is on the new leaders
                for k in victim:
                    acked_before = len([r for r in results.acks([k]) if r.t < t_kill])
                    n = client.ask(TALLY, k, "read", timeout=5.0)["n"]
                    assert n >= acked_before, f"{k}: {acked_before} writes acknowledged by {vid} " \
                                              f"before its kill, its new leader has {n}"
                # started again, it comes back as a follower
                t_start = time.monotonic()
                c.start_node(v)
                c.wait_ready(v, timeout=60)
                results.wait_acks(10, victim, after=time.monotonic())
            finally:
                finish(ws)
            restore(c, victim + others)
        finally:
            sampler.finish()
        back = sampler.first(vid, lambda s: s[0], after=t_start)
        assert back is not None, f"n1 never saw {vid} alive again"
        _, (_, led, follows) = back
        assert led < led_before and follows > 0, (
            f"{vid} came back leading {led} shards (it led {led_before} before its kill) and "
            f"following {follows}: it must return as a follower, and be handed shards back "
            f"once caught up")
        # every acknowledged write is there, read through the leaders: the shards it led
        # before its kill among them, handed back to it after it caught up on what was
        # written while it was away
        client.refresh_map()
        assert all(leader_of(client, k) == vid for k in victim), \
            f"{vid}'s shards are led by {[leader_of(client, k) for k in victim]} after the restore"
        audit_keys(client, victim + others, results)


# -- b: SIGSTOP a leader past its lease ------------------------------------------------------


def test_b_a_paused_leader_acknowledges_nothing_after_its_shards_failed_over(cluster):
    c, v = cluster, 1                                  # n2 is paused
    vid = c.nodes[v].node_id
    with connect_all(c, but=v) as client:
        victim = keys_led_by(client, vid, 6, 1_000_000)
        others = keys_led_by(client, "n1", 3, 1_000_000) + keys_led_by(client, "n3", 3, 1_000_000)
        endpoints = {k: worker_of(client, k) for k in victim}      # n2's workers
        results = Results()
        ws = writers(c, [victim, others], results, but=v)
        refused: list[tuple[str, Any]] = []
        raw_attempts: dict[str, int] = {}
        socks: list[tuple[str, zmq.Socket]] = []
        try:
            results.wait_acks(30, victim)
            # its activations before the pause (each key's last record, on one of its pids)
            vpids = set(c.pids(v))
            stale = {}
            for k in victim:
                read = client.ask(TALLY, k, "read", timeout=5.0)
                number, rec = read["acts"][-1]
                assert rec["pid"] in vpids, (k, rec, vpids)
                stale[k] = (int(number), rec["pid"])
            t_pause = time.monotonic()
            c.pause_node(v)
            # (an ask sent while the SIGSTOPs were landing may still have been served:
            # from here on, every process of the node is stopped)
            t_stopped = time.monotonic()
            try:
                c.wait_view(0, lambda view: not nodes_of(view)[vid]["alive"]
                            and nodes_of(view)[vid]["shards"] == 0,
                            f"{vid}'s lease expired and its shards failed over", timeout=30)
                for k in victim:
                    results.wait_acks(1, [k], after=t_pause, timeout=FAILOVER_BOUND + 10)
                client.refresh_map()
                # everything it acknowledged before the pause is on the new leader (read
                # while it is still stopped: it cannot be the one answering)
                for k in victim:
                    acked_before = len([r for r in results.acks([k]) if r.t < t_pause])
                    n = client.ask(TALLY, k, "read", timeout=5.0)["n"]
                    assert n >= acked_before, f"{k}: {acked_before} writes acknowledged by {vid} " \
                                              f"before its pause, the new leader has {n}"
                    assert leader_of(client, k) != vid
                # asks straight to its workers, queued while it is stopped ...
                ctx = zmq.Context.instance()
                for k in victim:
                    s = dealer(ctx, endpoints[k], None)
                    s.send(wire.pack([wire.ASK, 1, TALLY, k, "add", [], {}]))
                    socks.append((k, s))
                    raw_attempts[k] = raw_attempts.get(k, 0) + 1
            finally:
                t_resume = time.monotonic()
                c.resume_node(v)
            # ... and right after SIGCONT
            for k in victim:
                s = dealer(zmq.Context.instance(), endpoints[k], None)
                s.send(wire.pack([wire.ASK, 2, TALLY, k, "add", [], {}]))
                socks.append((k, s))
                raw_attempts[k] = raw_attempts.get(k, 0) + 1
            for k, s in socks:
                if not s.poll(10_000):
                    refused.append((k, "no answer within 10 s"))
                    continue
                reply = wire.unpack(s.recv())
                refused.append((k, reply[2] if reply[0] == wire.ERR else ("ACKNOWLEDGED", reply[2])))
            results.wait_acks(10, victim, after=time.monotonic())
        finally:
            for _, s in socks:
                s.close(0)
            finish(ws)
        wrong = [(k, r) for k, r in refused if not (isinstance(r, dict) and r.get("code") in REFUSED)]
        assert not wrong, f"asks sent straight to {vid}'s workers around its SIGCONT were not " \
                          f"refused: {wrong}"
        reads = audit_keys(client, victim + others, results, extra_attempted=raw_attempts)
        # the activation it had before the pause counted nothing sent once it was stopped
        for r in results.acks(victim, after=t_stopped):
            found = record_of(reads[r.key], r.ok or 0)
            assert found is not None, (r, reads[r.key])
            number, rec = found
            assert (number, rec["pid"]) != stale[r.key], (
                f"{r.key}: add #{r.ok}, sent {r.t0 - t_stopped:.2f} s after {vid} was stopped "
                f"(resumed at +{t_resume - t_stopped:.2f} s), was counted by its stale activation "
                f"{number} (pid {rec['pid']})")
        restore(c, victim + others)


# -- c: a partition ------------------------------------------------------------------------


def test_c_a_cut_off_leader_stops_acknowledging_and_catches_up_as_a_follower(cluster, tmp_path):
    c, v = cluster, 0                                  # n1 is cut off
    if not c.can_cut:
        pytest.skip("a partition needs network-namespace hosts (root and the `ip` command); "
                    "this run has loopback hosts. The paused leader (test_b) covers the fence.")
    vid = c.nodes[v].node_id
    with connect_all(c, but=v) as client:
        led_before = nodes_of(c.view(1))[vid]["shards"]
        victim = keys_led_by(client, vid, 6, 2_000_000)
        results = Results()
        sampler = Sampler(c, 1)
        sampler.start()
        probe = Probe(c, v, victim, str(tmp_path))
        try:
            ws: list[Writer] = []
            try:
                assert probe.ready.wait(30), f"the probe inside {vid}'s host did not connect"
                ws = writers(c, [victim], results, but=v)
                probe.results.wait_acks(10)
                results.wait_acks(10)
                t_cut0 = time.monotonic()
                c.cut_node(v)
                t_cut = time.monotonic()
                try:
                    # the majority side takes over within lease_ttl + 2 s
                    wait_until(lambda: results.first_ack(victim, t_cut), f"{vid}'s shards "
                               f"answered by the majority", timeout=FAILOVER_BOUND + 20)
                    first = results.first_ack(victim, t_cut)
                    assert first is not None
                    assert first.t - t_cut0 <= FAILOVER_BOUND, (
                        f"the majority answered {first.t - t_cut0:.2f} s after the cut; the "
                        f"asks since: " + "; ".join(
                            f"{r.t0 - t_cut0:.2f}-{r.t - t_cut0:.2f} {r.key} {r.ok} {r.err} {r.msg[:60]}"
                            for r in results.snapshot() if r.t > t_cut0)[:3000])
                    # the minority side: nothing sent after the cut is acknowledged (no
                    # follower can hold it), past its lease's expiry too
                    wait_until(lambda: any(r.t0 > t_cut + TTL + 1.0
                                           for r in probe.results.snapshot()),
                               "the probe to ask past the cut node's lease", timeout=30)
                    late = probe.results.acks(after=t_cut)
                    assert not late, f"the cut-off {vid} acknowledged writes sent after the cut: " \
                                     f"{late[:5]}"
                finally:
                    t_heal = time.monotonic()
                    c.heal_node(v)
                results.wait_acks(10, victim, after=t_heal)
                # healed: the old leader follows (and its probe is answered again)
                c.wait_view(1, lambda view: nodes_of(view)[vid]["alive"]
                            and count(nodes_of(view)[vid].get("follows")) > 0,
                            f"{vid} alive again, following", timeout=30)
            finally:
                probe.close()
                finish(ws)
            restore(c, victim)
        finally:
            sampler.finish()
        back = sampler.first(vid, lambda s: s[0], after=t_heal)
        assert back is not None, f"n2 never saw {vid} alive again"
        _, (_, led, follows) = back
        assert led < led_before and follows > 0, (
            f"{vid} came back from the partition leading {led} shards (it led {led_before} "
            f"before) and following {follows}: it must return as a follower")
        client.refresh_map()
        assert all(leader_of(client, k) == vid for k in victim), "its shards handed back to it"
        results.extend(probe.results)
        audit_keys(client, victim, results)


# -- d: a follower's slot lost -----------------------------------------------------------


def test_d_a_follower_s_lost_slot_is_rebuilt_while_the_majority_serves(cluster):
    c, f, slot = cluster, 1, 0                           # n2's slot 0 is lost
    fid = c.nodes[f].node_id
    with connect_all(c, but=f) as client:
        led = keys_led_by(client, fid, 5, 3_000_000, slot=slot)          # it leads them
        followed = keys_followed_on(c, client, fid, slot, 5, 3_000_000)  # it follows them
        keys = led + followed
        results = Results()
        ws = writers(c, [keys], results, but=f)
        try:
            results.wait_acks(30)
            t_stop = time.monotonic()
            c.stop_node(f)
            data = os.path.join(c.nodes[f].dir, "data", f"slot-{slot}")
            assert os.path.isdir(data), os.listdir(os.path.dirname(data))
            shutil.rmtree(data)                                    # the slot's LevelDB is gone
            # the shards keep serving from the majority meanwhile
            view = c.wait_view(0, lambda view: not nodes_of(view)[fid]["alive"]
                               and nodes_of(view)[fid]["shards"] == 0,
                               f"{fid}'s shards failed over", timeout=30)
            assert view["under_replicated"] > 0, view
            for k in keys:
                results.wait_acks(2, [k], after=t_stop, timeout=FAILOVER_BOUND + 10)
            c.start_node(f)
            c.wait_ready(f, timeout=60)
            results.wait_acks(10, keys, after=time.monotonic())
        finally:
            finish(ws)
        # rebuilt: the followed shards at their leaders' position on the new slot, and the
        # shards it leads again (handed back once it caught up) answer with every write
        restore(c, keys)
        client.refresh_map()
        assert all(leader_of(client, k) == fid for k in led)
        assert all(leader_of(client, k) != fid for k in followed)
        assert not positions_behind(c, client, {tally_shard(k) for k in keys})
        audit_keys(client, keys, results)


# -- e: a follower's disk fills -------------------------------------------------------------


def test_e_a_follower_s_full_disk_stops_no_write_and_it_catches_up_once_freed(cluster):
    c, f, slot = cluster, 2, 1                           # n3's slot 1 fills up
    if os.geteuid() != 0:
        pytest.skip("the full disk is a tmpfs mounted over a slot's directory: needs root")
    fid = c.nodes[f].node_id
    path = slot_dir(c, f, slot)
    if not os.path.ismount(path):
        c.stop_node(f)
        move_slot_to_tmpfs(c, f, slot)
        restore(c, [])                                   # (started again, caught up)
    with connect_all(c, but=f) as client:
        keys = keys_followed_on(c, client, fid, slot, 6, 4_000_000)  # others lead them
        shards = {tally_shard(k) for k in keys}
        results = Results()
        ws = writers(c, [keys], results, but=f)
        ballast = None
        try:
            results.wait_acks(20)
            ballast = fill(path)
            t_full = time.monotonic()
            # the leaders go on acknowledging, with the other follower
            for k in keys:
                results.wait_acks(3, [k], after=t_full, timeout=FAILOVER_BOUND + 10)
            # ... while the full follower holds nothing more (once the last free bytes of
            # its files' pages are used: a few appends): its positions stay put as the
            # leaders' move on
            results.wait_acks(10 * len(keys), keys, after=t_full)
            before = positions_on(c, client, fid, shards)
            lead_before = leader_positions(client, shards)
            results.wait_acks(len(keys) * 3, keys, after=time.monotonic())
            after = positions_on(c, client, fid, shards)
            lead_after = leader_positions(client, shards)
            stuck = [s for s in shards if after[s] == before[s] and lead_after[s] != lead_before[s]]
            assert stuck, (f"{fid}'s full slot kept up with its leaders: {before} -> {after} "
                           f"(leaders {lead_before} -> {lead_after})")
            os.remove(ballast)
            ballast = None
            results.wait_acks(10, keys, after=time.monotonic())
        finally:
            if ballast is not None:
                os.remove(ballast)
            finish(ws)
        # room again: it catches up (the followed shards at their leaders' position)
        restore(c, keys)
        assert all(leader_of(client, k) != fid for k in keys)
        audit_keys(client, keys, results)


# -- f: an alarm due while its leader is dead ----------------------------------------------


def alarmists_led_by(client: actorsys.Client, node_id: str, per_slot: int) -> list[str]:
    """``per_slot`` Alarmist keys on each of ``node_id``'s worker slots whose shards it
    leads (by the client's map)."""
    client.refresh_map()
    m = client.map
    got: dict[int, list[str]] = {}
    for i in range(200_000):
        key = f"alarm-{i}"
        g = m.owner[shard_of(ALARMIST, key, m.shards)]
        node = m.node_of_slot(g) if g >= 0 else None
        if node is not None and node["id"] == node_id:
            keys = got.setdefault(g, [])
            if len(keys) < per_slot:
                keys.append(key)
            if len(got) == WORKERS and all(len(k) == per_slot for k in got.values()):
                return [k for ks in got.values() for k in ks]
    raise AssertionError(f"no {per_slot} Alarmist keys per slot led by {node_id}: {got}")


def alarmist_leader(client: actorsys.Client, key: str) -> str | None:
    """The node leading Alarmist ``key``'s shard by the client's map (None: a node down)."""
    m = client.map
    slot = m.owner[shard_of(ALARMIST, key, m.shards)]
    node = m.node_of_slot(slot) if slot >= 0 else None
    return None if node is None else str(node["id"])


#: an alarm is due this long after it was set: the node dies well before
ALARM_DELAY = 2.0


def test_f_an_alarm_due_while_its_leader_is_dead_fires_once_on_the_new_leader(cluster):
    c, v = cluster, 2                                  # n3 dies with alarms due
    vid = c.nodes[v].node_id
    with connect_all(c, but=v) as client:
        keys = alarmists_led_by(client, vid, 3)
        victims = set(c.pids(v))
        due: dict[str, float] = {}
        for k in keys:                                 # acknowledged: committed on a quorum
            due[k] = client.ask(ALARMIST, k, "set", ALARM_DELAY, "f", {"key": k}, timeout=5.0)
            assert client.ask(ALARMIST, k, "pid", timeout=5.0) in victims
        t_kill = time.time()
        c.kill_node(v)
        assert t_kill < min(due.values()) - 1.0, "the node died well before the alarms' time"
        # each fires on a new leader within lease_ttl + a few seconds of its time
        bound = max(due.values()) + TTL + 3.0
        fired: dict[str, list[dict[str, Any]]] = {}

        def all_fired() -> bool:
            for k in keys:
                if not fired.get(k):
                    try:
                        fired[k] = client.ask(ALARMIST, k, "fired", timeout=1.0)
                    except (actorsys.ShardUnavailable, actorsys.WorkerLost, actorsys.AskTimeout,
                            actorsys.NodeUnavailable):
                        # (mid-failover: a moved shard's map refresh may outlast this ask's
                        # second; the bound below is what is checked, not each ask)
                        return False
            return all(fired.get(k) for k in keys)
        wait_until(all_fired, f"the alarms of {vid}'s shards fired elsewhere",
                   timeout=max(bound - time.time(), 0.0) + 10.0)
        late = {k: round(f[0]["at"] - due[k], 2) for k, f in fired.items() if f[0]["at"] > bound}
        assert not late, f"alarms fired this late after their time (bound: lease_ttl + 3 s): {late}"
        for k in keys:
            f = fired[k]
            assert len(f) == 1, f"{k}: its alarm fired {len(f)} times: {f}"
            assert f[0]["name"] == "f" and f[0]["payload"] == {"key": k}, f
            assert f[0]["at"] >= due[k] - 0.01, f"{k}: fired before its time: {f}, due {due[k]}"
            assert f[0]["pid"] not in victims, f"{k}: fired by the killed {vid} (pid {f[0]['pid']})"
            assert alarmist_leader(client, k) not in (None, vid)
            assert client.ask(ALARMIST, k, "pending", timeout=5.0) == {}, f"{k}: still set"
        # the killed node comes back, catches up and leads its shards again: none fires again
        restore(c, [])

        def handed_back() -> bool:
            client.refresh_map()
            return all(alarmist_leader(client, k) == vid for k in keys)
        wait_until(handed_back, f"{vid} to lead the alarms' shards again", timeout=RESTORE_TIMEOUT)
        for k in keys:
            f = after_failover(lambda k=k: client.ask(ALARMIST, k, "fired", timeout=5.0))
            assert len(f) == 1, f"{k}: after {vid} came back its alarm has fired {len(f)} times: {f}"
            assert after_failover(lambda k=k: client.ask(ALARMIST, k, "pending", timeout=5.0)) == {}

# -- g: leaders back from a failover that promoted no one ------------------------------------


def test_g_leaders_back_from_a_failover_that_promoted_no_one_take_writes_again(cluster):
    """n2 and n3 paused past their lease: the failover of their shards asks their one
    live follower, n1, its position with a raised fence (``epoch + 1``), but cannot
    promote it (two of three voters do not answer). Both resumed, they are still the
    recorded leaders; n1 refuses their older epoch, so each takes its shards back at an
    epoch above the fence (or a follower was promoted meanwhile): writes to them are
    acknowledged again, with every write acknowledged before the pause."""
    c, paused = cluster, [1, 2]
    with connect_all(c) as client:
        keys = keys_led_by(client, "n2", 3, 3_000_000) + keys_led_by(client, "n3", 3, 3_000_000)
        acked = {k: client.ask(TALLY, k, "add", timeout=5.0) for k in keys}
        with open(c.nodes[0].log_path, "rb") as f:
            mark = len(f.read())

        def promoted_no_one() -> bool:
            with open(c.nodes[0].log_path, "rb") as f:
                said = f.read()[mark:].decode("utf-8", "replace")
            return "failover of the shards of n2, n3: 0 of" in said
        for i in paused:
            c.pause_node(i)
        try:
            wait_until(promoted_no_one, "n1 tried to fail over n2's and n3's shards and "
                       "promoted none of them", timeout=30)
        finally:
            for i in paused:
                c.resume_node(i)
        for k in keys:
            n = after_failover(lambda k=k: client.ask(TALLY, k, "add", timeout=5.0),
                               timeout=RESTORE_TIMEOUT)
            assert n > acked[k], f"{k}: counted {n} after {acked[k]} acknowledged before the pause"
        restore(c, keys)


# -- z: a node leaves (last: the module's cluster is not restored after it) ------------------


def test_z_a_leaving_node_hands_its_leadership_to_followers(cluster):
    """``run --drain`` / LEAVE on a replicated node: its shards' leadership goes to their
    followers (a transfer, no copy), every acknowledged write is there, nothing is
    unavailable. Last of the module: the node that left is not started again."""
    c = cluster
    with connect_all(c, but=2) as client:
        # (again on ShardUnavailable: a failover pass of scenario g, begun while its nodes
        # were away and ended after they came back, may have raised a fence that a leader
        # learns of only from a refused write, which it answers so, then takes the shard
        # back at a newer epoch)
        acked = {f"leave-{i}": after_failover(
            lambda i=i: client.ask(TALLY, f"leave-{i}", "add", timeout=10.0)) for i in range(100)}
        reply = c.stop_node(2, drain=True)
        assert reply is not None and reply[0] == wire.OK, reply
        view = c.wait_view(0, lambda v: v["unavailable"] == 0 and sum(
            n["shards"] for n in v["nodes"] if n["id"] != "n3") == SHARDS,
            "n3's shards led by n1 and n2", timeout=30)
        assert all(n["shards"] for n in view["nodes"] if n["id"] != "n3"), view
        client.refresh_map()
        for k, v in acked.items():      # (again on ShardUnavailable: a node fenced for a
            # moment by a late lease renewal, 2 s leases on two busy cores)
            n = after_failover(lambda k=k: client.ask(TALLY, k, "read", timeout=10.0))["n"]
            assert n == v, k
