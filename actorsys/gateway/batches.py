"""Socket events to actors, in batches: one ``$ws`` ask, one turn, per batch.

* A room's waiting events go in order, as many as fit (:data:`MAX_BATCH_EVENTS`, and
  :data:`MAX_BATCH_BYTES` or half a node message), one batch at a time per room.
* Each batch has a number, increasing in this incarnation of the gateway; the worker
  keeps the last number it committed per actor (its delivery mark), so a batch
  delivered again is answered ``dup`` with the effects it had, and applied once.
* A batch whose worker died, is busy or starting (:data:`TRANSIENT` errors) is delivered
  again, backing off, until ``max(ask_timeout, turn_timeout + 5 s)`` has passed; then its
  sockets are closed (1011) rather than left silently missing events.
* The roster (the sockets the actor knows) goes with the first batch and whenever the
  worker asks for it (a new activation, a restart); one too large for a message goes
  first, in parts.
* A batch the handlers fail is split into single events; an event that still fails is
  dropped (logged), and a socket whose ``on_connect`` failed is closed (1011).
* The times of auto-responses the actor has not been told of (``Room.auto_responded``)
  ride at the head of the next batch, for the sockets whose ``on_connect`` has committed
  (the others wait for a later batch: the actor does not know them yet), within a
  quarter of a batch (the rest wait for the next ones). They never go in a batch of
  their own: a failed batch is split without its head, and is counted and logged by its
  real events only. A failure loses no time: after one the gateway sends the roster
  again, whose records carry every socket's latest; a batch delivered again with the
  roster goes without its head (which would set the roster's times back to older ones).
"""
from __future__ import annotations

import asyncio
import itertools
from enum import Enum
from typing import Any, NamedTuple

from ..client.transport import AsyncTransport
from ..errors import (ActorError, AskTimeout, NodeUnavailable, Overloaded, ShardUnavailable, StorageError,
                      WorkerLost, WrongShard)
from ..log import get_logger
from ..protocol import ws as websocket
from .effects import Effects
from .rooms import AUTO_RESPONDED, CONNECT, DISCONNECT, HANDLER_OF, Room, SocketState
from .sockets import Hub

log = get_logger("gateway")

#: errors after which a batch is delivered again (its worker died, or is busy or starting;
#: in a cluster: its shard is moving, or its node is down and may come back)
TRANSIENT = (WorkerLost, NodeUnavailable, AskTimeout, Overloaded, StorageError, WrongShard,
             ShardUnavailable)
MAX_BATCH_EVENTS = 256
MAX_BATCH_BYTES = 1 << 20


class Reply(Enum):
    """What the worker answered a ``$ws`` ask (see :mod:`actorsys.runtime.ws_turns`)."""

    APPLIED = "ok"               # committed; its effects came with it (or in WS parts)
    DUPLICATE = "dup"            # committed before: the effects it had
    NEED_ROSTER = "need"         # the worker does not know the actor's sockets
    MORE = "more"                # a roster part taken: send the next


class BatchReply(NamedTuple):
    kind: Reply
    effects: list[Any] | None

    @classmethod
    def of(cls, result: Any) -> "BatchReply":
        if not isinstance(result, dict):
            return cls(Reply.APPLIED, None)
        if result.get("need") == "roster":
            return cls(Reply.NEED_ROSTER, None)
        if result == {"more": True}:
            return cls(Reply.MORE, None)
        return cls(Reply.DUPLICATE if result.get("dup") else Reply.APPLIED, result.get("effects"))


