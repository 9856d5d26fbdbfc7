"""Waiting for a reply on the calling thread, without running the transport's loop.

The blocking client (:mod:`.lanes`) sends an actor request and then, rather than turn
the event loop (about 50 us of a round trip), polls the slot connections itself:
:class:`BlockingWait` (the transport's ``waits``, behind
:meth:`~.transport.AsyncTransport.block_on` and
:meth:`~.transport.AsyncTransport.poll_slots`) hands what arrives to the transport's
reply handler and the monitors' events to their handler, exactly as the loop would.
It returns early, the request unsettled, whenever the request needs the loop: a resend
after ``wrong_shard``, its deadline, a map fetch (the transport's
:class:`~.timeouts.TimeoutPoll`, or a watched client's cluster refresh).

A follower of a replicated shard delivers the leader's reply on whichever connection
the transport has to its worker, so the wait reads every slot connection's socket, not
only the request's.
"""
from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, cast

import zmq

from ..net.sockets import Conn, Socket
from .requests import Pending

if TYPE_CHECKING:
    from .transport import AsyncTransport

_NOBLOCK, _EVENTS, _POLLIN = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)


class BlockingWait:
    """A blocking caller's wait on a transport's slot connections (see the module
    docstring).

    Uses of the transport: its ``loop`` (its clock), ``conns.slots``, ``pending``,
    ``watch`` (a watched transport's wait is its :meth:`~.reachability.NodeWatch.poll`)
    and ``timeouts``; replies go to ``on_reply``.

    Invariant: ``_poller`` is None or ``(connections, other socket, poller)``: a poller
    registered on the first connection's monitor, the other socket and the other
    connections' sockets, made again only when those change.
    """

    __slots__ = ("transport", "on_reply", "_poller")

    def __init__(self, transport: AsyncTransport, on_reply: Callable[[list[bytes]], None]) -> None:
        self.transport = transport
        self.on_reply = on_reply
        self._poller: tuple[tuple[Conn, ...], Socket | None, zmq.Poller] | None = None

    def poll_slots(self, c: Conn, timeout_ms: int, more: Socket | None = None) -> dict[Any, int]:
        """Wait up to ``timeout_ms`` for ``c``'s socket or monitor, any other slot
        connection's socket or ``more`` to be readable; the ready ones."""
        conns = (c, *self.transport.conns.slots.values())       # (c is one of them: its monitor too)
        made = self._poller
        if made is None or made[0] != conns or made[1] is not more:
            poller = zmq.Poller()
            for s in (c.monitor, more, *(x.sock for x in conns[1:])):
                if s is not None:
                    poller.register(s, zmq.POLLIN)
            made = self._poller = (conns, more, poller)
        return dict(made[2].poll(timeout_ms))

    def block_on(self, p: Pending, until: float) -> None:
        """Wait until ``p`` is settled by a reply or a drop, or until ``until`` (loop
        time), handling what arrives as the loop would; return early, unsettled, when
        ``p`` needs the loop (see the module docstring)."""
        t = self.transport
        c = t.conns.slots.get(p.slot)
        if c is None or t.timeouts.task is not None:     # (that poll needs the loop)
            return
        fut, rid, pending = p.fut, p.request.rid, t.pending.entries
        on_reply, time = self.on_reply, t.loop.time
        poll = partial(self.poll_slots, c) if t.watch is None else partial(t.watch.poll, c)
        while not fut.done() and rid in pending:
            ms = math.ceil((until - time()) * 1000)
            if ms <= 0:
                return
            ready = poll(ms)
            if not ready and t.watch is not None and t.watch.fetching:
                return               # a cluster's map is being fetched: that needs the loop
            # replies first (a drop after the reply is not its loss), on c's socket or on
            # another slot's (a follower delivering the leader's reply); a reply may make
            # a connection (a follower named: the transport's _via), hence the tuple
            for conn in tuple(t.conns.slots.values()):
                sock = conn.sock
                if sock not in ready:
                    continue
                while cast(int, sock.getsockopt(_EVENTS)) & _POLLIN:
                    on_reply(sock.recv_multipart(_NOBLOCK))
                    if fut.done() or rid not in pending:
                        break        # what is left is read at the next wait or loop run
                conn.pump.kick()     # (its FD's edge was taken here: the loop looks again)
                if fut.done() or rid not in pending:
                    return
            if c.monitor is not None and c.monitor in ready:
                c.drain_monitor()

    def forget(self) -> None:
        """Drop the poller (the transport closed its connections)."""
        self._poller = None
