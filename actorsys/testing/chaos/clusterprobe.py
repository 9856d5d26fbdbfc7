"""Who serves where in a cluster under faults: the cluster chaos run's eyes.

:class:`ClusterProbe` sees the cluster the way the faults of :mod:`.clusterfaults` need
it: through a client connected to every router, one ``Probe`` actor per worker slot of
every node (its key chosen from the settled shard map: a key whose shard that node
owns on that slot; chosen again after a join or a leave), the pid that answers each,
each node's status over its router and each node's view of the others. It injects
nothing and decides nothing: every wait has a deadline, and a wait that runs out
answers None or False (the caller says what that means).

:func:`settled` is the view predicate the run, the faults and the audit
(:mod:`.clusteraudit`) wait for: the cluster at rest.
"""
from __future__ import annotations

import time
from typing import Any

from actorsys.client import Client, connect
from actorsys.errors import ActorError
from actorsys.protocol import wire
from actorsys.testing.cluster import Cluster, request

from .audit import PROBE


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


class ClusterProbe:
    """Probes of every node's slots, statuses and views (see the module docstring).

    ``probe_keys`` and ``worker_pids`` have the same keys, (node index, local slot), for
    the nodes of the last :meth:`learn`."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.client: Client = connect(cluster.endpoints, timeout=5.0, connect_timeout=10.0)
        #: (node index, local slot) -> a Probe key whose shard that node owns on that slot
        self.probe_keys: dict[tuple[int, int], str] = {}
        #: (node index, local slot) -> the pid last seen serving it
        self.worker_pids: dict[tuple[int, int], int] = {}

    def close(self) -> None:
        self.client.close()

    def learn(self, live: list[int], timeout: float = 30.0) -> None:
        """A probe key for every slot of every node of ``live`` (from the settled map),
        and its pid."""
        index = {self.c.nodes[i].node_id: i for i in live}
        slots = len(live) * self.c.workers
        self.probe_keys.clear()
        self.worker_pids.clear()
        m = self.client.map
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
            pid = self.probe(where, None, deadline)
            if pid is None:
                raise RuntimeError(f"node {where[0]} slot {where[1]} did not answer its probe")
            self.worker_pids[where] = pid

    def probe(self, where: tuple[int, int], old: int | None, deadline: float,
              among: "set[int] | None" = None, not_among: "set[int] | None" = None) -> int | None:
        """The pid serving ``where`` once it answers from a process other than ``old``
        (``among``: one of those; ``not_among``: none of those)."""
        while time.monotonic() < deadline:
            try:
                pid: int = self.client.ask(PROBE, self.probe_keys[where], "pid",
                                           timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
            except ActorError:       # ShardUnavailable comes at once: do not spin
                time.sleep(0.02)
                continue
            if pid != old and (among is None or pid in among) and (not_among is None
                                                                   or pid not in not_among):
                return pid
            time.sleep(0.01)
        return None

    def node_answers(self, i: int, deadline: float, new: bool) -> bool:
        """Every slot of node ``i`` answers (``new``: from a process it did not before)."""
        for slot in range(self.c.workers):
            where = (i, slot)
            pid = self.probe(where, self.worker_pids[where] if new else None, deadline)
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

    def router_pid(self, i: int, deadline: float, not_pid: int = 0) -> int | None:
        """The pid of node ``i``'s router, once its status names one up (not ``not_pid``)."""
        while time.monotonic() < deadline:
            st = self.status(i, min(2.0, max(deadline - time.monotonic(), 0.1)))
            for p in (st or {}).get("processes", ()):
                if p["role"] == "router" and p.get("up") and p["pid"] != not_pid:
                    pid: int = p["pid"]
                    return pid
            time.sleep(0.05)
        return None

    def seen_dead(self, i: int, live: list[int], deadline: float) -> bool:
        """Another node of ``live`` says in its view that node ``i`` is not alive (its
        lease expired)."""
        nid = self.c.nodes[i].node_id
        others = [k for k in live if k != i]
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