class Delivery:
    """Delivers the events of every room of :class:`~.sockets.Hub` (the module's rules)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hub: Hub, effects: Effects,
                 transport: AsyncTransport, incarnation: str, counters: dict[str, int], *,
                 max_message_bytes: int, ask_timeout: float, turn_timeout: float) -> None:
        self.loop, self.hub, self.effects, self.transport = loop, hub, effects, transport
        self.incarnation, self.counters = incarnation, counters
        self.max_message_bytes = max_message_bytes
        self.batch_limit = min(MAX_BATCH_BYTES, max_message_bytes // 2)
        #: a batch may wait behind a turn that runs up to turn_timeout
        self.patience = max(ask_timeout, turn_timeout + 5.0)
        self._numbers = itertools.count(1)
        self.last_batch = 0

    def enqueue(self, room: Room, event: list[Any], size: int) -> None:
        """Queue one socket event for its actor (delivery starts if it was idle)."""
        room.waiting.append((event, size))
        room.waiting_bytes += size
        self.counters["events"] += 1
        if room.task is None:
            room.task = self.loop.create_task(self._deliver(room))

    def tasks(self) -> list[asyncio.Task[None]]:
        """The rooms' delivery tasks (a stop waits for them)."""
        return [r.task for r in self.hub.rooms.values() if r.task is not None]

    async def _deliver(self, room: Room) -> None:
        try:
            while room.waiting:
                events, size = self._auto_responded(room)
                head, taken = len(events), 0
                while room.waiting and len(events) < MAX_BATCH_EVENTS and (
                        len(events) == head or size + room.waiting[0][1] <= self.batch_limit):
                    ev, n = room.waiting.popleft()
                    events.append(ev)
                    size += n
                    taken += n
                room.waiting_bytes -= taken
                room.space.set()
                await self._send_batch(room, events)
        except Exception:
            log.exception("%s/%.100s: delivering socket events failed", room.type_name, room.key)
        finally:
            room.task = None
            if room.waiting:
                room.task = self.loop.create_task(self._deliver(room))
            else:
                self.hub.forget_if_empty(room)

    def _auto_responded(self, room: Room) -> tuple[list[list[Any]], int]:
        """The head of a batch: ``[AUTO_RESPONDED, [[id, time], ...]]`` for the joined
        sockets with auto-responses the actor has not been told of (within a quarter of
        a batch), and its size; none: ``([], 0)``. Entries of sockets gone from the
        room are dropped; those of sockets not joined yet stay."""
        pending = room.auto_responded
        if not pending:
            return [], 0
        times: list[list[Any]] = []
        size, budget = 16, self.batch_limit // 4
        for sid in list(pending):
            s = room.find(sid)
            if s is None:
                del pending[sid]
            elif s.joined and size + len(sid) + 12 <= budget:
                times.append([sid, pending.pop(sid)])
                size += len(sid) + 12
        return ([[AUTO_RESPONDED, times]], size) if times else ([], 0)

    async def _send_batch(self, room: Room, events: list[list[Any]]) -> None:
        number = self.last_batch = next(self._numbers)
        roster = None if room.roster_known else room.members()
        deadline = self.loop.time() + self.patience
        pause = 0.01
        while True:
            try:
                reply = await self._ask_batch(room, number, roster, events, deadline)
            except TRANSIENT as exc:
                if self.loop.time() + pause >= deadline:
                    return self._give_up(room, events, f"{type(exc).__name__}: {exc}")
                self.counters["redeliveries"] += 1
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
                roster = room.members()       # a new activation may not know its sockets
                events = _real(events)        # (its records have the head's times, or later)
                continue
            except ActorError as exc:         # the handlers raised: this batch is not applied
                room.roster_known = False     # (so the next ask carries the times the head had)
                real = _real(events)
                if len(real) > 1:
                    for ev in real:
                        await self._send_batch(room, [ev])
                    return
                return self._failed(room, real[0], exc)
            if reply.kind is Reply.NEED_ROSTER:
                roster, events = room.members(), _real(events)
                continue
            break
        self.counters["batches"] += 1
        if reply.kind is Reply.DUPLICATE:
            self.counters["duplicates"] += 1
        if reply.effects:
            self.effects.apply(room.type_name, room.key, reply.effects, [self.incarnation, number], 0)
        room.roster_known = True
        for ev in events:
            if ev[0] == CONNECT:
                s = room.find(ev[1][0])
                if s is not None:
                    s.joined = True
                    if s.state is SocketState.OPEN:
                        s.peer.joined()
            elif ev[0] == DISCONNECT:
                room.leaving.pop(ev[1], None)

    async def _ask_batch(self, room: Room, number: int, roster: list[Any] | None,
                         events: list[list[Any]], deadline: float) -> BatchReply:
        """One ``$ws`` ask (a roster too large for one message goes first, in parts)."""
        async def ask(r: Any, evs: list[list[Any]]) -> BatchReply:
            return BatchReply.of(await self.transport.ask(
                room.type_name, room.key, websocket.METHOD, [self.incarnation, number, r, evs], {},
                max(deadline - self.loop.time(), 0.05)))

        if roster is None:
            return await ask(None, events)
        parts = websocket.split(roster, self.max_message_bytes // 4)
        if len(parts) == 1:
            return await ask(roster, events)
        for i, records in enumerate(parts[:-1]):
            reply = await ask({"n": len(parts), "i": i, "records": records}, [])
            if reply.kind is not Reply.MORE:
                return reply
        return await ask({"n": len(parts), "i": len(parts) - 1, "records": parts[-1]}, events)

    def _failed(self, room: Room, event: list[Any], exc: ActorError) -> None:
        self.counters["failed_events"] += 1
        kind = HANDLER_OF[event[0]]
        log.warning("%s/%.100s: %s failed: %s", room.type_name, room.key, kind, exc)
        if event[0] == CONNECT:
            s = room.sockets.get(event[1][0])
            if s is not None:
                self.hub.close(s, 1011, f"{kind} failed")
        elif event[0] == DISCONNECT:
            room.leaving.pop(event[1], None)     # the actor dropped it with the failed turn

    def _give_up(self, room: Room, events: list[list[Any]], why: str) -> None:
        real = _real(events)
        self.counters["dropped_events"] += len(real)
        log.warning("%s/%.100s: %d socket events not delivered within max(ask_timeout, "
                    "turn_timeout + 5 s) (%s); closing their sockets", room.type_name, room.key,
                    len(real), why)
        room.roster_known = False            # whatever the worker has, send it ours again
        for ev in real:
            sid = ev[1][0] if ev[0] == CONNECT else ev[1]
            if ev[0] == DISCONNECT:
                room.leaving.pop(sid, None)
            s = room.sockets.get(sid)
            if s is not None:
                self.hub.close(s, 1011, "the actor is unavailable")


def _real(events: list[list[Any]]) -> list[list[Any]]:
    """A batch's socket events without its auto-response head (which is no event)."""
    return events[1:] if events and events[0][0] == AUTO_RESPONDED else events
