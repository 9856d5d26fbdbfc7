"""The table of a transport's requests awaiting their replies, and their deadlines.

:class:`PendingTable` is owned by :class:`~.transport.AsyncTransport` (its ``pending``);
every request sent there is in it (:class:`~.requests.Pending`) until its reply, its
deadline, the loss of its connection or the transport's ``close``. Two kinds of entry:

* an actor request (ask, spawn, stop; :meth:`PendingTable.add`) has its deadline in one
  heap swept by one timer (a timer per ask cost about a quarter of a pipelining client's
  CPU): past it, the request fails with :class:`~actorsys.errors.AskTimeout`, and the
  slots whose requests timed out are handed to ``on_timeouts`` (the transport's
  :class:`~.timeouts.TimeoutPoll`);
* a control request (:meth:`PendingTable.add_timed`) brings its own timer
  (:mod:`.control`), which takes it out of :attr:`PendingTable.entries` itself.

What the entries are resent or failed with is the transport's to say: the table fails
them with the error it is given (:meth:`~PendingTable.fail_where`), and takes out the
ones to be resent (:meth:`~PendingTable.take_where`).
"""
from __future__ import annotations

import asyncio
import heapq
from typing import Callable, Container

from ..errors import ActorError, AskTimeout, NodeUnavailable
from ..protocol.messages import Request
from .requests import Pending, Wording


class PendingTable:
    """The requests one transport awaits replies to, under their request ids.

    Invariants: an entry leaves :attr:`entries` before its future is settled (see
    :class:`~.requests.Pending`), and :attr:`entries` is never replaced (the transport
    and its blocking wait keep a reference to it). Every actor request in it has
    ``(deadline, request id)`` in the heap ``_deadlines``, which may also hold the entries
    of requests already gone (at most ``2 * len(entries) + 1024`` before it is compacted);
    while the heap is not empty, the one timer ``_sweep_handle`` is armed at
    ``_sweep_at``, no later than the heap's first deadline.
    """

    __slots__ = ("loop", "wording", "on_timeouts", "entries", "_deadlines", "_sweep_at",
                 "_sweep_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, wording: Wording,
                 on_timeouts: Callable[[float, set[int]], None]) -> None:
        self.loop = loop
        self.wording = wording          # the AskTimeout's text
        #: called with the time and the slots of the actor requests a sweep failed
        self.on_timeouts = on_timeouts
        #: request id -> the request awaiting its reply
        self.entries: dict[int, Pending] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._sweep_at: float | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None

    def add(self, p: Pending) -> None:
        """An actor request just sent: in the table, its deadline ``p.deadline`` swept."""
        rid = p.request.rid
        self.entries[rid] = p
        self._add_deadline(p.deadline, rid)

    def add_timed(self, p: Pending) -> None:
        """A control request just sent, with its own deadline timer ``p.timer``."""
        self.entries[p.request.rid] = p

    def fail_where(self, slot: int, error: Callable[[Pending], ActorError],
                   keep: Container[int] = ()) -> int:
        """Fail every request sent to ``slot`` (a worker slot, ROUTER or a PEER tag) with
        ``error(p)``, but those whose request id is in ``keep``; how many there were."""
        pending = self.entries
        rids = [rid for rid, p in pending.items() if p.slot == slot and rid not in keep]
        for rid in rids:
            p = pending.pop(rid)
            if p.timer is not None:
                p.timer.cancel()
            if not p.fut.done():
                p.fut.set_exception(error(p))
        return len(rids)

    def fail_all(self, error: Callable[[Pending], ActorError]) -> int:
        """Fail every request, slot by slot, with ``error(p)``; how many there were."""
        n = 0
        for slot in {p.slot for p in self.entries.values()}:
            n += self.fail_where(slot, error)
        return n

    def take_where(self, slot: int, kind: type[Request]) -> list[Pending]:
        """The requests of type ``kind`` sent to ``slot``, taken out of the table (their
        timers cancelled, their futures left as they are: to be resent)."""
        taken = []
        pending = self.entries
        for rid, p in list(pending.items()):
            if p.slot != slot or not isinstance(p.request, kind):
                continue
            del pending[rid]
            if p.timer is not None:
                p.timer.cancel()
            taken.append(p)
        return taken

    def renumber(self, moved: dict[int, int]) -> None:
        """Slot ``i`` is slot ``moved[i]`` from now on (a map with other worker endpoints)."""
        pending = self.entries
        for rid, p in list(pending.items()):
            if p.slot in moved:
                pending[rid] = p._replace(slot=moved[p.slot])

    def close(self) -> None:
        """Fail every request with NodeUnavailable (the transport is closing), and stop
        sweeping."""
        for p in self.entries.values():
            if p.timer is not None:
                p.timer.cancel()
            if not p.fut.done():
                p.fut.set_exception(NodeUnavailable("client closed"))
                p.fut.exception()     # retrieved: a future nobody awaits any more is no error
        self.entries.clear()
        self._deadlines.clear()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()

    # -- deadlines of actor requests: one heap, one timer --------------------------------
    def _add_deadline(self, deadline: float, rid: int) -> None:
        heap = self._deadlines
        if len(heap) > 2 * len(self.entries) + 1024:   # answered asks leave stale entries
            self._deadlines = heap = [e for e in heap if e[1] in self.entries]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, rid))
        if self._sweep_at is None or deadline < self._sweep_at:
            if self._sweep_handle is not None:
                self._sweep_handle.cancel()
            self._sweep_at = deadline
            self._sweep_handle = self.loop.call_at(deadline, self._sweep)

    def _sweep(self) -> None:
        self._sweep_at = self._sweep_handle = None
        now = self.loop.time()
        heap, pending = self._deadlines, self.entries
        expired: set[int] = set()
        while heap and heap[0][0] <= now:
            _, rid = heapq.heappop(heap)
            p = pending.pop(rid, None)
            if p is not None and not p.fut.done():
                p.fut.set_exception(AskTimeout(self.wording.timed_out(p.request, p.timeout)))
                expired.add(p.slot)
        if expired:
            self.on_timeouts(now, expired)
        if heap:
            self._sweep_at = heap[0][0]
            self._sweep_handle = self.loop.call_at(self._sweep_at, self._sweep)
