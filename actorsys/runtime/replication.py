"""Replicated shards, the worker side (issue 16): the leader's stream and output gate,
and the follower's SHARDS commands (storage: ``actorsys/storage/replica.py``).

Leader. A grant with replication arguments (``peers``, ``replicas``, ``ack``,
``ack_timeout``: :func:`parse_grant`) names, for each granted shard, the peer workers
holding copies (voters and learners). From then on every group commit (``commit.py``
hands its flush to :meth:`Replication.flush`) splits the staged writes by shard, adds
each written replicated shard's position ``[epoch, seq + 1]`` to the same LevelDB batch,
commits, keeps the shard's batch in an in-memory log (bounded: :data:`LOG_BYTES` and
:data:`LOG_ENTRIES` per worker, the oldest going first), sends each peer one ``append``
with all its shards' batches of the group (:mod:`.repl_stream`), and HOLDS the group's
output (replies, tells, WebSocket effects, exits) until, for every replicated shard it
wrote, ``quorum`` voters (the leader counts) hold its batch. Output leaves strictly in
group order: a group that wrote no replicated shard waits behind an earlier held one. A
group not at quorum within ``ack_timeout`` fails (asks get ShardUnavailable; its writes
stay committed here, so "may or may not have been applied"); an ``append`` answered
``refused`` (a follower's fence is newer: a newer leader exists) makes this worker stop
serving the shard at once (``on_refused``) and fails the held groups that wrote it. The
quorum is computed with the shard's replica list at the time of the check (a grant
removing a dead voter releases the groups that waited on it). With replication
arguments, EVERY granted shard's position moves with its writes, even one whose replica
list is empty (quorum 1): a copy added later must never look in step with writes it did
not get.

A group that is nothing but replies to asks may have them delivered by a follower
instead (with a quorum of 2: three hand-offs instead of four): :mod:`.repl_stream`.

Catch-up (:mod:`.repl_catchup`), one task per peer: a peer whose copy of a shard is not
known to follow the stream (at the start, after ``behind``, an error or a timeout) is
asked its ``position`` and sent the batches after it from the log, or a snapshot. A
shard revoked from this worker keeps being caught up (its last turns' batches reach the
followers, and ``replication`` reports them: a leadership transfer waits for that),
until a grant finds every copy at its position.

Follower: ``append``, ``snapshot``, ``position`` (:mod:`.repl_follower`,
``storage/replica.py``); ``replication`` is asked of a leader
(:meth:`Replication.replication`). Peer links: :mod:`.repl_links`; the state:
:mod:`.repl_state`; a grant applied: :mod:`.repl_config`; the output gate:
:mod:`.repl_gate` (their functions are methods of :class:`Replication`: they read and
change its state); the stream to the peers: :mod:`.repl_stream` (a
:class:`~.repl_stream.Stream` it owns).

A group that fails unwritten (the fence, a storage error, a lost shard) or short of
its quorum answers its asks and sends its exits in group order too, after the held
groups before it (its activations reload at once). Known limit: ``list_actors``
(worker.py) reads the slot's disk directly, so it may list an actor whose first write
is not yet at quorum (or failed short of it).

With no replication arguments (``replicas = 1``) nothing here runs: ``commit.repl`` is
None and the flush is the single-node one.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ShardUnavailable, StorageError
from ..log import get_logger
from ..storage import replica
from ..storage.keys import FENCE_KEYS, position_key, prefix_range
from ..storage.replica import NO_POSITION, Position
from . import repl_config, repl_gate
from .repl_follower import Follower
from .repl_links import PeerLink
from .repl_state import Entry, Held, Peer, ShardLog, parse_grant
from .repl_stream import Stream

if TYPE_CHECKING:
    import zmq

    from ..net.keys import CurveKeys
    from .activation import Activation
    from .commit import GroupCommit, Outgoing
    from .grants import Grants

__all__ = ["Replication", "parse_grant"]

log = get_logger("worker")

#: bytes of batches the in-memory log keeps, per worker
LOG_BYTES = 32 << 20
#: batches the log keeps, per worker
LOG_ENTRIES = 65536
#: an ``append``'s bytes left for framing below max_message_bytes
FRAMING = 4096
#: seconds over which a peer's refusals of this leader's shards make one log line
REFUSALS_LOG_EVERY = 1.0


class Replication:
    """A worker's replication, the leader's side (see the module docstring): its state
    (shards, peers, held groups, the log), the group commit's flush, refusals by a newer
    leader, and its reports. The output gate's and the configuration's functions
    (``repl_gate.py``, ``repl_config.py``) are its methods; the sending is its
    :attr:`stream`'s, the follower's commands its :attr:`follower`'s."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: zmq.Context[Any],
                 keys: CurveKeys | None, commit: GroupCommit, grants: Grants,
                 max_message_bytes: int) -> None:
        self.loop, self.ctx, self.keys, self.commit, self.grants = loop, ctx, keys, commit, grants
        self.store = commit.store
        self.nshards = len(grants.home)
        self.limit = max_message_bytes - FRAMING
        self.ack, self.ack_timeout = "majority", 5.0
        self.shards: dict[int, ShardLog] = {}
        self.peers: dict[str, Peer] = {}
        self.held: deque[Held] = deque()
        #: the ack timeout's timer: armed while a group is held, at or before the front
        #: group's deadline (repl_gate.check)
        self.timer: asyncio.TimerHandle | None = None
        #: groups failed short of their quorum: logged at most once per
        #: :data:`~.repl_gate.SHORT_LOG_EVERY` s, with a count of the others (repl_gate.expire)
        self.short_logged_at = float("-inf")
        self.short_unlogged = 0
        self.log_bytes = 0
        self.log_order: deque[tuple[ShardLog, Entry]] = deque()
        #: stop serving a shard a newer leader holds: (shard, its fence) (grants.py)
        self.on_refused: Callable[[int, int], None] | None = None
        self.closed = False
        #: shard -> the newer leader's epoch, of the shards refused here (a newer leader
        #: exists): a group writing one fails unwritten, until a grant gives it back
        self.lost: dict[int, int] = {}
        #: shard -> the newest batch of a failed group (timed out short of its quorum):
        #: on disk here, so later turns may read it; every later group waits until a
        #: quorum holds it, reads too (then the entry goes)
        self.doubt: dict[int, Position] = {}
        #: shards of a group whose local commit failed: the batch may still be on disk
        #: (an fsync that failed), so their positions are read again once writable
        self.reread: set[int] = set()
        #: snapshots sent (status)
        self.snapshots = 0
        #: node -> [(shard, its fence, this leader's epoch)] refused and not yet logged
        #: (one line per node within :data:`REFUSALS_LOG_EVERY` s: :meth:`_log_refusals`)
        self.refused_unlogged: dict[str, list[tuple[int, int, int]]] = {}
        #: the follower commands (append, snapshot, position) of this slot
        self.follower = Follower(self.store, grants, commit.on_failure, commit.output)
        self.follower.on_write = self._followed
        #: sends the batches to the peers and takes their answers (repl_stream.py)
        self.stream = Stream(self)
        #: makes a peer's link (a test replaces it)
        self.link_factory: Callable[..., PeerLink] = PeerLink

    # the configuration (repl_config.py) and the output gate (repl_gate.py)
    configure = repl_config.configure
    _start_positions = repl_config.start_positions
    _track = repl_config.track
    _drop_shard = repl_config.drop_shard
    _followed = repl_config.followed
    _close_peer = repl_config.close_peer
    _at_quorum = repl_gate.at_quorum
    _holders = repl_gate.holders
    check = repl_gate.check
    failed = repl_gate.failed
    _leave = repl_gate.leave
    _expire = repl_gate.expire
    _fail_held = repl_gate.fail_held

    # -- the leader's flush --------------------------------------------------------------
    def flush(self, outbox: list[Outgoing], staged: list[Activation], touched: set[bytes]) -> None:
        """The group commit of a worker with replicated shards (see the module docstring)."""
        gc = self.commit
        store = gc.store
        exits, gc.exits = gc.exits, []
        if self.closed:           # (the worker stops: nothing would ever release it)
            store.discard()
            return gc.fail(ShardUnavailable(
                f"worker slot {self.grants.slot} is stopping; the turn was not applied"),
                outbox, staged, touched, exits)
        made: dict[int, tuple[Position, Position, list[tuple[bytes, bytes | None]]]] = {}
        if self.lost and store.pending:
            n = self.nshards
            gone = next((s for k in store.pending if (s := replica.write_shard(k, n)) in self.lost),
                        None)
            if gone is not None:       # a turn that ran on a shard a newer leader holds
                store.discard()
                return self.failed(ShardUnavailable(
                    f"shard {gone} has a newer leader (epoch {self.lost[gone]}); this node no "
                    f"longer serves it (the turn was not applied)"), outbox, staged, touched, exits)
        if self.reread and store.broken is None:
            self._reread()
        if store.pending:
            shards = self.shards
            for s, items in replica.split_by_shard(store.pending, shards.__contains__,
                                                   self.nshards).items():
                sl = shards[s]
                new = (max(sl.epoch, sl.pos[0]), sl.pos[1] + 1)
                k, v = position_key(s), replica.pack_position(new)
                store.pending[k] = v
                items.append((k, v))
                made[s] = (sl.pos, new, items)
        try:
            store.commit()
        except StorageError as exc:
            self.reread.update(made)
            return self.failed(exc, outbox, staged, touched, exits)
        if not made and not self.held and not self.doubt:
            return gc.release(outbox, exits)
        need: dict[int, Position] = dict(self.doubt)
        logged: dict[int, Entry] = {}
        for s, (prev, new, items) in made.items():
            logged[s] = self._log(self.shards[s], prev, new, items)
            need[s] = new
        fwd = None
        if logged:
            stream = self.stream
            if not self.doubt and not exits:
                fwd = stream.delegate(outbox, logged)
            stream.send(logged, fwd)
        self.held.append(Held(outbox, exits, staged, touched, need,
                              time.monotonic() + self.ack_timeout,
                              via=None if fwd is None else fwd.peer))
        self.check()

    def _reread(self) -> None:
        """After a failed local commit, once writable: each shard's position is the
        disk's. A batch that landed after all is not in the log (its copies are caught up
        from the disk) and is in doubt (later groups wait until a quorum holds it); one
        that did not is never reused with other contents (the next batch takes its
        place from the disk's position)."""
        shards, self.reread = self.reread, set()
        for s in shards:
            sl = self.shards.get(s)
            if sl is None:
                continue
            pos = replica.read_position(self.store.db, s)
            if pos == sl.pos:
                continue
            log.warning("worker slot %d: shard %d's batch [%d, %d] of a failed commit is on disk "
                        "after all; its copies are caught up from there", self.grants.slot, s, *pos)
            sl.pos = pos
            self.log_bytes -= sum(e.size for e in sl.entries)
            sl.entries.clear()
            self.doubt[s] = max(pos, self.doubt.get(s, NO_POSITION))
            for p in self.peers.values():
                if s in p.tracks:
                    self.stream.off(p, {s})

    def _log(self, sl: ShardLog, prev: Position, new: Position,
             items: list[tuple[bytes, bytes | None]]) -> Entry:
        # (msgpack's bytes per item and per batch, at most: an append never outgrows a message)
        size = sum(len(k) + (len(v) if v is not None else 0) + 11 for k, v in items) + 48
        e = Entry(prev, new, items, size)
        sl.pos = new
        sl.entries.append(e)
        self.log_order.append((sl, e))
        self.log_bytes += size
        order = self.log_order
        while (self.log_bytes > LOG_BYTES or len(order) > LOG_ENTRIES) and order:
            old_sl, old = order.popleft()
            if old_sl.entries and old_sl.entries[0] is old:     # (else dropped with its shard)
                old_sl.entries.popleft()
                self.log_bytes -= old.size
        return e

    def say(self, p: Peer, what: str) -> None:
        """Log ``what`` about peer ``p`` unless it is what was last said of it."""
        if p.said != what:
            p.said = what
            log.warning("worker slot %d replication: %s", self.grants.slot, what)

    def refused(self, s: int, fence: int, p: Peer | None) -> None:
        """A newer leader holds ``s``: stop serving it; fail the held groups that wrote it."""
        sl = self.shards.get(s)
        if sl is None:
            return
        if fence <= sl.epoch:     # (it serves s too, with an older grant: not a newer leader)
            what = (f"node {p.node if p else '?'} refused shard {s}'s batches with epoch {fence}, "
                    f"not newer than this leader's {sl.epoch} (it serves the shard too?); still "
                    f"serving it")
            if p is not None:
                self.say(p, what)
                self.stream.off(p, {s})       # (catch-up retries it, paced)
            else:
                log.warning("worker slot %d: %s", self.grants.slot, what)
            return
        self.lost[s] = max(fence, self.lost.get(s, 0))
        if not self.refused_unlogged:   # (one line per peer and second: a failover refuses
            self.loop.call_later(REFUSALS_LOG_EVERY, self._log_refusals)   # hundreds of shards)
        self.refused_unlogged.setdefault(p.node if p else "?", []).append((s, fence, sl.epoch))
        if not sl.retired and self.on_refused is not None:
            self.on_refused(s, fence)
        exc = ShardUnavailable(f"shard {s} has a newer leader (epoch {fence}); this node no "
                               f"longer serves it")
        for g in self.held:
            if s in g.need:
                self._fail_held(g, exc)
        self._drop_shard(s)
        self.check()

    def _log_refusals(self) -> None:
        refusals, self.refused_unlogged = self.refused_unlogged, {}
        for node, shards in refusals.items():
            s, fence, epoch = shards[0]
            more = (f" (and {len(shards) - 1} more shards: "
                    f"{', '.join(str(x[0]) for x in shards[1:11])}{' ...' if len(shards) > 11 else ''})"
                    if len(shards) > 1 else "")
            log.error("worker slot %d: node %s refused shard %d's batches (its fence is epoch %d, "
                      "this leader's %d)%s: a newer leader exists; this worker stops serving them",
                      self.grants.slot, node, s, fence, epoch, more)

    def replication(self, args: dict[str, Any]) -> dict[int, Any]:
        shards = self.follower.homed(args.get("shards"), "replication")
        out: dict[int, Any] = {}
        for s in shards:
            sl = self.shards.get(s)
            pos = sl.pos if sl is not None else replica.read_position(self.store.db, s)
            held: dict[str, int] = {}
            streaming: list[str] = []
            if sl is not None:
                for ep in sl.voters + sl.learners:
                    p = self.peers.get(ep)
                    tr = p.tracks.get(s) if p is not None else None
                    if p is not None and tr is not None:
                        held[p.node] = tr.holds[1] if tr.holds[0] == pos[0] else 0
                        if tr.sent is not None and not tr.catching:
                            streaming.append(p.node)
            out[s] = {"epoch": pos[0], "seq": pos[1], "held": held, "streaming": streaming}
        return out

    def status(self) -> dict[str, Any]:
        # following: the copies here of shards not served here (a fence, or a position:
        # a copy that got batches but never a fence raise counts too)
        g, db = self.grants, self.store.db
        lo, hi = prefix_range(FENCE_KEYS)
        try:
            with db.iterator(start=lo, stop=hi, include_value=False) as it:
                copies = {int.from_bytes(k[1:], "big") for k in it}
            copies.update(s for s in range(self.nshards) if g.home[s] == g.slot
                          and s not in copies and db.get(position_key(s)) is not None)
        except Exception:
            copies = set()
        return {"leading": sum(1 for sl in self.shards.values()
                               if not sl.retired and (sl.voters or sl.learners)),
                "following": sum(1 for s in copies if not g.served(s)),
                "waiting_groups": len(self.held), "snapshots": self.snapshots,
                "replies_via_followers": self.stream.via_followers,
                "replies_forwarded": self.follower.forwarded,
                "behind": {p.node: n for p in self.peers.values()
                           if (n := sum(1 for tr in p.tracks.values() if tr.sent is None))}}

    def close(self) -> None:
        """Stop (the worker stops): groups still waiting fail, the links close."""
        self.closed = True
        if self.refused_unlogged:
            self._log_refusals()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        held, self.held = self.held, deque()
        for g in held:
            if g.failed is not None:
                self._leave(g)
                continue
            self.commit.fail(ShardUnavailable(
                f"worker slot {self.grants.slot} stopped before its replicas acknowledged the "
                f"write; the write may or may not have been applied"), g.outbox, g.staged,
                g.touched, g.exits)
        for ep in list(self.peers):
            self._close_peer(ep)
