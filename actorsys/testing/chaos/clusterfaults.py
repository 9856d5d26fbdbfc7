"""The cluster chaos run's fault injector: faults of nodes, and the time to recover.

:class:`ClusterInjector` picks each fault (:data:`KINDS`; the first of each kind
guaranteed), injects it into a node and waits, with a deadline, until the node answers
again; what it sees it sees through a :class:`~.clusterprobe.ClusterProbe`. Faults, at
random:

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
  answers again. Only with namespace hosts (the run leaves it out on loopback hosts).

* ``move`` (``--join-leave`` only): a new node joins (its fair share of the shards moves
  to it under the load), and the next ``move`` makes it leave (``LEAVE``: its shards
  move back, then it stops); recovered when no shard is moving any more and every
  node's slots answer. A shard served on two nodes at once during a move would break
  the single-activation audit.

The first faults are one of each kind (with ``move``: two, a join and a leave), in
random order (a run shorter than they take goes on until each was injected); then at
random, by :data:`WEIGHTS`.

With ``replicas`` R > 1 a node that dies, is paused or cut off past its lease loses its
shards to a follower (failover) instead of keeping them unavailable until it returns.
So for ``node``, ``pause`` and ``cut`` faults the injector measures two times:
``failover_ms``, from the fault until every slot's probe of that node answers from
another node, and ``recovery_ms``, from the node's restart (a killed node stays down
until its shards failed over), SIGCONT or heal until it is back: the cluster settled
again (every shard on R live voters, none unavailable, leadership back at its
rendezvous choice: the returning node caught up as a follower first) and its probes
answer from its own workers. A router fault, which may make its shards fail over too,
ends the same way.

Every fault is an event (a dict: ``kind``, ``at_s``, ``node``, ``what``, ``killed`` /
``new`` pids, ``recovery_ms`` and ``failover_ms`` once measured) in :attr:`events`; a
fault that did not recover in time is a line of :attr:`problems`, reported by the audit.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable

from actorsys.protocol import wire
from actorsys.testing.cluster import Cluster
from actorsys.testing.processes import gone, kill

from .clusterprobe import ClusterProbe, settled

KINDS = ("worker", "router", "node", "pause", "cut", "move")
#: the kinds whose node loses its shards to a follower when the cluster has replicas
REPLICATED_KINDS = ("node", "pause", "cut")
WEIGHTS = {"worker": 0.35, "router": 0.2, "node": 0.15, "pause": 0.15, "cut": 0.15, "move": 0.1}
#: seconds a killed node stays down before it is started again
DOWN_S = 1.0


class ClusterInjector:
    """Faults of a cluster's nodes, and how long until each node answers again.

    ``live`` lists the indexes (of ``cluster.nodes``) of the nodes in the cluster now;
    ``joiner`` is the one of them a ``move`` added (None: none; the next ``move`` joins
    one). ``deck`` holds the first faults still to inject. ``probe`` knows the probe
    keys of exactly the nodes of ``live`` (learnt again after each ``move``)."""

    def __init__(self, cluster: Cluster, rng: random.Random, recovery_timeout: float,
                 kinds: tuple[str, ...], replicas: int = 1) -> None:
        self.c, self.rng, self.recovery_timeout = cluster, rng, recovery_timeout
        self.kinds = kinds
        #: the cluster's replicas (> 1: a node's shards fail over; see the module docstring)
        self.replicas = replicas
        self.probe = ClusterProbe(cluster)
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []
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

    def learn(self, timeout: float = 30.0) -> None:
        """A probe key for every slot of every live node, and its pid."""
        self.probe.learn(self.live, timeout)

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
        old = self.probe.worker_pids[(i, slot)]
        ev.update(what=f"kill -9 worker {slot} of {ev['node']} (pid {old})", killed=[old])
        t0 = time.monotonic()
        kill(old)
        deadline = self._deadline()
        while time.monotonic() < deadline and not gone(old):
            time.sleep(0.002)
        new = self.probe.probe((i, slot), old, deadline)
        if new is not None:
            self.probe.worker_pids[(i, slot)] = new
            ev["new"] = [new]
        self._recovered(ev, t0, new is not None, f"worker {slot} of {ev['node']} (killed pid {old})")

    # -- with replicas: failover, then back ----------------------------------------------
    def _failover(self, i: int, ev: dict[str, Any], t0: float) -> None:
        """Replicas: wait until every slot's probe of node ``i`` answers from a process
        that is not one of node ``i``'s (its shards failed over); ``failover_ms`` from
        ``t0``, or a problem."""
        deadline = t0 + max(self.recovery_timeout, 30.0)
        mine = {pid for (k, _), pid in self.probe.worker_pids.items() if k == i} | set(self.c.pids(i))
        for slot in range(self.c.workers):
            if self.probe.probe((i, slot), None, deadline, not_among=mine) is None:
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
            pid = self.probe.probe((i, slot), None, deadline, among=set(self.c.pids(i)))
            if pid is None:
                ok = False
                break
            self.probe.worker_pids[(i, slot)] = pid
        self._recovered(ev, t0, ok, what)

    def _router(self, i: int, ev: dict[str, Any]) -> None:
        deadline = self._deadline()
        old = self.probe.router_pid(i, deadline)
        if old is None:
            self.problems.append(f"{ev['node']}'s router did not report its pid")
            return
        ev.update(what=f"kill -9 the router of {ev['node']} (pid {old})", killed=[old])
        t0 = time.monotonic()
        kill(old)
        while time.monotonic() < deadline and not gone(old):
            time.sleep(0.002)
        new = self.probe.router_pid(i, deadline, not_pid=old)
        if new is not None:
            ev["new"] = [new]
        if self.replicas > 1 and new is not None:       # its shards may have failed over
            self._back(i, ev, t0, f"{ev['node']} (router pid {old} killed)")
            return
        ok = new is not None and self.probe.node_answers(i, deadline, new=False)
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
        ok = self.probe.node_answers(i, self._deadline(), new=True)
        ev["new"] = self.c.pids(i)
        self._recovered(ev, t0, ok, f"{ev['node']} (killed, restarted)")

    def _pause(self, i: int, ev: dict[str, Any]) -> None:
        ev["paused"] = self.c.pids(i)
        self._away(i, ev, self.c.pause_node, self.c.resume_node,
                   f"SIGSTOP {ev['node']} for {{down}} s ({{lease}}), SIGCONT", "paused",
                   "paused, failed over, resumed", "paused, resumed")

    def _cut(self, i: int, ev: dict[str, Any]) -> None:
        self._away(i, ev, self.c.cut_node, self.c.heal_node,
                   f"cut {ev['node']}'s network for {{down}} s ({{lease}}), healed", "cut off",
                   "network cut, failed over, healed", "network cut, healed")

    def _away(self, i: int, ev: dict[str, Any], go: Callable[[int], None],
              back: Callable[[int], None], what: str, problem: str, failed_over: str,
              returned: str) -> None:
        """Node ``i`` away past its lease (``go``, then ``back``: a pause or a network
        cut): the others must see its lease expire (and, replicated, fail its shards
        over); recovered when it answers again."""
        t_away = time.monotonic()
        go(i)
        try:
            dead = self.probe.seen_dead(i, self.live, self._deadline())
            if self.replicas > 1:
                self._failover(i, ev, t_away)
            ev["down_s"] = round(time.monotonic() - t_away, 3)
        finally:
            back(i)
        ev["what"] = what.format(down=f"{ev['down_s']:.1f}",
                                 lease="past its lease" if dead else "LEASE NOT SEEN EXPIRED")
        if not dead:
            self.problems.append(f"{ev['node']} {problem}: no other node saw its lease expire")
        t0 = time.monotonic()
        if self.replicas > 1:
            self._back(i, ev, t0, f"{ev['node']} ({failed_over})")
            return
        self._recovered(ev, t0, self.probe.node_answers(i, self._deadline(), new=False),
                        f"{ev['node']} ({returned})")

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
            self.probe.client.refresh_map()
            self.learn(max(deadline - time.monotonic(), 1.0))
            ok = True
        except (AssertionError, RuntimeError) as exc:
            self.problems.append(str(exc)[:2000])
            ok = False
        self._recovered(ev, t0, ok, ev["what"])
