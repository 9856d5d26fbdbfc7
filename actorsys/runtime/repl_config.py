"""A leader's replication configuration (issue 16; a part of
:class:`~.replication.Replication`): a grant's replication arguments applied (the
peers and their links, each granted shard's voters, learners and quorum, revoked
shards retired until their copies caught up), and what leaving replication means for
a shard (the held groups needing it settled) or for a peer (its link closed)."""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ..errors import ShardUnavailable
from ..log import get_logger
from ..storage import replica
from ..storage.keys import position_key
from .repl_catchup import catch_up
from .repl_state import Held, Peer, ReplicaArgs, ShardLog, Track, quorum

if TYPE_CHECKING:
    from .replication import Replication

log = get_logger("worker")
#: requests in flight per peer
WINDOW = 32


def configure(self: Replication, args: ReplicaArgs | None, granted: dict[int, int]) -> None:
    """Apply a grant: the peers, each granted shard's replicas (None: no replication
    arguments, so nothing is replicated from now on)."""
    members: dict[int, list[tuple[str, bool]]] = {}
    if args is None:
        args = ReplicaArgs([], {}, self.ack, self.ack_timeout)
    else:
        # every granted shard keeps its position moving, replicas or not: a copy
        # added later must never look in step with writes it did not get
        for s in granted:
            once: dict[str, bool] = {}      # (a peer named twice counts once)
            for i, voter in args.replicas.get(s, []):
                ep = args.peers[i][1]
                once[ep] = once.get(ep, False) or voter
            members[s] = list(once.items())
    self.ack, self.ack_timeout = args.ack, args.ack_timeout
    wanted: dict[str, tuple[str, str | None]] = {}
    for node, endpoint, key in args.peers:
        wanted[endpoint] = (node, key)
    for s in list(self.shards):          # revoked: retired (kept until caught up)
        old = self.shards[s]
        if s not in granted:
            if old.retired and all((t := self._track(ep, s)) is None or t.holds >= old.pos
                                   for ep in old.voters + old.learners):
                self._drop_shard(s)
            else:
                old.retired = True
        elif s not in members:
            self._drop_shard(s)
    needed = {ep for lst in members.values() for ep, _v in lst}
    needed |= {ep for sl in self.shards.values() if sl.retired for ep in sl.voters + sl.learners}
    for ep in needed:
        if ep in self.peers and ep in wanted and self.peers[ep].key != wanted[ep][1]:
            log.info("worker slot %d: node %s's worker at %s has a new public key: "
                     "connecting again", self.grants.slot, wanted[ep][0], ep)
            self._close_peer(ep)            # (its copies are asked where they are anew)
        if ep not in self.peers:
            node, key = wanted.get(ep, ("?", None))
            try:
                keys = self.keys.for_server(key.encode()) if self.keys and key else self.keys
                link = self.link_factory(self.loop, self.ctx, node, ep, keys, WINDOW)
            except Exception as exc:    # (its copies never ack: the groups fail in time)
                log.error("worker slot %d: cannot connect to node %s's worker at %s: %s",
                          self.grants.slot, node, ep, exc)
                continue
            peer = self.peers[ep] = Peer(node, link, key=key)
            peer.task = self.loop.create_task(catch_up(self, peer))
        else:
            self.peers[ep].link.check()
    for s in granted:
        self.lost.pop(s, None)             # given back (with an epoch >= the newer one)
    for s, lst in members.items():
        sl = self.shards.get(s)
        if sl is None or sl.retired:     # (a retired log may no longer match the disk)
            self._drop_shard(s)
            sl = self.shards[s] = ShardLog(s, replica.read_position(self.store.db, s))
            if sl.pos != replica.NO_POSITION:
                # the disk may hold a batch no quorum acknowledged (a group that failed
                # before this worker restarted, or before the shard was dropped here):
                # in doubt, like a failed group's, until a quorum is known to hold it,
                # so nothing read from it (a reply, a redelivered batch's effects) leaves
                # before (the catch-up asks the copies' positions at once)
                self.doubt[s] = max(sl.pos, self.doubt.get(s, replica.NO_POSITION))
        sl.epoch, sl.retired = granted[s], False
        before = set(sl.voters + sl.learners)
        sl.voters = [ep for ep, v in lst if v]
        sl.learners = [ep for ep, v in lst if not v]
        sl.quorum = quorum(1 + len(sl.voters), self.ack)
        now = {ep for ep, _v in lst}
        for ep in before - now:
            if (p := self.peers.get(ep)) is not None:
                p.tracks.pop(s, None)
        for ep in now:
            p = self.peers.get(ep)
            if p is not None and s not in p.tracks:
                p.tracks[s] = Track()
                p.wake.set()
    for ep in [ep for ep, p in self.peers.items() if ep not in needed]:
        self._close_peer(ep)
    self._start_positions([self.shards[s] for s in members])
    self.commit.repl = self if (self.shards or self.held or self.lost) else None
    self.check()


def start_positions(self: Replication, logs: list[ShardLog]) -> None:
    """A shard replicated for the first time starts at ``[epoch, 0]`` (a copy at
    ``[0, 0]`` is never extended, so without it the first batch would cost every
    follower a second snapshot). Nothing else is written: no data changes."""
    fresh = [sl for sl in logs if sl.pos == (0, 0) and sl.epoch > 0]
    if not fresh or self.store.broken is not None:
        return
    try:
        with self.store.db.write_batch(sync=self.store.fsync) as wb:
            for sl in fresh:
                wb.put(position_key(sl.shard), replica.pack_position((sl.epoch, 0)))
    except Exception as exc:        # (the next group commit meets the fault too)
        log.error("worker slot %d: writing the first positions of replicated shards "
                  "failed: %s", self.grants.slot, exc)
        return
    for sl in fresh:
        sl.pos = (sl.epoch, 0)


def track(self: Replication, ep: str, s: int) -> Track | None:
    p = self.peers.get(ep)
    return None if p is None else p.tracks.get(s)


def drop_shard(self: Replication, s: int) -> None:
    """Stop replicating ``s`` from here: a held group whose batch of ``s`` is at
    quorum now no longer waits for it; one whose batch is not fails (its quorum can no
    longer be known)."""
    sl = self.shards.get(s)
    if sl is None:
        return
    if any(s in g.need for g in self.held):
        keep: deque[Held] = deque()
        for g in self.held:
            if s not in g.need:
                keep.append(g)
            elif (n := self._holders(sl, g.need[s])) >= sl.quorum:
                del g.need[s]
                keep.append(g)
            else:
                self._fail_held(g, ShardUnavailable(
                    f"shard {s}: only {n} of the {sl.quorum} replicas a write needs "
                    f"acknowledged it before its replicas changed; the write may or may not "
                    f"have been applied"))
                keep.append(g)
        self.held = keep
    del self.shards[s]
    self.doubt.pop(s, None)
    for p in self.peers.values():
        p.tracks.pop(s, None)
    self.log_bytes -= sum(e.size for e in sl.entries)
    sl.entries.clear()


def followed(self: Replication, shards: list[int]) -> None:
    """Another leader writes these shards here: a retired log of one no longer
    matches the disk (a later grant starts from the disk's position)."""
    for s in shards:
        sl = self.shards.get(s)
        if sl is not None and sl.retired:
            self._drop_shard(s)


def close_peer(self: Replication, ep: str) -> None:
    p = self.peers.pop(ep)
    if p.task is not None:
        p.task.cancel()
    if p.lazy is not None:
        p.lazy.cancel()
    p.link.close()
