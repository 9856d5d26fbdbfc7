"""The gateway: HTTP and WebSockets in front of a node's actors, in one process (aiohttp).

In the user's words:

* A ``[gateway]`` table in the config starts it (``listen = "127.0.0.1:8080"``). The node
  supervisor starts it after the workers, stops it first, and restarts it like any
  child if it dies; its sockets die with it, and browsers reconnect.
* ``POST /actors/{type}/{key}/{method}`` with a JSON body (an array of positional
  arguments, an object of keyword arguments, or nothing) asks the actor and answers
  the result as JSON. Errors answer ``{"error": code, "message": ...}`` with the status
  in :data:`STATUS_OF` (404 unknown type or method, 400 bad input, 413 too large, 500
  the handler raised, 503 overloaded or unavailable, 504 no answer in time).
* ``GET /ws/{type}/{key}`` opens a WebSocket attached to that actor (its side is
  ``websocket.py``). The gateway holds the sockets: the actor can be passivated while
  they stay open (hibernation), and its worker can crash; the actor comes back from its
  last commit and the sockets keep working.
* Delivery. A socket's events reach its actor in order. The events waiting for one
  actor go in one batch, one turn. A batch whose worker died is delivered again until
  ``ask_timeout`` has passed (then its sockets are closed, 1011, rather than left
  silently missing events); its delivery mark makes it applied once, and its effects
  reach the sockets once (``websocket.py``). A batch the
  handlers fail is split into single events; an event that still fails is dropped
  (logged), and a socket whose ``on_connect`` failed is closed (1011).
* Static files from ``static`` (``/`` serves its ``index.html``).
* Limits: ``max_message_bytes`` (a WebSocket message or an HTTP body; a larger message
  closes its socket with 1009), ``max_connections_per_actor`` and ``max_connections``
  (then 503), ``allowed_origins`` (a browser's Origin must be the page's own, or listed;
  ``["*"]``: any), ``expose`` (the actor types reachable) and ``auth``: a function
  ``f(request: GatewayRequest)``, maybe ``async``, whose falsy result refuses the request
  (403) and whose other results are kept as ``conn.user``. A browser that does not read
  what it is sent (over 10,000 frames or 8 MiB queued) is closed with 1013.
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import secrets
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq
from aiohttp import WSMsgType, web

from ..client.transport import AsyncTransport
from ..config import NodeConfig, import_function
from ..errors import (ActorError, AskTimeout, NodeUnavailable, Overloaded, StorageError,
                      WorkerLost, WrongShard)
from ..net.guard import Guard
from ..net.keys import node_keys
from ..net.sockets import SocketPump, bound_router
from ..protocol import wire
from ..protocol import ws as websocket

#: error code -> HTTP status
STATUS_OF = {
    "unknown_type": 404, "unknown_method": 404, "bad_request": 400, "too_large": 413,
    "limit": 422, "remote": 500, "timeout": 504, "overloaded": 503, "worker_lost": 503,
    "unavailable": 503, "storage": 503, "stopped": 409, "wrong_shard": 503, "forbidden": 403,
}
#: errors after which a batch is delivered again (its worker died, or is busy or starting)
TRANSIENT = (WorkerLost, NodeUnavailable, AskTimeout, Overloaded, StorageError, WrongShard)
MAX_BATCH_EVENTS = 256
MAX_BATCH_BYTES = 1 << 20
#: a socket's reads pause while its actor has this much waiting
MAX_WAITING_EVENTS, MAX_WAITING_BYTES = 10_000, 8 << 20
#: a socket whose browser does not read this much of what it is sent is closed
MAX_UNSENT_FRAMES, MAX_UNSENT_BYTES = 10_000, 8 << 20
MAX_KEY_BYTES = 1024
#: seconds an async auth hook may take (then the request is refused)
AUTH_TIMEOUT = 10.0
#: seconds a closing socket waits for the browser's close frame, and for one frame to be
#: taken by a browser (past it, the connection is dropped)
CLOSE_TIMEOUT, SEND_TIMEOUT = 2.0, 10.0


def log(msg: str) -> None:
    print(f"actorsys[gateway {os.getpid()}]: {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class GatewayRequest:
    """What the ``auth`` hook sees of a request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]          # lower-case names
    cookies: dict[str, str]
    remote: str | None
    origin: str | None
    actor_type: str
    actor_key: str
    actor_method: str | None         # None for a WebSocket
    websocket: bool


