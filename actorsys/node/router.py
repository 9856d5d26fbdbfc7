"""The router: owner of the shard map and of the node's membership view.

Clients ask the router for the map (``MAP``) and then send every message straight to
the worker slot that owns the actor, so the router is off the hot path. The MAP reply
also names the node's limits and endpoints a client needs: ``max_message_bytes``, the
supervision tree's (``tree``) and the gateway's for Python subscribers (``subscribers``;
nil when the node has no gateway). The router
also:

* answers ``STATUS`` with every process of the node (supervisor, router, workers) and
  their counters, asking each worker with a short deadline; a worker that cannot answer
  in time (busy in a long sync turn, or gone) is described from the slot board the node
  supervisor shares with it (:mod:`.slots`: up or not, busy with which turn, which
  fields are stale);
* forwards asks and tells that a client sends to it (for simple peers such as the CLI),
  relaying the worker's reply;
* answers bad input with an error and counts it (never logs it: a flood of bad frames
  writes nothing); nothing a peer sends stops it;
* refuses what the sender's key may not do (``actorsys/net/authz.py``): ``forbidden``,
  counted and logged rate-limited per key, checked before forwarding (the worker sees
  the router's own key);
* logs a tell it forwards that cannot leave (no shard map yet, a full send queue), with
  its reason, rate-limited per actor type (:mod:`actorsys.lograte`): a tell has no reply.

The router keeps no state that is not in ``data_dir/node.meta``, so a restarted router
serves the same map at the same endpoint and clients reconnect by themselves.

In a cluster (a ``[cluster]`` table) the router is also the node's member of the cluster
(``actorsys/cluster/coordinator.py``): it joins through etcd before it serves, answers
MAP with the whole cluster's map, grants its workers their shards, moves shards to and
from other nodes, and answers CLUSTER and LEAVE. A cluster it cannot join (etcd
unreachable, a duplicate ``node_id``) ends the router with :data:`EXIT_CLUSTER`, and
the node stops saying why; a node that left its cluster ends with :data:`EXIT_LEFT`, and
the node stops cleanly.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import psutil
import zmq

from ..client.transport import AsyncTransport
from .. import metrics
from ..config import NodeConfig, NodeLayout
from ..config.defaults import DRAIN_TIMEOUT, LOG_BURST, LOG_MAX_TYPES, LOG_WINDOW
from ..errors import ActorError, BadRequest
from ..log import get_logger
from ..lograte import RateLimit
from ..net.authz import ADMIN, Refusals, refuse_request
from ..net.listener import Listener
from ..net.keys import node_keys
from ..net.members import apply_member_keys
from ..net.sockets import SocketPump
from ..protocol import wire
from ..protocol.shardmap import ShardMap
from ..protocol.board import SlotBoard
from .scrape import MetricsListener, NodeScrape
from .slots import SlotStatus

log = get_logger("router")
#: the router's exit status when the node cannot join its cluster (the node stops)
EXIT_CLUSTER = 79
#: the router's exit status after the node left its cluster (the node stops cleanly)
EXIT_LEFT = 80

#: seconds between two tries to bind ``[node] metrics``'s address
METRICS_RETRY = 5.0

#: the routing frames of a request (the peer's identity, maybe an empty delimiter)
Envelope = tuple[bytes, ...]


class Router:
    """The router process: answers MAP, PING, STATUS, CLUSTER and LEAVE, forwards what clients send it
    (see the module docstring). Its endpoints are the node's :class:`NodeLayout`."""

    def __init__(self, cfg: NodeConfig, layout: NodeLayout, meta: dict[str, Any],
                 board: SlotBoard | None = None) -> None:
        self.cfg, self.layout, self.endpoint, self.meta = cfg, layout, layout.router, meta
        #: how status describes a worker, answered or not (the board: shared with the workers)
        self.slots = SlotStatus(board, cfg.start_timeout)
        self.map = ShardMap(epoch=meta["epoch"], shards=meta["shards"], owner=list(meta["owner"]),
                            endpoints=list(layout.workers))
        #: the cluster side (None: a single node); set in run() before anything is served
        self.cluster: Any = None
        #: the exit status run() ends with (EXIT_CLUSTER, EXIT_LEFT)
        self.exit_code = 0
        #: where a failure to join is reported to the node supervisor
        self.report_fd: int | None = None
        self.started = time.time()
        self.counters = {"received": 0, "bad_frames": 0, "forwarded": 0, "dropped_replies": 0,
                         "auth_refused": 0, "handshake_failed": 0}
        #: the rate limit of the dropped-tell log, per actor type
        self.drops = RateLimit(log, "dropped tells", burst=LOG_BURST, window=LOG_WINDOW,
                               max_keys=LOG_MAX_TYPES)
        #: requests refused for the sender's key (counted in ``forbidden``, logged rate-limited)
        self.refusals = Refusals(log, self.counters)

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.ctx = zmq.Context()
        keys = node_keys(self.cfg)      # tcp: CURVE server and client, ZAP before the bind
        self.listener = Listener(self.ctx, self.loop, keys, self.counters, self.endpoint,
                                 self.cfg.max_message_bytes)
        self.sock = self.listener.sock
        self.transport = AsyncTransport(self.ctx, None, shard_map=self.map,
                                        max_message_bytes=self.cfg.max_message_bytes,
                                        max_pending=self.cfg.max_pending_asks,
                                        default_timeout=self.cfg.ask_timeout,
                                        keys=keys.client if keys else None)
        self._done: asyncio.Future[None] = self.loop.create_future()
        if self.cfg.cluster is not None:
            await self._join_cluster(keys.public.decode() if keys else None)
            if self._done.done():
                self.transport.close()
                self.listener.close()
                self.ctx.term()
                return
        self.pump = SocketPump(self.loop, self.sock, self._on_frames)
        own = metrics.current()
        own.counters = self.counters
        if self.cluster is not None:
            self._cluster_gauges(own)
        self.scrape = NodeScrape(self.transport, self.layout, own)
        self.metrics_http: MetricsListener | None = None
        if self.layout.metrics_listen is not None:
            self.metrics_http = MetricsListener(self.scrape, self.layout.metrics_listen)
            self._serving_metrics = self.loop.create_task(self._serve_metrics(self.metrics_http))
        for sig in (signal.SIGTERM,):   # SIGINT (Ctrl-C) is the supervisor's alone
            self.loop.add_signal_handler(sig, self._stop)
        self._sweeper = self.loop.call_later(1.0, self._sweep)
        try:
            await self._done
        finally:
            if self.cluster is not None:
                try:
                    await asyncio.wait_for(self.cluster.close(), 5.0)
                except Exception as exc:        # the lease then expires by itself
                    log.warning("leaving the cluster's etcd cleanly failed: %s", exc)
            self._sweeper.cancel()
            if self.metrics_http is not None:
                self._serving_metrics.cancel()
                await self.metrics_http.close()
            self.drops.flush()
            self.pump.close()
            self.transport.close()
            self.listener.close()
            self.ctx.term()

    async def _join_cluster(self, public_key: str | None) -> None:
        """Join the cluster (``actorsys.cluster`` is imported here, after the fork: gRPC
        must not run in the node supervisor). A failure ends the router (EXIT_CLUSTER)."""
        from ..cluster.coordinator import Coordinator
        self.cluster = Coordinator(self.cfg, self.layout, self.meta, self._call_worker, public_key,
                                   self._set_map, self._left)
        self.cluster.on_crash = self._crashed
        try:
            await self.cluster.start()
        except Exception as exc:
            why = (f"cannot join cluster {self.cluster.ccfg.name!r} as node "
                   f"{self.cluster.me!r}: {exc}")
            log.error("%s", why)
            if self.report_fd is not None:
                os.write(self.report_fd, (why[:4000] + "\n").encode("utf-8", "replace"))
            self.exit_code = EXIT_CLUSTER
            self._stop()

    async def _call_worker(self, endpoint: str, cmd: str, args: dict[str, Any],
                           timeout: float) -> dict[str, Any]:
        reply: dict[str, Any] = await self.transport.call_peer(
            endpoint, wire.SHARDS, [cmd, args], timeout, f"worker at {endpoint}")
        return reply

    def _set_map(self, m: ShardMap) -> None:
        self.map = m
        apply_member_keys(self.listener.guard, self.cluster.member_keys())
        self.transport.set_map(m, self.cfg.max_message_bytes, self.layout.tree)

    def _crashed(self) -> None:
        self.exit_code = 1           # (restarted by the node supervisor, which counts it)
        self._stop()

    def _left(self) -> None:
        self.exit_code = EXIT_LEFT
        self.loop.call_later(0.2, self._stop)    # the LEAVE reply leaves first

    def _cluster_gauges(self, own: metrics.ProcessMetrics) -> None:
        """The cluster as gauges (one view per scrape: it is read once for all five)."""
        memo: list[Any] = [0.0, {}]

        def view() -> dict[str, Any]:
            now = time.monotonic()
            if now - memo[0] > 1.0:
                memo[:] = [now, self.cluster_view()]
            v: dict[str, Any] = memo[1]
            return v
        cluster = self.cluster
        assert cluster is not None
        own.gauge("actorsys_cluster_nodes", lambda: len(view().get("nodes", ())))
        own.gauge("actorsys_cluster_nodes_alive",
                  lambda: sum(1 for n in view().get("nodes", ()) if n.get("alive")))
        own.gauge("actorsys_shards_owned", cluster.count_mine)
        own.gauge("actorsys_shards_under_replicated", lambda: view().get("under_replicated", 0))
        own.gauge("actorsys_shards_unavailable", lambda: view().get("unavailable", 0))

    def cluster_view(self) -> dict[str, Any]:
        """What CLUSTER answers: the cluster's nodes, or this single node."""
        if self.cluster is not None:
            view: dict[str, Any] = self.cluster.view()
            return view
        return {"name": None, "epoch": self.map.epoch,
                "nodes": [{"id": None, "endpoint": self.endpoint, "alive": True,
                           "shards": self.map.shards}]}

    async def leave(self) -> dict[str, Any]:
        """What LEAVE answers: this node's shards moved to the others; then it stops."""
        if self.cluster is None:
            raise BadRequest("this node is not in a cluster")
        result: dict[str, Any] = await self.cluster.leave(DRAIN_TIMEOUT)
        return result

    def _sweep(self) -> None:
        """Once a second: the summary lines of dropped-tell windows that ended."""
        self.drops.sweep()
        self.refusals.sweep()
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def _stop(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _send(self, envelope: Envelope, payload: bytes) -> None:
        try:
            self.sock.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counters["dropped_replies"] += 1
        self.pump.kick()

    def _on_frames(self, frames: list[bytes]) -> None:
        c = self.counters
        c["received"] += 1
        try:
            envelope, op, rid, rest = wire.decode_frames(frames, self.cfg.max_message_bytes)
        except wire.Rejected as r:
            c["bad_frames"] += 1
            self._send(r.envelope, wire.err(r.rid, r.error.to_wire()))
            return
        guard = self.listener.guard
        if guard is not None:      # the sender's key's role and types (net/authz.py)
            grant = guard.grant(self.pump.user)
            if grant is not ADMIN and (no := refuse_request(grant, op, rest)) is not None:
                self._send(envelope, wire.err(rid, self.refusals.refused(grant, no).to_wire()))
                return
        if op == wire.MAP:
            self._send(envelope, wire.ok(rid, self.map.to_wire(
                max_message_bytes=self.cfg.max_message_bytes, tree=self.layout.tree,
                subscribers=self.layout.subscribers)))
        elif op == wire.PING:
            self._send(envelope, wire.ok(rid, "pong"))
        elif op == wire.STATUS:
            self.loop.create_task(self._status(envelope, rid))
        elif op == wire.METRICS:
            self.loop.create_task(self._metrics(envelope, rid))
        elif op == wire.TOP:
            self.loop.create_task(self._top(envelope, rid, rest[0], rest[1]))
        elif op == wire.CLUSTER:
            self._send(envelope, wire.ok(rid, self.cluster_view()))
        elif op == wire.LEAVE:
            self.loop.create_task(self._leave(envelope, rid))
        elif op == wire.TELL:
            c["forwarded"] += 1
            try:
                self.transport.tell(rest[0], rest[1], rest[2], rest[3], rest[4],
                                    rest[5] if len(rest) > 5 else None)
            except ActorError as exc:
                c["dropped_replies"] += 1
                if self.drops.allow(rest[0] if len(rest[0]) <= 200 else "*"):
                    log.warning("dropped a tell %.100r to %.200s/%.200s: %s: %s", rest[2], rest[0],
                                rest[1], type(exc).__name__, exc)
        elif op == wire.ASK or op == wire.SPAWN:
            c["forwarded"] += 1
            self.loop.create_task(self._forward(envelope, rid, op, rest[:2] if op == wire.SPAWN else rest))
        else:
            c["bad_frames"] += 1
            self._send(envelope, wire.err(rid, BadRequest(
                f"the router does not serve {wire.OPS[op]} requests"
                + (" (send them to the supervision tree's endpoint)" if op == wire.SUP else "")).to_wire()))

    async def _forward(self, envelope: Envelope, rid: int, op: int, rest: list[Any]) -> None:
        try:
            if op == wire.SPAWN:
                result = await self.transport.spawn(rest[0], rest[1])
            else:
                result = await self.transport.ask(rest[0], rest[1], rest[2], rest[3], rest[4],
                                                  ctx=rest[5] if len(rest) > 5 else None)
        except ActorError as exc:
            self._send(envelope, wire.err(rid, exc.to_wire()))
        else:
            self._send(envelope, wire.ok(rid, result))

    async def _leave(self, envelope: Envelope, rid: int) -> None:
        await self._answer(envelope, rid, "leave", self.leave())

    async def _metrics(self, envelope: Envelope, rid: int) -> None:
        await self._answer(envelope, rid, "metrics", self.scrape.families())

    async def _top(self, envelope: Envelope, rid: int, n: int, by: str) -> None:
        await self._answer(envelope, rid, "top", self.scrape.top(n, by))

    async def _answer(self, envelope: Envelope, rid: int, what: str, work: Any) -> None:
        """Answer with what ``work`` (a coroutine) gives, or the ActorError it raises; a
        bug in it is logged and answered as an error, never left to the asker's deadline."""
        try:
            result = await work
        except ActorError as exc:
            self._send(envelope, wire.err(rid, exc.to_wire()))
        except Exception as exc:
            log.exception("%s failed", what)
            self._send(envelope, wire.err(rid, ActorError(
                f"{what} failed: {type(exc).__name__}: {exc}").to_wire()))
        else:
            self._send(envelope, wire.ok(rid, result))

    async def _serve_metrics(self, listener: MetricsListener) -> None:
        """Serve ``/metrics``; an address that cannot be bound is logged and tried again
        every :data:`METRICS_RETRY` seconds (the node serves on meanwhile)."""
        said = False
        while True:
            try:
                await listener.start()
            except OSError as exc:
                if not said:
                    log.error("cannot serve metrics at %s ([node] metrics): %s; trying again "
                              "every %.0f s", listener.listen, exc, METRICS_RETRY)
                    said = True
                await listener.close()
                await asyncio.sleep(METRICS_RETRY)
                continue
            if said:
                log.info("metrics served at %s after all", listener.listen)
            return

    async def _status(self, envelope: Envelope, rid: int) -> None:
        self._send(envelope, wire.ok(rid, await self.status()))

    async def status(self) -> dict[str, Any]:
        async def one(slot: int) -> dict[str, Any]:
            try:
                st: dict[str, Any] = await self.transport.call_peer(
                    self.layout.workers[slot], wire.STATUS, [], 1.0, f"worker slot {slot}")
                return self.slots.answered(slot, st)
            except ActorError as exc:
                return self.slots.unanswered(slot, str(exc))

        async def peer(endpoint: str | None, role: str, who: str) -> list[dict[str, Any]]:
            """The status of the tree or the gateway (none if the node has none)."""
            if endpoint is None:
                return []
            try:
                return [self.slots.peer_answered(
                    role, await self.transport.call_peer(endpoint, wire.STATUS, [], 1.0, who))]
            except ActorError as exc:
                return [self.slots.peer_unanswered(role, str(exc))]

        workers, trees, gateways = await asyncio.gather(
            asyncio.gather(*(one(i) for i in range(len(self.layout.workers)))),
            peer(self.layout.tree, "tree", "supervision tree"),
            peer(self.layout.gateway, "gateway", "gateway"))
        workers = [*workers, *trees, *gateways]
        for w in workers:
            w.setdefault("up", True)
        processes = [
            {"role": "supervisor", "pid": os.getppid(), "slot": None, "up": True},
            {"role": "router", "pid": os.getpid(), "slot": None, "up": True,
             "endpoint": self.endpoint, **self.counters},
            *workers,
        ]
        for p in processes:
            try:
                p["rss"] = psutil.Process(p["pid"]).memory_info().rss if p["pid"] else None
            except psutil.Error:
                p["rss"] = None
        out = {"endpoint": self.endpoint, "epoch": self.map.epoch, "shards": self.map.shards,
               "workers": len(self.layout.workers), "durability": self.cfg.durability,
               "uptime": time.time() - self.started, "processes": processes}
        if self.cluster is not None:
            out["cluster"] = self.cluster.status()
        return out


def main(cfg: NodeConfig, layout: NodeLayout, meta: dict[str, Any],
         report_fd: int | None = None, board: SlotBoard | None = None) -> int:
    """Entry point of the router process (forked by the node supervisor, which has set up
    its logging as every child's: ``supervisors/processes.py``); returns its exit status
    (:data:`EXIT_CLUSTER` after writing why to ``report_fd``, :data:`EXIT_LEFT`)."""
    r = Router(cfg, layout, meta, board)
    r.report_fd = report_fd
    asyncio.run(r.run())
    return r.exit_code
