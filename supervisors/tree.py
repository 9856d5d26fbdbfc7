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
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections import deque
from typing import Any, Awaitable, Callable

import plyvel
import zmq

from actorsys.client.transport import AsyncTransport
from actorsys.config import NodeConfig, NodeLayout
from actorsys.config.layout import FAILURE_FILE
from actorsys.net.guard import Guard
from actorsys.net.keys import node_keys
from actorsys.net.sockets import SocketPump, bound_router
from actorsys.protocol import wire
from actorsys.protocol.shardmap import ShardMap
from actorsys.errors import (ActorError, BadRequest, ConfigError, Overloaded, StartFailed,
                             SupervisorError, SupervisorNotFound)

from actorsys.config import supervision as specs
from .supervisor import Child, Supervisor

EXIT_ROOT_FAILED = 3       # a top-level supervisor failed: the node stops with this status
EXIT_AUTO_SHUTDOWN = 4     # a top-level supervisor shut down (auto_shutdown): the node stops, 0
MAX_QUEUED_EVENTS = 100_000
READ_ONLY = ("which_children", "count_children")
COMMANDS = ("which_children", "count_children", "start_child", "terminate_child",
            "restart_child", "delete_child")


class TreeStore:
    """The tree's own small LevelDB: dynamic children, stopped children, supervised addresses."""

    def __init__(self, path: str) -> None:
        self.db = plyvel.DB(path, create_if_missing=True)

    @staticmethod
    def _k(tag: bytes, a: str, b: str | None = None) -> bytes:
        k = tag + a.encode() + b"\0"
        return k if b is None else k + b.encode()

    def dynamic(self, sup: str) -> list[tuple[int, dict[str, Any]]]:
        out = [wire.unpack_stored(v) for _k, v in self.db.iterator(prefix=self._k(b"d", sup))]
        return sorted(((d["seq"], d["spec"]) for d in out), key=lambda t: t[0])

    def put_dynamic(self, sup: str, seq: int, spec: specs.ChildSpec) -> None:
        self.db.put(self._k(b"d", sup, spec.id), wire.pack({"seq": seq, "spec": spec.to_dict()}))

    def drop_dynamic(self, sup: str, cid: str) -> None:
        self.db.delete(self._k(b"d", sup, cid))

    def drop_all_dynamic(self, sup: str) -> None:
        with self.db.write_batch() as b:
            for k in self.db.iterator(prefix=self._k(b"d", sup), include_value=False):
                b.delete(k)

    def set_stopped(self, sup: str, cid: str, stopped: bool) -> None:
        if stopped:
            self.db.put(self._k(b"t", sup, cid), b"")
        else:
            self.db.delete(self._k(b"t", sup, cid))

    def is_stopped(self, sup: str, cid: str) -> bool:
        return self.db.get(self._k(b"t", sup, cid)) is not None

    def set_deleted(self, sup: str, cid: str) -> None:
        self.db.put(self._k(b"x", sup, cid), b"")

    def is_deleted(self, sup: str, cid: str) -> bool:
        return self.db.get(self._k(b"x", sup, cid)) is not None

    def clear_stopped(self) -> None:
        """A node start: the config applies afresh (run-time stops and deletions go)."""
        with self.db.write_batch() as b:
            for tag in (b"t", b"x"):
                for k in self.db.iterator(prefix=tag, include_value=False):
                    b.delete(k)

    def addresses(self) -> set[tuple[str, str]]:
        out = set()
        for k in self.db.iterator(prefix=b"a", include_value=False):
            t, _, key = k[1:].partition(b"\0")
            out.add((t.decode(), key.decode()))
        return out

    def set_address(self, addr: tuple[str, str], present: bool) -> None:
        k = self._k(b"a", addr[0], addr[1])
        if present:
            self.db.put(k, b"")
        else:
            self.db.delete(k)

    def incarnation_floor(self, floor: int) -> int:
        """Incarnations only grow, across restarts and clock steps: reserve a block."""
        raw = self.db.get(b"i")
        start = max(floor, int(raw) if raw else 0)
        self.db.put(b"i", str(start + 1_000_000).encode(), sync=True)
        return start

    def close(self) -> None:
        self.db.close()


