"""Where a blocking client's subscriptions live: an event loop on a daemon thread of its
own, made at the client's first ``subscribe`` and stopped by its ``close``; and
:class:`BlockingSubscription`, the handle its consumers hold.

A blocking client's lanes (:mod:`.lanes`) run their loops only while a call waits on
them. A subscription needs a loop that runs between the consumer's calls: its
heartbeats must go out while the consumer works on an event (a consumer busy for longer
than three heartbeats would otherwise be taken for gone), and its frames read and
acknowledged as they are taken. So its :class:`~.sublink.Subscriber` and
:class:`~.subscriptions.Subscription` objects, the same as an asyncio client's, run
here, and each call of a :class:`BlockingSubscription` is a coroutine handed to this
loop and waited for (``run_coroutine_threadsafe``): a hop between threads per event,
which a subscription can afford and an ask could not. Events are decoded on the
consumer's thread.

* A call racing the client's ``close`` fails with ``SubscriptionClosed`` ("the client is
  closed"): ``close`` fails every call its stopped loop leaves unanswered.
* A consumer interrupted (Ctrl-C) after its call took a frame loses nothing: the frame
  is given back, and the next call gets it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Generic, TypeVar

from ..errors import SubscriptionClosed
from ..log import get_logger
from ..net.sockets import Context
from .sublink import Subscriber

if TYPE_CHECKING:
    from .subscriptions import Subscription

T = TypeVar("T")

log = get_logger("client")

#: seconds a close waits for the thread to end
CLOSE_SECONDS = 5.0


def _closed() -> SubscriptionClosed:
    return SubscriptionClosed("the client is closed", close_code=1000, reason="the client is closed")


class SubscriptionThread:
    """A loop on a daemon thread, and the client's :class:`~.sublink.Subscriber` on it."""

    def __init__(self, ctx: Context) -> None:
        self.loop = asyncio.new_event_loop()
        self.subscriber = Subscriber(ctx)
        self.closed = False
        self.pid = os.getpid()
        self._lock = threading.Lock()
        #: the calls waiting for the loop now (a close fails those it leaves unanswered)
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="actorsys-subscriptions")
        self._thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(self.loop)
                for t in tasks:
                    t.cancel()
                if tasks:
                    self.loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
            finally:
                self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the thread's loop and wait for its outcome (an interrupt of the
        waiting thread cancels it; the client's close fails it)."""
        with self._lock:
            if self.closed:
                coro.close()
                raise _closed()
            if threading.current_thread() is self._thread:
                coro.close()
                raise RuntimeError("a blocking subscription's call from its own thread would wait forever")
            fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
            self._calls.add(fut)
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            if self.closed:                   # (its task was cancelled by the loop's end)
                raise _closed() from None
            raise
        except BaseException:
            fut.cancel()
            raise
        finally:
            with self._lock:
                self._calls.discard(fut)

    def take(self, sub: Subscription[Any],
             taker: Callable[[], Coroutine[Any, Any, "str | bytes"]]) -> "str | bytes":
        """:meth:`call` of ``taker()``, which takes a frame of ``sub``; if the waiting thread
        is interrupted after it took one, the frame goes back to ``sub``."""
        box: list[str | bytes] = []

        async def taking() -> "str | bytes":
            data = await taker()
            box.append(data)           # (no await between the take and this)
            return data
        try:
            return self.call(taking())
        except BaseException:
            # queued after the cancel of the call's task (if it had not finished): a
            # frame is in the box only if the task took one
            self.post(_give_back, sub, box)
            raise

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon, without waiting (nothing once closed)."""
        if not self.closed:
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:               # (the loop has just closed)
                pass

    def close(self) -> None:
        """End every subscription, close their link, stop the thread (idempotent; a forked
        child leaves its parent's alone). A call still waiting fails with
        ``SubscriptionClosed``."""
        if self.closed or os.getpid() != self.pid:
            return
        try:
            self.call(_now(self.subscriber.close))
        except Exception as exc:       # (the loop is gone: nothing of it to close)
            log.debug("closing the subscriptions failed: %s", exc)
        with self._lock:
            self.closed = True
            calls = list(self._calls)
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            pass
        self._thread.join(CLOSE_SECONDS)
        for fut in calls:
            if not fut.done():
                try:
                    fut.set_exception(_closed())
                except concurrent.futures.InvalidStateError:
                    pass                       # (answered meanwhile)


class BlockingSubscription(Generic[T]):
    """One subscription of a blocking client (see :mod:`.subscriptions`): an iterator and
    a context manager, already open. Its subscription lives on the client's subscription
    thread (this module); every call waits for that thread, from any thread, and several
    threads may read it at once (each event goes to one of them)."""

    def __init__(self, runner: SubscriptionThread, sub: Subscription[T]) -> None:
        self._runner, self._sub = runner, sub

    @property
    def type_name(self) -> str:
        return self._sub.type_name

    @property
    def key(self) -> str:
        return self._sub.key

    @property
    def id(self) -> str | None:
        """The connection's id (``conn.id`` in the actor)."""
        return self._sub.id

    @property
    def closed(self) -> bool:
        """It has ended (its remaining frames may still be read)."""
        return self._sub.closed

    def __iter__(self) -> BlockingSubscription[T]:
        return self

    def __next__(self) -> T:
        try:
            data = self._runner.take(self._sub, self._sub.next_frame)
        except StopAsyncIteration:
            raise StopIteration from None
        return self._sub.decode(data)

    def receive(self, timeout: float | None = None) -> T:
        """See :meth:`Subscription.receive <actorsys.client.subscriptions.Subscription.receive>`."""
        return self._sub.decode(self._runner.take(self._sub, lambda: self._sub.receive_frame(timeout)))

    def send(self, data: Any) -> None:
        """See :meth:`Subscription.send <actorsys.client.subscriptions.Subscription.send>`."""
        self._runner.call(_now(self._sub.send, data))

    def close(self) -> None:
        """See :meth:`Subscription.close <actorsys.client.subscriptions.Subscription.close>`
        (idempotent; a closed client's do nothing)."""
        try:
            self._runner.call(self._sub.close())
        except SubscriptionClosed:
            if not self._runner.closed:
                raise

    def __enter__(self) -> BlockingSubscription[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BlockingSubscription {self._sub.type_name}/{self._sub.key:.100}>"


def _give_back(sub: Subscription[Any], box: list["str | bytes"]) -> None:
    if box:
        sub.give_back(box.pop())


async def _now(fn: Callable[..., None], *args: Any) -> None:
    fn(*args)
