"""Driving the asyncio transport from blocking code: one lane per thread.

The blocking client (:mod:`.blocking`) gives each thread that uses it a :class:`Lane`:
a private event loop and an :class:`~.transport.AsyncTransport` on it, with the
thread's own ZeroMQ sockets (a ZeroMQ socket must not be shared between threads). A
call sends its request at once and waits on the calling thread, so there is no
hand-off between threads (a loop thread shared by all callers would add a thread
switch each way):

* an actor request (:meth:`Lane.wait_pending`) first waits on the slot connections
  alone (its own slot's socket and monitor, and the others' sockets, where a follower
  of a replicated shard may deliver its reply: :meth:`~.transport.AsyncTransport.block_on`),
  which hands the reply, or the drop, to the transport exactly as its loop would;
* anything else, and an actor request that needs more (a resend after
  ``wrong_shard``, its deadline), runs the private loop (``run_until_complete``) until
  its future is settled.

A turn of the event loop per ask cost about 50 us of a blocking round trip (measured
against the poll loop the blocking client had before it used the transport); the
first path costs what that poll loop did.

The private loop is never made the thread's current loop. A thread that is running an
event loop of its own (a coroutine calling the blocking client) cannot run a second
one; there the wait runs the private loop on a short-lived helper thread while the
calling thread blocks, as a blocking call from a coroutine always has.

A lane is held by its thread (``threading.local``) and closed when the thread ends, or
by :meth:`Lane.close` (the client's ``close``). A client's lanes are its
:class:`ThreadLanes`: it makes a thread's lane at the thread's first call and hands
every lane the newest shard map any of them fetched.
"""
from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any, Callable, Coroutine, NamedTuple, TypeVar

from ..errors import NodeUnavailable
from ..log import get_logger
from ..protocol.shardmap import ShardMap
from .requests import Pending
from .transport import AsyncTransport

T = TypeVar("T")

log = get_logger("client")


class Lane:
    """One thread's event loop and transport (made by ``make`` on the new loop)."""

    __slots__ = ("loop", "transport", "linger_ms", "pid", "__weakref__")

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], AsyncTransport],
                 linger_ms: int = 0) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.transport = make(self.loop)
        except BaseException:
            self.loop.close()
            raise
        self.linger_ms = linger_ms     # on close: how long a tell just sent may take to leave
        self.pid = os.getpid()         # the process that owns the loop's epoll and the sockets

    def wait_pending(self, p: Pending) -> Any:
        """The result of an actor request just sent on this lane's transport."""
        fut = p.fut
        if not fut.done():
            self.transport.block_on(p, self.loop.time() + p.timeout)
            if not fut.done():
                return self.wait(fut)
        return fut.result()

    def wait(self, fut: asyncio.Future[T]) -> T:
        """The result of ``fut``, a request just sent on this lane's transport: runs the
        loop until the request is answered, failed or past its deadline."""
        try:
            return self.loop.run_until_complete(fut)
        except RuntimeError:
            if fut.done():
                raise            # the request's own outcome
            if self.loop.is_closed():
                raise NodeUnavailable("client is closed") from None
            return self._wait_on_helper(fut)   # this thread runs another loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of the transport (connect, status, list, ...) on this lane."""
        if self.loop.is_closed():
            coro.close()
            raise NodeUnavailable("client is closed")
        return self.wait(self.loop.create_task(coro))

    def _wait_on_helper(self, fut: asyncio.Future[T]) -> T:
        log.debug("the calling thread runs an event loop: waiting on a helper thread")
        helper = threading.Thread(target=self._run_until, args=(fut,), daemon=True,
                                  name="actorsys-client-wait")
        helper.start()
        helper.join()
        if not fut.done():
            raise NodeUnavailable("client is closed")
        return fut.result()

    def _run_until(self, fut: asyncio.Future[Any]) -> None:
        try:
            self.loop.run_until_complete(fut)
        except BaseException:       # the waiting thread reads the outcome from fut
            pass

    def close(self) -> None:
        """Close the transport (failing what is pending) and the loop; idempotent.

        In a forked child it does nothing: the loop's epoll instance is shared with the
        parent, and unregistering the sockets there would deafen the parent's loop. If
        another thread is waiting on this lane, the transport is closed from that thread's
        loop, which fails its wait at once; the loop closes when that thread's lane goes.
        """
        if os.getpid() != self.pid or self.loop.is_closed():
            return
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.transport.close, self.linger_ms)
            return
        self.transport.close(self.linger_ms)
        self._finish_tasks()
        self.loop.close()

    def _finish_tasks(self) -> None:
        """Run the transport's tasks that close() cancelled or failed (the map poll that
        asks timing out started, an ask held for its fetch) to their end: closed with a
        task pending, the loop would have it logged as "Task was destroyed but it is
        pending!" when it is collected (the poll outlives the ask that started it, and a
        lane's loop runs only during a call)."""
        tasks = asyncio.all_tasks(self.loop)
        if not tasks:
            return
        try:
            self.wait(self.loop.create_task(asyncio.wait(tasks, timeout=1.0)))
        except Exception as exc:
            log.debug("the client's tasks did not end at close: %s", exc)

    def __del__(self) -> None:      # the thread ended: its sockets and loop go with it
        try:
            self.close()
        except Exception:
            pass


