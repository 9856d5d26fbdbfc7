"""This node as a replica of shards other nodes lead (issue 16; ``[cluster] replicas`` > 1).

:class:`Following` knows which shards this node follows or learns
(:meth:`~Following.replicated_here`, shown by ``status``) and drops its copy of each it
no longer replicates (:meth:`~Following.drop_released`: a surplus step of its leader
removed it), unless it owns the shard or a move brings it here. A copy it could not drop
is swept at the next start.

Invariant: :attr:`~Following.shards` is what :meth:`~Following.replicated_here` said at
the last look, taken when the coordinator's count of changes was ``_following_changes``
(equal counts: the same records, so the look is not made again).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ActorError
from ..log import get_logger
from .handoff import drop

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")


class Following:
    """The shards one node's coordinator ``co`` replicates for other leaders (see the
    module docstring)."""

    def __init__(self, co: "Coordinator") -> None:
        self.co = co
        #: shards this node replicated (followed or learned) at the last look, and the
        #: coordinator's count of changes then
        self.shards: dict[int, int] = {}
        self._following_changes = -1

    def replicated_here(self) -> dict[int, int]:
        """Shards this node follows or learns: shard -> epoch."""
        me = self.co.me
        return {s: r.epoch for s, r in self.co.owned.items()
                if r.owner != me and (me in r.followers or me in r.learners)}

    async def drop_released(self) -> None:
        """Drop our copy of each shard we replicated and no longer do (a surplus step of
        its leader removed us), unless we own it or a move brings it to us."""
        co = self.co
        if co.changes == self._following_changes:
            return            # (the records are as they were at the last look)
        self._following_changes = co.changes
        now = self.replicated_here()
        gone = {s: co.owned[s].epoch for s in self.shards
                if s not in now and s in co.owned and co.me not in co.owned[s].replicas
                and co.owned[s].to != co.me}
        self.shards = now
        if gone:
            try:
                await drop(co.call, co.workers, co.home, gone)
                log.info("node %s dropped its copy of %d shards it no longer replicates",
                         co.me, len(gone))
            except ActorError as exc:
                log.warning("could not drop this node's copy of %d shards it no longer "
                            "replicates (%s); the next start sweeps them", len(gone), exc)
