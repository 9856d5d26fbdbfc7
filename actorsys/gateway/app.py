"""The gateway process: HTTP and WebSockets in front of a node's actors (aiohttp).

In the user's words:

* A ``[gateway]`` table in the config starts it (``listen = "127.0.0.1:8080"``). The node
  supervisor starts it after the workers, stops it first, and restarts it like any
  child if it dies; its sockets die with it, and browsers reconnect.
* ``POST /actors/{type}/{key}/{method}`` with a JSON body asks the actor and answers the
  result as JSON (:mod:`.http`, with the error -> status table).
* ``GET /ws/{type}/{key}`` opens a WebSocket attached to that actor (:mod:`.sockets`;
  the actor's side is :mod:`actorsys.actor.connection`). The gateway holds the sockets:
  the actor can be passivated while they stay open (hibernation), and its worker can
  crash; the actor comes back from its last commit and the sockets keep working.
* Delivery. A socket's events reach its actor in order, in batches, each applied once
  and its effects reaching the sockets once (:mod:`.batches`, :mod:`.effects`).
* Python subscribers: ``client.subscribe(ref)`` in any Python process is a connection
  of the actor held here, like a WebSocket, over a ZeroMQ endpoint of its own
  (:mod:`.subscribers`; the client's side is ``actorsys/client/subscriptions.py``).
* Static files from ``static`` (``/`` serves its ``index.html``).
* Limits and access: ``max_message_bytes``, ``max_connections_per_actor``,
  ``max_connections``, ``allowed_origins``, ``allowed_hosts``, ``expose`` and the
  ``auth`` hook (:mod:`.admission`, :mod:`.auth`). Before any of those, every TCP
  connection passes :mod:`.doors`: ``max_connections`` (HTTP and WebSocket together),
  ``max_connections_per_address``, ``fd_reserve``, ``header_timeout``, and an early 413
  from ``Content-Length``; ``body_timeout`` bounds reading a body (:mod:`.http`).
* ``auto_response``: frames the gateway answers itself, without waking the actor
  (:mod:`.sockets`).

A stop (SIGTERM) closes every socket (1001, going away), hands their actors the
disconnects within the node's ``shutdown_timeout``, then exits.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from functools import partial
from typing import Any

import zmq
from aiohttp import web

from .. import metrics
from ..client.transport import AsyncTransport
from ..config import NodeConfig, NodeLayout, import_function
from ..config.gateway import auto_responses
from ..errors import ActorError, NodeUnavailable
from ..log import get_logger
from ..lograte import RateLimit
from ..net.listener import Listener
from ..net.members import apply_member_keys
from ..net.keys import node_keys
from ..net.sockets import SocketPump
from ..protocol import wire
from .admission import Admission, error_response
from .auth import AuthHook, Refused
from .batches import Delivery
from .dashboard import Dashboard
from .doors import COUNTERS as DOOR_COUNTERS, Doors
from .effects import Effects, NodeSide
from .http import HttpAsks
from .sockets import Hub
from .subscribers import Subscribers, bind as subscriber_endpoint

log = get_logger("gateway")
#: seconds /metrics waits for the router's gathering (each process has 2 s of it)
METRICS_SECONDS = 5.0

#: the gateway's counters, in its status (``auth_refused`` and ``handshake_failed`` are
#: the CURVE guard's; ``auto_responses``: frames answered by ``auto_response``)
COUNTERS = ("http_requests", "http_errors", "ws_opened", "ws_closed", "ws_refused", "events",
            "batches", "redeliveries", "duplicates", "duplicate_effects", "failed_events",
            "dropped_events", "stale_effects", "effects", "slow_closed", "bad_frames",
            "hook_refused", "origin_refused", "auth_refused", "handshake_failed", "auto_responses",
            "subscribers_opened", "subscribers_closed", "subscribers_refused", "subscribers_lost",
            *DOOR_COUNTERS)


class Gateway:
    """One gateway process: its sockets inside the node, its HTTP site, and the parts
    that serve them (admission, HTTP asks, WebSockets, batches, effects)."""

    def __init__(self, cfg: NodeConfig, layout: NodeLayout) -> None:
        assert cfg.gateway is not None and layout.gateway is not None and layout.gateway_listen
        self.cfg, self.layout, self.g = cfg, layout, cfg.gateway
        self.listen: str = layout.gateway_listen
        self.incarnation = secrets.token_hex(8)
        if cfg.cluster is not None:      # one of many gateways (runtime/ws_turns.py)
            self.incarnation += f"@{layout.gateway}"
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.serving = False      # the HTTP site is up
        self._map_fetch: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        cfg, g = self.cfg, self.g
        self.ctx: zmq.Context[Any] = zmq.Context()
        keys = node_keys(cfg)
        self.transport = AsyncTransport(self.ctx, self.layout.router,
                                        max_message_bytes=cfg.max_message_bytes,
                                        max_pending=cfg.max_pending_asks,
                                        default_timeout=cfg.ask_timeout,
                                        keys=keys.client if keys else None)
        auth = AuthHook(import_function(g["auth"], cfg.python_path), self.counters) if g["auth"] else None
        self.admission = Admission(g, self.listen, set(g["expose"] or cfg.actors), auth, self.counters)
        self.hub = Hub(loop, g, self.incarnation, self.admission, self.counters,
                       auto_responses(g, cfg.auto_response, cfg.actors))
        self.effects = Effects(self.hub, self.incarnation, self.counters)
        self.delivery = Delivery(loop, self.hub, self.effects, self.transport, self.incarnation,
                                 self.counters, max_message_bytes=cfg.max_message_bytes,
                                 ask_timeout=cfg.ask_timeout, turn_timeout=cfg.turn_timeout)
        self.hub.connect(self.delivery)
        #: every repeated log line of the gateway passes it (a few a minute per kind)
        self.limited = RateLimit(log, "gateway log lines", burst=5, window=60.0)
        self.http = HttpAsks(self.admission, self.transport, cfg.ask_timeout, g["max_message_bytes"],
                             self.counters, body_timeout=g["body_timeout"], limited=self.limited)
        # (its protocol factory, aiohttp's, is set once the runner has one)
        self.doors = Doors(loop, g, self.counters, asyncio.Protocol, self.limited)
        assert self.layout.gateway is not None
        self.listener = Listener(self.ctx, loop, keys, self.counters, self.layout.gateway,
                                 cfg.max_message_bytes)
        self.sock = self.listener.sock
        self.metrics = metrics.current()
        self.metrics.counters = self.counters
        self.metrics.gauge("actorsys_gateway_sockets", lambda: len(self.hub.sockets))
        self.metrics.gauge("actorsys_gateway_connections", lambda: self.doors.held)
        self.metrics.gauge("actorsys_gateway_subscribers", lambda: self.subscribers.count())
        node_side = NodeSide(self.sock, self.effects, self.status, cfg.max_message_bytes, self.counters,
                             on_keys=partial(apply_member_keys, self.listener.guard),
                             on_map=self._router_map, families=self.metrics.families)
        self.pump = SocketPump(loop, self.sock, node_side.on_frames)
        node_side.guard, node_side.pump = self.listener.guard, self.pump
        assert self.layout.subscribers is not None
        self.subscribers = Subscribers(
            loop, self.hub, subscriber_endpoint(self.ctx, self.layout.subscribers,
                                                g["max_message_bytes"], self.listener.guard),
            set(cfg.actors), g["subscriber_heartbeat"], g["max_message_bytes"], self.counters,
            self.listener.guard)
        await self._wait_for_the_map()
        self.runner = web.AppRunner(self._app(), access_log=None, handle_signals=False,
                                    shutdown_timeout=1.0, keepalive_timeout=2 * g["header_timeout"])
        await self.runner.setup()
        assert self.runner.server is not None
        self.doors.factory = self.runner.server
        host, port = self.listen.rsplit(":", 1)
        # (not a TCPSite: the gateway accepts, then hands aiohttp what it admits)
        self.doors.listen(host.strip("[]"), int(port))
        self.serving = True
        stop = asyncio.Event()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        log.info("serving http://%s", self.listen)
        try:
            await stop.wait()
        finally:
            await self._shutdown()

    def _router_map(self, version: Any) -> None:
        """The router's map version (pushed with the members' keys at every map change
        and every second): if this gateway's map is another, fetch it now. Nothing else
        would tell it that a node died and its shards failed over: a batch redelivered
        to the dead node's worker (still in the map it has) would wait in ZeroMQ's queue
        until its patience ran out, and its sockets would be closed. The new map fails
        (or resends to the new leader) what is queued there (client/maps.py)."""
        m = self.transport.map
        if (m is None or not isinstance(version, (list, tuple)) or m.version() == list(version)
                or self.transport.closed):
            return
        if self._map_fetch is None or self._map_fetch.done():
            self._map_fetch = self.loop.create_task(self._fetch_map())

    async def _fetch_map(self) -> None:
        try:
            await self.transport.refresh_map(timeout=1.0)
        except ActorError as exc:        # (the router's next push tries again)
            log.debug("fetching the map after the router's push failed: %s", exc)

    async def _wait_for_the_map(self) -> None:
        """The shard map from the router (it may still be starting), within start_timeout."""
        deadline = time.monotonic() + self.cfg.start_timeout
        while True:
            try:
                await self.transport.refresh_map(timeout=1.0)
                return
            except NodeUnavailable:
                if time.monotonic() > deadline:
                    raise

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=self.g["max_message_bytes"],
                              middlewares=[self.doors.middleware, self.admission.check_host_and_cors])
        app.router.add_post("/actors/{type}/{key}/{method}", self.http.handle)
        app.router.add_route("OPTIONS", "/actors/{type}/{key}/{method}", self.admission.preflight)
        app.router.add_get("/ws/{type}/{key}", self.hub.serve)
        if self.g["metrics"]:
            app.router.add_get("/metrics", self._metrics)
        if self.g["dashboard"]:
            Dashboard(self.admission, self.transport, self.cfg.ask_timeout).add_routes(app)
            if not self.g["auth"]:
                log.warning("the dashboard at http://%s/dashboard shows every actor's committed "
                            "data to whoever reaches this address: no [gateway] auth hook is "
                            "set", self.listen)
        static = self.g["static"]
        if static:
            index = os.path.join(static, "index.html")
            if os.path.isfile(index):
                async def index_page(_request: web.Request) -> web.StreamResponse:
                    return web.FileResponse(index)
                app.router.add_get("/", index_page)
            app.router.add_static("/", static)
        return app

    async def _metrics(self, _request: web.Request) -> web.StreamResponse:
        """The whole node's metrics (``[gateway] metrics = true``): the router gathers them
        from every process (``actorsys/node/scrape.py``). The auth hook sees
        ``actor_method`` ``$metrics``."""
        try:
            await self.admission.admit_operator(_request, "$metrics", "", "$metrics")
            families = await self.transport.call_router(wire.METRICS, METRICS_SECONDS)
            return metrics.http_response(metrics.check_families(families))
        except Refused as r:
            return error_response(r.status, r.code, str(r))
        except (ActorError, ValueError) as exc:
            log.warning("/metrics: the router's metrics did not come: %s", exc)
            return web.Response(status=503, text=f"the node's metrics did not come: {exc}\n")

    async def _shutdown(self) -> None:
        """Close every socket (1001, going away), hand their actors the disconnects
        within the shutdown time, then stop."""
        deadline = self.loop.time() + max(self.cfg.shutdown_timeout - 1.0, 0.5)
        self.doors.close()      # (no new connection while the sockets close: review)
        self.hub.close_all(1001, "the server is stopping")
        tasks = [*self.delivery.tasks(), *self.hub.leaving_writers()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(deadline - self.loop.time(), 0.1))
        await self.runner.cleanup()
        self.subscribers.close()
        self.pump.close()
        self.transport.close()
        self.listener.close()
        self.ctx.term()

    def status(self) -> dict[str, Any]:
        """Its counters, and what it holds now: sockets (subscriptions included),
        subscriptions, and the frames and bytes waiting in their queues."""
        unsent = self.hub.unsent()
        return {"role": "gateway", "pid": os.getpid(), "slot": None, "up": self.serving,
                "listen": self.listen, "incarnation": self.incarnation,
                "last_batch": self.delivery.last_batch,
                "sockets": len(self.hub.sockets), "subscribers": self.subscribers.count(),
                "connections": self.doors.held,
                "unsent_frames": unsent[0], "unsent_bytes": unsent[1],
                "actors_with_sockets": len(self.hub.rooms), **self.counters}


def main(cfg: NodeConfig, layout: NodeLayout) -> None:
    """Entry point of the gateway process (forked by the node supervisor, which has set up
    its logging as every child's: ``supervisors/processes.py``)."""
    asyncio.run(Gateway(cfg, layout).run())