class Refused(Exception):
    """A request refused before it reaches an actor: answered with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(eq=False)
class Socket:
    """A browser's WebSocket, attached to one actor."""

    id: str
    ws: web.WebSocketResponse
    room: "Room"
    info: dict[str, Any]
    tags: set[str] = field(default_factory=set)
    attachment: Any = None
    #: "open" or "closed" (by the browser, the actor or the gateway)
    state: str = "open"
    #: its on_connect committed and its on_disconnect has not: the actor counts it in
    joined: bool = False
    unsent: deque = field(default_factory=deque)
    unsent_bytes: int = 0
    writer: asyncio.Task | None = None
    closing: tuple[int, str] | None = None      # (code, reason) to close with, once sent
    transport: asyncio.Transport | None = None  # to cut off a browser that does not read

    def record(self) -> list[Any]:
        return [self.id, sorted(self.tags), self.attachment, self.info]


@dataclass(eq=False)
class Room:
    """One actor's sockets and the events waiting for it."""

    type_name: str
    key: str
    sockets: dict[str, Socket] = field(default_factory=dict)
    #: closed sockets whose on_disconnect has not committed yet: still in the roster
    leaving: dict[str, Socket] = field(default_factory=dict)
    waiting: deque = field(default_factory=deque)    # [event, size]
    waiting_bytes: int = 0
    roster_known: bool = False        # the actor's worker has our list of its sockets
    applied: tuple[int, int] = (0, 0)   # the last (batch, part) of effects applied
    task: asyncio.Task | None = None
    space: asyncio.Event = field(default_factory=asyncio.Event)

    def members(self) -> list[list[Any]]:
        """The roster: the sockets the actor knows (on_connect committed, on_disconnect not)."""
        return [s.record() for d in (self.sockets, self.leaving) for s in d.values() if s.joined]


