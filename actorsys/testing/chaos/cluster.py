"""Chaos across a cluster (``scripts/chaos --cluster N``): faults of nodes, then the audit.

:func:`run_cluster` is :func:`.run.run` for a cluster: it starts real etcd and ``N``
nodes (:class:`~actorsys.testing.cluster.Cluster`: network-namespace hosts when this
process may make them, else loopback addresses), waits until they share the shards,
starts the client processes (:mod:`.load`, connected with the list of every router),
injects faults for ``duration`` seconds, stops the clients and audits, as the single-node
run does (:mod:`.audit`: acknowledged <= count <= attempted; ``Tally``'s activation
records tile ``1 .. count``: two activations of one actor at once, on one node or two,
would break that; every acknowledged alarm fired exactly once: with replicas, an alarm
due while its shard's leader is dead fires once, on the new leader). Faults
(:data:`KINDS`), at random, the first of each kind guaranteed:

* ``worker``: kill -9 a random worker of a random node; recovered when a ``Probe`` actor
  on that slot answers from a new process;
* ``router``: kill -9 a node's router; recovered when the router answers a ping, its
  status names a new pid, and every slot of the node answers again;
* ``node``: kill -9 every process of a node, start it again after ``down`` seconds; its
  shards answer ``ShardUnavailable`` meanwhile (the load counts those as failed, not
  lost); recovered, from the restart, when every slot of the node answers again;
* ``pause``: SIGSTOP every process of a node until another node sees it dead (its lease
  expired), then SIGCONT; recovered, from the SIGCONT, when every slot answers again;
* ``cut``: cut a node's host off the network (etcd, the other nodes, the clients) until
  another node sees it dead, then heal it; recovered, from the heal, when every slot
  answers again. Only with namespace hosts: on loopback hosts a run says so and skips it.

* ``move`` (``--join-leave`` only): a new node joins (its fair share of the shards moves
  to it under the load), and the next ``move`` makes it leave (``LEAVE``: its shards
  move back, then it stops); recovered when no shard is moving any more and every
  node's slots answer. A shard served on two nodes at once during a move would break
  the single-activation audit.

The first faults are one of each kind (with ``move``: two, a join and a leave), in
random order (a run shorter than they take goes on until each was injected); then at
random, by :data:`WEIGHTS`.

A node's slots are probed through ``Probe`` actors whose shards that node owns, one per
worker slot (found from the settled shard map, again after each join or leave). The
audit adds, for the cluster at the end: every node healthy (its status, over its
router: every process up, state ``serving``, not fenced) and every shard owned by
exactly one node (every node's view agrees on each node's count, the counts sum to the
shard count, nothing is moving, and each node's workers are granted exactly the shards
it owns).

With ``replicas`` R > 1 (``scripts/chaos --cluster 3 --replicas 3``: ``[cluster] replicas``
in every node's config, issue 16) every shard has a leader and R - 1 followers, and a
node that dies, is paused or cut off past its lease loses its shards to a follower
(failover) instead of keeping them unavailable until it returns. So for ``node``,
``pause`` and ``cut`` faults the run measures two times: ``failover_ms``, from the fault
until every slot's probe of that node answers from another node, and ``recovery_ms``,
from the node's restart (a killed node stays down until its shards failed over),
SIGCONT or heal until it is back: the cluster settled again (every shard on R live
voters, none unavailable, leadership back at its rendezvous choice: the returning node
caught up as a follower first) and its probes answer from its own workers. A router
fault, which may make its shards fail over too, ends the same way. The audit is the
same (the clients count ShardUnavailable as failed, not lost: with replicas they are
few), and the health adds that no shard is under-replicated or unavailable.
``faults`` restricts the kinds (a short run of the faults replication is about).

WebSockets (unless ``ws_sockets`` is 0): every node has a gateway (:func:`gateway_listen`),
and the WebSocket client (:mod:`.wsload`) holds sockets to ``Inbox`` actors on random
nodes' gateways, sending numbered messages through the faults (a socket whose gateway
died or closed it connects again, to a random gateway); the audit checks every number
acknowledged is in its actor's state exactly once, none twice
(:func:`.audit.check_websockets`): with replicas, the delivery mark that makes a batch
delivered again apply once is shard data that fails over with the shard.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from typing import Any

from actorsys.client import Client, connect
from actorsys.config.layout import free_port
from actorsys.errors import ActorError
from actorsys.protocol import wire
from actorsys.testing.cluster import Cluster, ClusterNode, request
from actorsys.testing.processes import gone, kill

from .audit import ACTORS, PROBE, gateway_counters, percentiles
from .load import GO, LineReader
from .run import ChaosParams, Reporter, audit_counts, end_clients, inject_until, send, \
    split_reports, start_clients, stop_clients

KINDS = ("worker", "router", "node", "pause", "cut", "move")
#: the kinds whose node loses its shards to a follower when the cluster has replicas
REPLICATED_KINDS = ("node", "pause", "cut")
WEIGHTS = {"worker": 0.35, "router": 0.2, "node": 0.15, "pause": 0.15, "cut": 0.15, "move": 0.1}
#: seconds a killed node stays down before it is started again
DOWN_S = 1.0
#: the lines of each node's log a run with violations keeps in its result
LOG_LINES = 60
#: the gateway's port on a namespace host (each namespace has its ports to itself)
GATEWAY_PORT = 7180


def gateway_listen(c: Cluster, node: ClusterNode) -> str:
    """Node ``node``'s gateway ``HOST:PORT``: :data:`GATEWAY_PORT` on a namespace host, a
    free port (not its router's) on a loopback one. (Called while ``c`` makes the node's
    config: its hosts are known by then.)"""
    host = node.host.address
    if c.can_cut:
        return f"{host}:{GATEWAY_PORT}"
    return f"{host}:{free_port(host, taken=[node.endpoint.rsplit(':', 1)[1]])}"


def settled(ids: list[str], replicas: int = 1) -> Any:
    """A view predicate: the nodes ``ids`` alive, each owning (leading) shards, none
    moving, and any other node listed (one that left) owning none; with ``replicas`` >
    1 also the view's ``replicas`` that, and no shard under-replicated or unavailable."""
    def ok(view: Any) -> bool:
        nodes = {x["id"]: x for x in view.get("nodes") or []}
        if replicas > 1 and (view.get("replicas") != replicas or view.get("under_replicated") != 0
                             or view.get("unavailable") != 0):
            return False
        return set(ids) <= set(nodes) and all(
            (x["alive"] and x["shards"] and not x["moving"]) if nid in ids else not x["shards"]
            for nid, x in nodes.items())
    return ok


