"""Asks that timed out on a cluster's map: the map is fetched again, and asks to the
slots that did not answer wait for it.

The node the asks went to may be paused or cut off, its connections still up (nothing
tells the client), its lease about to expire and (replicated) its shards to fail over.
:class:`TimeoutPoll` (the transport's ``timeouts``, started by its
:class:`~.pending.PendingTable` when a sweep fails actor requests) fetches the map again,
and again every :data:`TIMEOUT_REFRESH_S` until it changes (at most
:data:`TIMEOUT_POLLS` times): the new map sends the next asks to the new leaders, and
fails the asks still in flight on a node that left it with ``WorkerLost`` at once rather
than at their deadline (:mod:`.maps`). Until the first fetch is in, new asks to those
slots are held (:meth:`TimeoutPoll.hold`) rather than sent to the node that did not
answer; each is sent when the fetch is in, within its one deadline. A single node's map
(no ``nodes``) starts nothing.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import AskTimeout
from ..log import get_logger
from .requests import ActorRequest, Pending

if TYPE_CHECKING:
    from .transport import AsyncTransport

log = get_logger("client")
#: seconds between the map fetches that asks timing out on a cluster's map start, and
#: how many at most (until the map changes): a frozen node's lease expires and its
#: shards fail over within lease_ttl + about a second
TIMEOUT_REFRESH_S, TIMEOUT_POLLS = 0.5, 40


class TimeoutPoll:
    """The map polled after asks timed out on a cluster's map, and the asks held for
    its first fetch (see the module docstring).

    Uses of the transport: its ``loop``, ``map``, ``closed``, ``wording``,
    :meth:`~.maps.MapSource.refresh_map` and ``map_fetch``, and
    :meth:`~.transport.AsyncTransport.send` (with ``hold=False``) for a held ask.

    Invariants: :attr:`task` is the poll while it runs (None once it has ended);
    :attr:`suspects` is not empty only while a poll is under way, from its start, or a
    timeout while one of its fetches is out, until the end of that fetch.
    """

    __slots__ = ("transport", "task", "suspects")

    def __init__(self, transport: AsyncTransport) -> None:
        self.transport = transport
        #: the map fetches that asks timing out started (see :meth:`start`)
        self.task: asyncio.Task[None] | None = None
        #: slots whose asks timed out while that fetch runs: new asks to them wait for it
        self.suspects: set[int] = set()

    def start(self, now: float, slots: set[int]) -> None:
        """Asks to ``slots`` timed out at ``now``: on a cluster's map, fetch the map again
        (unless a poll runs already), holding new asks to those slots until it is in."""
        t = self.transport
        m = t.map
        if m is None or m.nodes is None or t.closed:
            return
        if self.task is not None:         # polling already: hold their asks too
            if t.map_fetch is not None:
                self.suspects |= slots
            return
        self.suspects |= slots
        epoch = m.epoch

        async def poll() -> None:
            try:
                for _ in range(TIMEOUT_POLLS):
                    got = None
                    try:
                        got = await t.refresh_map(timeout=TIMEOUT_REFRESH_S * 4)
                    except Exception as exc:     # (a router down: the reachability watch says so)
                        log.debug("fetching the map after asks timed out failed: %s", exc)
                    finally:
                        self.suspects.clear()
                    if t.closed or (got is not None and got.epoch != epoch):
                        return
                    await asyncio.sleep(TIMEOUT_REFRESH_S)
            finally:
                self.task = None
        self.task = t.loop.create_task(poll())

    def hold(self, request: ActorRequest, slot: int, timeout: float, retries: int,
             deadline: float | None) -> Pending:
        """An actor request to a suspect ``slot``: its record (not in the table), sent
        when the map fetch is in (``deadline``, loop time: default now + ``timeout``)."""
        loop = self.transport.loop
        held = Pending(loop.create_future(), slot, request, timeout, retries, None,
                       loop.time() + timeout if deadline is None else deadline)
        loop.create_task(self._send_after_refresh(held.fut, request, held))
        return held

    async def _send_after_refresh(self, fut: asyncio.Future[Any], request: ActorRequest,
                                  p: Pending) -> None:
        """An ask held by :meth:`hold` while the map is fetched again: sent then, on the
        new map, within its one deadline. A fetch that failed (the router did not answer
        in time) sends it on the map there is; a close fails it with NodeUnavailable."""
        t = self.transport
        try:
            left = p.deadline - t.loop.time()
            refreshing = t.map_fetch
            if refreshing is not None:
                # Waited for, not awaited: the fetch's error is not the ask's. (Awaited, a
                # fetch that gave up failed the ask with the router's NodeUnavailable before
                # its own deadline, and close() with CancelledError, the poll's.)
                await asyncio.wait((refreshing,), timeout=max(left, 0.001))
                if not refreshing.done():
                    raise AskTimeout(t.wording.timed_out(request, p.timeout))
            inner = t.send(request, p.timeout, p.retries, deadline=p.deadline, hold=False)
            fut.set_result(await inner.fut)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)

    def close(self) -> None:
        """The transport is closing: stop polling."""
        if self.task is not None:
            self.task.cancel()
