"""What the socket monitors of a transport's connections report, acted on.

* A worker slot's connection dropped (``EVENT_DISCONNECTED``): the requests in flight
  on that slot fail at once with :class:`~actorsys.errors.WorkerLost` (ZeroMQ keeps
  queueing new ones until the worker is back on the same endpoint), and the
  transport's ``on_slot_lost`` is called.
* A peer's connection dropped (its process died, say): what is in flight there fails
  with ``WorkerLost``. A peer refused our CURVE key: ZeroMQ does not connect again, so
  the connection is dropped and the next request makes a new one (another node of a
  cluster lets our key in once its router has told its workers the members' keys).
* The router's CURVE handshake failed: why is recorded (named in the error of a request
  that times out); a refused key fails the requests to the router at once, and every
  later one (:mod:`.control`).
* A watched transport (a client's: :mod:`.reachability`) hands the router's and the
  slots' connection events to its :class:`~.reachability.NodeWatch` too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..errors import NodeUnavailable, WorkerLost
from ..log import get_logger
from ..net.keys import handshake_problem
from .reachability import WATCH_EVENTS
from .requests import ROUTER

if TYPE_CHECKING:
    from .transport import AsyncTransport

log = get_logger("client")


class Monitors:
    """The handlers of a transport's monitor events (see the module docstring); given to
    every connection by :class:`~.connections.Connections`. No state of its own.

    Uses of the transport: its ``pending`` (failed; not the asks its ``outbox`` has not
    sent yet), ``wording``, ``watch``,
    ``on_slot_lost``, ``conns`` (a peer's tag, a refused peer's connection),
    ``router_endpoint`` and ``keys``; it sets ``handshake_problem`` and ``refused``.
    """

    __slots__ = ("transport",)

    def __init__(self, transport: AsyncTransport) -> None:
        self.transport = transport

    def on_slot(self, slot: int, frames: list[bytes]) -> None:
        """An event of worker slot ``slot``'s connection."""
        event = event_of(frames)
        if event is None:
            return
        t = self.transport
        if t.watch is not None:
            t.watch.on_slot_event(slot, event)
        if event == zmq.EVENT_DISCONNECTED:
            lost = t.wording.lost
            # (asks still queued in this turn's batch were not sent before the drop)
            keep = t.outbox.unsent(slot) if t.outbox is not None else ()
            n = t.pending.fail_where(slot, lambda p: WorkerLost(lost(p.request, slot)), keep)
            log.debug("worker slot %d went away; %d request(s) in flight failed", slot, n)
            if t.on_slot_lost is not None:
                t.on_slot_lost(slot)

    def on_router(self, frames: list[bytes]) -> None:
        """An event of the router's connection (watched, or CURVE)."""
        event = event_of(frames)
        if event is None:
            return
        t = self.transport
        if t.watch is not None and event & WATCH_EVENTS:
            t.watch.on_router_event(event)
            return
        assert t.router_endpoint is not None
        final, t.handshake_problem = handshake_problem(event, t.router_endpoint, t.keys)
        if final:   # ZeroMQ does not reconnect after a refusal: fail now, not at the deadline
            t.refused = t.handshake_problem
            t.fail_slot(ROUTER, NodeUnavailable(t.refused))

    def on_peer(self, endpoint: str, frames: list[bytes]) -> None:
        """An event of the connection to another endpoint (see the module docstring)."""
        event = event_of(frames)
        if event is None:
            return
        t = self.transport
        if event == zmq.EVENT_DISCONNECTED:
            tag = t.conns.peer_tags.get(endpoint)
            if tag is not None:
                n = t.pending.fail_where(tag, lambda _p: WorkerLost(
                    f"the connection to {endpoint} dropped with the request in flight (its "
                    f"process died?): it may or may not have been carried out"))
                if n:
                    log.info("the connection to %s dropped: %d request(s) in flight failed",
                             endpoint, n)
            return
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and endpoint in t.conns.peers:
            log.info("%s refused this process's CURVE key; connecting again at the next request",
                     endpoint)
            t.conns.forget_peer(endpoint, soon=True)    # not from within its own monitor's callback


def event_of(frames: list[bytes]) -> int | None:
    """The event number of a socket monitor's message (None: not one pyzmq can read)."""
    try:
        return int(parse_monitor_message(frames)["event"])
    except Exception:
        return None