class ClusterInjector:
    """Faults of a cluster's nodes, and how long until each node answers again."""

    def __init__(self, cluster: Cluster, rng: random.Random, recovery_timeout: float,
                 kinds: tuple[str, ...], replicas: int = 1) -> None:
        self.c, self.rng, self.recovery_timeout = cluster, rng, recovery_timeout
        self.kinds = kinds
        #: the cluster's replicas (> 1: a node's shards fail over; see the module docstring)
        self.replicas = replicas
        self.probe: Client = connect(cluster.endpoints, timeout=5.0, connect_timeout=10.0)
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []
        #: (node index, local slot) -> a Probe key whose shard that node owns on that slot
        self.probe_keys: dict[tuple[int, int], str] = {}
        #: (node index, local slot) -> the pid last seen serving it
        self.worker_pids: dict[tuple[int, int], int] = {}
        self.seen_pids: set[int] = set()
        # the first faults: one of each kind (a move twice: a join, then the leave)
        self.deck = list(kinds) + (["move"] if "move" in kinds else [])
        rng.shuffle(self.deck)
        #: the nodes in the cluster now (indexes of ``cluster.nodes``), and the joiner in it
        self.live: list[int] = list(range(len(cluster.nodes)))
        self.joiner: int | None = None

    @property
    def live_ids(self) -> list[str]:
        return [self.c.nodes[i].node_id for i in self.live]

    def close(self) -> None:
        self.probe.close()

    # -- who is where ---------------------------------------------------------------
    def learn(self, timeout: float = 30.0) -> None:
        """A probe key for every slot of every node (from the settled map), and its pid."""
        index = {self.c.nodes[i].node_id: i for i in self.live}
        slots = len(self.live) * self.c.workers
        self.probe_keys.clear()
        self.worker_pids.clear()
        m = self.probe.map
        for i in range(200_000):
            key = f"probe-{i}"
            try:
                g = m.slot_of(PROBE, key)
            except ActorError:
                continue
            node = m.node_of_slot(g)
            if node is None or node["id"] not in index:
                continue
            where = (index[node["id"]], g - node["slots"][0])
            self.probe_keys.setdefault(where, key)
            if len(self.probe_keys) == slots:
                break
        else:
            raise RuntimeError(f"no probe key for some slots: found {sorted(self.probe_keys)}")
        deadline = time.monotonic() + timeout
        for where in sorted(self.probe_keys):
            pid = self._probe(where, None, deadline)
            if pid is None:
                raise RuntimeError(f"node {where[0]} slot {where[1]} did not answer its probe")
            self.worker_pids[where] = pid

    def _probe(self, where: tuple[int, int], old: int | None, deadline: float,
               among: "set[int] | None" = None, not_among: "set[int] | None" = None) -> int | None:
        """The pid serving ``where`` once it answers from a process other than ``old``
        (``among``: one of those; ``not_among``: none of those)."""
        while time.monotonic() < deadline:
            try:
                pid: int = self.probe.ask(PROBE, self.probe_keys[where], "pid",
                                          timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
            except ActorError:       # ShardUnavailable comes at once: do not spin
                time.sleep(0.02)
                continue
            if pid != old and (among is None or pid in among) and (not_among is None
                                                                   or pid not in not_among):
                self.seen_pids.add(pid)
                return pid
            time.sleep(0.01)
        return None

    def _node_answers(self, i: int, deadline: float, new: bool) -> bool:
        """Every slot of node ``i`` answers (``new``: from a process it did not before)."""
        for slot in range(self.c.workers):
            where = (i, slot)
            pid = self._probe(where, self.worker_pids[where] if new else None, deadline)
            if pid is None:
                return False
            self.worker_pids[where] = pid
        return True

    def status(self, i: int, timeout: float = 3.0) -> dict[str, Any] | None:
        """Node ``i``'s status over its router (None: no answer, or refused)."""
        reply = request(self.c.endpoints[i], wire.STATUS, self.c.client_keys(i), timeout)
        if reply is None or reply[0] != wire.OK:
            return None
        st: dict[str, Any] = reply[1]
        return st

    def _router_pid(self, i: int, deadline: float, not_pid: int = 0) -> int | None:
        while time.monotonic() < deadline:
            st = self.status(i, min(2.0, max(deadline - time.monotonic(), 0.1)))
            for p in (st or {}).get("processes", ()):
                if p["role"] == "router" and p.get("up") and p["pid"] != not_pid:
                    pid: int = p["pid"]
                    self.seen_pids.add(pid)
                    return pid
            time.sleep(0.05)
        return None

    def _seen_dead(self, i: int, deadline: float) -> bool:
        """Another node's view says node ``i`` is not alive (its lease expired)."""
        nid = self.c.nodes[i].node_id
        others = [k for k in self.live if k != i]
        while time.monotonic() < deadline:
            for k in others:
                try:
                    view = self.c.view(k, timeout=1.0)
                except RuntimeError:
                    continue
                if any(n["id"] == nid and not n["alive"] for n in view.get("nodes") or ()):
                    return True
            time.sleep(0.05)
        return False

    # -- faults ---------------------------------------------------------------------
    def next_kind(self) -> str:
        """The kind of the next fault: the shuffled deck first, then by :data:`WEIGHTS`."""
        if self.deck:
            return self.deck.pop()
        total = sum(WEIGHTS[k] for k in self.kinds)
        x, acc = self.rng.random() * total, 0.0
        for kind in self.kinds:
            acc += WEIGHTS[kind]
            if x < acc:
                return kind
        return self.kinds[0]

    def inject(self, kind: str, at: float) -> dict[str, Any]:
        """One fault of ``kind`` (``at`` seconds into the load), awaited until recovered or
        past the recovery timeout; returns (and records) its event."""
        i = self.joiner if kind == "move" and self.joiner is not None else self.rng.choice(self.live)
        ev: dict[str, Any] = {"kind": kind, "at_s": round(at, 3), "node": self.c.nodes[i].node_id}
        getattr(self, f"_{kind}")(i, ev)
        self.events.append(ev)
        return ev

    def _deadline(self) -> float:
        return time.monotonic() + self.recovery_timeout

    def _recovered(self, ev: dict[str, Any], t0: float, ok: bool, what: str) -> None:
        if ok:
            ev["recovery_ms"] = (time.monotonic() - t0) * 1000
        else:
            self.problems.append(f"{what} did not recover within {self.recovery_timeout:g} s")

    def _worker(self, i: int, ev: dict[str, Any]) -> None:
        slot = self.rng.randrange(self.c.workers)
        old = self.worker_pids[(i, slot)]
        ev.update(what=f"kill -9 worker {slot} of {ev['node']} (pid {old})", killed=[old])
        t0 = time.monotonic()
        kill(old)
        deadline = self._deadline()
        while time.monotonic() < deadline and not gone(old):
            time.sleep(0.002)
        new = self._probe((i, slot), old, deadline)
        if new is not None:
            self.worker_pids[(i, slot)] = new
            ev["new"] = [new]
        self._recovered(ev, t0, new is not None, f"worker {slot} of {ev['node']} (killed pid {old})")

    # -- with replicas: failover, then back ----------------------------------------------
    def _failover(self, i: int, ev: dict[str, Any], t0: float) -> None:
        """Replicas: wait until every slot's probe of node ``i`` answers from a process
        that is not one of node ``i``'s (its shards failed over); ``failover_ms`` from
        ``t0``, or a problem."""
        deadline = t0 + max(self.recovery_timeout, 30.0)
        mine = {pid for (k, _), pid in self.worker_pids.items() if k == i} | set(self.c.pids(i))
        for slot in range(self.c.workers):
            if self._probe((i, slot), None, deadline, not_among=mine) is None:
                self.problems.append(f"{ev['node']}'s shards (slot {slot}) did not fail over "
                                     f"within {deadline - t0:.0f} s of {ev['kind']}")
                return
        ev["failover_ms"] = (time.monotonic() - t0) * 1000

    def _back(self, i: int, ev: dict[str, Any], t0: float, what: str) -> None:
        """Replicas: node ``i`` is back once the cluster settled again (every shard on
        its replicas, leadership back at its rendezvous choice) and every slot's probe
        answers from one of node ``i``'s processes; ``recovery_ms`` from ``t0``."""
        deadline = t0 + max(self.recovery_timeout, 60.0)
        other = next((k for k in self.live if k != i), i)
        try:
            self.c.wait_view(other, settled(self.live_ids, self.replicas),
                             f"the cluster settled after {what}",
                             timeout=max(deadline - time.monotonic(), 1.0))
        except AssertionError as exc:
            self.problems.append(str(exc)[:2000])
            self._recovered(ev, t0, False, what)
            return
        ok = True
        for slot in range(self.c.workers):
            pid = self._probe((i, slot), None, deadline, among=set(self.c.pids(i)))
            if pid is None:
                ok = False
                break
            self.worker_pids[(i, slot)] = pid
        self._recovered(ev, t0, ok, what)

    def _router(self, i: int, ev: dict[str, Any]) -> None:
        deadline = self._deadline()
        old = self._router_pid(i, deadline)
        if old is None:
            self.problems.append(f"{ev['node']}'s router did not report its pid")
            return
        ev.update(what=f"kill -9 the router of {ev['node']} (pid {old})", killed=[old])
        t0 = time.monotonic()
        kill(old)
        while time.monotonic() < deadline and not gone(old):
            time.sleep(0.002)
        new = self._router_pid(i, deadline, not_pid=old)
        if new is not None:
            ev["new"] = [new]
        if self.replicas > 1 and new is not None:       # its shards may have failed over
            self._back(i, ev, t0, f"{ev['node']} (router pid {old} killed)")
            return
        ok = new is not None and self._node_answers(i, deadline, new=False)
        self._recovered(ev, t0, ok, f"{ev['node']} (router pid {old} killed)")

    def _node(self, i: int, ev: dict[str, Any]) -> None:
        victims = self.c.pids(i)
        if self.replicas > 1:
            t_kill = time.monotonic()
            self.c.kill_node(i)
            self._failover(i, ev, t_kill)
            ev.update(what=f"kill -9 all of {ev['node']} ({len(victims)} processes), restarted "
                           f"after its shards failed over", killed=victims)
            self.c.start_node(i)
            t0 = time.monotonic()
            self._back(i, ev, t0, f"{ev['node']} (killed, failed over, restarted)")
            ev["new"] = self.c.pids(i)
            return
        ev.update(what=f"kill -9 all of {ev['node']} ({len(victims)} processes), "
                       f"restarted {DOWN_S:g} s later", killed=victims)
        self.c.kill_node(i)
        time.sleep(DOWN_S)             # down for a moment: its shards are unavailable
        self.c.start_node(i)
        t0 = time.monotonic()
        ok = self._node_answers(i, self._deadline(), new=True)
        ev["new"] = self.c.pids(i)
        self._recovered(ev, t0, ok, f"{ev['node']} (killed, restarted)")

    def _pause(self, i: int, ev: dict[str, Any]) -> None:
        ev["paused"] = self.c.pids(i)
        t_stop = time.monotonic()
        self.c.pause_node(i)
        try:
            dead = self._seen_dead(i, self._deadline())
            if self.replicas > 1:
                self._failover(i, ev, t_stop)
            ev["down_s"] = round(time.monotonic() - t_stop, 3)
        finally:
            self.c.resume_node(i)
        ev["what"] = (f"SIGSTOP {ev['node']} for {ev['down_s']:.1f} s "
                      f"({'past its lease' if dead else 'LEASE NOT SEEN EXPIRED'}), SIGCONT")
        if not dead:
            self.problems.append(f"{ev['node']} paused: no other node saw its lease expire")
        t0 = time.monotonic()
        if self.replicas > 1:
            self._back(i, ev, t0, f"{ev['node']} (paused, failed over, resumed)")
            return
        self._recovered(ev, t0, self._node_answers(i, self._deadline(), new=False),
                        f"{ev['node']} (paused, resumed)")

    def _cut(self, i: int, ev: dict[str, Any]) -> None:
        t_cut = time.monotonic()
        self.c.cut_node(i)
        try:
            dead = self._seen_dead(i, self._deadline())
            if self.replicas > 1:
                self._failover(i, ev, t_cut)
            ev["down_s"] = round(time.monotonic() - t_cut, 3)
        finally:
            self.c.heal_node(i)
        ev["what"] = (f"cut {ev['node']}'s network for {ev['down_s']:.1f} s "
                      f"({'past its lease' if dead else 'LEASE NOT SEEN EXPIRED'}), healed")
        if not dead:
            self.problems.append(f"{ev['node']} cut off: no other node saw its lease expire")
        t0 = time.monotonic()
        if self.replicas > 1:
            self._back(i, ev, t0, f"{ev['node']} (network cut, failed over, healed)")
            return
        self._recovered(ev, t0, self._node_answers(i, self._deadline(), new=False),
                        f"{ev['node']} (network cut, healed)")


    def _move(self, i: int, ev: dict[str, Any]) -> None:
        """A new node joins (``i`` is ignored) or, if one did, it leaves (``i``), its
        shards moving under the load; recovered when the cluster is settled again (no
        shard moving) and every node's slots answer."""
        t0 = time.monotonic()
        deadline = t0 + max(self.recovery_timeout, 60.0)
        try:
            if self.joiner is None:
                j = self.c.add_node()
                self.live.append(j)
                self.joiner = j
                ev.update(node=self.c.nodes[j].node_id, what=f"{self.c.nodes[j].node_id} joins")
            else:
                j, self.joiner = self.joiner, None
                self.live.remove(j)
                ev["what"] = f"{self.c.nodes[j].node_id} leaves (LEAVE: its shards move, then it stops)"
                reply = self.c.stop_node(j, drain=True, drain_timeout=60.0)
                if reply is None or reply[0] != wire.OK:
                    self.problems.append(f"{self.c.nodes[j].node_id}'s LEAVE answered {reply}")
            self.c.wait_view(self.live[0], settled(self.live_ids, self.replicas),
                             "the cluster settled after "
                             + ev["what"], timeout=max(deadline - time.monotonic(), 1.0))
            self.probe.refresh_map()
            self.learn(max(deadline - time.monotonic(), 1.0))
            ok = True
        except (AssertionError, RuntimeError) as exc:
            self.problems.append(str(exc)[:2000])
            ok = False
        self._recovered(ev, t0, ok, ev["what"])


def cluster_health(c: Cluster, injector: ClusterInjector, workers: int) -> tuple[bool, str, list[str]]:
    """(healthy, what was seen, violations): every node's status over its router (every
    process up, serving, not fenced) and the ownership (see the module docstring)."""
    problems: list[str] = []
    owned: dict[str, int] = {}
    for i in injector.live:
        node = c.nodes[i]
        st = injector.status(i, 5.0)
        if st is None or not node.running:
            problems.append(f"{node.node_id}: no status over its router"
                            f"{'' if node.running else ' (its supervisor exited)'}")
            continue
        procs = st["processes"]
        down = [f"{p['role']} {p.get('slot') if p.get('slot') is not None else ''}".strip()
                for p in procs if not p.get("up")]
        slots = sorted(p["slot"] for p in procs if p["role"] == "worker" and p.get("up"))
        cl = st.get("cluster") or {}
        if down or slots != list(range(workers)) or cl.get("state") != "serving" or cl.get("fenced"):
            problems.append(f"{node.node_id} unhealthy: processes down {down or 'none'}, workers up "
                            f"{slots}, state {cl.get('state')}, fenced {cl.get('fenced')}")
        owned[node.node_id] = int(cl.get("shards_owned", -1))
        granted = sum(int(p.get("granted") or 0) for p in procs if p["role"] == "worker")
        if granted != owned[node.node_id]:
            problems.append(f"{node.node_id} owns {owned[node.node_id]} shards but its workers are "
                            f"granted {granted}")
    shards = injector.probe.map.shards
    if owned and sum(owned.values()) != shards:
        problems.append(f"the nodes own {sum(owned.values())} shards between them, not {shards}: {owned}")
    for i in injector.live:
        node = c.nodes[i]
        try:
            view = c.view(i, timeout=5.0)
        except RuntimeError as exc:
            problems.append(f"{node.node_id}: {exc}")
            continue
        counts = {n["id"]: n["shards"] for n in view["nodes"] if n["shards"]}
        if counts != owned or not settled(injector.live_ids, injector.replicas)(view):
            problems.append(f"{node.node_id}'s view {view['nodes']} disagrees with what the nodes "
                            f"own {owned} or is not settled")
    what = (f"{len(injector.live)} nodes serving, every process up, {shards} shards owned "
            f"once ({', '.join(f'{k} {v}' for k, v in owned.items())}), none moving"
            + (f", each on {injector.replicas} live replicas (none under-replicated or "
               f"unavailable)" if injector.replicas > 1 else ""))
    return not problems, (what if not problems else "; ".join(problems)), problems


def chosen_kinds(faults: str | None) -> set[str]:
    """The fault kinds a ``--faults`` list names (None: every kind); ValueError naming an
    unknown one."""
    if faults is None:
        return set(KINDS)
    wanted = {k.strip() for k in faults.split(",") if k.strip()}
    unknown = sorted(wanted - set(KINDS))
    if unknown or not wanted:
        raise ValueError(f"--faults: unknown fault kind(s) {unknown}; known: {', '.join(KINDS)}")
    return wanted


def node_settings(p: ChaosParams) -> dict[str, Any]:
    """The ``[node]`` keys of every node: the kills are deliberate, so no restart limit."""
    node: dict[str, Any] = {"durability": p.durability, "ask_timeout": p.ask_timeout,
                            "max_restarts": 1_000_000, "max_seconds": 1.0}
    if p.max_resident:
        node["max_resident"] = p.max_resident
    if p.idle_timeout:
        node["idle_timeout"] = p.idle_timeout
    return node


def run_cluster(p: ChaosParams, reporter: Reporter) -> dict[str, Any]:
    """One run over a cluster of ``p.cluster`` nodes; the result (as :func:`.run.run`)."""
    rng = random.Random(p.seed)
    workdir = tempfile.mkdtemp(prefix="actorsys-cluster-chaos-", dir=p.tmpdir)
    clients: list[subprocess.Popen[bytes]] = []
    injector: ClusterInjector | None = None
    result: dict[str, Any] = {"params": dataclasses.asdict(p)}
    t_begin = time.monotonic()
    extra: dict[str, Any] = {"node": node_settings(p)}
    if p.replicas > 1:
        extra["cluster"] = {"replicas": p.replicas}
    #: node index -> its gateway's HOST:PORT (every node has one if the run has WebSockets)
    gateways: dict[int, str] = {}

    def node_config(node: ClusterNode) -> dict[str, Any]:
        if not p.ws_sockets:
            return extra
        gateways[node.index] = gateway_listen(cluster, node)
        return {**extra, "gateway": {"listen": gateways[node.index]}}

    cluster = Cluster(workdir, p.cluster, hosts=p.hosts, actors=ACTORS, lease_ttl=p.lease_ttl,
                      workers=p.workers, name="chaos", extra_config=node_config)
    opened = False
    try:
        c = cluster.__enter__()        # closed in the finally block (also on an error)
        opened = True
        for i in range(p.cluster):
            c.wait_ready(i, 60.0)
        c.wait_view(0, settled([node.node_id for node in c.nodes], p.replicas),
                    f"{p.cluster} nodes sharing the shards"
                    + (f", each on {p.replicas} replicas" if p.replicas > 1 else ""), 120.0)
        wanted = chosen_kinds(p.faults)
        kinds = tuple(k for k in KINDS if k in wanted and (k != "cut" or c.can_cut)
                      and (k != "move" or p.join_leave))
        notes = [f"hosts: {'network namespaces' if c.can_cut else 'loopback addresses'} "
                 f"({', '.join(c.endpoints)}); lease_ttl {p.lease_ttl:g} s"
                 + (f"; replicas {p.replicas} (a node's shards fail over)" if p.replicas > 1 else "")]
        if not c.can_cut and "cut" in wanted:
            notes.append("network cut: not available on loopback hosts (needs root and "
                         "network namespaces); that fault kind was skipped")
        if not kinds:
            raise RuntimeError(f"no fault kind left to inject of {sorted(wanted)}")
        result.update(endpoints=c.endpoints, notes=notes)
        injector = ClusterInjector(c, rng, p.recovery_timeout, kinds, p.replicas)
        injector.learn()
        # the WebSocket client uses the gateways of the nodes started now (not a joiner's)
        ws_urls = [f"http://{gateways[i]}" for i in range(p.cluster)] if p.ws_sockets else None
        readers: list[LineReader] = start_clients(p, c.endpoints, rng, clients, ws_urls)
        for proc in clients:
            send(proc, GO)
        t_load = time.monotonic()
        reporter.load_started(p)
        inject_until(p, injector, clients, rng, t_load, reporter)
        while injector.deck:           # a short run still has one fault of each kind
            reporter.fault(injector.inject(injector.deck.pop(), time.monotonic() - t_load))
        t_stop = time.monotonic()
        reports, ws_report = split_reports(stop_clients(p, clients, readers))
        out = audit_counts(p, injector.probe, injector, kinds, reports, t_stop - t_load, ws_report)
        if p.replicas > 1:             # from the fault until its node's shards answered elsewhere
            out["failover_ms"] = {"overall": percentiles([ev["failover_ms"] for ev in injector.events
                                                          if "failover_ms" in ev])}
            for kind in REPLICATED_KINDS:
                if kind in kinds:
                    out["failover_ms"][kind] = percentiles([
                        ev["failover_ms"] for ev in injector.events
                        if ev["kind"] == kind and "failover_ms" in ev])
        healthy, health, problems = cluster_health(c, injector, p.workers)
        if out["websockets"] is not None:
            out["websockets"]["gateways"] = gateway_counters([injector.status(i, 5.0)
                                                              for i in injector.live])
        out["violations"].extend(problems)
        out.update(healthy=healthy, health=health,
                   exit_code=0 if out["lost"] == 0 and not out["violations"] and healthy else 1)
        if out["violations"]:          # what the nodes said (their directories are deleted)
            out["node_logs"] = {node.node_id: c.log_tail(node.index, LOG_LINES) for node in c.nodes}
        result.update(out)
        reporter.finished(result)
        return result
    except KeyboardInterrupt:
        reporter.interrupted()
        result["exit_code"] = 130
        return result
    finally:
        end_clients(clients)
        if injector is not None:
            injector.close()
        if opened:
            cluster.close()
        if not os.environ.get("ACTORSYS_KEEP_CLUSTER_DIR"):   # (Cluster keeps its part then)
            shutil.rmtree(workdir, ignore_errors=True)
        pids = {proc.pid for proc in clients}
        for node in cluster.nodes:
            pids.update(pid for pid, _ in node.seen)
        result["pids"] = sorted(pids)
        result["wall_s"] = round(time.monotonic() - t_begin, 3)
        if p.json:
            with open(p.json, "w") as f:
                json.dump(result, f, indent=1)
