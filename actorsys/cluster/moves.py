"""Copy-based moves of the shards a node owns (``[cluster] replicas = 1``; issue 15).

:class:`Moves` plans and carries out, for one node's coordinator:

* **plan**: the shards this node owns, not under way, whose rendezvous owner over the
  live, non-leaving members (``placement.owner``) is another node that has been live for
  :data:`JOIN_SETTLE` (its workers' first grant, which lets our key in, comes just after
  it joins), by that node.
* **move_all**: each planned batch of at most :data:`~.ownership.BATCH` shards goes by one
  :class:`~.handoff.Handoff` (mark, stop serving, copy, flip, drop), logging progress
  every :data:`PROGRESS_EVERY` seconds for long moves. A batch whose records changed
  meanwhile ends the pass (read again, plan again); a failed one (rolled back) makes the
  caller back off; one that etcd failed at a step that changes records leaves its shards
  *unresolved*: not served until :meth:`resolve` reads whose they are.

Replicated clusters (``replicas`` > 1) do not copy: ``replicas.py`` grows, promotes and
transfers instead; :meth:`Moves.plan` is then empty.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..log import get_logger
from . import placement
from .handoff import ChangedMeanwhile, Handoff, HandoffFailed, Unresolved, drop
from .ownership import BATCH, Owned

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")

#: seconds a new member is live before shards move to it (its workers' first grant,
#: which lets our key in, comes just after it joins)
JOIN_SETTLE = 1.0
#: seconds between progress lines of a long move
PROGRESS_EVERY = 2.0


class Moves:
    """The copy-based moves of one coordinator (see the module docstring)."""

    def __init__(self, co: "Coordinator") -> None:
        self.co = co
        #: member id -> when it was first seen live (time.monotonic())
        self._first_seen: dict[str, float] = {}

    def candidates(self) -> tuple[list[str], set[str]]:
        """``(live, settled)``: the live members that are not leaving (this node only while
        it serves), in id order, and those of them live for JOIN_SETTLE (this node always)."""
        co = self.co
        members = co.membership.members
        live = sorted(n for n, m in members.items()
                      if not m.leaving and (n != co.me or co.serving))
        # a member just seen may not have granted its workers yet (their guards then
        # refuse our key, and libzmq never retries a refused handshake): wait a moment
        now = time.monotonic()
        seen = self._first_seen
        for n in [n for n in seen if n not in members]:
            del seen[n]                  # (one that comes back settles again)
        for n in live:
            seen.setdefault(n, now)
        return live, {n for n in live if n == co.me or now - seen[n] >= JOIN_SETTLE}

    def plan(self) -> dict[str, list[int]]:
        """Shards of ours that belong elsewhere, by the node they go to (none when the
        cluster replicates: its shards' leadership moves by ``replicas.py``)."""
        co = self.co
        live, settled = self.candidates()
        if not live or co.ccfg.replicas > 1:
            return {}
        out: dict[str, list[int]] = {}
        for s, r in co.owned.items():
            if r.owner == co.me and r.to is None:
                t = placement.owner(s, live)
                if t != co.me and t in settled:
                    out.setdefault(t, []).append(s)
        return out

    async def move_all(self, plan: dict[str, list[int]]) -> bool:
        """Move the planned shards, batch by batch; False if a move failed."""
        co = self.co

        def is_target(node_id: str) -> bool:
            m = co.membership.members.get(node_id)
            return m is not None and not m.leaving

        handoff = Handoff(co.ownership, co.me, co.call, co.workers, co.home, co.stop_serving,
                          co.serve_again, is_target, co.merge)
        total = sum(len(v) for v in plan.values())
        started = last = time.monotonic()
        done = 0
        say = log.info if total >= BATCH else log.debug
        say("moving %d shards from %s to %s", total, co.me,
            ", ".join(f"{to} ({len(v)})" for to, v in sorted(plan.items())))
        for to, shards in sorted(plan.items()):
            shards.sort()
            for i in range(0, len(shards), BATCH):
                member = co.membership.members.get(to)
                if member is None or not co.active:
                    return True     # it left meanwhile: plan again
                owned = co.owned
                batch = [s for s in shards[i:i + BATCH]
                         if owned.get(s) and owned[s].owner == co.me and owned[s].to is None]
                co.progress = {"to": to, "done": done, "total": total}
                try:
                    new = await handoff.move(member, {s: owned[s] for s in batch})
                except ChangedMeanwhile:
                    co.moving.difference_update(batch)
                    co.merge(await co.ownership.read())
                    return True
                except HandoffFailed as exc:
                    co.moving.difference_update(batch)
                    log.error("%s", exc)
                    return False
                except Unresolved as exc:
                    exc.hold(co.moving, co.unresolved)
                    return False
                co.moving.difference_update(batch)
                co.merge(new)
                done += len(batch)
                co.changed()
                now = time.monotonic()
                if now - last >= PROGRESS_EVERY or done == total:
                    last = now
                    (say if done == total else log.info)(
                        "moving shards from %s: %d of %d moved (%d%%, %.1f s)", co.me,
                        done, total, 100 * done // max(total, 1), now - started)
        return True

    async def resolve(self) -> None:
        """Shards whose move ended in an etcd failure: read their records again and
        finish what they say: still marked by us (roll back, serve), ours (serve), or
        flipped to another node (drop our copy). Until then they are not served."""
        co = self.co
        records = await co.ownership.read()
        back: dict[int, tuple[Owned, Owned]] = {}
        for s in sorted(co.unresolved):
            r = records.get(s)
            if r is not None and r.owner == co.me and r.to is not None:
                back[s] = (r, r._replace(epoch=r.epoch + 1, revision=0, to=None))
        for i in range(0, len(back), BATCH):
            part = dict(list(back.items())[i:i + BATCH])
            if await co.ownership.change(part) is None:
                return                   # changed meanwhile: the next wake reads again
        records = await co.ownership.read()
        co.merge(records)
        # (a replica of a shard another node leads keeps its copy: it follows it now)
        elsewhere = {s: records[s].epoch for s in co.unresolved
                     if s in records and records[s].owner != co.me
                     and co.me not in records[s].replicas}
        if elsewhere:
            await drop(co.call, co.workers, co.home, elsewhere)
        done = sorted(co.unresolved)
        co.unresolved.clear()
        co.moving.difference_update(done)
        log.info("resolved %d shard(s) of a move that etcd failed: %d served here again, "
                 "%d another node's", len(done), len(done) - len(elsewhere), len(elsewhere))
        await co.grant_all(sorted({co.home[s] for s in done}))
