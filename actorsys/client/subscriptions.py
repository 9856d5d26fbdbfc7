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
  ``max_connections``), ``BadRequest`` (the node has no gateway); an ``on_connect``
  that raises or closes with another code than 1000: ``SubscriptionClosed``.
* Events: a text frame is a ``str``, a binary one ``bytes``; what the actor sends as a
  dict or list arrives as its JSON text, so ``decode=json.loads`` gives it back (any
  ``decode(str | bytes) -> T`` makes a ``Subscription[T]``; one that raises raises in
  the consumer, and that event is taken).
* The end: :meth:`~Subscription.close` (or leaving the ``with``) unsubscribes, and the
  actor gets ``on_disconnect``; ``conn.close()`` from the actor (code 1000) ends the
  iteration after the frames sent before it. Any other end raises
  :class:`~actorsys.errors.SubscriptionClosed` (after the frames that came before it),
  saying why: not reading fast enough (1013), the gateway stopping (1001), the
  connection to the gateway lost or silent (1006: a gateway restart ends subscriptions
  as it ends browsers' sockets; subscribe again), the actor's own close code. ``receive``
  raises it at a normal end too (code 1000).
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
import json
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Generator, Generic, Protocol, TypeVar, Union, cast

from ..errors import AskTimeout, MessageTooLarge, SubscriptionClosed
from ..protocol import subs
from ..protocol.subs import Window
from ..protocol.ws import MAX_TAG_CHARS
from ..proxy import ProxyBase

if TYPE_CHECKING:
    from .sublink import Subscriber, SubscriberLink, Where
    from .subthread import SubscriptionThread

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


def options(tag: Any, query: Any, window: Any) -> dict[str, str]:
    """``subscribe``'s options, checked before anything is sent (``TypeError`` or
    ``ValueError`` naming the option); the query as sent."""
    if tag is not None and not (isinstance(tag, str) and 0 < len(tag) <= MAX_TAG_CHARS):
        raise ValueError(f"tag is a string of 1..{MAX_TAG_CHARS} characters, or None; "
                         f"got {tag!r:.80}")
    query = {} if query is None else query
    if not (isinstance(query, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in query.items())):
        raise TypeError(f"query is a dict of strings to strings (conn.query), got {query!r:.80}")
    if type(window) is not int or not 0 < window <= subs.MAX_WINDOW:
        raise ValueError(f"window is 1..{subs.MAX_WINDOW} frames, got {window!r:.80}")
    return dict(query)


def frame_of(data: Any) -> "str | bytes":
    """What :meth:`Subscription.send` sends: ``str`` as text, ``bytes`` as binary,
    anything else as JSON text (as ``conn.send`` does)."""
    if isinstance(data, (str, bytes)):
        return data
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a subscription sends str, bytes or JSON-able data, got "
                        f"{type(data).__name__}: {exc}") from None


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
        #: the largest message :meth:`send` may send (the gateway's), once opened
        self.max_message_bytes: int | None = None
        self._subscriber, self._where = subscriber, where
        self._query, self._decode = query, decode
        self._window_frames, self._timeout = window, timeout
        self._state = _NEW
        self._link: SubscriberLink | None = None
        self._sid = 0
        self._opened: asyncio.Future[None] | None = None
        self._queue: deque[str | bytes] = deque()
        self._window: Window | None = None
        self._taken = 0
        #: how it ended (None: normally, or not yet)
        self._end: SubscriptionClosed | None = None
        self._waiter: asyncio.Future[None] | None = None

    def describe(self) -> str:
        return f"subscription to {self.type_name}/{self.key:.100}"

    @property
    def closed(self) -> bool:
        """It has ended (its remaining frames may still be read)."""
        return self._state is _ENDED

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
        if self._state is _NEW or self._state is _OPENING:
            await self.open()
        while True:
            if self._queue:
                data = self._queue.popleft()
                self._took()
                return cast(T, data) if self._decode is None else self._decode(data)
            if self._state is _ENDED:
                if self._end is None:
                    raise StopAsyncIteration
                raise self._end
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def receive(self, timeout: float | None = None) -> T:
        """The next event, waiting at most ``timeout`` seconds (None: until one comes):
        ``TimeoutError`` past it (nothing is lost), ``SubscriptionClosed`` at the end
        (``close_code`` 1000 for a normal one)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except StopAsyncIteration:
            raise SubscriptionClosed(f"{self.describe()} has ended", close_code=1000,
                                     reason="ended") from None
        except AskTimeout:
            raise                       # (opening it took too long)
        except TimeoutError:
            raise TimeoutError(f"{self.describe()}: nothing arrived within {timeout:g} s") from None

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
        gateway's ``max_message_bytes``; after the end, the end's ``SubscriptionClosed``."""
        if self._state is _ENDED:
            raise self._end or SubscriptionClosed(f"{self.describe()} has ended", close_code=1000,
                                                  reason="ended")
        if self._link is None:
            raise RuntimeError(f"{self.describe()} is not open: await it (or use async with) first")
        frame = frame_of(data)
        if self.max_message_bytes is not None and len(frame) > self.max_message_bytes:
            raise MessageTooLarge(f"a message of {len(frame)} bytes; the gateway takes at most "
                                  f"{self.max_message_bytes} (its max_message_bytes)")
        self._link.send([subs.MSG, self._sid, frame])

    async def close(self) -> None:
        """Unsubscribe (the actor gets ``on_disconnect``); the iteration stops, and what
        had arrived and was not taken is dropped. Idempotent."""
        if self._state is not _ENDED:
            self._unsubscribe()
        self.end_here("closed by this client")

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
        if not w.fits(len(data)):
            return self._broken(f"the gateway sent past the window ({w.frames} frames, "
                                f"{w.nbytes} bytes)")
        w.add(len(data))
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
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __repr__(self) -> str:
        return f"<Subscription {self.type_name}/{self.key:.100} {self._state}>"


def _ended_by(error: BaseException) -> SubscriptionClosed:
    """The end of a subscription whose opening was refused with ``error``."""
    return SubscriptionClosed(f"refused: {type(error).__name__}: {error}", close_code=1011,
                              reason=str(error))


class BlockingSubscription(Generic[T]):
    """One subscription of a blocking client (see the module docstring): an iterator and
    a context manager, already open. Its subscription lives on the client's subscription
    thread (:mod:`.subthread`); every call waits for that thread, from any thread."""

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
            return self._runner.call(self._sub.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def receive(self, timeout: float | None = None) -> T:
        """See :meth:`Subscription.receive`."""
        return self._runner.call(self._sub.receive(timeout))

    def send(self, data: Any) -> None:
        """See :meth:`Subscription.send`."""
        self._runner.call(_now(self._sub.send, data))

    def close(self) -> None:
        """See :meth:`Subscription.close` (idempotent; a closed client's do nothing)."""
        if not self._runner.closed:
            self._runner.call(self._sub.close())

    def __enter__(self) -> BlockingSubscription[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BlockingSubscription {self._sub.type_name}/{self._sub.key:.100}>"


async def _now(fn: Callable[..., None], *args: Any) -> None:
    fn(*args)
