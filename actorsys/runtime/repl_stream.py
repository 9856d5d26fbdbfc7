"""A leader's stream to its followers (issue 16; a part of
:class:`~.replication.Replication`, which owns one :class:`Stream`): each group commit's
batches sent to the peers holding copies as it commits, their answers taken in, and a
lone group of replies handed to a follower to deliver.

**The stream.** Each peer gets one ``append`` with all its shards' batches of the group,
at most :data:`.repl_config.WINDOW` requests in flight per peer; more waits in the
peer's queue and goes coalesced (an ``append`` never outgrows a message). A copy not in
step with the stream (its last batch sent is not the new batch's predecessor, a batch
larger than a message, a failed request, ``behind``, or a queue past
:data:`OUTQ_BYTES`) leaves it: its queued batches go, and the catch-up
(:mod:`.repl_catchup`) brings it from the log, or a snapshot, then it follows the
stream again. An answer says what each copy holds now (``held``; the gate,
:mod:`.repl_gate`, counts them), which copies are behind, and which shards a newer
leader holds (``refused``: :meth:`.replication.Replication.refused`).

**Replies delivered by a follower** (:meth:`Stream.delegate`). With a quorum of 2 (the
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

The stream reads and changes the replication's peers (their queues, tracks and round
trip times) and reads its shards and held groups: the state is the replication's
(configured by :mod:`.repl_config`), the sending is this object's. Invariants: a
peer's ``outq_bytes`` is the sum of its queued batches' sizes; a track with ``sent``
None is not streamed to (the catch-up has it).
"""
from __future__ import annotations

import math
import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

from ..protocol import wire
from ..storage.replica import NO_POSITION
from .commit import Reply
from .repl_state import Delegated, Entry, Peer, ShardLog

if TYPE_CHECKING:
    from .commit import Outgoing
    from .replication import Replication

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


