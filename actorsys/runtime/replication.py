"""Replicated shards, the worker side (issue 16): the leader's stream and output gate,
and the follower's SHARDS commands (storage: ``actorsys/storage/replica.py``).

Leader. A grant with replication arguments (``peers``, ``replicas``, ``ack``,
``ack_timeout``: :func:`parse_grant`) names, for each granted shard, the peer workers
holding copies (voters and learners). From then on every group commit (``commit.py``
hands its flush to :meth:`Replication.flush`) splits the staged writes by shard, adds
each written replicated shard's position ``[epoch, seq + 1]`` to the same LevelDB
batch, commits, keeps the shard's batch in an in-memory log (bounded: :data:`LOG_BYTES`
and :data:`LOG_ENTRIES` per worker, the oldest going first), sends each peer one ``append`` with all its
shards' batches of the group (at most :data:`WINDOW` requests in flight per peer; more
waits and goes coalesced), and HOLDS the group's output (replies, tells, WebSocket
effects, exits) until, for every replicated shard it wrote, ``quorum`` voters (the
leader counts) hold its batch. Output leaves strictly in group order: a group that wrote
no replicated shard waits behind an earlier held one. A group not at quorum within
``ack_timeout`` fails (asks get ShardUnavailable; its writes stay committed here, so
"may or may not have been applied"); an ``append`` answered ``refused`` (a follower's
fence is newer: a newer leader exists) makes this worker stop serving the shard at once
(``on_refused``) and fails the held groups that wrote it. The quorum is computed with
the shard's replica list at the time of the check (a grant removing a dead voter
releases the groups that waited on it).

Catch-up, one task per peer: a peer whose copy of a shard is not known to follow the
stream (at the start, after ``behind``, an error or a timeout) is asked its
``position``; if the leader's log holds the batches after it, they are sent; else (its
position is not in the log, is ``[0, 0]``, or a batch is larger than a message) it gets
a snapshot: pages of about :data:`SNAPSHOT_PAGE` bytes read from a plyvel snapshot
taken between two flushes (so it is exactly the state of the leader's position), the
position key in the last page, then the log from there. Once at the tip it follows the
stream again. A shard revoked from this worker keeps being caught up (its last turns'
batches reach the followers, and ``replication`` reports them: a leadership transfer
waits for that), until a grant finds every copy at its position.

Follower: ``append``, ``snapshot``, ``position`` (see ``storage/replica.py`` and the
SHARDS docstring in ``grants.py``); ``replication`` is asked of a leader.

With no replication arguments (``replicas = 1``) nothing here runs: ``commit.repl`` is
None and the flush is the single-node one.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from ..errors import ActorError, BadRequest, ShardUnavailable, StorageError
from ..log import get_logger
from ..storage import replica
from ..storage.handoff import export_page
from ..storage.keys import FENCE_KEYS, position_key, prefix_range
from ..storage.replica import NO_POSITION, Position
from .repl_links import PeerLink

if TYPE_CHECKING:
    import zmq

    from ..net.keys import CurveKeys
    from ..protocol.messages import Exit
    from .activation import Activation
    from .commit import GroupCommit, Outgoing
    from .grants import Grants

log = get_logger("worker")

#: requests in flight per peer
WINDOW = 32
#: bytes of batches the in-memory log keeps, per worker
LOG_BYTES = 32 << 20
#: batches the log keeps, per worker
LOG_ENTRIES = 65536
#: bytes of keys and values per snapshot page
SNAPSHOT_PAGE = 512 << 10
#: seconds between catch-up attempts of a peer that failed
RETRY = 0.5
#: an ``append``'s bytes left for framing below max_message_bytes
FRAMING = 4096
ACK_MODES = ("majority", "all")


def quorum(voters: int, ack: str) -> int:
    """Voters (leader included) that must hold a batch before its output leaves."""
    return voters if ack == "all" else voters // 2 + 1


class ReplicaArgs(NamedTuple):
    """A grant's replication arguments, checked."""

    peers: list[tuple[str, str, str | None]]       #: [(node_id, endpoint, public key)]
    replicas: dict[int, list[tuple[int, bool]]]    #: shard -> [(peer index, voter)]
    ack: str
    ack_timeout: float


