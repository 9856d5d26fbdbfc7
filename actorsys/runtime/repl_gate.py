"""A leader's output gate (issue 16; a part of :class:`~.replication.Replication`):
held groups leave in group order once every replicated shard they wrote (and every
batch in doubt) is held by its quorum of voters; a group not at quorum within
``ack_timeout`` fails; a group that failed unwritten answers in its place in the
order."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import ActorError, ShardUnavailable
from ..log import get_logger
from ..protocol import wire
from ..storage.replica import NO_POSITION, Position
from .commit import Reply
from .repl_state import Held, ShardLog

if TYPE_CHECKING:
    from ..protocol.messages import Exit
    from .activation import Activation
    from .commit import Outgoing
    from .replication import Replication

log = get_logger("worker")
#: seconds between two log lines of groups failed short of their quorum (a partition
#: fails every group for as long as it lasts: one line per group would flood the log)
SHORT_LOG_EVERY = 5.0


def at_quorum(self: Replication, g: Held) -> tuple[int, int, int] | None:
    """None if ``g`` is at quorum; else (a shard short of it, its holders, its quorum)."""
    for s, need in g.need.items():
        sl = self.shards.get(s)
        if sl is None:
            return s, 1, 2               # (dropped shards leave every need: never here)
        n = self._holders(sl, need)
        if n < sl.quorum:
            return s, n, sl.quorum
    return None


def holders(self: Replication, sl: ShardLog, need: Position) -> int:
    """The voters (the leader included) known to hold ``sl``'s batch ``need``."""
    n = 1
    for ep in sl.voters:
        p = self.peers.get(ep)
        tr = p.tracks.get(sl.shard) if p is not None else None
        if tr is not None and tr.holds >= need:
            n += 1
    return n


def check(self: Replication) -> None:
    """Release the held groups at quorum, in order; (re)arm the ack timeout."""
    held = self.held
    for s, pos in list(self.doubt.items()):
        sl = self.shards.get(s)
        if sl is None or self._holders(sl, pos) >= sl.quorum:
            del self.doubt[s]
    while held and self._at_quorum(held[0]) is None:
        self._leave(held.popleft())
    if not held:
        if not self.shards and not self.lost and not self.doubt:
            self.commit.repl = None   # nothing replicated, nothing held: the plain flush
    elif self.timer is None:
        # One timer, armed for the front group's deadline and left armed when that group
        # leaves: a later group's deadline is no earlier (each is its flush's time +
        # ack_timeout; a failed group's, earlier, never waits: it is at quorum), so the
        # timer fires at most early, finds the front not due, and is armed again for
        # it. Arming and cancelling one per group cost every write a timer-heap push
        # and a cancel.
        self.timer = self.loop.call_at(
            self.loop.time() + max(0.0, held[0].deadline - time.monotonic()), self._expire)


def failed(self: Replication, exc: ActorError, outbox: list[Outgoing], staged: list[Activation],
           touched: set[bytes], exits: list[Exit] | None = None) -> None:
    """A group that failed unwritten (fence, storage error, a lost shard): its
    activations reload now; its errors and exits leave in group order (after the
    held groups before it)."""
    if exits is None:
        exits, self.commit.exits = self.commit.exits, []
    if not self.held:
        return self.commit.fail(exc, outbox, staged, touched, exits)
    self.commit.fail(exc, [], staged, touched, [])
    self.held.append(Held(outbox, exits, [], set(), {}, time.monotonic(), exc))
    self.check()


def leave(self: Replication, g: Held) -> None:
    """The front group's output leaves: released, or its failure answered."""
    if g.failed is None:
        return self.commit.release(g.outbox, g.exits)
    out = self.commit.output
    error = g.failed.to_wire()
    for item in g.outbox:
        if type(item) is Reply:
            out.send(item.to, wire.err(wire.unpack(item.payload)[1], error))
    for notice in g.exits:
        out.exit(notice)
    out.kick()


def expire(self: Replication) -> None:
    self.timer = None
    now = time.monotonic()
    held = self.held
    while held and held[0].deadline <= now:
        g = held.popleft()
        short = self._at_quorum(g)
        if short is None:
            self._leave(g)
            continue
        s, n, q = short
        exc = ShardUnavailable(f"shard {s}: only {n} of the {q} replicas a write needs "
                               f"acknowledged it within {self.ack_timeout:g} s; the write may "
                               f"or may not have been applied")
        if now - self.short_logged_at >= SHORT_LOG_EVERY:
            more = (f" (and {self.short_unlogged} more groups since the last such line)"
                    if self.short_unlogged else "")
            log.warning("worker slot %d: %s%s", self.grants.slot, exc, more)
            self.short_logged_at, self.short_unlogged = now, 0
        else:
            self.short_unlogged += 1
        self._fail_held(g, exc)
        self._leave(g)
    self.check()


def fail_held(self: Replication, g: Held, exc: ActorError) -> None:
    """A held group fails: its activations reload now, its output becomes ``exc``'s
    answers, left in group order (:meth:`_leave`); its batches, on disk here, are in
    doubt: groups flushed from now on wait until a quorum holds them, and so do the
    groups already held behind it, which may have read what it wrote (a read-only turn
    after a write of the same actor needs nothing of its own)."""
    for s, pos in g.need.items():
        if s in self.shards and pos > self.doubt.get(s, NO_POSITION):
            self.doubt[s] = pos
    behind = not any(h is g for h in self.held)     # (expire pops g off the front first)
    for h in self.held:
        if h is g:
            behind = True
        elif behind and h.failed is None:
            for s, pos in g.need.items():
                if s in self.shards and pos > h.need.get(s, NO_POSITION):
                    h.need[s] = pos
    self.commit.fail(exc, [], g.staged, g.touched, [])
    g.failed, g.need, g.staged, g.touched = exc, {}, [], set()