class Stream:
    """Sends a leader's batches to its peers and takes their answers (see the module
    docstring)."""

    def __init__(self, r: Replication) -> None:
        #: the replication whose peers, shards and held groups this streams
        self.r = r
        #: the follower last given a group's replies (kept while about as fast as any)
        self.last: Peer | None = None
        #: replies to asks that a follower delivered (status; see :meth:`delegate`)
        self.via_followers = 0

    def delegate(self, outbox: list[Outgoing], logged: dict[int, Entry]) -> Delegated | None:
        """Whether a follower may deliver this group's replies (see the module docstring):
        the group is all replies to asks (by their askers' own routing ids), nothing
        before it is in doubt or sent exits (checked by the caller), every group held
        before it was given to the same follower (which sends them on in order: else its
        output could overtake theirs), every shard it wrote has a quorum of 2, and one
        voter of them all is in step with the stream and free to be sent it now, in one
        ``append``. That voter (the fastest lately, or the held groups') and the
        replies; else None."""
        r = self.r
        held = r.held
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
        shards = r.shards
        first: ShardLog | None = None
        for s, e in logged.items():
            sl = shards[s]
            if sl.quorum != 2:
                return None
            first = first or sl
            size += e.size
        if first is None or size > r.limit:
            return None
        peers = r.peers
        able = [p for ep in first.voters if (p := peers.get(ep)) is not None
                and not p.outq and p.link.room > 0
                and all(ep in shards[s].voters and (tr := p.tracks.get(s)) is not None
                        and not tr.catching and tr.sent == e.prev for s, e in logged.items())]
        if not able:
            return None
        if must is not None:
            if must not in able:
                return None
            best = must
        else:
            best = min(able, key=lambda p: p.rtt)
            last = self.last
            if last is not None and last in able and not best.rtt < SWITCH * last.rtt:
                best = last     # (kept while about as fast: the others' appends coalesce)
        self.last = best
        return Delegated(best, outbox, replies)

    def send(self, logged: dict[int, Entry], fwd: Delegated | None = None) -> None:
        """Queue a group's batches (``logged``: shard -> its entry) for every peer in step
        with the stream, and send them (``fwd``: with its replies, to the delegate)."""
        r = self.r
        limit = r.limit
        for p in r.peers.values():
            queued = False
            for s, e in logged.items():
                tr = p.tracks.get(s)
                if tr is None or tr.catching or tr.sent is None:
                    continue
                if tr.sent != e.prev or e.size > limit:
                    self.off(p, {s})          # the catch-up task takes it
                    continue
                if p.outq_bytes + e.size > OUTQ_BYTES:
                    r.say(p, f"node {p.node} is {p.outq_bytes} bytes behind the stream: "
                             f"caught up from the log")
                    self.off(p, set(p.tracks))
                    continue
                p.outq.append(([s, e.pos[0], e.prev[0], e.prev[1], e.pos[1], e.items], e.size))
                p.outq_bytes += e.size
                tr.sent = e.pos
                queued = True
            if not queued:
                continue
            if fwd is None:
                self.pump(p)
            elif fwd.peer is p:
                self.pump(p, fwd)
            elif p.lazy is None:         # (the other copies: coalesced, a moment later)
                p.lazy = r.loop.call_later(LAZY, self._lazy_pump, p)

    def _lazy_pump(self, p: Peer) -> None:
        p.lazy = None
        if self.r.peers.get(p.link.endpoint) is p:
            self.pump(p)

    def off(self, p: Peer, shards: set[int], forget: bool = False) -> None:
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

    def pump(self, p: Peer, fwd: Delegated | None = None) -> None:
        """Send what waits for ``p``, coalesced, within the window (with ``fwd``'s
        replies, if that is all of what waits)."""
        r = self.r
        while p.outq and p.link.room > 0:
            chunk: list[list[Any]] = []
            size = 0
            while p.outq:
                b, bsize = p.outq[0]
                if chunk and size + bsize > r.limit:
                    break
                p.outq.popleft()
                p.outq_bytes -= bsize
                chunk.append(b)
                size += bsize
            args: dict[str, Any] = {"batches": chunk}
            given = fwd if not p.outq else None     # (only with all of what waited)
            if given is not None:
                args["replies"] = [[q.to[0], q.payload] for q in given.replies]
            p.link.request("append", args, r.ack_timeout,
                           partial(self._appended, p, [b[0] for b in chunk], time.monotonic(), given))
            fwd = None

    def _appended(self, p: Peer, shards: list[int], sent: float, fwd: Delegated | None, ok: bool,
                  body: Any) -> None:
        r = self.r
        if not ok:        # (the peer may have restarted, or lost its copies: ask anew)
            self.off(p, set(p.tracks), forget=True)
            r.say(p, f"appends to node {p.node} failed: {body}")
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
                r.refused(s, fence, p)
            for s, pos in body.get("behind", {}).items():
                tr = p.tracks.get(s)
                if tr is not None:
                    tr.holds = (pos[0], pos[1])
                    if not tr.catching and tr.sent is not None:
                        self.off(p, {s})
            r.check()
        if p.outq and p.lazy is None and r.peers.get(p.link.endpoint) is p:
            self.pump(p)

    def _delivered(self, p: Peer, fwd: Delegated, body: dict[str, Any]) -> None:
        """The follower's word on the replies it was to deliver: those it sent leave the
        group's outbox (the leader sends the others once the group is at quorum: if the
        group left already, before this answer, its askers get both, and keep the first);
        those it had no connection for name it, so that their askers may connect there."""
        n = len(fwd.replies)
        sent = {i for i in body.get("delivered", ()) if type(i) is int and 0 <= i < n}
        if sent:
            self.via_followers += len(sent)
            fwd.outbox[:] = [q for i, q in enumerate(fwd.replies) if i not in sent]
        for i in body.get("unreachable", ()):
            if type(i) is int and 0 <= i < n and i not in sent:
                q = fwd.replies[i]
                q.payload = wire.ok_via(q.payload, p.link.endpoint)
