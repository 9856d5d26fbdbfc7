"""A WebSocket test client for a node's gateway: blocking calls, for plain pytest tests.

    with ws_connect(node, "Room", "lobby", query={"name": "ada"}) as ws:
        assert ws.receive_json() == {"history": []}    # what on_connect sent
        ws.send({"text": "hi"})                         # a dict or list goes as JSON text
        assert ws.receive_json()["text"] == "hi"
    # leaving the block closes the socket (the actor's on_disconnect runs)

Each client runs aiohttp's WebSocket client on an event loop of its own, in a daemon
thread; every call waits for its result with a deadline (``timeout``, 10 s by default:
:class:`TimeoutError` past it). A frame arrives as ``str`` (text) or ``bytes``
(binary); a socket closed while a frame is awaited raises :class:`WsClosed` with its
close code and reason (the actor's ``conn.close(code, reason)``, 1001 when the gateway
stops, 1009 for a message over ``max_message_bytes``). A refused handshake (403: the
auth hook or ``expose``; 404: an unknown type) raises :class:`WsRefused` with the HTTP
status.

The ``actorsys_node`` fixture closes at its teardown every client still open (before
it stops the nodes); a test need not.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import weakref
from typing import TYPE_CHECKING, Any, Coroutine, Mapping, TypeVar
from urllib.parse import quote, urlencode

from actorsys.node import Node

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")
#: the clients not closed yet (the fixture closes them at its teardown)
_OPEN: "weakref.WeakSet[WsClient]" = weakref.WeakSet()


class WsClosed(Exception):
    """The socket closed while a frame was awaited: ``code`` and ``reason`` are the
    close frame's (``code`` None if the connection dropped without one)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"the WebSocket was closed (code {code}{f', {reason!r}' if reason else ''})")
        self.code, self.reason = code, reason


class WsRefused(Exception):
    """The gateway refused the WebSocket handshake with HTTP ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the gateway refused the WebSocket with HTTP {status} {message}")
        self.status = status


class WsClient:
    """One WebSocket to ``url`` (``ws://HOST:PORT/ws/TYPE/KEY?...``); see the module
    docstring. Open from the constructor to :meth:`close`."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None,
                 timeout: float = 10.0) -> None:
        self.url, self.timeout = url, timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"actorsys-ws {url[:80]}")
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            self._call(self._open(dict(headers or {})), timeout)
        except BaseException:
            self._stop_loop()
            raise
        _OPEN.add(self)

    async def _open(self, headers: dict[str, str]) -> None:
        import aiohttp       # (the gateway's client library: loaded by the tests that use it)

        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(self.url, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            await self._session.close()
            raise WsRefused(exc.status, exc.message) from None
        except BaseException:
            await self._session.close()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        wait = self.timeout if timeout is None else timeout
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(wait + 1.0)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"{self.url}: no answer within {wait:g} s") from None

    def _live(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None:
            raise WsClosed(None, "closed by this client")
        return self._ws

    @property
    def close_code(self) -> int | None:
        """The close code once the socket is closed (None while it is open)."""
        return self._ws.close_code if self._ws is not None else None

    def send(self, data: Any, timeout: float | None = None) -> None:
        """Send ``data``: ``str`` as a text frame, ``bytes`` as a binary one, anything
        else as JSON text (what ``on_message`` gets as a str)."""
        ws = self._live()
        if isinstance(data, (bytes, bytearray)):
            self._call(ws.send_bytes(bytes(data)), timeout)
        elif isinstance(data, str):
            self._call(ws.send_str(data), timeout)
        else:
            self._call(ws.send_str(json.dumps(data)), timeout)

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next data frame: ``str`` (text) or ``bytes`` (binary). WsClosed if the
        socket closes first, TimeoutError if none arrives within ``timeout``."""
        import aiohttp

        ws = self._live()
        wait = self.timeout if timeout is None else timeout
        try:
            msg = self._call(ws.receive(timeout=wait), wait)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{self.url}: no frame within {wait:g} s") from None
        if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
            data: str | bytes = msg.data
            return data
        if msg.type is aiohttp.WSMsgType.CLOSE:
            raise WsClosed(msg.data, msg.extra or "")
        raise WsClosed(ws.close_code, "")       # CLOSING, CLOSED, ERROR

    def receive_json(self, timeout: float | None = None) -> Any:
        """The next data frame, decoded from JSON (what ``conn.send(dict)`` sends)."""
        data = self.receive(timeout)
        return json.loads(data)

    def wait_closed(self, timeout: float | None = None) -> tuple[int | None, str]:
        """Wait for the server to close the socket; ``(code, reason)``. A data frame
        arriving first is an AssertionError naming it."""
        try:
            frame = self.receive(timeout)
        except WsClosed as closed:
            return closed.code, closed.reason
        raise AssertionError(f"{self.url}: expected the socket to close, got a frame {frame!r:.200}")

    def close(self, code: int = 1000, timeout: float | None = None) -> None:
        """Close the socket (``code``; the actor's ``on_disconnect`` runs) and the
        client's loop. Idempotent."""
        _OPEN.discard(self)
        ws, session = self._ws, self._session
        self._ws = None
        if not self._loop.is_closed():
            try:
                if ws is not None and not ws.closed:
                    self._call(ws.close(code=code), timeout)
                if session is not None and not session.closed:
                    self._call(session.close(), timeout)
            finally:
                self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> "WsClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<WsClient {self.url} {'open' if self._ws is not None else 'closed'}>"


def ws_connect(node: Node, type_name: str, key: str, *, query: Mapping[str, str] | None = None,
               headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> WsClient:
    """A WebSocket to actor ``(type_name, key)`` through ``node``'s gateway
    (``ws://.../ws/TYPE/KEY?query``), open once the handshake is accepted (the actor's
    ``on_connect`` then runs)."""
    base = "ws://" + node.gateway_url.split("://", 1)[1]
    url = f"{base}/ws/{quote(type_name, safe='')}/{quote(key, safe='')}"
    if query:
        url += "?" + urlencode(dict(query))
    return WsClient(url, headers=headers, timeout=timeout)


def close_all() -> None:
    """Close every client still open (the fixture's teardown)."""
    for client in list(_OPEN):
        try:
            client.close(timeout=2.0)
        except Exception:
            pass
