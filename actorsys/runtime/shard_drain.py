"""Draining revoked shards (a part of :class:`~.grants.ShardCommands`, which owns one
:class:`Drains`; the grant protocol is ``grants.py``'s).

A shard revoked from this worker (a grant that leaves it out, or a newer leader's
refusal: ``repl_commands.py``) is *drained* before the grant is answered: its actors'
queued messages are answered ``WrongShard`` (tells dropped and logged), their alarm
turns not yet started given back to the clock, their running turns finish and commit,
and the actors passivate (``on_stop`` runs and commits). A drain not done within
``turn_timeout`` + :data:`DRAIN_GRACE` s is cut short: the stuck actors' turns are
cancelled and discarded (a generation they no longer have), the actors leave memory,
and the grant's reply is an error naming them. Either way no actor of a revoked shard
stays resident once its grant is answered; and every grant waits for the drains still
under way (an earlier grant's too).

Invariants: :attr:`Drains.draining` holds the revoked activations not yet known out of
memory (an activation granted again meanwhile leaves it once the turn that ran at its
revocation ended); :attr:`Drains.tasks` the drains under way, each answering its grant.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..errors import ActorError, WrongShard
from ..log import get_logger
from ..protocol import wire
from .activation import ALARM, NO_MAIL, Internal, Mail, Waiting

if TYPE_CHECKING:
    from .activation import Activation, Envelope
    from .assembly import Runtime
    from .commit import Output
    from .grants import Grants

log = get_logger("worker")
#: a drain's bound past the turn timeout (seconds)
DRAIN_GRACE = 1.0
#: seconds between checks of a drain in progress
DRAIN_POLL = 0.01


class Drains:
    """Drains the actors of revoked shards out of memory (see the module docstring)."""

    def __init__(self, grants: Grants, rt: Runtime, output: Output, turn_timeout: float) -> None:
        self.grants, self.rt, self.output = grants, rt, output
        self.turn_timeout = turn_timeout
        #: the drains under way (each answers its grant when done)
        self.tasks: set[asyncio.Task[None]] = set()
        #: revoked activations not yet out of memory (see drained)
        self.draining: set[Activation] = set()

    def revoke(self, shards: set[int]) -> None:
        """The resident actors of ``shards`` begin to drain (see the module docstring)."""
        for act in [a for a in self.rt.catalog.acts.values() if a.shard in shards]:
            self.evict(act)
            self.draining.add(act)

    def busy(self, shard: int) -> bool:
        """Actors of ``shard`` are still draining here (a follower applies nothing to it)."""
        return any(a.shard == shard and not self.drained(a) for a in self.draining)

    def reply_when_drained(self, envelope: Envelope, rid: int, reply: dict[str, Any]) -> None:
        """Send a grant's ``reply`` once no drain is under way (at once, committed first,
        if none is); every grant waits for the drains still under way, an earlier
        grant's too: once any grant is answered, nothing of a shard it does not grant is
        resident."""
        self.draining = {a for a in self.draining if not self.drained(a)}
        if not self.draining:
            self.rt.commit.flush()
            self.output.send(envelope, wire.ok(rid, reply))
            return
        acts = list(self.draining)
        task = self.rt.turns.loop.create_task(self._drain(envelope, rid, acts, reply))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def evict(self, act: Activation, force: bool = False) -> None:
        """Answer what waits for a revoked actor, then passivate it (``force``: every
        entry is answered and the actor leaves memory at once)."""
        rt, g = self.rt, self.grants
        refusal = WrongShard(f"shard {act.shard} was revoked from worker slot {g.slot} of "
                             f"node {g.node}")
        body = refusal.to_wire()
        body["epoch"] = g.epoch
        if act.mailbox:
            kept: deque[Mail] = deque()
            for m in act.mailbox:
                if isinstance(m, Internal):
                    if m.kind is ALARM:
                        rt.alarms.lost(act, m.name, m.due)   # fires where the shard goes
                        if m.reply_to is not None:           # (fired by a test: testing_asks.py)
                            self.output.send(m.reply_to, wire.err(m.rid, body))
                    elif not force:
                        kept.append(m)                     # the tree's and passivations
                    elif m.reply_to is not None:
                        self.output.send(m.reply_to, wire.err(m.rid, body))
                    continue
                if isinstance(m, Waiting):
                    rt.catalog.queued_bytes -= len(m.raw)
                if m.reply_to is not None:
                    self.output.send(m.reply_to, wire.err(m.rid, body))
                else:
                    rt.turns.loud.dropped(act.type_name, act.key, m.method, refusal)
            act.mailbox = kept if kept else NO_MAIL
        if force or (act.instance is None and not act.running and not act.mailbox):
            rt.catalog.forget(act)
        else:
            rt.turns.passivate(act)

    def drained(self, act: Activation) -> bool:
        """``act`` is out of memory (or was granted again and its turn ended)."""
        if self.rt.catalog.acts.get((act.type_name, act.key)) is not act:
            return True
        # granted again meanwhile: it may stay, once the turn that ran at the revocation ended
        return act.shard in self.grants.shards and not act.running

    async def _drain(self, envelope: Envelope, rid: int, acts: list[Activation],
                     reply: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.turn_timeout + DRAIN_GRACE
        left = acts
        while True:
            left = [a for a in left if not self.drained(a)]
            if not left or time.monotonic() >= deadline:
                break
            await asyncio.sleep(DRAIN_POLL)
        for act in left:
            self._force_out(act)
        self.draining.difference_update(acts)
        self.rt.commit.flush()
        if not left:
            self.output.send(envelope, wire.ok(rid, reply))
            return
        names = ", ".join(f"{a.type_name}/{a.key:.100}" for a in left[:10]) + (
            " ..." if len(left) > 10 else "")
        log.warning("worker slot %d: revoked shards did not drain within %g s; dropped from "
                    "memory uncommitted: %s", self.grants.slot, self.turn_timeout + DRAIN_GRACE, names)
        self.output.send(envelope, wire.err(rid, ActorError(
            f"revoked shards did not drain within {self.turn_timeout + DRAIN_GRACE:g} s "
            f"(turn_timeout + {DRAIN_GRACE:g}); their turns were cancelled and discarded, "
            f"nothing of them committed: {names}").to_wire()))

    def _force_out(self, act: Activation) -> None:
        """A revoked actor that would not drain leaves memory; its running turn is
        cancelled, and discarded when it ends (a generation it no longer has)."""
        act.gen += 1
        if act.task is not None:
            act.task.cancel()
        act.drop_instance()
        self.evict(act, force=True)
