"""What a leader's router asks workers (issue 16): its own workers' ``replication``
(where each shard is, what each peer holds), and other nodes' workers' ``position`` (a
failover's, with the fence ``epoch + 1`` promised before the answer; or without a fence:
a position and a fence to read).

:class:`ReplicaAsks` only asks (no state but what it warned about); the replica parts
that decide share one (``Replicas.asks``). A worker that does not answer counts as
holding nothing; one without the worker side of issue 16 (:func:`unknown_command`) is
warned about once per command.

Invariant: ``_warned`` holds the commands already warned about (only grows)."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import ActorError
from ..log import get_logger
from .handoff import CALL_TIMEOUT
from .ownership import Owned
from .replica_plans import Position

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")


def unknown_command(exc: BaseException) -> bool:
    """A worker without the worker side of issue 16 (an older build, or before the merge)."""
    return "unknown shards command" in str(exc) or "unknown grant argument" in str(exc)


class ReplicaAsks:
    """The questions a node's replica work asks workers (see the module docstring), through
    its coordinator ``co``'s ``call``."""

    def __init__(self, co: "Coordinator") -> None:
        self.co = co
        self._warned: set[str] = set()

    def _warn_once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(msg, *args)

    async def progress(self, shards: list[int]) -> dict[int, dict[str, Any]]:
        """Our workers' ``replication`` answers for ``shards`` (homed on them): shard ->
        ``{"epoch", "seq", "held": {node: seq}}``; a worker that cannot say holds nothing."""
        co = self.co
        by_slot: dict[int, list[int]] = defaultdict(list)
        for s in shards:
            by_slot[co.home[s]].append(s)
        out: dict[int, dict[str, Any]] = {}

        async def one(slot: int, group: list[int]) -> None:
            try:
                reply = await co.call(co.workers[slot], "replication", {"shards": group},
                                      CALL_TIMEOUT)
            except ActorError as exc:
                if unknown_command(exc):
                    self._warn_once("replication", "worker slot %d does not answer "
                                    "`replication` (%s): no learner is promoted", slot, exc)
                else:
                    log.warning("worker slot %d did not say what its followers hold: %s",
                                slot, exc)
                return
            for s, p in (reply or {}).items():
                if isinstance(p, dict):
                    out[int(s)] = p
        await asyncio.gather(*(one(k, v) for k, v in by_slot.items()))
        return out

    async def positions(self, ask: Mapping[int, Owned]) -> dict[int, dict[str, Position]]:
        """Failover's first step: every live follower of the shards of ``ask`` promises the
        fence ``epoch + 1`` and says its position; shard -> {follower: [epoch, seq]}.
        One call per (follower, its home worker of those shards)."""
        co = self.co
        members = co.membership.members
        calls: dict[tuple[str, str], list[int]] = defaultdict(list)
        for s, r in ask.items():
            for f in r.followers:
                m = members.get(f)
                if m is not None and len(m.home) > s:
                    calls[(f, m.workers[m.home[s]])].append(s)
        out: dict[int, dict[str, Position]] = defaultdict(dict)

        async def one(node: str, endpoint: str, group: list[int]) -> None:
            args = {"shards": group, "fence": {s: ask[s].epoch + 1 for s in group}}
            try:
                reply = await co.call(endpoint, "position", args, CALL_TIMEOUT)
            except ActorError as exc:
                if unknown_command(exc):
                    self._warn_once("position", "the worker of node %s does not answer "
                                    "`position` (%s): no shard fails over", node, exc)
                else:
                    log.warning("node %s did not give the positions of %d shards for "
                                "failover: %s", node, len(group), exc)
                return
            for s, p in ((reply or {}).get("positions") or {}).items():
                if int(s) in ask and isinstance(p, (list, tuple)) and len(p) == 2:
                    out[int(s)][node] = (int(p[0]), int(p[1]))
        await asyncio.gather(*(one(n, e, g) for (n, e), g in calls.items()))
        return dict(out)

    async def peer_positions(self, node: str, shards: list[int]) -> dict[int, Position]:
        """``node``'s positions of ``shards`` (it follows them: no fence asked); shard ->
        ``(epoch, seq)``, missing where its worker did not answer."""
        return (await self.peer_copies(node, shards))[0]

    async def peer_copies(self, node: str, shards: list[int]
                          ) -> tuple[dict[int, Position], dict[int, int]]:
        """``node``'s positions and fences of ``shards`` (no fence asked), each missing
        where its worker did not answer."""
        co = self.co
        m = co.membership.members.get(node)
        if m is None:
            return {}, {}
        by_worker: dict[str, list[int]] = defaultdict(list)
        for s in shards:
            if len(m.home) > s:
                by_worker[m.workers[m.home[s]]].append(s)
        out: dict[int, Position] = {}
        fences: dict[int, int] = {}

        async def one(endpoint: str, group: list[int]) -> None:
            try:
                reply = await co.call(endpoint, "position", {"shards": group}, CALL_TIMEOUT)
            except ActorError as exc:
                log.debug("node %s did not give its positions of %d shards: %s", node,
                          len(group), exc)
                return
            for s, p in ((reply or {}).get("positions") or {}).items():
                if isinstance(p, (list, tuple)) and len(p) == 2:
                    out[int(s)] = (int(p[0]), int(p[1]))
            for s, f in ((reply or {}).get("fences") or {}).items():
                if type(f) is int:
                    fences[int(s)] = f
        await asyncio.gather(*(one(e, g) for e, g in by_worker.items()))
        return out, fences
