"""Where a blocking client's subscriptions live: an event loop on a daemon thread of its
own, made at the client's first ``subscribe`` and stopped by its ``close``.

A blocking client's lanes (:mod:`.lanes`) run their loops only while a call waits on
them. A subscription needs a loop that runs between the consumer's calls: its
heartbeats must go out while the consumer works on an event (a consumer busy for longer
than three heartbeats would otherwise be taken for gone), and its frames read and
acknowledged as they are taken. So its :class:`~.sublink.Subscriber` and
:class:`~.subscriptions.Subscription` objects, the same as an asyncio client's, run
here, and each call of a :class:`~.subscriptions.BlockingSubscription` is a coroutine
handed to this loop and waited for (``run_coroutine_threadsafe``): a hop between
threads per event, which a subscription can afford and an ask could not.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from typing import Any, Callable, Coroutine, TypeVar

from ..errors import SubscriptionClosed
from ..log import get_logger
from ..net.sockets import Context
from .sublink import Subscriber

T = TypeVar("T")

log = get_logger("client")

#: seconds a close waits for the thread to end
CLOSE_SECONDS = 5.0


class SubscriptionThread:
    """A loop on a daemon thread, and the client's :class:`~.sublink.Subscriber` on it."""

    def __init__(self, ctx: Context) -> None:
        self.loop = asyncio.new_event_loop()
        self.subscriber = Subscriber(ctx)
        self.closed = False
        self.pid = os.getpid()
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
        waiting thread cancels it)."""
        if self.closed:
            coro.close()
            raise SubscriptionClosed("the client is closed", close_code=1000,
                                     reason="the client is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking subscription's call from its own thread would wait forever")
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()
            raise

    def close(self) -> None:
        """End every subscription, close their link, stop the thread (idempotent; a forked
        child leaves its parent's alone)."""
        if self.closed or os.getpid() != self.pid:
            return
        try:
            self.call(_now(self.subscriber.close))
        except Exception as exc:       # (the loop is gone: nothing of it to close)
            log.debug("closing the subscriptions failed: %s", exc)
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CLOSE_SECONDS)


async def _now(fn: Callable[[], None]) -> None:
    fn()
