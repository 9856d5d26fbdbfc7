"""The gateway's connections before aiohttp parses them: caps, descriptor reserve, deadlines.

The gateway accepts on its HTTP address itself (not aiohttp's ``TCPSite``): each
connection is admitted or reset right after ``accept()``, before a transport, a task or
one parsed byte; an admitted one gets a :class:`Door`, an asyncio protocol in front of
aiohttp's own (``web.Server``, the public low-level protocol factory), through the
event loop's ``connect_accepted_socket``.

* **Caps.** At most ``max_connections`` connections at once, HTTP and WebSocket
  together, and ``max_connections_per_address`` from one client address; no address
  holds more than half the descriptors the gateway may spend on connections (what the
  soft ``RLIMIT_NOFILE`` leaves after ``fd_reserve`` and the process's other
  descriptors), so one client can never shut another out. The excess is reset at once
  (``conn_refused``; SO_LINGER 0: no TIME_WAIT).
* **Descriptor reserve.** A connection that would leave fewer than ``fd_reserve`` free
  descriptors is reset at once (``conn_refused_fds``): the node's own sockets (ZeroMQ,
  the subscriber endpoint) and files never starve, and ``accept()`` does not meet
  ``EMFILE``. The count of open descriptors is the process's others (counted from
  ``/proc/self/fd`` every second) plus the connections held. Should ``accept()`` fail
  all the same (``accept_errors``), accepting pauses for 0.1 s: one limited log line,
  where asyncio's own loop wrote a traceback per attempt.
* **Header deadline.** A connection must finish a request's headers within
  ``header_timeout`` seconds of opening, or of its previous response (an idle keep-alive
  connection is closed after as long): else it is answered 408 (if it sent anything) and
  closed (``header_timeouts``). The clock stops while a request is handled
  (:meth:`Doors.middleware` marks it: the middleware runs once aiohttp has the headers,
  and a WebSocket is a request handled until it closes) and while a response is still
  going out (its write buffer draining, or a file being sent).
* **Body.** A ``Content-Length`` over ``max_message_bytes`` is answered 413 before the
  body is read, and the connection closed (``too_large``); the body deadline
  (``body_timeout``) is the reader's (``http.py``).
* **Logs.** Refusals, timeouts and the event loop's own errors (``accept()`` out of
  descriptors) are logged through :class:`~actorsys.lograte.RateLimit`: a few lines per
  kind a minute, then one line with the count suppressed.
"""
from __future__ import annotations

import asyncio
import os
import resource
import socket
import struct
from typing import Any, Callable

from aiohttp import web

from ..log import get_logger
from ..lograte import RateLimit
from .admission import Handler, error_response

log = get_logger("gateway")

#: the counters of this module (in the gateway's status and metrics)
COUNTERS = ("connections_opened", "conn_refused", "conn_refused_fds", "header_timeouts",
            "body_timeouts", "too_large", "accept_errors", "loop_errors")
#: the answer to a request whose headers did not come in time
TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
#: the listening socket's queue of connections not yet accepted
BACKLOG = 1024
#: connections accepted at one wake-up of the listening socket
ACCEPT_BATCH = 64
#: seconds accepting pauses after accept() failed (out of descriptors, say)
ACCEPT_PAUSE = 0.1
#: SO_LINGER on, 0 s: a refused connection is reset, no TIME_WAIT
RESET = struct.pack("ii", 1, 0)
#: seconds between recounts of the process's descriptors (and log-limit sweeps)
SWEEP_SECONDS = 1.0
#: seconds a connection whose reading is paused (aiohttp sending a file, or holding
#: pipelined requests) may go on with no request and no sign of its response draining:
#: past it, it is aborted (a client that stopped reading must not hold its descriptor)
PAUSED_MAX = 60.0


