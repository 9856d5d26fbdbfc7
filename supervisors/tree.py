"""The supervision tree process: hosts every ``[supervisors.NAME]`` of a node.

In the user's words:

* The node supervisor starts this process (after the router and the workers) when the
  config declares supervisors, and restarts it if it dies.
* At node start it starts the top-level supervisors in declared order; each starts its
  children in order (``supervisor.py`` has the semantics). If a top-level supervisor
  cannot start, or later gives up (restart intensity) or shuts down (auto_shutdown), the
  others are stopped in reverse order and this process exits: status 3 for a failure,
  4 for an auto-shutdown (the node then exits 0); either way the node supervisor stops
  the node cleanly.
* Exit status 3 or 4 means "stop the node"; any other exit (a crash, a stray SIGTERM)
  is restarted by the node supervisor.
* It learns that a child exited from its worker (an EXIT message sent after the child's
  last commit) or from the loss of the worker process itself (the ZeroMQ connection to
  that slot drops: every child there is ``killed``).
* It serves the runtime API (``which_children``, ``count_children``, ``start_child``,
  ``terminate_child``, ``restart_child``, ``delete_child``) to any client, one request
  at a time in arrival order with the exits, so each is atomic like a call to an OTP
  supervisor process.
* It keeps what config files cannot say in ``data_dir/tree`` (LevelDB): children added
  at run time (restored at the next node start, except temporary ones), children
  stopped or deleted at run time (kept so if this process restarts; a node start applies
  the config afresh), and the addresses it supervises (a declared child dropped from the
  config is released to be a plain actor).
* SIGTERM stops every top-level supervisor in reverse order, then the process exits.
* A cluster node's tree (``[cluster]``) is a :class:`~supervisors.clustertree.ClusterTree`,
  one of the cluster's candidates for its one tree (``cluster.py`` has the semantics).

The process is four states (:class:`TreeState`): ``starting`` (the top-level supervisors
start) -> ``running`` -> ``stopping`` (SIGTERM: nothing queued runs but the stop) ->
``stopped`` (a cluster node's tree is ``standby`` while another node holds it). It is
the process its supervisors run in: its one event queue (the events of the
supervisors, the exits, the runtime API's requests, one at a time, in order), its
socket and the requests it serves, its store (``store.py``) and what a top-level
supervisor's exit does to it. What the supervisors see of it, their host (``host.py``:
actor children reached through the workers, the index of supervised addresses, the
run-time record), is a :class:`~supervisors.treehost.TreeHost` (``treehost.py``).

Invariants: ``host.store`` is ``store`` and ``host.transport`` is ``transport`` once the
process runs; ``roots`` are the top-level supervisors in start order.
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import time
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

import zmq

from actorsys import metrics
from actorsys.client.transport import AsyncTransport
from actorsys.config import NodeConfig, NodeLayout
from actorsys.config import supervision as specs
from actorsys.config.layout import FAILURE_FILE
from actorsys.errors import (ActorError, BadRequest, Overloaded, StartFailed, SupervisorError,
                             SupervisorNotFound)
from actorsys.net.authz import ADMIN, Refusals
from actorsys.net.listener import Listener
from actorsys.net.keys import node_keys
from actorsys.net.sockets import SocketPump
from actorsys.protocol import wire
from actorsys.protocol.shardmap import ShardMap

from .child import NORMAL_EXITS
from .host import Event
from .store import TreeStore
from .supervisor import Boot, ExitWhy, Supervisor, child_log
from .treehost import TreeHost

if TYPE_CHECKING:
    from .etcdstore import EtcdTreeStore
    from actorsys.net.keys import NodeKeys

log = logging.getLogger("supervisors.tree")

EXIT_ROOT_FAILED = 3       # a top-level supervisor failed: the node stops with this status
EXIT_AUTO_SHUTDOWN = 4     # a top-level supervisor shut down (auto_shutdown): the node stops, 0
EXIT_DEPOSED = 5           # a cluster's tree lost its election (cluster.py): restarted, stands by
MAX_QUEUED_EVENTS = 100_000
READ_ONLY = ("which_children", "count_children")
COMMANDS = ("which_children", "count_children", "start_child", "terminate_child",
            "restart_child", "delete_child")


class TreeState(enum.Enum):
    STANDBY = "standby"        # a cluster node's tree while another node holds the election
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Queued(NamedTuple):
    """An event waiting its turn."""

    fn: Event
    args: tuple[Any, ...]


class Tree:
    """The supervision tree process its supervisors run in (see the module docstring)."""

    def __init__(self, cfg: NodeConfig, meta: dict[str, Any], endpoint: str,
                 worker_endpoints: list[str], restarted: bool = False) -> None:
        self.cfg, self.endpoint, self.restarted = cfg, endpoint, restarted
        self.router: str | None = None     # a cluster's tree gets its map from the router
        self.map = ShardMap(epoch=meta["epoch"], shards=meta["shards"], owner=list(meta["owner"]),
                            endpoints=worker_endpoints)
        self.counters = {"received": 0, "bad_frames": 0, "exits": 0, "admin": 0, "restarts": 0,
                         "adopted": 0, "auth_refused": 0, "handshake_failed": 0}
        #: requests refused for the sender's key (every request here but PING is an admin's)
        self.refusals = Refusals(log, self.counters)
        self.host = TreeHost(cfg, self.map, self.counters, self)
        self.roots: list[Supervisor] = []
        self.state = TreeState.STARTING
        self.code = 0
        self.report_fd: int | None = None    # a pipe to the node supervisor (set by main)
        self.events: deque[Queued] = deque()
        self.metrics = metrics.current()
        self.metrics.counters = self.counters
        self.metrics.counter_by("actorsys_supervisor_restarts",
                                lambda: {n: s.restarted for n, s in self.host.sups.items()})

    # -- process ------------------------------------------------------------------
    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.failure_path = os.path.join(self.cfg.data_dir, FAILURE_FILE)
        if not self.restarted and os.path.exists(self.failure_path):
            os.unlink(self.failure_path)
        self.ctx = zmq.Context()
        keys = node_keys(self.cfg)      # tcp: CURVE server and client, ZAP before the bind
        self.store: TreeStore | EtcdTreeStore = self._open_store(keys)
        self.listener = Listener(self.ctx, self.loop, keys, self.counters, self.endpoint,
                                 self.cfg.max_message_bytes)
        self.sock = self.listener.sock
        self.transport = AsyncTransport(self.ctx, self.router, shard_map=self.map,
                                        max_message_bytes=self.cfg.max_message_bytes,
                                        max_pending=1_000_000, default_timeout=self.cfg.ask_timeout,
                                        keys=keys.client if keys else None)
        self.host.store, self.host.transport = self.store, self.transport
        self.transport.on_slot_lost = self.host.slot_lost
        for slot in range(len(self.map.endpoints)):
            self.transport.connect_slot(slot)      # monitors see every worker's death
        self.wake = asyncio.Event()
        self.pump = SocketPump(self.loop, self.sock, self._on_frames)
        self._sweeper = self.loop.call_later(1.0, self._sweep)
        self._done = self.loop.create_future()
        for sig in (signal.SIGTERM,):   # SIGINT (Ctrl-C) is the supervisor's alone
            self.loop.add_signal_handler(sig, self._on_sigterm)
        consumer = self.loop.create_task(self._consume())
        try:
            await self._begin()
            await self._done
        finally:
            consumer.cancel()
            self._sweeper.cancel()
            child_log.flush()
            self._closing()
            self.pump.close()
            self.transport.close()
            self.listener.close(200)
            self.ctx.term()
            self.store.close()
        return self.code

    def _sweep(self) -> None:
        """Once a second: the summary lines of rate-limit windows that ended (a crash
        loop's, refusals')."""
        child_log.sweep()
        self.refusals.sweep()
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def _open_store(self, keys: NodeKeys | None) -> TreeStore | EtcdTreeStore:
        store = TreeStore(os.path.join(self.cfg.data_dir, "tree"), sync=self.cfg.durability == "fsync")
        self.host.resume_incarnations(store.incarnation_floor(self.host.incarnation))
        return store

    async def _begin(self) -> None:
        self.post(self._boot)

    def _closing(self) -> None:
        """(Before the sockets close.)"""

    def _on_sigterm(self) -> None:
        if self.state in (TreeState.STOPPING, TreeState.STOPPED):
            return
        self.state = TreeState.STOPPING
        # jump the queue (after the event in progress): nothing queued should start children now
        self.events.appendleft(Queued(self._shutdown, ()))
        self.wake.set()

    async def _stop_roots(self) -> None:
        """Stop the running top-level supervisors, last started first."""
        for sup in reversed(self.roots):
            if sup.running:
                try:
                    await sup.terminate()
                except Exception as exc:   # stopping must go on: log and continue
                    log.error("stopping supervisor '%s': %s: %s", sup.name, type(exc).__name__, exc)

    async def _shutdown(self) -> None:
        t0 = time.monotonic()
        await self._stop_roots()
        log.info("supervision tree stopped its children in order (%.3f s)", time.monotonic() - t0)
        self._finish(self.code)

    def _finish(self, code: int) -> None:
        self.code = code
        self.state = TreeState.STOPPED
        if not self._done.done():
            self._done.set_result(None)

    async def _consume(self) -> None:
        while True:
            if not self.events:
                self.wake.clear()
                await self.wake.wait()
                continue
            fn, args = self.events.popleft()
            if self.state is TreeState.STOPPED or (self.state is TreeState.STOPPING
                                                   and fn != self._shutdown):
                if fn == self._admin:       # answer rather than leave the caller to time out
                    self._reply_err(args[0], args[1], SupervisorError("the node is stopping"))
                continue
            try:
                await fn(*args)
            except Exception as exc:        # a bug here must not stop the tree: log it
                log.exception("error handling an event: %s: %s", type(exc).__name__, exc)

    async def _boot(self) -> None:
        if self.state is not TreeState.STARTING:
            return
        if not self.restarted:
            self.store.clear_stopped()
        names = specs.roots(self.host.specs)
        boot = Boot.HOST_RESTART if self.restarted else Boot.NODE_START
        for name in names:
            sup = Supervisor(self.host.specs[name], self.host)
            self.roots.append(sup)
            try:
                await sup.start(boot)
            except StartFailed as exc:
                await self._fail_roots(f"{exc}")
                return
        self.host.release_unsupervised()
        if self.state is TreeState.STARTING:
            self.state = TreeState.RUNNING
            log.info("supervision tree running: %s", ", ".join(names))

    async def _fail_roots(self, why: str) -> None:
        log.error("supervision tree failed: %s; stopping the node", why)
        await self._stop_roots()
        try:
            with open(self.failure_path, "w") as f:
                f.write(why)
        except OSError as exc:      # a full or read-only disk: the report below says why
            log.error("could not write %s: %s", self.failure_path, exc)
        if self.report_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.report_fd, why.encode("utf-8", "replace")[:4000])
        self._finish(EXIT_ROOT_FAILED)

    # -- what its supervisors' host asks of it (treehost.TreeProcess) ----------------------
    def post(self, fn: Event, *args: Any) -> None:
        """Queue an event; events run one at a time, in order."""
        self.events.append(Queued(fn, args))
        self.wake.set()

    def later(self, delay: float, fn: Event, *args: Any) -> None:
        self.loop.call_later(delay, self.post, fn, *args)

    @property
    def stopping(self) -> bool:
        return self.state is TreeState.STOPPING

    async def root_exited(self, sup: Supervisor, why: ExitWhy) -> None:
        if why is ExitWhy.AUTO_SHUTDOWN:
            log.info("top-level supervisor '%s' shut down (auto_shutdown); stopping the node", sup.name)
            await self._stop_roots()
            self._finish(EXIT_AUTO_SHUTDOWN)
        else:
            await self._fail_roots(f"top-level supervisor '{sup.name}' {why.value.replace('_', ' ')}")

    # -- events -----------------------------------------------------------------------
    async def _on_exit(self, sup_name: str, cid: str, type_name: str, key: str, inc: int,
                       reason: str, detail: str) -> None:
        held = self.host.index.get((type_name, key))
        if held is None or held.sup.name != sup_name or held.child.id != cid:
            return
        self.counters["exits"] += 1
        why = reason if not detail else f"{reason}: {detail}"
        await held.sup.on_exit(held.child, reason if reason in NORMAL_EXITS else why, inc)

    async def _command(self, sup: Supervisor, command: str, arg: Any) -> Any:
        if command == "which_children":
            return sup.which_children()
        if command == "count_children":
            return sup.count_children()
        if command == "start_child":
            return await sup.start_child(arg)
        if command == "terminate_child":
            await sup.terminate_child(arg)
            return None
        if command == "restart_child":
            return await sup.restart_child(arg)
        if command == "delete_child":
            await sup.delete_child(arg)
            return None
        raise BadRequest(f"unknown supervisor command {command!r:.100} "
                         f"(expected one of: {', '.join(COMMANDS)})")

    async def _admin(self, envelope: tuple[bytes, ...], rid: int, name: str, command: str, arg: Any,
                     deadline: float | None = None) -> None:
        self.counters["admin"] += 1
        if deadline is not None and time.time() > deadline:
            self.counters["expired"] = self.counters.get("expired", 0) + 1
            return          # its caller has given up: doing it now would surprise them
        sup = self.host.sups.get(name)
        try:
            if sup is None or (not sup.running and command not in READ_ONLY):
                raise SupervisorNotFound(
                    f"supervisor '{name:.200}' is not running" if sup is not None else
                    f"no supervisor named '{name:.200}' is running "
                    f"(configured: {', '.join(self.host.specs) or 'none'})")
            result = await self._command(sup, command, arg)
            await self.store.flushed()      # a cluster's record: in etcd before the answer
        except ActorError as exc:
            self._reply_err(envelope, rid, exc)
            return
        except Exception as exc:       # a bug must still answer the caller
            log.exception("%s on '%s': %s: %s", command, name, type(exc).__name__, exc)
            self._reply_err(envelope, rid, SupervisorError(f"{command} failed: {type(exc).__name__}: {exc}"))
            return
        self._reply(envelope, wire.ok(rid, result))

    # -- socket -----------------------------------------------------------------------
    def _reply(self, envelope: tuple[bytes, ...], payload: bytes) -> None:
        try:
            self.sock.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        self.pump.kick()

    def _reply_err(self, envelope: tuple[bytes, ...], rid: int, exc: ActorError) -> None:
        self._reply(envelope, wire.err(rid, exc.to_wire()))

    def _on_frames(self, frames: list[bytes]) -> None:
        self.counters["received"] += 1
        try:
            envelope, op, rid, rest = wire.decode_frames(frames, self.cfg.max_message_bytes)
        except wire.Rejected as r:
            self.counters["bad_frames"] += 1
            self._reply_err(r.envelope, r.rid, r.error)
            return
        guard = self.listener.guard
        if guard is not None and op != wire.PING:   # all else here is an admin's (authz.py)
            grant = guard.grant(self.pump.user)
            if grant is not ADMIN and (no := grant.refuse(op)) is not None:
                self._reply_err(envelope, rid, self.refusals.refused(grant, no))
                return
        if op == wire.EXIT:
            self.post(self._on_exit, *rest)
        elif op == wire.SUP:
            if len(self.events) >= MAX_QUEUED_EVENTS:
                self._reply_err(envelope, rid, Overloaded(
                    f"the supervision tree has {len(self.events)} requests queued"))
            else:
                self.post(self._admin, envelope, rid, *rest)
        elif op == wire.PING:
            self._reply(envelope, wire.ok(rid, "pong"))
        elif op == wire.STATUS:
            self._reply(envelope, wire.ok(rid, self.status()))
        elif op == wire.METRICS:
            self._reply(envelope, wire.ok(rid, self.metrics.families()))
        else:
            self.counters["bad_frames"] += 1
            self._reply_err(envelope, rid, BadRequest(
                f"the supervision tree serves sup, exit, status, metrics and ping, not "
                f"{wire.OPS[op]}"))

    def status(self) -> dict[str, Any]:
        return {"role": "tree", "pid": os.getpid(), "state": self.state.value, "endpoint": self.endpoint,
                "supervisors": {n: {"running": s.running, **s.count_children()}
                                for n, s in self.host.sups.items()},
                "pending_events": len(self.events), **self.counters}


def main(cfg: NodeConfig, layout: NodeLayout, meta: dict[str, Any], restarted: bool = False,
         report_fd: int | None = None) -> int:
    """Entry point of the tree process (forked by the node supervisor); returns its exit
    status. Why it failed, if it does, is also written to ``report_fd``."""
    assert layout.tree is not None, "the node supervisor starts a tree only for [supervisors]"
    if cfg.cluster is None:
        tree = Tree(cfg, meta, layout.tree, list(layout.workers), restarted)
    else:                   # (imported here: etcd's client is the [cluster] extra)
        from .clustertree import ClusterTree
        tree = ClusterTree(cfg, meta, layout.tree, list(layout.workers), restarted, layout.router)
    tree.report_fd = report_fd
    return asyncio.run(tree.run())
