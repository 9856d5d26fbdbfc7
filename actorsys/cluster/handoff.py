"""Handing a batch of shards, with all their data, from this node to another.

The owner drives the move; the receiver only stores what it is sent. Steps, for a batch
of at most :data:`~.ownership.BATCH` shards going to node ``T``:

1. **Mark** (one etcd transaction): each shard's record becomes ``{owner: me, epoch:
   e + 1, to: T}``. Only if none changed since read (compare on ``mod_revision``).
2. **Stop serving** them here: this node's workers get a grant without them and answer
   only when their turns on those shards have committed and their actors passivated;
   from then on they answer ``wrong_shard`` for them (clients retry with a backoff).
3. **Copy**: for each (our slot, T's slot) pair, pages of the shards' committed keys
   (state, storage, alarms, history, request windows, supervision records, and their
   alarm-index and listing entries) are exported from our worker and imported by T's
   worker, the first page clearing whatever T held of those shards (a copy left by an
   earlier attempt). T writes each page with ``sync``.
4. **Flip** (one etcd transaction, comparing the revision written in step 1): ``{owner:
   T, epoch: e + 2}``. T's router sees it and grants the shards to its workers.
5. **Drop** our copy.

Crash-safety. Until step 4 commits the shards are ours and our copy is whole (nothing
is deleted before it); T's partial copy is never served (T has no grant for them) and is
cleared by the next attempt. If step 2 or 3 fails (T died, a timeout), the move is
rolled back: ``{owner: me, epoch: e + 2}`` and our workers serve them again. If this
node dies between 1 and 4, the shards stay marked ``to: T`` and unavailable until it
starts again, when :func:`roll_back_unfinished` rolls them back before it serves
anything. If it dies between 4 and 5, its stale copy is dropped at its next start
(``Coordinator`` sweeps shards another node owns). No shard is served by two nodes: T
serves only after step 4, we stop before step 3; none is lost: the only delete (5)
follows the flip, and T's copy was synced before it.

**A replicated shard's leadership** (``[cluster] replicas`` > 1) moves to one of its
followers by :meth:`Handoff.transfer`, the same steps without the copy: T already holds
the data, streamed. 1. mark ``to: T`` (followers and learners kept); 2. stop serving
(the drained turns' last group commits are streamed like any other); 3. wait until T's
worker says (``position``) it holds the shard's last write: our position
(bounded: :data:`CATCH_UP_TIMEOUT`; shards still behind then are rolled back alone, the
others go on); 4. flip: ``{owner: T, epoch + 1, followers:
followers - T + us}``; nothing is dropped (we are a follower now). A failure before the
flip rolls back as above (we serve again, with the next epoch).
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any, Awaitable, Callable, Mapping, NoReturn

from ..errors import ActorError
from ..log import get_logger
from .membership import Member
from .ownership import Owned, Ownership

log = get_logger("cluster")

#: bytes of keys and values per exported page
PAGE_BYTES = 512 * 1024
#: seconds for one worker call of a handoff (export, import, drop): a page of
#: PAGE_BYTES written with fsync takes well under a second
CALL_TIMEOUT = 10.0
#: seconds between checks that the receiving node is still a member during a copy
MEMBER_POLL = 0.1

#: seconds a leadership transfer waits for its target to hold the shard's last write
CATCH_UP_TIMEOUT = 10.0
#: seconds between two looks at the target's progress during a transfer
CATCH_UP_POLL = 0.05

#: ``call(endpoint, cmd, args, timeout) -> reply``: a SHARDS request to a worker
Call = Callable[[str, str, dict[str, Any], float], Awaitable[dict[str, Any]]]


class HandoffFailed(Exception):
    """A move could not complete; it was rolled back (the shards stay with this node)."""


class Unresolved(Exception):
    """etcd failed (or answered unexpectedly) at a step that changes the records: whether
    the shards are still ours is not known. The caller serves none of ``shards`` until
    their records, read again, say (``Moves.resolve``)."""

    def __init__(self, shards: list[int], why: str) -> None:
        super().__init__(why)
        self.shards = shards

    def hold(self, moving: set[int], unresolved: set[int]) -> None:
        """What a caller of a move or transfer does with this: mark ``shards`` moving and
        unresolved (not served until ``Moves.resolve`` reads their records) and log."""
        moving.update(self.shards)
        unresolved.update(self.shards)
        log.error("%s; shards %s are not served until their records can be read again",
                  self, self.shards[:8])


def pairs(shards: list[int], mine: bytes, theirs: bytes) -> dict[tuple[int, int], list[int]]:
    """The shards grouped by (our home slot, their home slot)."""
    out: dict[tuple[int, int], list[int]] = defaultdict(list)
    for s in shards:
        out[(mine[s], theirs[s])].append(s)
    return dict(out)


async def copy(call: Call, ours: list[str], to: Member, home: bytes,
               marked: Mapping[int, Owned]) -> int:
    """Step 3: copy the ``marked`` shards from our workers (``ours``: endpoints by slot)
    to ``to``'s, each page tagged with the marked epochs (the receiver refuses a page of
    an attempt that is no longer its latest); returns the keys copied."""
    keys = 0
    for (src, dst), group in pairs(sorted(marked), home, to.home).items():
        after: bytes | None = None
        first = True
        epochs = {s: marked[s].epoch for s in group}
        while True:
            page = await call(ours[src], "export", {"shards": group, "after": after,
                                                    "max_bytes": PAGE_BYTES}, CALL_TIMEOUT)
            items = page["items"]
            if items or first:
                await call(to.workers[dst], "import", {"shards": group, "clear": first,
                                                       "items": items, "epochs": epochs},
                           CALL_TIMEOUT)
            keys += len(items)
            first = False
            after = page.get("next")
            if after is None:
                break
    return keys


async def drop(call: Call, ours: list[str], home: bytes, epochs: Mapping[int, int]) -> None:
    """Step 5 (and the start-up sweep): delete our copy of the shards of ``epochs``
    (shard -> the epoch of the record that says they are another node's). A worker keeps
    a copy that a newer move is bringing in (its import's epoch is higher)."""
    by_slot: dict[int, list[int]] = defaultdict(list)
    for s in epochs:
        by_slot[home[s]].append(s)
    for slot, group in by_slot.items():
        await call(ours[slot], "drop", {"shards": group, "epochs": {s: epochs[s] for s in group}},
                   CALL_TIMEOUT)


class Handoff:
    """One move of a batch of shards (see the module docstring). ``stop_serving`` and
    ``serve_again`` change this node's grants (``Coordinator``) and return once the
    workers have applied them."""

    def __init__(self, ownership: Ownership, me: str, call: Call, ours: list[str], home: bytes,
                 stop_serving: Callable[[list[int]], Awaitable[None]],
                 serve_again: Callable[[list[int]], Awaitable[None]],
                 is_member: Callable[[str], bool] = lambda _n: True,
                 on_marked: Callable[[dict[int, Owned]], None] = lambda _m: None) -> None:
        self.ownership, self.me, self.call, self.ours, self.home = ownership, me, call, ours, home
        self.stop_serving, self.serve_again = stop_serving, serve_again
        #: whether a node is still a live member that is not leaving (a copy to one that
        #: is gone stops at once; no flip goes to one)
        self.is_member = is_member
        #: told of the records as marked (the caller's view must not lag them)
        self.on_marked = on_marked
        #: seconds spent in each step of the transfers so far (for the caller's log line)
        self.took: dict[str, float] = dict.fromkeys(("mark", "drain", "catch-up", "flip"), 0.0)

    async def move(self, to: Member, seen: Mapping[int, Owned]) -> dict[int, Owned]:
        """Move the shards of ``seen`` (their records as read) to ``to``; returns their
        new records. Raises HandoffFailed after rolling back, ChangedMeanwhile (nothing
        done), or Unresolved (etcd failed at a step that changes the records)."""
        shards = sorted(seen)
        try:
            marked = await self.ownership.change(
                {s: (r, r._replace(owner=self.me, epoch=r.epoch + 1, revision=0, to=to.node_id))
                 for s, r in seen.items()})
        except Exception as exc:          # (aetcd's own errors; the txn may have committed)
            raise Unresolved(shards, f"marking shards for their move failed: {exc}") from exc
        if marked is None:
            raise ChangedMeanwhile(f"the records of shards {shards[:5]}... changed meanwhile")
        self.on_marked(marked)
        try:
            await self.stop_serving(shards)
            keys = await self._copy_while_member(to, marked)
            if not self.is_member(to.node_id):
                raise ActorError(f"node {to.node_id} left the cluster (or is leaving) before "
                                 f"the move ended")
        except (ActorError, OSError, KeyError, IndexError) as exc:
            await self._undo(marked, shards, exc, "move", "move's",
                             f"moving {len(shards)} shards to {to.node_id} failed")
        try:
            done = await self.ownership.change(
                {s: (r, r._replace(owner=to.node_id, epoch=r.epoch + 1, revision=0, to=None))
                 for s, r in marked.items()})
        except Exception as exc:
            raise Unresolved(shards, f"the last step of a move (the flip) failed: {exc}") from exc
        if done is None:       # nobody else changes a record marked by us: unexpected
            raise Unresolved(shards, f"the records of shards {shards[:5]}... changed during "
                                     f"their move")
        log.debug("moved %d shards (%d keys) to %s", len(shards), keys, to.node_id)
        try:
            await drop(self.call, self.ours, self.home, {s: r.epoch for s, r in done.items()})
        except ActorError as exc:     # a stale copy is never served; the next start sweeps it
            log.warning("could not drop this node's copy of %d moved shards (%s); it is dropped "
                        "at the next start", len(shards), exc)
        return done

    async def _undo(self, marked: dict[int, Owned], shards: list[int], exc: Exception,
                    name: str, owner: str, failed: str) -> NoReturn:
        """After a failed move or transfer (``name``; ``owner``, its possessive) of
        ``shards``: roll the ``marked`` records back, serve the shards again and raise
        HandoffFailed(``failed (exc); rolled back``); Unresolved if the rollback failed."""
        await self._give_back(marked, shards, f"rolling back a failed {name} ({exc})",
                              f"a failed {owner} records changed before its rollback", exc)
        raise HandoffFailed(f"{failed} ({exc}); rolled back") from exc

    async def _give_back(self, marked: Mapping[int, Owned], shards: list[int], rolling: str,
                         changed: str, cause: Exception | None = None) -> None:
        """Roll the ``marked`` records back and serve their shards here again; raises
        Unresolved(``shards``) if the rollback (``rolling``) failed or the records had
        changed first (``changed``)."""
        try:
            rolled = await self.roll_back(marked)
        except Exception as exc:
            raise Unresolved(shards, f"{rolling} failed: {exc}") from exc
        if not rolled:
            raise Unresolved(shards, changed) from cause
        await self.serve_again(sorted(marked))

    async def transfer(self, to: str, seen: Mapping[int, Owned],
                       behind: Callable[[Mapping[int, Owned]], Awaitable[set[int]]]
                       ) -> dict[int, Owned]:
        """Give the leadership of the replicated shards of ``seen`` to their follower
        ``to`` (see the module docstring); ``behind(marked)`` says which of them ``to``
        does not yet hold the last writes of. Shards still behind at CATCH_UP_TIMEOUT are
        rolled back and the others flipped (all behind: HandoffFailed). Returns the
        flipped shards' new records; raises like :meth:`move`."""
        shards = sorted(seen)
        loop = asyncio.get_running_loop()
        took, t0 = self.took, loop.time()
        try:
            marked = await self.ownership.change(
                {s: (r, r._replace(epoch=r.epoch + 1, revision=0, to=to)) for s, r in seen.items()})
        except Exception as exc:
            raise Unresolved(shards, f"marking shards for a leadership transfer failed: "
                                     f"{exc}") from exc
        if marked is None:
            raise ChangedMeanwhile(f"the records of shards {shards[:5]}... changed meanwhile")
        self.on_marked(marked)
        t1 = loop.time()
        took["mark"] += t1 - t0
        late: set[int] = set()
        try:
            await self.stop_serving(shards)
            t2 = loop.time()
            took["drain"] += t2 - t1
            deadline = t2 + CATCH_UP_TIMEOUT
            try:
                while late := await behind(marked):
                    if not self.is_member(to):
                        raise ActorError(f"node {to} left the cluster during a leadership "
                                         f"transfer")
                    if loop.time() >= deadline:
                        if len(late) < len(marked):
                            break         # (those roll back, the others flip: below)
                        raise ActorError(f"node {to} did not catch up with the last writes of "
                                         f"{len(shards)} shards within {CATCH_UP_TIMEOUT:g} s")
                    await asyncio.sleep(CATCH_UP_POLL)
            finally:
                took["catch-up"] += loop.time() - t2
        except (ActorError, OSError, KeyError, IndexError) as exc:
            await self._undo(marked, shards, exc, "leadership transfer", "transfer's",
                             f"giving the leadership of {len(shards)} shards to {to} failed")
        if late:
            await self._give_back({s: marked[s] for s in late}, shards,
                                  "rolling back the shards of a leadership transfer that did "
                                  "not catch up", "the records of a leadership transfer's "
                                  "shards that did not catch up changed before their rollback")
            log.warning("node %s did not catch up with the last writes of %d of %d shards "
                        "within %g s (%s...): those stay here and are tried again later",
                        to, len(late), len(marked), CATCH_UP_TIMEOUT, sorted(late)[:5])
            marked = {s: r for s, r in marked.items() if s not in late}
        t3 = loop.time()
        try:
            done = await self.ownership.change({s: (r, r._replace(
                owner=to, epoch=r.epoch + 1, revision=0, to=None,
                followers=tuple(f for f in r.followers if f != to) + (self.me,),
                learners=tuple(n for n in r.learners if n != to)))
                for s, r in marked.items()})
        except Exception as exc:
            raise Unresolved(sorted(marked), f"the flip of a leadership transfer failed: "
                                             f"{exc}") from exc
        if done is None:
            raise Unresolved(sorted(marked), f"the records of shards {shards[:5]}... changed "
                                             f"during their leadership transfer")
        took["flip"] += loop.time() - t3
        log.debug("gave the leadership of %d shards to %s", len(marked), to)
        return done

    async def _copy_while_member(self, to: Member, marked: Mapping[int, Owned]) -> int:
        """Step 3, given up at once (ActorError) if ``to`` stops being a live member
        (killed: its lease expired), instead of waiting out a call's timeout."""
        task = asyncio.ensure_future(copy(self.call, self.ours, to, self.home, marked))
        try:
            while not task.done():
                await asyncio.wait([task], timeout=MEMBER_POLL)
                if not task.done() and not self.is_member(to.node_id):
                    task.cancel()
                    raise ActorError(f"node {to.node_id} left the cluster during the move")
            return task.result()
        finally:
            if not task.done():
                task.cancel()

    async def roll_back(self, marked: Mapping[int, Owned]) -> bool:
        """The marked shards are ours again, unmarked, with the next epoch."""
        back = await self.ownership.change(
            {s: (r, r._replace(owner=self.me, epoch=r.epoch + 1, revision=0, to=None))
             for s, r in marked.items()})
        return back is not None


class ChangedMeanwhile(Exception):
    """A record changed between reading and marking it: read again and plan again."""


async def roll_back_unfinished(ownership: Ownership, me: str,
                               owned: Mapping[int, Owned]) -> dict[int, Owned]:
    """At start: moves this node began and did not finish (it died between mark and
    flip) are rolled back: our copy is whole; the receiver's is cleared when a move is
    tried again. Returns the new records."""
    out: dict[int, Owned] = {}
    stuck = {s: r for s, r in owned.items() if r.owner == me and r.to is not None}
    items = sorted(stuck.items())
    for i in range(0, len(items), 64):
        batch = dict(items[i:i + 64])
        back = await ownership.change(
            {s: (r, r._replace(epoch=r.epoch + 1, revision=0, to=None)) for s, r in batch.items()})
        if back is not None:
            out.update(back)
    if stuck:
        log.info("rolled back %d shard move(s) this node had not finished when it stopped",
                 len(stuck))
    return out