class MapInfo(NamedTuple):
    """A shard map and the node limits and endpoints sent with it."""
    map: ShardMap
    max_message_bytes: int
    tree_endpoint: str | None
    subscribers: str | None


class Newest:
    """The newest shard map any of a client's threads has fetched: the other threads
    adopt it before their next request (so a refresh on one thread serves all)."""

    __slots__ = ("info",)

    def __init__(self) -> None:
        self.info: MapInfo | None = None

    def take(self, t: AsyncTransport) -> None:
        if t.map is not None:
            self.info = MapInfo(t.map, t.max_message_bytes, t.tree_endpoint, t.subscribers)


class ThreadLanes:
    """A blocking client's lanes, one per thread that calls it: made at the thread's
    first call (its transport by ``make``, on the new lane's loop), brought up to date
    before each call (the newest map, a map the node's watch wants fetched first), and
    closed when the thread ends or by :meth:`close`.

    Invariants: :attr:`closed` goes from False to True once, under ``_lock``, which also
    guards :attr:`all` (every lane not yet collected); no lane is made once it is True.
    :attr:`pid` is the process that made the lanes: a forked child leaves the parent's
    sockets alone.
    """

    __slots__ = ("make", "linger_ms", "newest", "closed", "pid", "local", "all", "_lock")

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], AsyncTransport],
                 linger_ms: int) -> None:
        self.make = make
        self.linger_ms = linger_ms     # a lane's close gives messages still queued this long
        #: the newest map any lane fetched (its transports' ``on_map``)
        self.newest = Newest()
        self.closed = False
        self.pid = os.getpid()
        self.local = threading.local()  # .lane: this thread's
        self.all: weakref.WeakSet[Lane] = weakref.WeakSet()
        self._lock = threading.Lock()

    def lane(self) -> Lane:
        """This thread's lane, made now if it has none, on the newest map, and with the
        map fetched first if the node's watch says so (the node is back)."""
        try:
            lane: Lane = self.local.lane
        except AttributeError:
            lane = self._new()
        info = self.newest.info
        if info is not None and lane.transport.map is not info.map:
            lane.transport.set_map(*info)
        watch = lane.transport.watch
        if watch is not None and watch.on_call():    # the node is back: its map first
            lane.run(watch.fetch_map())
        return lane

    def _new(self) -> Lane:
        with self._lock:
            if self.closed:
                raise NodeUnavailable("client is closed")
            lane = Lane(self.make, self.linger_ms)
            self.all.add(lane)
        self.local.lane = lane
        return lane

    def close(self) -> bool:
        """Close every thread's lane (idempotent); whether they were this process's to
        close (False when closed already, or in a forked child)."""
        if self.closed:
            return False
        with self._lock:
            self.closed = True
            lanes = list(self.all)
            self.all.clear()
        if os.getpid() != self.pid:
            return False     # a forked child: the sockets, loops and context are its parent's
        for lane in lanes:
            lane.close()
        return True
