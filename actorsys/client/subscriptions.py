"""Subscriptions: what an actor sends its connections, received in any Python program.

In the user's words::

    async with aclient.subscribe(ref, tag="news") as sub:   # or a proxy, or (type, key)
        async for event in sub:                             # str (text) or bytes (binary)
            ...
    with client.subscribe(ref, decode=json.loads) as sub:   # the blocking client
        for event in sub:
            ...

* A subscription is a connection of the actor, held by the node's gateway like a
  browser's WebSocket (``actorsys/actor/connection.py``): the actor sees
  ``on_connect(conn)`` with ``conn.kind == "python"``, its ``conn.query`` the ``query=``
  map, tagged ``tag`` from the start; it gets what the actor ``self.broadcast``\\ s (by
  the tag rules) and ``conn.send``\\ s, in order; :meth:`Subscription.send` arrives as
  ``on_message``; closing it is ``on_disconnect``. The gateway must be configured
  (``[gateway]``); the client finds it through the router it is connected to. Every
  guarantee of a socket holds: nothing a crash could take back is ever received (the
  output gate), and across a kill -9 of the actor's worker the subscription stays open
  and the effects of committed socket-event turns arrive exactly once.
* Opening (``await``, ``async with``, the first ``async for``; the blocking client's
  ``subscribe`` itself) returns once ``on_connect`` has committed, so every broadcast
  after it reaches the subscription; within ``timeout`` (the client's ask timeout),
  else ``AskTimeout``. Refused: ``UnknownActorType``, ``Overloaded`` (the gateway's
  ``max_connections``, or this client's subscriptions' windows together past
  :data:`~actorsys.protocol.subs.CONNECTION_CREDIT`), ``BadRequest`` (a key that is no
  actor's, before anything is sent; the node has no gateway); an ``on_connect`` that
  raises or closes with another code than 1000: ``SubscriptionClosed``. An open that
  is interrupted (cancelled, Ctrl-C) unsubscribes: nothing is left open.
* Events: a text frame is a ``str``, a binary one ``bytes``; what the actor sends as a
  dict or list arrives as its JSON text, so ``decode=json.loads`` gives it back (any
  ``decode(str | bytes) -> T`` makes a ``Subscription[T]``; one that raises raises in
  the consumer, and that event is taken). Several consumers may read one subscription
  at once: each event goes to one of them.
* The end: :meth:`~Subscription.close` (or leaving the ``with``) unsubscribes, and the
  actor gets ``on_disconnect``; ``conn.close()`` from the actor (code 1000) ends the
  iteration after the frames sent before it. Any other end raises
  :class:`~actorsys.errors.SubscriptionClosed` (after the frames that came before it),
  saying why: not reading fast enough (1013), the gateway stopping (1001), the
  connection to the gateway lost or silent (1006: a gateway restart ends subscriptions
  as it ends browsers' sockets; subscribe again), a message too large (1009) or a
  protocol error (1002), the actor's own close code. ``receive`` raises it at a normal
  end too (code 1000).
* Bounded: the gateway sends at most ``window`` frames (and 4 MiB) ahead of what the
  consumer has taken; the client acknowledges as it takes them. A consumer that falls
  behind leaves frames waiting at the gateway, whose limits for every socket (10,000
  frames or 8 MiB; one frame not taken within 10 s with the window full) close it with
  1013. Nothing grows without bound on either side.
* Liveness: heartbeats each way every ``subscriber_heartbeat`` seconds (the gateway's
  config); a client silent for three is closed by the gateway (its actor gets
  ``on_disconnect``), a gateway silent for three ends the client's subscriptions (1006).
  The blocking client keeps its subscriptions on a thread of their own, so a consumer
  busy between two events is not taken for gone.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Generator, Generic, Protocol, TypeVar, Union, cast

from ..errors import AskTimeout, MessageTooLarge, SubscriptionClosed
from ..protocol import subs, wire
from ..protocol.subs import Window, size_of
from ..protocol.ws import frame_of
from ..proxy import ProxyBase, address_of

if TYPE_CHECKING:
    from .sublink import Subscriber, SubscriberLink, Where

T = TypeVar("T")

_NEW, _OPENING, _OPEN, _ENDED = "new", "opening", "open", "ended"


class Addressed(Protocol):
    """An actor's handle: a client's ``Ref`` or ``AsyncRef``."""

    @property
    def type_name(self) -> str: ...

    @property
    def key(self) -> str: ...


#: what ``subscribe`` takes to name an actor: a ref, a typed proxy, or ``(type_name, key)``
Target = Union[Addressed, ProxyBase[Any], "tuple[str, str]"]


def target_of(target: Any) -> tuple[str, str]:
    """The actor ``subscribe`` names, checked before anything is sent: ``TypeError`` for
    no actor's name, ``BadRequest`` for a key that is no actor's (``wire.check_key``)."""
    type_name, key = address_of(target)
    wire.check_key(key)
    return type_name, key


def options(tag: Any, query: Any, window: Any) -> dict[str, str]:
    """``subscribe``'s options, checked before anything is sent (``TypeError`` or
    ``ValueError`` naming the option: :func:`~actorsys.protocol.subs.check_options`, the
    gateway's check); the query as sent."""
    query = {} if query is None else query
    subs.check_options(tag, window, query)
    return dict(query)




