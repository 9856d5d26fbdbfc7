"""Local fencing: how long this node may keep serving its shards without hearing from
etcd (WIP, issue 15).

etcd expires a lease ``ttl`` seconds after the last renewal it *received*. This node
only knows when it *sent* a renewal that succeeded, which is no later than etcd received
it; so if it counts ``ttl`` from when it sent that renewal, it stops before etcd can
have expired the lease. A margin on top covers clock rate drift between the two machines
and a stop that takes a moment to reach every worker:

    serve_until = sent_at(last successful renewal) + ttl * (1 - MARGIN) - GRACE

Past ``serve_until`` the node stops admitting turns for its shards (their workers are
told so), logs why and shows it in ``status``, and resumes only after a renewal that
succeeded (a lease that etcd has already expired cannot be renewed: the node then
rejoins under a new lease and takes its shards back by the ownership transactions).

Pure: times are passed in (monotonic seconds), so tests drive a fake clock.
"""
from __future__ import annotations

from dataclasses import dataclass

#: share of the lease's ttl not counted on (clock rate drift between hosts)
MARGIN = 0.1
#: seconds more, for the stop to reach every worker
GRACE = 0.2


@dataclass(slots=True)
class Fence:
    """Whether this node may serve its shards now (see the module docstring)."""
    ttl: float
    #: when the last successful renewal was sent (monotonic); None before the first
    sent_at: float | None = None

    @property
    def serve_until(self) -> float:
        """The monotonic deadline of serving (-inf before the first renewal)."""
        if self.sent_at is None:
            return float("-inf")
        return self.sent_at + self.ttl * (1 - MARGIN) - GRACE

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at ``sent_at`` succeeded (the join's lease grant counts); one
        answered late never moves the deadline back."""
        if self.sent_at is None or sent_at > self.sent_at:
            self.sent_at = sent_at

    def may_serve(self, now: float) -> bool:
        return now < self.serve_until

    def why_not(self, now: float) -> str | None:
        """None while it may serve; else what to log and show in status."""
        if self.may_serve(now):
            return None
        if self.sent_at is None:
            return "not yet a member of the cluster (no etcd lease granted)"
        return (f"no etcd lease renewal has succeeded for {now - self.sent_at:.1f} s (lease_ttl "
                f"{self.ttl:g} s): this node stopped serving its shards before its lease could "
                f"expire, so no other node can serve them at the same time")