def parse_grant(args: dict[str, Any], nshards: int) -> ReplicaArgs | None:
    """The replication arguments of a grant (None: it has none); BadRequest naming the
    argument on a bad shape."""
    if not any(k in args for k in ("peers", "replicas", "ack", "ack_timeout")):
        return None
    peers_raw, reps_raw = args.get("peers", []), args.get("replicas", {})
    ack, timeout = args.get("ack", "majority"), args.get("ack_timeout", 5.0)
    if not isinstance(peers_raw, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 3 and isinstance(p[0], str)
            and isinstance(p[1], str) and (p[2] is None or isinstance(p[2], str)) for p in peers_raw):
        raise BadRequest("grant peers must be a list of [node_id, endpoint, public_key or nil]")
    peers = [(p[0], p[1], p[2]) for p in peers_raw]
    if not isinstance(reps_raw, dict):
        raise BadRequest("grant replicas must map shard -> [[peer_index, voter], ...]")
    replicas: dict[int, list[tuple[int, bool]]] = {}
    for s, lst in reps_raw.items():
        if type(s) is not int or not 0 <= s < nshards or not isinstance(lst, list) or not all(
                isinstance(r, (list, tuple)) and len(r) == 2 and type(r[0]) is int
                and 0 <= r[0] < len(peers) and type(r[1]) is bool for r in lst):
            raise BadRequest(f"grant replicas must map shard (0..{nshards - 1}) -> [[peer_index "
                             f"(0..{len(peers) - 1}), voter (bool)], ...]")
        replicas[s] = [(r[0], r[1]) for r in lst]
    if ack not in ACK_MODES:
        raise BadRequest("grant ack must be \"majority\" or \"all\"")
    if type(timeout) not in (int, float) or not 0 < timeout < 3600:
        raise BadRequest("grant ack_timeout must be seconds (0 < t < 3600)")
    return ReplicaArgs(peers, replicas, ack, float(timeout))


class Entry(NamedTuple):
    """One batch of a shard in the leader's log."""

    prev: Position
    pos: Position
    items: list[tuple[bytes, bytes | None]]
    size: int


class ShardLog:
    """A replicated shard this worker leads (or led: ``retired``)."""

    __slots__ = ("shard", "epoch", "pos", "voters", "learners", "quorum", "entries", "retired")

    def __init__(self, shard: int, pos: Position) -> None:
        self.shard = shard
        self.epoch = 0                 #: the granted epoch (the next batch's)
        self.pos = pos                 #: the position of the last batch committed here
        self.voters: list[str] = []    #: followers' endpoints (the leader is a voter too)
        self.learners: list[str] = []
        self.quorum = 1
        self.entries: deque[Entry] = deque()
        self.retired = False           #: revoked here: caught up, never written again

    def after(self, pos: Position, limit: int) -> list[Entry] | None:
        """The logged batches after ``pos`` (at most ``limit`` bytes, at least one), or
        None if ``pos`` is not in the log (or its next batch is larger than ``limit``)."""
        out: list[Entry] = []
        size = 0
        found = False
        for e in self.entries:
            if not found:
                found = e.prev == pos
                if not found:
                    continue
            if size + e.size > limit:
                break
            out.append(e)
            size += e.size
        return out or None


@dataclass(eq=False)
class Track:
    """What the leader knows of one peer's copy of one shard."""

    held: Position = NO_POSITION           #: the peer holds at least this
    sent: Position | None = None           #: streaming: the last batch sent (None: catch up)
    catching: bool = False                 #: the catch-up task is at it


@dataclass(eq=False)
class Peer:
    node: str
    link: PeerLink
    tracks: dict[int, Track] = field(default_factory=dict)
    outq: deque[tuple[list[Any], int]] = field(default_factory=deque)   #: (batch, bytes)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    said: str = ""                        #: the last catch-up problem logged


@dataclass(eq=False, slots=True)
class Held:
    """A committed group whose output waits for its quorum."""

    outbox: list[Outgoing]
    exits: list[Exit]
    staged: list[Activation]
    touched: set[bytes]
    need: dict[int, Position]
    deadline: float


