"""What a leader's grant says about replication (issue 16; ``[cluster] replicas`` > 1).

:class:`ReplicaGrants` builds the replication arguments of a grant to one of this node's
workers (:meth:`~ReplicaGrants.grant_args`: ``peers``, ``replicas``, ``ack``,
``ack_timeout``; the workers' side is ``runtime/grants.py``): for each granted shard, the
followers (voters) and learners its worker streams to, each by the endpoint of its home
worker for that shard. A change of a replica set under way counts some nodes otherwise
than the records do (``replica_writes.py`` says when): :attr:`~ReplicaGrants.demoting`
as non-voters before the records drop them, :attr:`~ReplicaGrants.promoting` as voters
before the records name them.

Invariants: a shard's nodes in ``demoting`` / ``promoting`` are there only while the
change that put them there runs (it removes them when it ends, failed or not);
``known`` only grows (a follower that died keeps its place in grants, with the endpoint
it last had); ``plain_grants`` only turns True (the workers do not know the arguments:
logged once, grants go without them from then on).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..log import get_logger
from .membership import Member
from .replica_asks import unknown_command

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")

#: the endpoint a grant gives a voter whose endpoints this router never saw (it died
#: before the router started): a valid address nobody listens on, one per node (the
#: worker keys its peers by endpoint), so the voter still counts toward the quorum
UNREACHABLE = "ipc:///nonexistent/actorsys-down/{node}"


class ReplicaGrants:
    """The replication arguments of one node's grants (see the module docstring), from
    the records of its coordinator ``co``."""

    def __init__(self, co: "Coordinator") -> None:
        self.co = co
        self.replicas, self.ack = co.ccfg.replicas, co.ccfg.ack
        #: shard -> the followers a change is removing: granted as non-voters until the
        #: transaction that removes them has been written
        self.demoting: dict[int, set[str]] = {}
        #: shard -> learners a promotion counts as voters before the records name them
        #: (when it raises the quorum: see ``ReplicaWrites.promote``)
        self.promoting: dict[int, set[str]] = {}
        #: every member ever seen by id (a follower that died keeps its place in grants:
        #: it still counts toward the quorum, with the endpoint it last had)
        self.known: dict[str, Member] = {}
        #: the local workers do not know the replication arguments (no worker side yet)
        self.plain_grants = False

    def grant_args(self, granted: Mapping[int, int]) -> dict[str, Any]:
        """The replication arguments of a grant of the shards ``granted`` (its
        ``peers``, ``replicas``, ``ack``, ``ack_timeout``)."""
        co = self.co
        self.known.update(co.membership.members)
        peers: list[list[Any]] = []
        index: dict[tuple[str, str], int] = {}
        reps: dict[int, list[list[Any]]] = {}
        for s in granted:
            r = co.owned.get(s)
            if r is None:
                continue
            row = []
            for n, voter in [(f, True) for f in r.followers] + [(n, False) for n in r.learners]:
                if n == co.me:
                    continue
                if n in self.demoting.get(s, ()):
                    voter = False
                elif n in self.promoting.get(s, ()):
                    voter = True
                m: Member | None = self.known.get(n)
                # a voter never seen (dead since before this router started) still counts
                # toward the quorum: an endpoint of its own that nobody listens on
                endpoint = (m.workers[m.home[s]] if m is not None and len(m.home) > s
                            else UNREACHABLE.format(node=n))
                key = (n, endpoint)
                if key not in index:
                    index[key] = len(peers)
                    peers.append([n, endpoint, m.public_key if m is not None else None])
                row.append([index[key], voter])
            if row:
                reps[s] = row
        return {"peers": peers, "replicas": reps, "ack": self.ack,
                "ack_timeout": float(co.ccfg.lease_ttl)}

    def grant_refused(self, exc: BaseException) -> bool:
        """A grant failed: if because the worker does not know the replication arguments,
        grant without them from now on (True: send again)."""
        if self.plain_grants or not unknown_command(exc):
            return False
        self.plain_grants = True
        log.error("this node's workers do not know the replication arguments of a grant (%s): "
                  "granting without them; its shards are NOT replicated (replicas = %d "
                  "needs the worker side of issue 16)", exc, self.replicas)
        return True