class Doors:
    """The connections of one gateway's HTTP address (the module docstring's rules).

    ``factory`` makes the protocol an admitted connection is handed to (set to
    ``runner.server``, aiohttp's, before :meth:`listen`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gateway: dict[str, Any],
                 counters: dict[str, int], factory: Callable[[], asyncio.Protocol],
                 limited: RateLimit) -> None:
        self.loop, self.counters, self.factory = loop, counters, factory
        self.max_connections: int = gateway["max_connections"]
        self.max_per_address: int = gateway["max_connections_per_address"]
        self.header_timeout: float = gateway["header_timeout"]
        self.reserve: int = gateway["fd_reserve"]
        self.max_body: int = gateway["max_message_bytes"]
        #: transport -> its door, for every connection whose transport is made and open
        self.open: dict[asyncio.BaseTransport, Door] = {}
        #: connections accepted and not yet gone (their descriptors), in all and by address
        self.held = 0
        self.per_address: dict[str, int] = {}
        #: descriptors open that are not connections (as last counted)
        self.others = 0
        #: the gateway's limit on repeated log lines (this class sweeps it)
        self.limited = limited
        #: the listening sockets
        self.socks: list[socket.socket] = []
        self._sweeper: asyncio.TimerHandle | None = None
        #: listening socket -> when accepting resumes on it, after accept() failed
        self._resume: dict[socket.socket, asyncio.TimerHandle] = {}
        self.recount()

    def listen(self, host: str, port: int) -> None:
        """Bind ``host:port`` (every address the name has, as aiohttp's site did) and
        accept on it."""
        seen = set()
        try:
            for family, kind, proto, _, addr in socket.getaddrinfo(
                    host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
                if (family, addr) in seen:
                    continue
                seen.add((family, addr))
                try:
                    sock = socket.socket(family, kind, proto)
                except OSError as exc:      # (a family the host lacks: IPv6 disabled)
                    log.info("not listening on %s: %s", addr, exc)
                    continue
                self.socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(BACKLOG)
                sock.setblocking(False)
            if not self.socks:
                raise OSError(f"no address of {host}:{port} could be listened on")
        except BaseException:
            for sock in self.socks:
                sock.close()
            self.socks = []
            raise
        self.loop.set_exception_handler(self._loop_error)
        for sock in self.socks:
            self.loop.add_reader(sock.fileno(), self._accept, sock)
        self._sweep()

    def close(self) -> None:
        """Stop accepting (the connections are aiohttp's to close), write the log's
        pending summaries."""
        for handle in (self._sweeper, *self._resume.values()):
            if handle is not None:
                handle.cancel()
        for sock in self.socks:
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
            sock.close()
        self.socks = []
        self.limited.flush()

    def _accept(self, sock: socket.socket) -> None:
        """Accept what is waiting on ``sock`` (at most :data:`ACCEPT_BATCH` at a time):
        reset the refused at once, hand the others to a :class:`Door`."""
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:      # (gone before it was accepted)
                continue
            except OSError as exc:      # EMFILE and the like: wait a little, say so (limited)
                self.counters["accept_errors"] += 1
                self.note("accept_error", "accept() on the HTTP address failed: %s", exc)
                self.loop.remove_reader(sock.fileno())
                self._resume[sock] = self.loop.call_later(ACCEPT_PAUSE, self._resume_accepting, sock)
                return
            address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
            why = self.refusal(address)
            if why is not None:
                self.note("refused", "refused a connection from %s: %s", address, why)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
                conn.close()
                continue
            self._admit(conn, address)

    def _resume_accepting(self, sock: socket.socket) -> None:
        self._resume.pop(sock, None)
        if sock.fileno() >= 0:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def _admit(self, conn: socket.socket, address: str) -> None:
        self.held += 1
        self.per_address[address] = self.per_address.get(address, 0) + 1
        self.counters["connections_opened"] += 1
        door = Door(self, address)
        conn.setblocking(False)
        task = self.loop.create_task(self.loop.connect_accepted_socket(lambda: door, conn))

        def made(t: "asyncio.Task[Any]") -> None:
            if t.cancelled() or t.exception() is not None:      # (no transport)
                conn.close()
                door.release()
        task.add_done_callback(made)

    def release(self, address: str) -> None:
        """A connection from ``address`` is gone (:meth:`Door.release`: once)."""
        self.held -= 1
        n = self.per_address.get(address, 0) - 1
        if n > 0:
            self.per_address[address] = n
        else:
            self.per_address.pop(address, None)

    def _sweep(self) -> None:
        self.recount()
        self.limited.sweep()
        self._sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)

    def recount(self) -> None:
        """Count the process's descriptors that are not connections."""
        try:
            total = len(os.listdir("/proc/self/fd")) - 1     # (listdir's own)
        except OSError:
            return
        self.others = max(total - self.held, 0)

    def budget(self) -> int:
        """Descriptors the gateway may spend on connections: the soft limit less
        ``fd_reserve`` and the process's others."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 20
        return soft - self.reserve - self.others

    def refusal(self, address: str) -> str | None:
        """Why a connection just accepted from ``address`` (its descriptor open) may not
        stay, or None."""
        held, budget = self.held, self.budget()
        if held + 1 > budget:
            self.counters["conn_refused_fds"] += 1
            return (f"fewer than fd_reserve ({self.reserve}) file descriptors would be left "
                    f"(room for {budget} connections, {held} open)")
        if held >= self.max_connections:
            self.counters["conn_refused"] += 1
            return f"the gateway holds max_connections ({self.max_connections})"
        mine = self.per_address.get(address, 0)
        cap = min(self.max_per_address, max(budget // 2, 1))
        if mine >= cap:
            self.counters["conn_refused"] += 1
            return (f"the address holds {mine} connections (max_connections_per_address "
                    f"{self.max_per_address}, at most half of the room for {budget})")
        return None

    def note(self, kind: str, message: str, *args: Any) -> None:
        """Log a warning of ``kind`` unless that kind's rate is exceeded."""
        if self.limited.allow(kind):
            log.warning(message, *args)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.counters["loop_errors"] += 1
        if self.limited.allow("event loop: " + str(context.get("message", "?"))[:80]):
            loop.default_exception_handler(context)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The outermost middleware: the request's headers are in (its connection's
        clock stops until the response); a body declared over ``max_message_bytes`` is
        answered 413 now, and its connection closed."""
        door = self.open.get(request.transport) if request.transport is not None else None
        if door is not None:
            door.handling()
        elif request.transport is not None and self.limited.allow("no door"):   # (aiohttp changed?)
            log.error("a request's connection has no deadline record: its header clock may "
                      "expire while it is handled (aiohttp's request.transport changed?)")
        try:
            size = request.content_length
            if size is not None and size > self.max_body:
                self.counters["too_large"] += 1
                self.note("too_large", "refused a body of %d bytes from %s (max_message_bytes %d)",
                          size, request.remote, self.max_body)
                return await answer_and_close(request, error_response(
                    413, "too_large", f"the body ({size} bytes) is larger than max_message_bytes "
                                      f"({self.max_body})"))
            return await handler(request)
        finally:
            if door is not None:
                door.waiting()


async def answer_and_close(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Send ``response`` now and close the connection once it is out: the rest of the
    request's body is not read (aiohttp would otherwise read it, its lingering close,
    for up to 10 s)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


class Door(asyncio.Protocol):
    """One admitted connection: every call handed to aiohttp's protocol, under the
    header deadline."""

    def __init__(self, doors: Doors, address: str) -> None:
        self.doors, self.address = doors, address
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.received = 0           # bytes since the clock last started
        self.unsent = -1            # the write buffer's size when the clock last ran out
        self.paused_since = 0.0     # when the clock first ran out with reading paused (0: not)
        self.released = False       # Doors.release was called for it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.doors.open[transport] = self
        try:
            self.inner = self.doors.factory()
            self.inner.connection_made(transport)
        except BaseException:       # (never a held descriptor nobody will close)
            self.doors.open.pop(transport, None)
            transport.abort()
            raise
        self.waiting()

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.received += len(data)
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        if self.transport is not None:
            self.doors.open.pop(self.transport, None)
        self.release()
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def release(self) -> None:
        """This connection no longer holds a descriptor (counted once)."""
        if not self.released:
            self.released = True
            self.doors.release(self.address)

    def handling(self) -> None:
        """A request's headers are in: no deadline until its response."""
        self._stop_clock()

    def waiting(self) -> None:
        """Waiting for a request's headers (new, or after a response): the clock starts."""
        self._stop_clock()
        if self.transport is not None and not self.transport.is_closing():
            self.received, self.unsent, self.paused_since = 0, -1, 0.0
            self.timer = self.doors.loop.call_later(self.doors.header_timeout, self._expired)

    def _stop_clock(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        t = self.transport
        if t is None or t.is_closing():
            return
        unsent = t.get_write_buffer_size()
        draining = bool(unsent) and (self.unsent < 0 or unsent < self.unsent)
        now = self.doors.loop.time()
        paused = not t.is_reading() and not draining
        if paused and not self.paused_since:
            self.paused_since = now
        if draining or (paused and now - self.paused_since < PAUSED_MAX):
            # a response still going out (draining, or a file being sent): give it time
            self.unsent = unsent
            if draining:
                self.paused_since = 0.0
            self.timer = self.doors.loop.call_later(self.doors.header_timeout, self._expired)
            return
        doors = self.doors
        doors.counters["header_timeouts"] += 1
        if paused:          # a file or pipelined answers nobody reads: no waiting longer
            doors.note("header_timeout", "aborted a connection from %s: its reading paused "
                       "and nothing drained for %.3g s", self.address, PAUSED_MAX)
        else:
            doors.note("header_timeout", "closed a connection from %s: no request headers within "
                       "header_timeout (%.3g s)", self.address, doors.header_timeout)
        if paused or unsent:    # a client that does not read: no waiting for the buffer to drain
            t.abort()
            return
        if self.received:
            t.write(TIMEOUT_408)
        t.close()