class _Gone(Exception):
    """The shard stopped being replicated to that peer (refused, or reconfigured)."""


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
        self.timer: asyncio.TimerHandle | None = None
        self.log_bytes = 0
        self.log_order: deque[tuple[ShardLog, Entry]] = deque()
        #: stop serving a shard a newer leader holds: (shard, its fence) (grants.py)
        self.on_refused: Callable[[int, int], None] | None = None
        self.closed = False

    # -- configuration (a grant) -------------------------------------------------------
    def configure(self, args: ReplicaArgs | None, granted: dict[int, int]) -> None:
        """Apply a grant: the peers, each granted shard's replicas (None: no replication
        arguments, so nothing is replicated from now on)."""
        if args is None:
            args = ReplicaArgs([], {}, self.ack, self.ack_timeout)
        self.ack, self.ack_timeout = args.ack, args.ack_timeout
        wanted: dict[str, tuple[str, str | None]] = {}
        for node, endpoint, key in args.peers:
            wanted[endpoint] = (node, key)
        members: dict[int, list[tuple[str, bool]]] = {}
        for s, lst in args.replicas.items():
            if s in granted and lst:
                members[s] = [(args.peers[i][1], voter) for i, voter in lst]
        for s in list(self.shards):          # revoked: retired (kept until caught up)
            sl = self.shards[s]
            if s not in granted:
                if sl.retired and all(self._track(ep, s) is None or self._track(ep, s).held >= sl.pos
                                      for ep in sl.voters + sl.learners):
                    self._drop_shard(s)
                else:
                    sl.retired = True
            elif s not in members:
                self._drop_shard(s)
        needed = {ep for lst in members.values() for ep, _v in lst}
        needed |= {ep for sl in self.shards.values() if sl.retired for ep in sl.voters + sl.learners}
        for ep in needed:
            if ep not in self.peers:
                node, key = wanted.get(ep, ("?", None))
                keys = self.keys.for_server(key.encode()) if self.keys and key else self.keys
                peer = self.peers[ep] = Peer(node, PeerLink(self.loop, self.ctx, node, ep, keys, WINDOW))
                peer.task = self.loop.create_task(self._catch_up(peer))
            else:
                self.peers[ep].link.check()
        for s, lst in members.items():
            sl = self.shards.get(s)
            if sl is None:
                sl = self.shards[s] = ShardLog(s, replica.read_position(self.store.db, s))
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
                p = self.peers[ep]
                if s not in p.tracks:
                    p.tracks[s] = Track()
                    p.wake.set()
        for ep in [ep for ep, p in self.peers.items() if ep not in needed]:
            self._close_peer(ep)
        self.commit.repl = self if (self.shards or self.held) else None
        self._check()

    def _track(self, ep: str, s: int) -> Track | None:
        p = self.peers.get(ep)
        return None if p is None else p.tracks.get(s)

    def _drop_shard(self, s: int) -> None:
        sl = self.shards.pop(s, None)
        if sl is None:
            return
        for p in self.peers.values():
            p.tracks.pop(s, None)
        self.log_bytes -= sum(e.size for e in sl.entries)
        sl.entries.clear()

    def _close_peer(self, ep: str) -> None:
        p = self.peers.pop(ep)
        if p.task is not None:
            p.task.cancel()
        p.link.close()

    # -- the leader's flush --------------------------------------------------------------
    def flush(self, outbox: list[Outgoing], staged: list[Activation], touched: set[bytes]) -> None:
        """The group commit of a worker with replicated shards (see the module docstring)."""
        gc = self.commit
        store = gc.store
        exits, gc.exits = gc.exits, []
        made: dict[int, tuple[Position, Position, list[tuple[bytes, bytes | None]]]] = {}
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
            return gc.fail(exc, outbox, staged, touched, exits)
        if not made and not self.held:
            return gc.release(outbox, exits)
        need: dict[int, Position] = {}
        for s, (prev, new, items) in made.items():
            self._log(self.shards[s], prev, new, items)
            need[s] = new
        if made:
            self._stream(made)
        self.held.append(Held(outbox, exits, staged, touched, need,
                              time.monotonic() + self.ack_timeout))
        self._check()

    def _log(self, sl: ShardLog, prev: Position, new: Position,
             items: list[tuple[bytes, bytes | None]]) -> None:
        size = sum(len(k) + (len(v) if v is not None else 0) + 4 for k, v in items)
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

    def _stream(self, made: dict[int, tuple[Position, Position, list[tuple[bytes, bytes | None]]]]) -> None:
        for p in self.peers.values():
            queued = False
            for s, (prev, new, items) in made.items():
                tr = p.tracks.get(s)
                if tr is None or tr.catching or tr.sent is None:
                    continue
                if tr.sent != prev or self.shards[s].entries[-1].size > self.limit:
                    tr.sent = None             # off the stream: the catch-up task takes it
                    p.wake.set()
                    continue
                p.outq.append(([s, new[0], prev[0], prev[1], new[1], items],
                               self.shards[s].entries[-1].size))
                tr.sent = new
                queued = True
            if queued:
                self._pump(p)

    def _pump(self, p: Peer) -> None:
        """Send what waits for ``p``, coalesced, within the window."""
        while p.outq and p.link.room > 0:
            chunk: list[list[Any]] = []
            size = 0
            while p.outq:
                b, bsize = p.outq[0]
                if chunk and size + bsize > self.limit:
                    break
                p.outq.popleft()
                chunk.append(b)
                size += bsize
            p.link.request("append", {"batches": chunk}, self.ack_timeout,
                           partial(self._appended, p, [b[0] for b in chunk]))

    def _appended(self, p: Peer, shards: list[int], ok: bool, body: Any) -> None:
        if not ok:
            for s in shards:
                tr = p.tracks.get(s)
                if tr is not None and not tr.catching:
                    tr.sent = None
            p.wake.set()
            self._say(p, f"appends to node {p.node} failed: {body}")
        else:
            for s, pos in body.get("held", {}).items():
                tr = p.tracks.get(s)
                if tr is not None and (pos := (pos[0], pos[1])) > tr.held:
                    tr.held = pos
            for s, fence in body.get("refused", {}).items():
                self._refused(s, fence, p)
            for s in body.get("behind", {}):
                tr = p.tracks.get(s)
                if tr is not None and not tr.catching and tr.sent is not None:
                    tr.sent = None
                    p.wake.set()
            self._check()
        if p.outq and self.peers.get(p.link.endpoint) is p:
            self._pump(p)

    def _say(self, p: Peer, what: str) -> None:
        if p.said != what:
            p.said = what
            log.warning("worker slot %d replication: %s", self.grants.slot, what)

    # -- the output gate -------------------------------------------------------------------
    def _at_quorum(self, g: Held) -> tuple[int, int, int] | None:
        """None if ``g`` is at quorum; else (a shard short of it, its holders, its quorum)."""
        for s, need in g.need.items():
            sl = self.shards.get(s)
            if sl is None:
                continue
            n = 1
            for ep in sl.voters:
                p = self.peers.get(ep)
                tr = p.tracks.get(s) if p is not None else None
                if tr is not None and tr.held >= need:
                    n += 1
            if n < sl.quorum:
                return s, n, sl.quorum
        return None

    def _check(self) -> None:
        """Release the held groups at quorum, in order; (re)arm the ack timeout."""
        held = self.held
        while held and self._at_quorum(held[0]) is None:
            g = held.popleft()
            self.commit.release(g.outbox, g.exits)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if held:
            self.timer = self.loop.call_at(
                self.loop.time() + max(0.0, held[0].deadline - time.monotonic()), self._expire)
        elif not self.shards:
            self.commit.repl = None

    def _expire(self) -> None:
        self.timer = None
        now = time.monotonic()
        held = self.held
        while held and held[0].deadline <= now:
            g = held.popleft()
            short = self._at_quorum(g)
            if short is None:
                self.commit.release(g.outbox, g.exits)
                continue
            s, n, q = short
            exc = ShardUnavailable(f"shard {s}: only {n} of the {q} replicas a write needs "
                                   f"acknowledged it within {self.ack_timeout:g} s; the write may "
                                   f"or may not have been applied")
            log.warning("worker slot %d: %s", self.grants.slot, exc)
            self.commit.fail(exc, g.outbox, g.staged, g.touched, g.exits)
        self._check()

    def _refused(self, s: int, fence: int, p: Peer | None) -> None:
        """A newer leader holds ``s``: stop serving it; fail the held groups that wrote it."""
        sl = self.shards.get(s)
        if sl is None:
            return
        self._drop_shard(s)
        log.error("worker slot %d: node %s refused shard %d's batches (its fence is epoch %d, "
                  "this leader's %d): a newer leader exists; this worker stops serving it",
                  self.grants.slot, p.node if p else "?", s, fence, sl.epoch)
        if not sl.retired and self.on_refused is not None:
            self.on_refused(s, fence)
        exc = ShardUnavailable(f"shard {s} has a newer leader (epoch {fence}); this node no "
                               f"longer serves it")
        keep: deque[Held] = deque()
        for g in self.held:
            if s in g.need:
                self.commit.fail(exc, g.outbox, g.staged, g.touched, g.exits)
            else:
                keep.append(g)
        self.held = keep
        self._check()

    # -- catch-up ---------------------------------------------------------------------------
    async def _catch_up(self, p: Peer) -> None:
        while not self.closed:
            lag = [s for s, tr in p.tracks.items() if tr.sent is None and not tr.catching]
            if not lag:
                p.wake.clear()
                try:
                    await asyncio.wait_for(p.wake.wait(), 5.0)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                res = await p.link.call("position", {"shards": lag}, self.ack_timeout)
            except ActorError as exc:
                self._say(p, f"node {p.node} cannot be asked its positions: {exc}")
                await asyncio.sleep(RETRY)
                continue
            positions = res.get("positions", {})
            for s in lag:
                tr = p.tracks.get(s)
                if tr is None or tr.sent is not None:
                    continue
                raw = positions.get(s, [0, 0])
                tr.catching = True
                try:
                    await self._bring(p, s, tr, (raw[0], raw[1]))
                except _Gone:
                    pass
                except ActorError as exc:
                    self._say(p, f"catching up node {p.node} on shard {s} failed: {exc}")
                    await asyncio.sleep(RETRY)
                    break
                except Exception:
                    log.exception("worker slot %d: catching up node %s on shard %d",
                                  self.grants.slot, p.node, s)
                    await asyncio.sleep(RETRY)
                    break
                finally:
                    tr.catching = False
            else:
                p.said = ""

    def _still(self, p: Peer, s: int, tr: Track) -> ShardLog:
        sl = self.shards.get(s)
        if sl is None or p.tracks.get(s) is not tr or self.peers.get(p.link.endpoint) is not p:
            raise _Gone()
        return sl

    def _answer(self, p: Peer, s: int, res: Any) -> None:
        if s in res.get("refused", {}):
            self._refused(s, res["refused"][s], p)
            raise _Gone()

    async def _bring(self, p: Peer, s: int, tr: Track, pos: Position) -> None:
        """Bring ``p``'s copy of ``s`` from ``pos`` to the stream (log or snapshot)."""
        snapped = False
        while True:
            sl = self._still(p, s, tr)
            if pos == sl.pos and (pos != NO_POSITION or snapped):
                if pos > tr.held:
                    tr.held = pos
                tr.sent = pos
                self._check()
                return
            chunk = sl.after(pos, self.limit) if pos != NO_POSITION else None
            if chunk is None:
                pos = await self._snapshot(p, s, sl, tr)
                snapped = True
                if pos > tr.held:
                    tr.held = pos
                continue
            batches = [[s, e.pos[0], e.prev[0], e.prev[1], e.pos[1], e.items] for e in chunk]
            fut = p.link.send_call("append", {"batches": batches}, self.ack_timeout)
            if chunk[-1].pos == sl.pos:
                tr.sent = sl.pos               # the stream goes on behind it
            res = await fut
            self._answer(p, s, res)
            if s in res.get("behind", {}):
                tr.sent = None
                raw = res["behind"][s]
                pos = (raw[0], raw[1])
                continue
            raw = res.get("held", {}).get(s, [0, 0])
            pos = (raw[0], raw[1])
            if pos > tr.held:
                tr.held = pos
            self._check()
            if tr.sent is not None:
                return

    async def _snapshot(self, p: Peer, s: int, sl: ShardLog, tr: Track) -> Position:
        """Send ``p`` a full copy of ``s`` as of now; the copy's position."""
        snap = self.store.db.snapshot()        # between two flushes: exactly sl.pos
        epoch = max(sl.epoch, sl.pos[0])
        pkey = position_key(s)
        try:
            after: bytes | None = None
            first, posv = True, None
            while True:
                items, after = export_page(snap, [s], after, SNAPSHOT_PAGE)
                page = []
                for k, v in items:
                    if k == pkey:
                        posv = v
                    else:
                        page.append([k, v])
                last = after is None
                if last and posv is not None:
                    page.append([pkey, posv])
                res = await p.link.call("snapshot", {"shard": s, "epoch": epoch, "first": first,
                                                     "last": last, "items": page}, self.ack_timeout)
                if "refused" in res:
                    self._answer(p, s, {"refused": {s: res["refused"]}})
                self._still(p, s, tr)
                first = False
                if last:
                    raw = res["position"]
                    log.info("worker slot %d: node %s got a snapshot of shard %d at [%d, %d]",
                             self.grants.slot, p.node, s, raw[0], raw[1])
                    return raw[0], raw[1]
        finally:
            snap.close()

    # -- the SHARDS commands ------------------------------------------------------------
    def _homed(self, shards: Any, what: str) -> list[int]:
        g, n = self.grants, self.nshards
        if not isinstance(shards, list) or not all(type(s) is int and 0 <= s < n for s in shards):
            raise BadRequest(f"{what} shards must be an array of shards (0..{n - 1})")
        if any(g.home[s] != g.slot for s in shards):
            raise BadRequest(f"cannot {what} shards homed on another worker slot: "
                             f"{[s for s in shards if g.home[s] != g.slot][:10]}")
        return shards

    def _writable(self) -> None:
        if self.store.broken is not None:
            raise self.store.broken

    def append(self, args: dict[str, Any]) -> dict[str, Any]:
        batches = replica.check_batches(args.get("batches"), self.nshards)
        self._homed([b[0] for b in batches], "append")
        self._writable()
        return replica.apply_batches(self.store.db, batches, self.grants.served, self.store.fsync)

    def snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        s, epoch = args.get("shard"), args.get("epoch")
        first, last = args.get("first"), args.get("last")
        if type(epoch) is not int or type(first) is not bool or type(last) is not bool:
            raise BadRequest("snapshot needs epoch (integer), first and last (booleans)")
        self._homed([s], "snapshot")
        self._writable()
        assert type(s) is int
        return replica.apply_snapshot_page(self.store.db, s, epoch, first, last,
                                           args.get("items", []), self.grants.served)

    def position(self, args: dict[str, Any]) -> dict[str, Any]:
        shards = self._homed(args.get("shards"), "position")
        served = [s for s in shards if self.grants.served(s)]
        if served:
            raise BadRequest(f"position of shard(s) {served[:10]}: served by worker slot "
                             f"{self.grants.slot} (ask its leader's replication)")
        fence = args.get("fence")
        db = self.store.db
        if fence is not None:
            if not (isinstance(fence, dict) and all(type(s) is int and s in shards and type(e) is int
                                                    for s, e in fence.items())):
                raise BadRequest("position fence must map shards named -> epoch (integer)")
            self._writable()
            fences = replica.raise_fences(db, fence)
        else:
            fences = {}
        return {"positions": {s: list(replica.read_position(db, s)) for s in shards},
                "fences": {s: fences.get(s, replica.read_fence(db, s)) for s in shards}}

    def replication(self, args: dict[str, Any]) -> dict[int, Any]:
        shards = self._homed(args.get("shards"), "replication")
        out: dict[int, Any] = {}
        for s in shards:
            sl = self.shards.get(s)
            pos = sl.pos if sl is not None else replica.read_position(self.store.db, s)
            held: dict[str, int] = {}
            if sl is not None:
                for ep in sl.voters + sl.learners:
                    p = self.peers.get(ep)
                    tr = p.tracks.get(s) if p is not None else None
                    if p is not None and tr is not None:
                        held[p.node] = tr.held[1] if tr.held[0] == pos[0] else 0
            out[s] = {"epoch": pos[0], "seq": pos[1], "held": held}
        return out

    def status(self) -> dict[str, Any]:
        lo, hi = prefix_range(FENCE_KEYS)
        try:
            with self.store.db.iterator(start=lo, stop=hi, include_value=False) as it:
                fenced = {int.from_bytes(k[1:], "big") for k in it}
        except Exception:
            fenced = set()
        return {"leading": sum(1 for sl in self.shards.values() if not sl.retired),
                "following": sum(1 for s in fenced if not self.grants.served(s)),
                "waiting_groups": len(self.held),
                "behind": {p.node: n for p in self.peers.values()
                           if (n := sum(1 for tr in p.tracks.values() if tr.sent is None))}}

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        for ep in list(self.peers):
            self._close_peer(ep)
