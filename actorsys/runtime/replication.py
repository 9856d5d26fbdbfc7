"""Replicated shards, the worker side (issue 16): the leader's stream and output gate,
and the follower's SHARDS commands (storage: ``actorsys/storage/replica.py``).

Leader. A grant with replication arguments (``peers``, ``replicas``, ``ack``,
``ack_timeout``: :func:`parse_grant`) names, for each granted shard, the peer workers
holding copies (voters and learners). From then on every group commit (``commit.py``
hands its flush to :meth:`Replication.flush`) splits the staged writes by shard, adds
each written replicated shard's position ``[epoch, seq + 1]`` to the same LevelDB
batch, commits, keeps the shard's batch in an in-memory log (bounded: :data:`LOG_BYTES`
and :data:`LOG_ENTRIES` per worker, the oldest going first), sends each peer one ``append`` with all its
shards' batches of the group (at most :data:`.repl_config.WINDOW` requests in flight per peer; more
waits and goes coalesced), and HOLDS the group's output (replies, tells, WebSocket
effects, exits) until, for every replicated shard it wrote, ``quorum`` voters (the
leader counts) hold its batch. Output leaves strictly in group order: a group that wrote
no replicated shard waits behind an earlier held one. A group not at quorum within
``ack_timeout`` fails (asks get ShardUnavailable; its writes stay committed here, so
"may or may not have been applied"); an ``append`` answered ``refused`` (a follower's
fence is newer: a newer leader exists) makes this worker stop serving the shard at once
(``on_refused``) and fails the held groups that wrote it. The quorum is computed with
the shard's replica list at the time of the check (a grant removing a dead voter
releases the groups that waited on it). With replication arguments, EVERY granted
shard's position moves with its writes, even one whose replica list is empty (quorum
1): a copy added later must never look in step with writes it did not get.

A follower delivers the replies (:meth:`Replication._delegate`). With a quorum of 2 (the
leader and one follower: ``replicas = 3`` majority, ``replicas = 2``), a group that is
nothing but replies to asks, with nothing held or in doubt before it, sends its replies
in the ``append`` to one follower in step with the stream (the one answering fastest
lately). That follower, once it holds every batch of the append, sends them on to the
askers' connections to its own worker (each transport connects to a worker slot with its
own routing id, the same on every slot: ``client/transport.py``), and says which left.
The write is then on the leader (committed before the ``append`` left) and on the
follower: at quorum, as the output gate requires, and the ask is answered after three
hand-offs (asker, leader, follower, asker) instead of four. The leader drops the
replies delivered from the held group and sends the others itself at quorum, naming the
follower's endpoint in those (``wire.ok_via``) so that their askers connect there for the
next time. A group released before that answer (another follower was faster) sends its
replies too; the asker keeps the first of the two. A group is delegated only behind
groups delegated to the same follower (which sends their replies on in order): behind
one the leader sends itself, output keeps its group order. The other followers get a
delegated group's batches :data:`LAZY` seconds later, coalesced with the next groups'
(their copies trail by at most that: the group's quorum is the delegate's); the same
follower stays the delegate while about as fast as the others (:data:`SWITCH`), so that
the others' appends do coalesce.

Catch-up (:mod:`.repl_catchup`), one task per peer: a peer whose copy of a shard is not
known to follow the stream (at the start, after ``behind``, an error or a timeout) is
asked its ``position`` and sent the batches after it from the log, or a snapshot. A
shard revoked from this worker keeps being caught up (its last turns' batches reach the
followers, and ``replication`` reports them: a leadership transfer waits for that),
until a grant finds every copy at its position.

Follower: ``append``, ``snapshot``, ``position`` (:mod:`.repl_follower`,
``storage/replica.py``); ``replication`` is asked of a leader (:meth:`Replication.
replication`). Peer links: :mod:`.repl_links`; the state: :mod:`.repl_state`; a
grant applied: :mod:`.repl_config`; the output gate: :mod:`.repl_gate` (their functions
are methods of :class:`Replication`).

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
import math
import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ShardUnavailable, StorageError
from ..log import get_logger
from ..protocol import wire
from ..storage import replica
from ..storage.keys import FENCE_KEYS, position_key, prefix_range
from ..storage.replica import NO_POSITION, Position
from . import repl_config, repl_gate
from .commit import Reply
from .repl_follower import Follower
from .repl_links import PeerLink
from .repl_state import Delegated, Entry, Held, Peer, ShardLog, parse_grant

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
#: bytes of batches waiting for room in a peer's window; past it the peer leaves the
#: stream (its queue is dropped) and the catch-up brings it from the log
OUTQ_BYTES = 16 << 20
#: seconds the copies that do not deliver a group's replies (its quorum is the leader's
#: and the delivering follower's) wait for their ``append``: coalesced with the next
#: groups' (a sequential writer's every write woke every follower); their copy trails by
#: at most this, and a group that is not delegated sends them everything at once
LAZY = 0.005
#: another follower delivers instead of the last one only once its answers take less
#: than this share of the last one's time (else each write would wake both in turn)
SWITCH = 0.7
#: seconds over which a peer's refusals of this leader's shards make one log line
REFUSALS_LOG_EVERY = 1.0


class Replication:
    """A worker's replication (see the module docstring)."""

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
        #: replies to asks that a follower delivered (status; see :meth:`_delegate`)
        self.via_followers = 0
        #: the follower last given a group's replies (kept while about as fast as any)
        self.delegate: Peer | None = None
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
            if not self.doubt and not exits:
                fwd = self._delegate(outbox, logged)
            self._stream(logged, fwd)
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
                    self._off(p, {s})

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

    def _delegate(self, outbox: list[Outgoing], logged: dict[int, Entry]) -> Delegated | None:
        """Whether a follower may deliver this group's replies (see the module docstring):
        the group is all replies to asks (by their askers' own routing ids), nothing
        before it is in doubt or sent exits (checked by the caller), every group held
        before it was given to the same follower (which sends them on in order: else its
        output could overtake theirs), every shard it wrote has a quorum of 2, and one
        voter of them all is in step with the stream and free to be sent it now, in one
        ``append``. That voter (the fastest lately, or the held groups') and the
        replies; else None."""
        held = self.held
        must = held[0].via if held else None
        if held and (must is None or any(g.via is not must or g.failed is not None for g in held)):
            return None
        size = 0
        replies: list[Reply] = []
        for item in outbox:
            if type(item) is not Reply or len(item.to) != 1 or not item.to[0] or item.to[0][0] == 0:
                return None
            replies.append(item)
            size += len(item.to[0]) + len(item.payload) + 16
        if not replies:
            return None
        first: ShardLog | None = None
        for s, e in logged.items():
            sl = self.shards[s]
            if sl.quorum != 2:
                return None
            first = first or sl
            size += e.size
        if first is None or size > self.limit:
            return None
        able = [p for ep in first.voters if (p := self.peers.get(ep)) is not None
                and not p.outq and p.link.room > 0
                and all(ep in self.shards[s].voters and (tr := p.tracks.get(s)) is not None
                        and not tr.catching and tr.sent == e.prev for s, e in logged.items())]
        if not able:
            return None
        if must is not None:
            if must not in able:
                return None
            best = must
        else:
            best = min(able, key=lambda p: p.rtt)
            last = self.delegate
            if last is not None and last in able and not best.rtt < SWITCH * last.rtt:
                best = last     # (kept while about as fast: the others' appends coalesce)
        self.delegate = best
        return Delegated(best, outbox, replies)

    def _stream(self, logged: dict[int, Entry], fwd: Delegated | None = None) -> None:
        for p in self.peers.values():
            queued = False
            for s, e in logged.items():
                tr = p.tracks.get(s)
                if tr is None or tr.catching or tr.sent is None:
                    continue
                if tr.sent != e.prev or e.size > self.limit:
                    self._off(p, {s})          # the catch-up task takes it
                    continue
                if p.outq_bytes + e.size > OUTQ_BYTES:
                    self.say(p, f"node {p.node} is {p.outq_bytes} bytes behind the stream: "
                                f"caught up from the log")
                    self._off(p, set(p.tracks))
                    continue
                p.outq.append(([s, e.pos[0], e.prev[0], e.prev[1], e.pos[1], e.items], e.size))
                p.outq_bytes += e.size
                tr.sent = e.pos
                queued = True
            if not queued:
                continue
            if fwd is None:
                self._pump(p)
            elif fwd.peer is p:
                self._pump(p, fwd)
            elif p.lazy is None:         # (the other copies: coalesced, a moment later)
                p.lazy = self.loop.call_later(LAZY, self._lazy_pump, p)

    def _lazy_pump(self, p: Peer) -> None:
        p.lazy = None
        if self.peers.get(p.link.endpoint) is p:
            self._pump(p)

    def _off(self, p: Peer, shards: set[int], forget: bool = False) -> None:
        """``shards``' copies on ``p`` leave the stream: their queued batches go, the
        catch-up asks where they are (``forget``: what they hold is unknown meanwhile)."""
        if p.outq:
            keep = deque(q for q in p.outq if q[0][0] not in shards)
            p.outq_bytes = sum(size for _b, size in keep)
            p.outq = keep
        for s in shards:
            tr = p.tracks.get(s)
            if tr is not None and not tr.catching:
                tr.sent = None
                if forget:
                    tr.holds = NO_POSITION
        p.wake.set()

    def _pump(self, p: Peer, fwd: Delegated | None = None) -> None:
        """Send what waits for ``p``, coalesced, within the window (with ``fwd``'s
        replies, if that is all of what waits)."""
        while p.outq and p.link.room > 0:
            chunk: list[list[Any]] = []
            size = 0
            while p.outq:
                b, bsize = p.outq[0]
                if chunk and size + bsize > self.limit:
                    break
                p.outq.popleft()
                p.outq_bytes -= bsize
                chunk.append(b)
                size += bsize
            args: dict[str, Any] = {"batches": chunk}
            given = fwd if not p.outq else None     # (only with all of what waited)
            if given is not None:
                args["replies"] = [[r.to[0], r.payload] for r in given.replies]
            p.link.request("append", args, self.ack_timeout,
                           partial(self._appended, p, [b[0] for b in chunk], time.monotonic(), given))
            fwd = None

    def _appended(self, p: Peer, shards: list[int], sent: float, fwd: Delegated | None, ok: bool,
                  body: Any) -> None:
        if not ok:        # (the peer may have restarted, or lost its copies: ask anew)
            self._off(p, set(p.tracks), forget=True)
            self.say(p, f"appends to node {p.node} failed: {body}")
        else:
            rtt = time.monotonic() - sent
            p.rtt = rtt if p.rtt == math.inf else 0.8 * p.rtt + 0.2 * rtt
            if fwd is not None:
                self._delivered(p, fwd, body)
            for s, pos in body.get("held", {}).items():
                tr = p.tracks.get(s)
                if tr is not None:     # (what it holds now: it may have lost a copy)
                    tr.holds = (pos[0], pos[1])
            for s, fence in body.get("refused", {}).items():
                self.refused(s, fence, p)
            for s, pos in body.get("behind", {}).items():
                tr = p.tracks.get(s)
                if tr is not None:
                    tr.holds = (pos[0], pos[1])
                    if not tr.catching and tr.sent is not None:
                        self._off(p, {s})
            self.check()
        if p.outq and p.lazy is None and self.peers.get(p.link.endpoint) is p:
            self._pump(p)

    def _delivered(self, p: Peer, fwd: Delegated, body: dict[str, Any]) -> None:
        """The follower's word on the replies it was to deliver: those it sent leave the
        group's outbox (the leader sends the others once the group is at quorum: if the
        group left already, before this answer, its askers get both, and keep the first);
        those it had no connection for name it, so that their askers may connect there."""
        n = len(fwd.replies)
        sent = {i for i in body.get("delivered", ()) if type(i) is int and 0 <= i < n}
        if sent:
            self.via_followers += len(sent)
            fwd.outbox[:] = [r for i, r in enumerate(fwd.replies) if i not in sent]
        for i in body.get("unreachable", ()):
            if type(i) is int and 0 <= i < n and i not in sent:
                r = fwd.replies[i]
                r.payload = wire.ok_via(r.payload, p.link.endpoint)

    def say(self, p: Peer, what: str) -> None:
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
                self._off(p, {s})             # (catch-up retries it, paced)
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
                "replies_via_followers": self.via_followers,
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