class Tree:
    def __init__(self, cfg: NodeConfig, meta: dict[str, Any], endpoint: str,
                 worker_endpoints: list[str], restarted: bool = False) -> None:
        self.cfg, self.endpoint, self.restarted = cfg, endpoint, restarted
        self.map = ShardMap(epoch=meta["epoch"], shards=meta["shards"], owner=list(meta["owner"]),
                            endpoints=worker_endpoints)
        self.specs: dict[str, specs.SupervisorSpec] = specs.parse_supervisors(
            cfg.supervisors, actors=cfg.actors, fail=lambda p, k: ConfigError(p, key=k))
        self.sups: dict[str, Supervisor] = {}      # running supervisors by name
        self.roots: list[Supervisor] = []
        self.index: dict[tuple[str, str], tuple[Supervisor, Child]] = {}
        self.state = "starting"
        self.code = 0
        self._inc = int(time.time() * 1000) << 8    # incarnations only grow, across restarts too
        self.counters = {"received": 0, "bad_frames": 0, "exits": 0, "admin": 0, "restarts": 0,
                         "auth_refused": 0, "handshake_failed": 0}
        self.report_fd: int | None = None    # a pipe to the node supervisor (set by main)

    # -- process ------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"actorsys[tree {os.getpid()}]: {msg}", file=sys.stderr, flush=True)

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.failure_path = os.path.join(self.cfg.data_dir, FAILURE_FILE)
        if not self.restarted and os.path.exists(self.failure_path):
            os.unlink(self.failure_path)
        self.store = TreeStore(os.path.join(self.cfg.data_dir, "tree"))
        self._inc = self._inc_limit = self.store.incarnation_floor(self._inc)
        self.ctx = zmq.Context()
        keys = node_keys(self.cfg)      # tcp: CURVE server and client, ZAP before the bind
        self.guard = Guard(self.ctx, self.loop, keys, self.counters) if keys else None
        self.sock = bound_router(self.ctx, self.endpoint, self.cfg.max_message_bytes, self.guard)
        self.transport = AsyncTransport(self.ctx, None, shard_map=self.map,
                                        max_message_bytes=self.cfg.max_message_bytes,
                                        max_pending=1_000_000, default_timeout=self.cfg.ask_timeout,
                                        keys=keys.client if keys else None)
        self.transport.on_slot_lost = self._slot_lost
        for slot in range(len(self.map.endpoints)):
            self.transport.connect_slot(slot)      # monitors see every worker's death
        self.events: deque[tuple[Callable[..., Awaitable[Any]], tuple]] = deque()
        self.wake = asyncio.Event()
        self.pump = SocketPump(self.loop, self.sock, self._on_frames)
        self._done = self.loop.create_future()
        for sig in (signal.SIGTERM,):   # SIGINT (Ctrl-C) is the supervisor's alone
            self.loop.add_signal_handler(sig, self._on_sigterm)
        consumer = self.loop.create_task(self._consume())
        self.post(self._boot)
        try:
            await self._done
        finally:
            consumer.cancel()
            self.pump.close()
            self.transport.close()
            self.sock.close(200)
            if self.guard is not None:      # after the socket it protects
                self.guard.close()
            self.ctx.term()
            self.store.close()
        return self.code

    def _on_sigterm(self) -> None:
        if self.state in ("stopping", "stopped"):
            return
        self.state = "stopping"
        # jump the queue (after the event in progress): nothing queued should start children now
        self.events.appendleft((self._shutdown, ()))
        self.wake.set()

    async def _stop_roots(self) -> None:
        """Stop the running top-level supervisors, last started first."""
        for sup in reversed(self.roots):
            if sup.running:
                try:
                    await sup.terminate()
                except Exception as exc:   # stopping must go on: log and continue
                    self.log(f"stopping supervisor '{sup.name}': {type(exc).__name__}: {exc}")

    async def _shutdown(self) -> None:
        t0 = time.monotonic()
        await self._stop_roots()
        self.log(f"supervision tree stopped its children in order "
                 f"({time.monotonic() - t0:.3f} s)")
        self._finish(self.code)

    def _finish(self, code: int) -> None:
        self.code = code
        self.state = "stopped"
        if not self._done.done():
            self._done.set_result(None)

    async def _consume(self) -> None:
        while True:
            if not self.events:
                self.wake.clear()
                await self.wake.wait()
                continue
            fn, args = self.events.popleft()
            if self.state == "stopped" or (self.state == "stopping" and fn != self._shutdown):
                if fn == self._admin:       # answer rather than leave the caller to time out
                    self._reply_err(args[0], args[1], SupervisorError("the node is stopping"))
                continue
            try:
                await fn(*args)
            except Exception as exc:        # a bug here must not stop the tree: log it
                import traceback
                self.log(f"error handling an event: {type(exc).__name__}: {exc}\n"
                         f"{traceback.format_exc()}")

    def post(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Queue an event; events run one at a time, in order."""
        self.events.append((fn, args))
        self.wake.set()

    def later(self, delay: float, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self.loop.call_later(delay, self.post, fn, *args)

    async def _boot(self) -> None:
        if self.state != "starting":
            return
        if not self.restarted:
            self.store.clear_stopped()
        names = specs.roots(self.specs)
        for name in names:
            sup = self.make_supervisor(name, None)
            self.roots.append(sup)
            try:
                await sup.start(restoring=True)
            except StartFailed as exc:
                await self._fail_roots(f"{exc}")
                return
        self._release_unsupervised()
        if self.state == "starting":
            self.state = "running"
            self.log(f"supervision tree running: {', '.join(names)}")

    def _release_unsupervised(self) -> None:
        """Addresses supervised before but declared by no supervisor now (the config
        changed) become plain actors. Children of a supervisor that is stopped are still
        declared: they stay stopped."""
        known = set(self.index)
        for name, s in self.specs.items():
            known.update((c.actor or "", c.key) for c in s.children if c.key is not None)
            known.update((d["actor"] or "", d["key"]) for _seq, d in self.store.dynamic(name))
        for addr in self.store.addresses() - known:
            self.post(self._forget_addr, addr)

    async def _forget_addr(self, addr: tuple[str, str]) -> None:
        if addr in self.index or addr[0] not in self.cfg.actors:
            self.store.set_address(addr, addr in self.index)
            return
        try:
            await self.transport.control_actor(wire.STOP, addr[0], addr[1], {"forget": True},
                                               self.cfg.ask_timeout)
        except ActorError as exc:
            self.log(f"could not release {addr[0]}/{addr[1]}: {exc}")
            return
        self.store.set_address(addr, False)

    async def _fail_roots(self, why: str) -> None:
        self.log(f"supervision tree failed: {why}; stopping the node")
        await self._stop_roots()
        try:
            with open(self.failure_path, "w") as f:
                f.write(why)
        except OSError as exc:      # a full or read-only disk: the report below says why
            self.log(f"could not write {self.failure_path}: {exc}")
        if self.report_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.report_fd, why.encode("utf-8", "replace")[:4000])
        self._finish(EXIT_ROOT_FAILED)

    async def root_exited(self, sup: Supervisor, why: str) -> None:
        if why == "auto_shutdown":
            self.log(f"top-level supervisor '{sup.name}' shut down (auto_shutdown); stopping the node")
            await self._stop_roots()
            self._finish(EXIT_AUTO_SHUTDOWN)
        else:
            await self._fail_roots(f"top-level supervisor '{sup.name}' {why.replace('_', ' ')}")

    # -- supervisors and children ---------------------------------------------------
    def make_supervisor(self, name: str, parent: Supervisor | None) -> Supervisor:
        return Supervisor(self.specs[name], self, parent)

    def supervisor_started(self, sup: Supervisor) -> None:
        self.sups[sup.name] = sup

    def supervisor_deleted(self, sup: Supervisor) -> None:
        if self.sups.get(sup.name) is sup:
            del self.sups[sup.name]

    def index_child(self, sup: Supervisor, ch: Child) -> None:
        self.index[ch.addr] = (sup, ch)
        self.store.set_address(ch.addr, True)

    def unindex_child(self, ch: Child, release: bool = False) -> None:
        """Forget a child's address; ``release``: it is no longer supervised at all."""
        if self.index.get(ch.addr, (None, None))[1] is ch:
            del self.index[ch.addr]
            if release:
                self.store.set_address(ch.addr, False)

    def check_unsupervised(self, cs: specs.ChildSpec) -> None:
        held = self.index.get((cs.actor or "", cs.key or ""))
        if held is not None:
            raise SupervisorError(f"actor {cs.actor}/{cs.key} is already child '{held[1].id}' of "
                                  f"supervisor '{held[0].name}'")

    def parse_child(self, sup: Supervisor, d: Any, where: str) -> specs.ChildSpec:
        return specs.parse_child(d, actors=self.cfg.actors, sup=sup.spec,
                                 fail=lambda p, k: ConfigError(p, key=k), where=where)

    def next_inc(self) -> int:
        self._inc += 1
        if self._inc >= self._inc_limit + 1_000_000:
            self._inc_limit = self.store.incarnation_floor(self._inc)
        return self._inc

    @staticmethod
    def new_key() -> str:
        return uuid.uuid4().hex

    async def start_actor(self, sup: Supervisor, ch: Child) -> None:
        s = ch.spec
        opts = {"sup": sup.name, "child": s.id, "args": s.args, "kwargs": s.kwargs, "inc": ch.inc}
        try:
            await self.transport.control_actor(wire.SPAWN, s.actor or "", ch.key or "", opts,
                                               self.cfg.ask_timeout)
        except ActorError as exc:
            raise StartFailed(f"{exc}") from None
        self.counters["restarts"] += 1

    async def stop_actor(self, sup: Supervisor, ch: Child, shutdown: str | None = None) -> None:
        sd = ch.spec.shutdown if shutdown is None else shutdown
        wait = (self.cfg.turn_timeout if sd == "infinity" else 0 if sd == "brutal_kill"
                else int(sd) / 1000) + 5.0
        opts = {"shutdown": sd, "inc": ch.inc}
        try:
            await self.transport.control_actor(wire.STOP, ch.spec.actor or "", ch.key or "", opts, wait)
        except ActorError as exc:   # its worker is gone or hung: the node supervisor handles that
            self.log(f"stopping child '{ch.id}' of '{sup.name}': {exc}")

    async def forget_actor(self, ch: Child) -> None:
        await self.transport.control_actor(wire.STOP, ch.spec.actor or "", ch.key or "",
                                           {"forget": True}, self.cfg.ask_timeout)
        self.store.set_address(ch.addr, False)

    # -- events -----------------------------------------------------------------------
    def _slot_lost(self, slot: int) -> None:
        dead = [(sup, ch, ch.inc) for sup, ch in self.index.values()
                if ch.status == "running" and self.map.slot_of(*ch.addr) == slot]
        if dead:
            self.log(f"worker slot {slot} died: {len(dead)} supervised children with it")
        for sup, ch, inc in dead:
            self.post(sup.on_exit, ch, "killed", inc)

    async def _on_exit(self, sup_name: str, cid: str, type_name: str, key: str, inc: int,
                       reason: str, detail: str) -> None:
        held = self.index.get((type_name, key))
        if held is None or held[0].name != sup_name or held[1].id != cid:
            return
        self.counters["exits"] += 1
        why = reason if not detail else f"{reason}: {detail}"
        await held[0].on_exit(held[1], reason if reason in ("normal", "shutdown") else why, inc)

    async def _admin(self, envelope: tuple, rid: int, name: str, command: str, arg: Any,
                     deadline: float | None = None) -> None:
        self.counters["admin"] += 1
        if deadline is not None and time.time() > deadline:
            self.counters["expired"] = self.counters.get("expired", 0) + 1
            return          # its caller has given up: doing it now would surprise them
        sup = self.sups.get(name)
        try:
            if sup is None or (not sup.running and command not in READ_ONLY):
                raise SupervisorNotFound(
                    f"supervisor '{name:.200}' is not running" if sup is not None else
                    f"no supervisor named '{name:.200}' is running "
                    f"(configured: {', '.join(self.specs) or 'none'})")
            if command == "which_children":
                result: Any = sup.which_children()
            elif command == "count_children":
                result = sup.count_children()
            elif command == "start_child":
                result = await sup.start_child(arg)
            elif command == "terminate_child":
                result = await sup.terminate_child(arg)
            elif command == "restart_child":
                result = await sup.restart_child(arg)
            elif command == "delete_child":
                result = await sup.delete_child(arg)
            else:
                raise BadRequest(f"unknown supervisor command {command!r:.100} "
                                 f"(expected one of: {', '.join(COMMANDS)})")
        except ActorError as exc:
            self._reply_err(envelope, rid, exc)
            return
        except Exception as exc:       # a bug must still answer the caller
            import traceback
            self.log(f"{command} on '{name}': {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self._reply_err(envelope, rid, SupervisorError(f"{command} failed: {type(exc).__name__}: {exc}"))
            return
        self._reply(envelope, wire.ok(rid, result))

    # -- socket -----------------------------------------------------------------------
    def _reply(self, envelope: tuple, payload: bytes) -> None:
        try:
            self.sock.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        self.pump.kick()

    def _reply_err(self, envelope: tuple, rid: int, exc: ActorError) -> None:
        self._reply(envelope, wire.err(rid, exc.to_wire()))

    def _on_frames(self, frames: list[bytes]) -> None:
        self.counters["received"] += 1
        try:
            envelope, op, rid, rest = wire.decode_frames(frames, self.cfg.max_message_bytes)
        except wire.Rejected as r:
            self.counters["bad_frames"] += 1
            self._reply_err(r.envelope, r.rid, r.error)
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
        else:
            self.counters["bad_frames"] += 1
            self._reply_err(envelope, rid, BadRequest(
                f"the supervision tree serves sup, exit, status and ping, not {wire.OPS[op]}"))

    def status(self) -> dict[str, Any]:
        return {"role": "tree", "pid": os.getpid(), "state": self.state, "endpoint": self.endpoint,
                "supervisors": {n: {"running": s.running, **s.count_children()}
                                for n, s in self.sups.items()},
                "pending_events": len(self.events), **self.counters}


def main(cfg: NodeConfig, layout: NodeLayout, meta: dict[str, Any], restarted: bool = False,
         report_fd: int | None = None) -> int:
    """Entry point of the tree process (forked by the node supervisor); returns its exit
    status. Why it failed, if it does, is also written to ``report_fd``."""
    assert layout.tree is not None, "the node supervisor starts a tree only for [supervisors]"
    tree = Tree(cfg, meta, layout.tree, list(layout.workers), restarted)
    tree.report_fd = report_fd
    return asyncio.run(tree.run())