class Gateway:
    def __init__(self, cfg: NodeConfig) -> None:
        assert cfg.gateway is not None and cfg.endpoint is not None
        self.cfg, self.g = cfg, cfg.gateway
        self.incarnation = secrets.token_hex(8)
        self.ids = itertools.count(1)
        self.batches = itertools.count(1)      # batch numbers: increasing in this incarnation
        self.last_batch = 0
        self.rooms: dict[tuple[str, str], Room] = {}
        self.sockets: dict[str, Socket] = {}
        self.types = set(self.g["expose"] or cfg.actors)
        self.hosts = _allowed_hosts(self.g["listen"], self.g["allowed_hosts"])
        self.auth: Callable[..., Any] | None = (
            import_function(self.g["auth"], cfg.python_path) if self.g["auth"] else None)
        self.counters = {"http_requests": 0, "http_errors": 0, "ws_opened": 0, "ws_closed": 0,
                         "ws_refused": 0, "events": 0, "batches": 0, "redeliveries": 0,
                         "duplicates": 0, "duplicate_effects": 0, "failed_events": 0,
                         "dropped_events": 0, "stale_effects": 0,
                         "effects": 0, "slow_closed": 0, "bad_frames": 0,
                         "hook_refused": 0, "origin_refused": 0,
                         "auth_refused": 0, "handshake_failed": 0}   # (the last two: CURVE)
        self.serving = False      # the HTTP site is up
        self.stopping = False

    # -- process -----------------------------------------------------------------
    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.ctx = zmq.Context()
        keys = node_keys(self.cfg)
        self.transport = AsyncTransport(self.ctx, self.cfg.endpoint,
                                        max_message_bytes=self.cfg.max_message_bytes,
                                        max_pending=self.cfg.max_pending_asks,
                                        default_timeout=self.cfg.ask_timeout,
                                        keys=keys.client if keys else None)
        self.guard = Guard(self.ctx, self.loop, keys, self.counters) if keys else None
        self.sock = bound_router(self.ctx, self.g["_internal"], self.cfg.max_message_bytes,
                                 self.guard)
        self.pump = SocketPump(self.loop, self.sock, self._on_frames)
        deadline = time.monotonic() + self.cfg.start_timeout
        while True:
            try:
                await self.transport.refresh_map(timeout=1.0)
                break
            except NodeUnavailable:
                if time.monotonic() > deadline:
                    raise
        app = web.Application(client_max_size=self.g["max_message_bytes"],
                              middlewares=[self._check_host_and_cors])
        app.router.add_post("/actors/{type}/{key}/{method}", self._http)
        app.router.add_route("OPTIONS", "/actors/{type}/{key}/{method}", self._preflight)
        app.router.add_get("/ws/{type}/{key}", self._ws)
        static = self.g["static"]
        if static:
            index = os.path.join(static, "index.html")
            if os.path.isfile(index):
                app.router.add_get("/", lambda _r: web.FileResponse(index))
            app.router.add_static("/", static)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=1.0)
        await self.runner.setup()
        host, port = self.g["listen"].rsplit(":", 1)
        site = web.TCPSite(self.runner, host.strip("[]"), int(port), reuse_address=True)
        await site.start()
        self.serving = True
        stop = asyncio.Event()
        for s in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(s, stop.set)
        log(f"serving http://{self.g['listen']}")
        try:
            await stop.wait()
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        """Close every socket (1001, going away), hand their actors the disconnects
        within the shutdown time, then stop."""
        self.stopping = True
        deadline = self.loop.time() + max(self.cfg.shutdown_timeout - 1.0, 0.5)
        for s in list(self.sockets.values()):
            self._close(s, 1001, "the server is stopping")
        tasks = [r.task for r in self.rooms.values() if r.task is not None]
        tasks += [s.writer for r in self.rooms.values() for s in r.leaving.values() if s.writer]
        if tasks:
            await asyncio.wait(tasks, timeout=max(deadline - self.loop.time(), 0.1))
        await self.runner.cleanup()
        self.pump.close()
        self.transport.close()
        self.sock.close(0)
        if self.guard is not None:
            self.guard.close()
        self.ctx.term()

    # -- checks shared by HTTP and WebSockets -----------------------------------------
    async def _admit(self, request: web.Request, method: str | None) -> Any:
        """Check a request against the limits and the auth hook; returns the hook's
        value (None without a hook) or raises :class:`Refused`."""
        type_name, key = request.match_info["type"], request.match_info["key"]
        if type_name not in self.types:
            raise Refused(404, "unknown_type", f"no actor type {type_name!r:.100} here")
        if len(key.encode()) > MAX_KEY_BYTES:
            raise Refused(400, "bad_request", f"an actor key is at most {MAX_KEY_BYTES} bytes")
        if method is not None and method.startswith(("_", "$")):
            raise Refused(404, "unknown_method", f"actor type {type_name!r} has no method {method!r:.100}")
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request):
            self.counters["origin_refused"] += 1
            raise Refused(403, "forbidden", f"origin {origin!r:.100} is not allowed "
                                            f"(see [gateway] allowed_origins)")
        if self.auth is None:
            return None
        info = GatewayRequest(
            method=request.method, path=request.path, query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            cookies=dict(request.cookies), remote=request.remote, origin=origin,
            actor_type=type_name, actor_key=key, actor_method=method, websocket=method is None)
        try:
            verdict = self.auth(info)
            if inspect.isawaitable(verdict):
                verdict = await asyncio.wait_for(verdict, AUTH_TIMEOUT)
            if verdict and verdict is not True:
                wire.pack(verdict)        # it travels to the actor as conn.user
        except Exception as exc:
            log(f"the auth hook raised on {request.path}: {type(exc).__name__}: {exc}")
            verdict = False
        if not verdict:
            self.counters["hook_refused"] += 1
            raise Refused(403, "forbidden", "refused by the auth hook")
        return None if verdict is True else verdict

    @web.middleware
    async def _check_host_and_cors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every request: its Host must be this gateway's (a page on another name that
        resolves here, DNS rebinding, is refused), and a listed origin gets CORS headers."""
        hosts = self.hosts
        if hosts is not None and request.host.lower() not in hosts:
            return self._error(421, "forbidden", f"this gateway does not serve the host "
                                                 f"{request.host!r:.100} (see [gateway] allowed_hosts)")
        response = await handler(request)
        origin = request.headers.get("Origin")
        if origin is not None and self._listed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    async def _preflight(self, request: web.Request) -> web.Response:
        """A browser's CORS preflight for ``POST /actors/...`` from a listed origin."""
        origin = request.headers.get("Origin")
        if origin is None or not self._listed(origin):
            return self._error(403, "forbidden", f"origin {origin!r:.100} is not allowed "
                                                 f"(see [gateway] allowed_origins)")
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": request.headers.get(
                "Access-Control-Request-Headers", "content-type"),
            "Access-Control-Max-Age": "600"})

    def _listed(self, origin: str) -> bool:
        allowed = self.g["allowed_origins"]
        return "*" in allowed or origin in allowed

    def _origin_allowed(self, origin: str, request: web.Request) -> bool:
        allowed = self.g["allowed_origins"]
        if "*" in allowed or origin in allowed:
            return True
        return origin in (f"http://{request.host}", f"https://{request.host}")

    @staticmethod
    def _error(status: int, code: str, message: str, **more: Any) -> web.Response:
        return web.json_response({"error": code, "message": message, **more}, status=status)

    # -- HTTP ----------------------------------------------------------------------------
    async def _http(self, request: web.Request) -> web.Response:
        self.counters["http_requests"] += 1
        type_name, key = request.match_info["type"], request.match_info["key"]
        method = request.match_info["method"]
        try:
            await self._admit(request, method)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise Refused(413, "too_large", f"the body is larger than max_message_bytes "
                                                f"({self.g['max_message_bytes']})") from None
            args, kwargs = _arguments(body)
            try:
                pending = self.transport.ask(type_name, key, method, args, kwargs,
                                             self.cfg.ask_timeout)
            except (TypeError, ValueError, OverflowError) as exc:   # e.g. a 30-digit integer
                raise Refused(400, "bad_request", f"the arguments cannot be sent ({exc})") from None
            result = await pending
        except Refused as r:
            self.counters["http_errors"] += 1
            return self._error(r.status, r.code, str(r))
        except ActorError as exc:
            self.counters["http_errors"] += 1
            body = exc.to_wire()
            tb = body.pop("traceback", None)  # server internals stay in the server's log
            code = body.pop("code")
            if code == "remote":
                log(f"POST {request.path}: the handler raised\n{tb or exc}")
            extra = {"type": body["type"]} if code == "remote" else {}
            resp = self._error(STATUS_OF.get(code, 500), code, body["message"], **extra)
            if code in ("overloaded", "worker_lost", "unavailable", "storage"):
                resp.headers["Retry-After"] = "1"
            return resp
        try:
            text = json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            self.counters["http_errors"] += 1
            return self._error(500, "not_json", f"the result is not JSON ({exc})")
        return web.Response(text=text, content_type="application/json")

    # -- WebSockets --------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        type_name, key = request.match_info["type"], request.match_info["key"]
        room = self.rooms.get((type_name, key))
        try:
            if self.stopping:
                raise Refused(503, "unavailable", "the gateway is stopping")
            user = await self._admit(request, None)
            if len(self.sockets) >= self.g["max_connections"]:
                raise Refused(503, "overloaded", f"the gateway holds max_connections "
                                                 f"({self.g['max_connections']}) sockets")
            if room is not None and len(room.sockets) >= self.g["max_connections_per_actor"]:
                raise Refused(503, "overloaded", f"{type_name}/{key:.100} has max_connections_per_actor "
                                                 f"({self.g['max_connections_per_actor']}) sockets")
        except Refused as r:
            self.counters["ws_refused"] += 1
            return self._error(r.status, r.code, str(r))
        ws = web.WebSocketResponse(max_msg_size=self.g["max_message_bytes"], heartbeat=30.0,
                                   timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        # (looked up again: the room may have come or gone while the handshake awaited)
        room = self.rooms.get((type_name, key))
        if room is None:
            room = self.rooms[(type_name, key)] = Room(type_name, key)
        info = {"user": user, "query": dict(request.query), "remote": request.remote,
                "origin": request.headers.get("Origin")}
        sock = Socket(f"{self.incarnation[:8]}.{next(self.ids)}", ws, room, info,
                      transport=request.transport)
        self.sockets[sock.id] = sock
        room.sockets[sock.id] = sock
        self.counters["ws_opened"] += 1
        self._enqueue(room, ["c", sock.record()], 64)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    while room.waiting_bytes > MAX_WAITING_BYTES or len(room.waiting) > MAX_WAITING_EVENTS:
                        room.space.clear()
                        await room.space.wait()      # back-pressure: stop reading this room's sockets
                    if sock.state != "closed":
                        self._enqueue(room, ["m", sock.id, msg.data], len(msg.data))
        finally:
            self._close(sock, 1000, "")
        return ws

    def _close(self, sock: Socket, code: int, reason: str) -> None:
        """Close a socket (once): what it was sent before goes first, then the close
        frame (by its writer); its actor gets on_disconnect, and counts it in its
        roster until that has committed."""
        if sock.state == "closed":
            return
        sock.state = "closed"
        self.counters["ws_closed"] += 1
        self.sockets.pop(sock.id, None)
        room = sock.room
        room.sockets.pop(sock.id, None)
        room.leaving[sock.id] = sock
        # (a socket whose on_connect never committed is unknown to the actor: it skips this)
        self._enqueue(room, ["d", sock.id], 16)
        sock.closing = (code, reason)
        if sock.writer is None:
            sock.writer = self.loop.create_task(self._write(sock))

    def _enqueue(self, room: Room, event: list, size: int) -> None:
        room.waiting.append((event, size))
        room.waiting_bytes += size
        self.counters["events"] += 1
        if room.task is None:
            room.task = self.loop.create_task(self._deliver(room))

    # -- delivery: socket events to actors ----------------------------------------------
    async def _deliver(self, room: Room) -> None:
        try:
            while room.waiting:
                events, size = [], 0
                limit = min(MAX_BATCH_BYTES, self.cfg.max_message_bytes // 2)
                while room.waiting and len(events) < MAX_BATCH_EVENTS and (
                        not events or size + room.waiting[0][1] <= limit):
                    ev, n = room.waiting.popleft()
                    events.append(ev)
                    size += n
                room.waiting_bytes -= size
                room.space.set()
                await self._send_batch(room, events)
        except Exception:
            traceback.print_exc()
        finally:
            room.task = None
            if room.waiting:
                room.task = self.loop.create_task(self._deliver(room))
            elif (not room.sockets and not room.leaving
                  and self.rooms.get((room.type_name, room.key)) is room):
                del self.rooms[(room.type_name, room.key)]

    async def _send_batch(self, room: Room, events: list) -> None:
        number = self.last_batch = next(self.batches)
        roster = None if room.roster_known else room.members()
        # a batch may wait behind a turn that runs up to turn_timeout
        deadline = self.loop.time() + max(self.cfg.ask_timeout, self.cfg.turn_timeout + 5.0)
        pause = 0.01
        while True:
            try:
                result = await self._ask_batch(room, number, roster, events, deadline)
            except TRANSIENT as exc:
                if self.loop.time() + pause >= deadline:
                    return self._give_up(room, events, f"{type(exc).__name__}: {exc}")
                self.counters["redeliveries"] += 1
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
                roster = room.members()       # a new activation may not know its sockets
                continue
            except ActorError as exc:         # the handlers raised: this batch is not applied
                room.roster_known = False
                if len(events) > 1:
                    for ev in events:
                        await self._send_batch(room, [ev])
                    return
                return self._failed(room, events[0], exc)
            if isinstance(result, dict) and result.get("need") == "roster":
                roster = room.members()
                continue
            break
        self.counters["batches"] += 1
        if isinstance(result, dict) and result.get("dup"):
            self.counters["duplicates"] += 1
        if isinstance(result, dict) and result.get("effects"):
            self._apply(room.type_name, room.key, result["effects"], [self.incarnation, number], 0)
        room.roster_known = True
        for ev in events:
            if ev[0] == "c":
                s = room.sockets.get(ev[1][0]) or room.leaving.get(ev[1][0])
                if s is not None:
                    s.joined = True
            elif ev[0] == "d":
                room.leaving.pop(ev[1], None)

    async def _ask_batch(self, room: Room, number: int, roster: list | None, events: list,
                         deadline: float) -> Any:
        """One ``$ws`` ask (a roster too large for one message goes first, in parts)."""
        def ask(r: Any, evs: list) -> Any:
            return self.transport.ask(room.type_name, room.key, websocket.METHOD,
                                      [self.incarnation, number, r, evs], {},
                                      max(deadline - self.loop.time(), 0.05))
        if roster is not None:
            parts = websocket.split(roster, self.cfg.max_message_bytes // 4)
            if len(parts) > 1:
                for i, records in enumerate(parts[:-1]):
                    r = await ask({"n": len(parts), "i": i, "records": records}, [])
                    if r != {"more": True}:
                        return r
                roster = {"n": len(parts), "i": len(parts) - 1, "records": parts[-1]}  # type: ignore[assignment]
        return await ask(roster, events)

    def _failed(self, room: Room, event: list, exc: ActorError) -> None:
        self.counters["failed_events"] += 1
        kind = {"c": "on_connect", "m": "on_message", "d": "on_disconnect"}[event[0]]
        log(f"{room.type_name}/{room.key:.100}: {kind} failed: {exc}")
        if event[0] == "c":
            s = room.sockets.get(event[1][0])
            if s is not None:
                self._close(s, 1011, f"{kind} failed")
        elif event[0] == "d":
            room.leaving.pop(event[1], None)     # the actor dropped it with the failed turn

    def _give_up(self, room: Room, events: list, why: str) -> None:
        self.counters["dropped_events"] += len(events)
        log(f"{room.type_name}/{room.key:.100}: {len(events)} socket events not delivered "
            f"within max(ask_timeout, turn_timeout + 5 s) ({why}); closing their sockets")
        room.roster_known = False            # whatever the worker has, send it ours again
        for ev in events:
            sid = ev[1][0] if ev[0] == "c" else ev[1]
            if ev[0] == "d":
                room.leaving.pop(sid, None)
            s = room.sockets.get(sid)
            if s is not None:
                self._close(s, 1011, "the actor is unavailable")

    # -- effects: what actors' committed turns send to their sockets ----------------
    def _on_frames(self, frames: list[bytes]) -> None:
        try:
            envelope, op, rid, rest = wire.decode_frames(frames, self.cfg.max_message_bytes)
        except wire.Rejected as r:
            self.counters["bad_frames"] += 1
            if r.rid == 0:         # nobody awaits an answer (a worker's effects): say it here
                log(f"refused a message from a node process: {r.error}")
                return
            return self._reply(r.envelope, wire.err(r.rid, r.error.to_wire()))
        if op == wire.WS:
            try:
                self._apply(rest[0], rest[1], rest[2], rest[3], rest[4])
            except (TypeError, ValueError, IndexError, KeyError):
                self.counters["bad_frames"] += 1
        elif op == wire.STATUS:
            self._reply(envelope, wire.ok(rid, self.status()))
        elif op == wire.PING:
            self._reply(envelope, wire.ok(rid, "pong"))
        else:
            self.counters["bad_frames"] += 1
            self._reply(envelope, wire.err(rid, {"code": "bad_request", "type": "BadRequest",
                                                 "message": f"the gateway does not serve "
                                                            f"{wire.OPS[op]} requests"}))

    def _reply(self, envelope: tuple, payload: bytes) -> None:
        try:
            self.sock.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _apply(self, type_name: str, key: str, effects: list, batch: int | None,
               part: int) -> None:
        room = self.rooms.get((type_name, key))
        if batch is not None and batch[0] != self.incarnation:
            self.counters["stale_effects"] += 1
            return               # a batch of the gateway before a restart: its sockets are gone
        if batch is not None and room is not None:
            if (batch[1], part) <= room.applied:
                self.counters["duplicate_effects"] += 1
                return           # sent again after a crash, but they had left the first time
            room.applied = (batch[1], part)
        for e in effects:
            self.counters["effects"] += 1
            kind = e[0]
            if kind == "b":
                if room is None:
                    continue
                tag, exclude, data, ids = e[1], e[2], e[3], e[4]
                if ids is not None:          # the sockets the actor knew at that point
                    targets = [room.sockets.get(i) for i in ids]
                else:
                    targets = [s for s in room.sockets.values() if s.joined
                               and s.id != exclude and (tag is None or tag in s.tags)]
                for s in targets:
                    if s is not None:
                        self._push(s, data)
                continue
            s = self.sockets.get(e[1])
            if s is None or s.room is not room:
                continue                     # closed meanwhile, or not this actor's
            if kind == "s":
                self._push(s, e[2])
            elif kind == "x":
                self._close(s, int(e[2]), str(e[3]))
            elif kind == "t":
                s.tags.update(t for t in e[2] if isinstance(t, str))
            elif kind == "a":
                s.attachment = e[2]

    def _push(self, s: Socket, data: "str | bytes") -> None:
        if not isinstance(data, (str, bytes)):
            raise TypeError("WebSocket data is str or bytes")
        s.unsent.append(data)
        s.unsent_bytes += len(data)
        if len(s.unsent) > MAX_UNSENT_FRAMES or s.unsent_bytes > MAX_UNSENT_BYTES:
            self.counters["slow_closed"] += 1
            s.unsent.clear()
            s.unsent_bytes = 0
            self._close(s, 1013, "not reading fast enough")
            return
        if s.writer is None:
            s.writer = self.loop.create_task(self._write(s))

    async def _write(self, s: Socket) -> None:
        """A socket's writer: its frames in order, then its close frame if it is closing.
        A browser that takes none of them within SEND_TIMEOUT is cut off."""
        try:
            while s.unsent:
                data = s.unsent.popleft()
                s.unsent_bytes -= len(data)
                send = s.ws.send_str(data) if isinstance(data, str) else s.ws.send_bytes(data)
                if s.transport is not None and s.transport.get_write_buffer_size() > 1 << 16:
                    await asyncio.wait_for(send, SEND_TIMEOUT)   # it may wait for the browser
                else:
                    await send       # (no wait_for per frame: a task each, a third of the rate)
            if s.closing is not None and not s.ws.closed:
                code, reason = s.closing
                await asyncio.wait_for(s.ws.close(code=code, message=reason.encode()), CLOSE_TIMEOUT)
        except (ConnectionError, RuntimeError, asyncio.TimeoutError):
            s.unsent.clear()
            if s.transport is not None:
                s.transport.abort()          # it does not read: drop the connection
            if s.state != "closed":
                self._close(s, 1013, "not reading")
        finally:
            s.writer = None
            if s.unsent and s.state != "closed":
                s.writer = self.loop.create_task(self._write(s))

    def status(self) -> dict[str, Any]:
        return {"role": "gateway", "pid": os.getpid(), "slot": None, "up": self.serving,
                "listen": self.g["listen"], "incarnation": self.incarnation,
                "last_batch": self.last_batch,
                "sockets": len(self.sockets),
                "actors_with_sockets": len(self.rooms), **self.counters}


def _allowed_hosts(listen: str, extra: list[str]) -> set[str] | None:
    """The Host headers the gateway answers: its listen address (and the loopback names,
    for a loopback address) plus ``allowed_hosts``; None: any (``"*"``, or a wildcard
    address such as 0.0.0.0 without a list)."""
    host, port = listen.rsplit(":", 1)
    if "*" in extra:
        return None
    if host in ("0.0.0.0", "::", "[::]") and not extra:
        return None
    names = {f"{host}:{port}".lower(), *(h.lower() for h in extra)}
    if host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        names |= {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if port == "80":
        names |= {n.rsplit(":", 1)[0] for n in list(names)}
    return names


def _arguments(body: bytes) -> tuple[list[Any], dict[str, Any]]:
    """An HTTP body as (args, kwargs): a JSON array, a JSON object, or nothing."""
    if not body.strip():
        return [], {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "bad_request", f"the body is not JSON ({exc})") from None
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    raise Refused(400, "bad_request", "the body is a JSON array (positional arguments) or "
                                      "object (keyword arguments)")


def main(cfg: NodeConfig) -> None:
    """Entry point of the gateway process (forked by the node supervisor)."""
    asyncio.run(Gateway(cfg).run())