class Subscription(Generic[T]):
    """One subscription of an asyncio client (see the module docstring): an async
    iterator and an async context manager; ``await`` it to open it. Use it on the
    client's event loop. The methods without a docstring are for its link."""

    def __init__(self, subscriber: Subscriber, where: Callable[[], Where], type_name: str,
                 key: str, *, tag: str | None, query: dict[str, str],
                 decode: Callable[["str | bytes"], T] | None, window: int,
                 timeout: float) -> None:
        self.type_name, self.key, self.tag = type_name, key, tag
        #: the connection's id (``conn.id`` in the actor), once opened
        self.id: str | None = None
        #: the largest message :meth:`send` may send, in bytes (the gateway's), once opened
        self.max_message_bytes: int | None = None
        self._subscriber, self._where = subscriber, where
        self._query, self._decode = query, decode
        self._window_frames, self._timeout = window, timeout
        self._state = _NEW
        self._link: SubscriberLink | None = None
        self._sid = 0
        self._opened: asyncio.Future[None] | None = None
        self._queue: deque[str | bytes] = deque()
        #: frames a consumer took and did not get (an interrupted blocking call): first out
        self._returned: deque[str | bytes] = deque()
        self._window: Window | None = None
        self._taken = 0
        #: how it ended (None: normally, or not yet)
        self._end: SubscriptionClosed | None = None
        #: the consumers waiting for a frame (or the end): all woken by each
        self._waiters: set[asyncio.Future[None]] = set()

    def describe(self) -> str:
        return f"subscription to {self.type_name}/{self.key:.100}"

    @property
    def closed(self) -> bool:
        """It has ended (its remaining frames may still be read)."""
        return self._state is _ENDED

    @property
    def awaiting_open(self) -> bool:
        """Its ``sub`` is sent and the gateway has not opened it (an ``err`` refuses it)."""
        return self._state is _OPENING and self._window is None

    # -- opening ---------------------------------------------------------------------------
    async def open(self) -> Subscription[T]:
        """Open it (once; see the module docstring); returns it."""
        if self._opened is None:
            if self._state is _ENDED:
                return self
            link = self._subscriber.link(self._where)   # (BadRequest: no gateway; nothing changed)
            self._opened = asyncio.get_running_loop().create_future()
            self._link, self._state = link, _OPENING
            try:
                self._sid = link.start(self, self._request)
            except SubscriptionClosed as exc:    # (the link was lost at the send)
                self._finish(exc)
                raise
        opened = self._opened
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(opened)
        except TimeoutError:
            if opened.done():               # (it came with the deadline: its outcome wins)
                opened.result()
                return self
            now = self._link
            problem = f" ({now.problem})" if now is not None and now.problem else ""
            error = AskTimeout(f"{self.describe()}: not open within {self._timeout:g} s: the actor's "
                               f"on_connect did not commit, or the gateway did not answer{problem}")
            self._unsubscribe()
            self.on_end(error)
            raise error from None
        except BaseException as exc:
            if not (opened.done() and not opened.cancelled() and opened.exception() is exc):
                self.abandon(f"its opening was interrupted ({type(exc).__name__})")
            raise                           # (not the open's own outcome: it is undone)
        return self

    def _request(self, sid: int) -> list[Any]:
        return [subs.SUB, sid, self.type_name, self.key, self.tag, self._window_frames, self._query]

    def __await__(self) -> Generator[Any, None, Subscription[T]]:
        return self.open().__await__()

    async def __aenter__(self) -> Subscription[T]:
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- receiving -------------------------------------------------------------------------
    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        return self.decode(await self.next_frame())

    async def receive(self, timeout: float | None = None) -> T:
        """The next event, waiting at most ``timeout`` seconds (None: until one comes):
        ``TimeoutError`` past it (nothing is lost), ``SubscriptionClosed`` at the end
        (``close_code`` 1000 for a normal one)."""
        return self.decode(await self.receive_frame(timeout))

    def decode(self, data: "str | bytes") -> T:
        """An event as the consumer gets it (``decode=``'s, if given)."""
        return cast(T, data) if self._decode is None else self._decode(data)

    async def next_frame(self) -> "str | bytes":
        """The next event as it came (not decoded: :meth:`__anext__` decodes it); the end
        raises ``StopAsyncIteration`` (normal) or its ``SubscriptionClosed``."""
        if self._state is _NEW or self._state is _OPENING:
            await self.open()
        while True:
            if self._returned:
                return self._returned.popleft()
            if self._queue:
                data = self._queue.popleft()
                self._took()
                return data
            if self._state is _ENDED:
                if self._end is None:
                    raise StopAsyncIteration
                raise self._end
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)

    async def receive_frame(self, timeout: float | None = None) -> "str | bytes":
        """:meth:`receive`, not decoded."""
        try:
            async with asyncio.timeout(timeout):
                return await self.next_frame()
        except StopAsyncIteration:
            raise SubscriptionClosed(f"{self.describe()} has ended", close_code=1000,
                                     reason="ended") from None
        except AskTimeout:
            raise                       # (opening it took too long)
        except TimeoutError:
            raise TimeoutError(f"{self.describe()}: nothing arrived within {timeout:g} s") from None

    def give_back(self, data: "str | bytes") -> None:
        """A frame a consumer took and never got (its blocking call was interrupted after
        the take): the next take gets it."""
        self._returned.appendleft(data)
        self._wake()

    def _took(self) -> None:
        self._taken += 1
        if self._state is not _ENDED and self._link is not None:
            self._link.ack_soon(self._sid, self)

    def acknowledge(self) -> int | None:
        w = self._window
        if w is None or self._taken <= w.acked or self._state is _ENDED:
            return None
        w.ack(self._taken)
        return self._taken

    # -- sending and closing ---------------------------------------------------------------
    def send(self, data: Any) -> None:
        """Send ``data`` to the actor's ``on_message`` (``str``: text, ``bytes``: binary,
        anything else: JSON text); it leaves at the call. ``MessageTooLarge`` past the
        gateway's ``max_message_bytes`` (bytes: a text's UTF-8); after the end, the end's
        ``SubscriptionClosed``."""
        if self._state is _ENDED:
            raise self._end or SubscriptionClosed(f"{self.describe()} has ended", close_code=1000,
                                                  reason="ended")
        if self._link is None:
            raise RuntimeError(f"{self.describe()} is not open: await it (or use async with) first")
        frame = frame_of(data, "a subscription")
        size = size_of(frame)
        if self.max_message_bytes is not None and size > self.max_message_bytes:
            raise MessageTooLarge(f"a message of {size} bytes; the gateway takes at most "
                                  f"{self.max_message_bytes} (its max_message_bytes)")
        self._link.send([subs.MSG, self._sid, frame])

    async def close(self) -> None:
        """Unsubscribe (the actor gets ``on_disconnect``); the iteration stops, and what
        had arrived and was not taken is dropped. Idempotent."""
        if self._state is not _ENDED:
            self._unsubscribe()
        self.end_here("closed by this client")

    def abandon(self, why: str) -> None:
        """Unsubscribe (if it is not over) and end it with ``SubscriptionClosed(why)``
        (code 1000): its open was interrupted. Idempotent."""
        if self._state is not _ENDED:
            self._unsubscribe()
            self._queue.clear()
            self._finish(SubscriptionClosed(f"{self.describe()}: {why}", close_code=1000,
                                            reason=why))

    def _unsubscribe(self) -> None:
        link = self._link
        if link is not None and self._sid:
            link.forget(self._sid)
            if link.lost is None:
                try:
                    link.send([subs.BYE, self._sid])
                except SubscriptionClosed:
                    pass

    def end_here(self, why: str) -> None:
        self._queue.clear()
        self._finish(None)

    # -- what the gateway sends (by the link) ----------------------------------------------
    def on_open(self, params: dict[str, Any]) -> None:
        try:
            self._window = Window(int(params["window"]), int(params["window_bytes"]))
            self.id = str(params["id"])
            self.max_message_bytes = int(params["max_message_bytes"])
        except (KeyError, TypeError, ValueError):
            self._broken("the gateway's open is malformed")

    def on_ok(self) -> None:
        if self._state is _OPENING:
            self._state = _OPEN
            if self._opened is not None and not self._opened.done():
                self._opened.set_result(None)

    def on_frame(self, seq: int, data: "str | bytes") -> None:
        if self._state is _ENDED:
            return
        w = self._window
        if w is None:
            return self._broken("a frame came before the subscription was open")
        if seq != w.sent + 1:
            return self._broken(f"frame {seq} came after frame {w.sent}: frames were lost")
        size = size_of(data)
        if not w.fits(size):
            return self._broken(f"the gateway sent past the window ({w.frames} frames, "
                                f"{w.nbytes} bytes)")
        w.add(size)
        self._queue.append(data)
        self._wake()

    def on_closed(self, code: int, reason: str) -> None:
        if code == 1000:
            self._finish(None)
            return
        who = "the actor" if 3000 <= code <= 4999 else "the gateway"
        self._finish(SubscriptionClosed(f"{self.describe()}: closed by {who} ({code}: {reason})",
                                        close_code=code, reason=reason))

    def on_end(self, error: BaseException) -> None:
        opened = self._opened
        if not isinstance(error, SubscriptionClosed) and opened is not None and not opened.done():
            opened.set_exception(error)           # (open() raises what refused it)
            opened.exception()
        self._finish(error if isinstance(error, SubscriptionClosed) else _ended_by(error))

    def _broken(self, why: str) -> None:
        self._unsubscribe()
        self._finish(SubscriptionClosed(f"{self.describe()}: {why}", close_code=1002, reason=why))

    def _finish(self, end: SubscriptionClosed | None) -> None:
        if self._state is _ENDED:
            return
        self._state, self._end = _ENDED, end
        opened = self._opened
        if opened is not None and not opened.done():
            if end is None:
                opened.set_result(None)
            else:
                opened.set_exception(end)
                opened.exception()        # (marked retrieved: open() may not be awaiting it)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def __repr__(self) -> str:
        return f"<Subscription {self.type_name}/{self.key:.100} {self._state}>"


def _ended_by(error: BaseException) -> SubscriptionClosed:
    """The end of a subscription whose opening was refused with ``error``."""
    return SubscriptionClosed(f"refused: {type(error).__name__}: {error}", close_code=1011,
                              reason=str(error))
