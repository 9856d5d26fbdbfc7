"""A worker slot: one OS process, one asyncio loop, many actors, one LevelDB database.

What a worker guarantees (the user's view of a turn is ``actorsys/actor/actor.py``):

* **One activation per address**, found by ``(type, key)`` among the resident set of the
  shards this slot owns (``catalog.py``); idle actors passivate, and the resident set
  is bounded by ``max_resident``.
* **Turns never overlap**; each activation's mailbox runs one entry at a time
  (``turns.py``), except that an ask coming back along its call chain to the turn
  waiting on it runs nested (``nested.py``), or fails with Deadlock where refused.
* **Group commit and output gate** (``commit.py``): after each batch of incoming
  messages (and after async turns finish) the worker writes everything its turns staged
  in one LevelDB batch, and only then sends their replies and tells.
* **Failure.** A handler that raises has its turn discarded; the actor restarts from
  its last commit on its next message and the caller gets the error.
* **Supervised children** (``children.py``, ``supervisors/tree.py``): started, stopped
  and reported (EXIT) to the supervision tree.
* **Deadlines.** An ``async`` turn running past ``turn_timeout`` is cancelled; the
  worker's heartbeat and its current sync turn's start time are written to memory shared
  with the node supervisor, which kills a worker whose sync turn runs past
  ``turn_timeout`` or whose loop misses heartbeats.
* **Bad input** (wrong frame counts, undecodable or ill-typed payloads, oversized
  messages, unknown types or methods) is answered with an error where the sender can be
  addressed, counted, and never stops the worker (``dispatch.py``).
* **Loud failures** (``loud.py``): every failed turn is logged with its traceback, every
  dropped tell with its reason, rate-limited per actor type; a turn (or a step of an
  async one) blocking the loop longer than ``slow_turn`` is logged while it runs, by a
  watch thread that stops with the worker.
* **Bounds.** A mailbox holds at most ``mailbox_limit`` messages, and all mailboxes
  together at most ``max_queued_bytes``: a message that has to wait is kept as the bytes
  that arrived and decoded at its turn. Past either bound the sender gets ``Overloaded``
  (``dispatch.py``).
* **Storage faults.** A failed group commit fails its turns and turns the store
  read-only (see ``storage/slot.py``): turns that would write get ``StorageError``, reads
  go on, alarms wait, and every 0.5 s the worker tries to reopen the database. A
  database that cannot be opened at start for good (locked, damaged) ends the worker
  with :data:`EXIT_STORAGE`, and the node stops saying why.

This module is the process: its sockets (:class:`~.commit.Sockets`, where committed output
leaves) and the collaborators that :class:`~.assembly.Runtime` wires together, made at
start and closed at the end, and its life cycle (start, heartbeat, idle passivation,
shutdown). What arrives (requests on its socket, due alarms) is routed by its
:class:`~.dispatch.Dispatch`.
"""
from __future__ import annotations

import asyncio
import faulthandler
import gc
from functools import partial
import os
import signal
import sys
import time
from typing import Any

import zmq

from .. import metrics, tracing
from ..log import get_logger
from ..actor import handlers_of
from ..actor.classes import import_actor_class
from ..client.transport import AsyncTransport
from ..config import NodeConfig, NodeLayout
from ..errors import ActorError, NodeUnavailable, StorageError
from ..net.listener import Listener
from ..net.keys import node_keys
from ..net.members import apply_member_keys
from ..net.sockets import SocketPump, dealer
from ..protocol import wire
from ..protocol.shardmap import ShardMap
from ..protocol.ws import METHOD as WS_METHOD
from ..storage import alarms as alarm_store
from ..storage import lost as lost_slot
from ..storage.slot import SlotStore, log_bytes
from . import testing_asks, ws_turns
from .activation import ENDING, RUNNING, START, Internal
from .assembly import Runtime
from .commit import GatewayLink, Sockets
from .replies import ReplyBatches
from .dispatch import Dispatch
from .ws_routes import GatewayRoutes
from .grants import Grants, ShardCommands
from .replication import Replication
from ..protocol.board import SlotBoard
from .loud import SlowTurnWatch, StepClock

log = get_logger("worker")
#: messages ZeroMQ queues per peer on a worker's socket before the peer's send queue
#: fills: what a worker takes in while a sync turn blocks its loop (which drains 512 at a
#: time) is at most :func:`receive_hwm` messages per connection, between these two
RECEIVE_HWM = 1000
RECEIVE_HWM_MIN = 16
#: a worker's exit status when its storage cannot be opened at start (the node stops)
EXIT_STORAGE = 78
HEARTBEAT_INTERVAL = 0.1
#: the signal on which a worker writes every thread's stack to its log (its node supervisor
#: sends it before killing the worker as hung: what it was doing is then on record)
DUMP_SIGNAL = signal.SIGUSR1


class Worker:
    """One worker slot's process: its sockets and collaborators, and its life cycle (see
    the module docstring); what arrives goes to its :attr:`dispatch`."""

    def __init__(self, cfg: NodeConfig, layout: NodeLayout, slot: int, meta: dict[str, Any],
                 beats: "memoryview[float] | None" = None, board: SlotBoard | None = None) -> None:
        self.cfg, self.slot, self.endpoints = cfg, slot, list(layout.workers)
        self.router_endpoint = layout.router
        self.tree_endpoint = layout.tree
        self.gateway_endpoint = layout.gateway
        self.beats = beats           # shared with the node supervisor: [heartbeat, sync turn start]
        self.board = board           # the rest of that memory: the watch labels long turns there
        self.map = ShardMap(epoch=meta["epoch"], shards=meta["shards"], owner=list(meta["owner"]),
                            endpoints=self.endpoints)
        self.classes: dict[str, type] = {}
        self.handlers: dict[str, dict[str, Any]] = {}
        #: the shards a cluster node's router granted (grants.py); inactive on a single node
        self.grants = Grants(slot, self.map.owner, False,
                             cfg.cluster["node_id"] if cfg.cluster else "(this node)")
        self.serving = False     # storage opened and the socket bound
        self.meta = meta
        #: the slot's database was lost at start (storage/lost.py): no shard is served
        #: here until its copy is complete (grants.py); for the worker's whole life
        self.lost = False
        self.counters = {"received": 0, "batches": 0, "bad_frames": 0, "turns": 0, "failures": 0,
                         "activations": 0, "passivations": 0, "evictions": 0,
                         "dropped_replies": 0, "dropped_ws": 0, "overloaded": 0, "storage_errors": 0,
                         "exits": 0,
                         "turn_timeouts": 0, "alarms_fired": 0, "alarms_failed": 0,
                         "alarms_dropped": 0, "auth_refused": 0, "handshake_failed": 0}

    # -- life cycle ------------------------------------------------------------
    def _epoch_of(self, shard: int) -> int | None:
        """The epoch ``shard`` is served with here: a cluster's grant's, or the map's."""
        if self.grants.active:
            return self.grants.shards.get(shard)
        return int(self.map.epoch)

    def _metrics(self, cfg: NodeConfig) -> metrics.ProcessMetrics:
        """This process's metrics: the counters and gauges always (read when scraped);
        the turns', commits' and alarms' instruments when the node serves metrics."""
        pm = metrics.current()
        pm.counters = self.counters
        catalog = self.catalog
        pm.gauge("actorsys_resident_actors", lambda: len(catalog.acts))
        pm.gauge("actorsys_mailbox_depth",
                 lambda: sum(len(a.mailbox) for a in list(catalog.acts.values())))
        pm.gauge("actorsys_queued_bytes", lambda: catalog.queued_bytes)
        pm.gauge("actorsys_alarms_in_flight", self.alarms.in_flight)
        if cfg.metrics_on:
            self.turns.telemetry.metrics = pm
            self.store.on_commit = pm.commit
            self.alarms.metrics = pm
        return pm

    def load_classes(self) -> None:
        """Import the actor types and make their handler tables: the public methods, the
        ``$ws`` turn, and on a node started for testing ``$run`` (testing_asks.py)."""
        run = testing_asks.run_handler(self.cfg.python_path) if self.cfg.testing else None
        for name, spec in self.cfg.actors.items():
            cls = import_actor_class(spec, self.cfg.python_path)
            self.classes[name] = cls
            self.handlers[name] = handlers_of(cls)
            self.handlers[name][WS_METHOD] = ws_turns.run_batch
            if run is not None:
                self.handlers[name][testing_asks.RUN] = run
        if run is not None and self.slot == 0:
            log.warning("[node] testing = true: this node runs any function a client names "
                        "(run_in_actor) and fires alarms early (fire_alarms); for tests only")

    def _open_store(self, path: str) -> SlotStore:
        """Open the slot's LevelDB. With replicated shards (``[cluster] replicas`` > 1) a
        lost database (``storage/lost.py``: deleted, or damaged and then moved aside) is
        started empty and :attr:`lost` is set: the replicas rebuild it, and the worker
        serves none of its shards until their copies here are complete. Otherwise a
        damaged database stops the worker (StorageError) as before."""
        cfg, what = self.cfg, f"worker slot {self.slot}"
        replicated = cfg.cluster is not None and int(cfg.cluster.get("replicas", 1)) > 1
        created_now = bool(self.meta.get("created_now"))
        self.lost = replicated and lost_slot.is_lost(path, created_now)

        def open_it() -> SlotStore:
            return SlotStore(path, fsync=cfg.durability == "fsync",
                             max_value_bytes=cfg.max_value_bytes, what=what,
                             write_buffer=cfg.leveldb_write_buffer)
        try:
            replay = log_bytes(path)      # (what the open replays: logged with its time)
        except OSError:
            replay = 0
        started = time.perf_counter()
        try:
            store = open_it()
        except StorageError as exc:
            if not replicated or "locked by another process" in str(exc):
                raise
            aside = lost_slot.set_aside(path)
            log.error("%s: its LevelDB at %s is lost (%s); moved it aside to %s and started "
                      "the slot empty: the shards' other replicas rebuild it, and this node "
                      "serves none of them until its copy is complete", what, path, exc, aside)
            self.lost = True
            store = open_it()
        log.info("%s: opened its LevelDB in %.1f ms (a %d KiB log replayed)", what,
                 (time.perf_counter() - started) * 1e3, replay // 1024)
        if self.lost:
            lost_slot.mark(path)
            log.error("%s: its LevelDB at %s was lost (deleted or damaged) and starts empty; "
                      "its shards are served by their other replicas and rebuilt here, and a "
                      "shard with no other replica has lost its data on this node", what, path)
        return store

    async def run(self) -> None:
        cfg = self.cfg
        self.loop = loop = asyncio.get_running_loop()
        self.load_classes()
        path = os.path.join(cfg.data_dir, f"slot-{self.slot}")
        self.store = self._open_store(path)
        self.ctx = zmq.Context()
        keys = node_keys(cfg)      # tcp: CURVE server and client, ZAP before the bind
        client_keys = keys.client if keys else None
        self.listener = Listener(self.ctx, loop, keys, self.counters, self.endpoints[self.slot],
                                 cfg.max_message_bytes, send_hwm=100_000, receive_hwm=receive_hwm(cfg))
        self.sock = self.listener.sock
        # a cluster node's actors reach actors anywhere in the cluster: the router's map
        self.transport = AsyncTransport(self.ctx, self.router_endpoint,
                                        shard_map=None if cfg.cluster is not None else self.map,
                                        max_message_bytes=cfg.max_message_bytes,
                                        max_pending=cfg.max_pending_asks,
                                        default_timeout=cfg.ask_timeout, keys=client_keys)
        if self.transport.outbox is not None:       # tells lost at a failed send count too
            self.transport.outbox.on_lost = self._tells_lost
        # (its handler is the dispatch, made below with the collaborators it routes to:
        # nothing is read from the socket before this coroutine first awaits)
        self.pump = SocketPump(loop, self.sock, _not_yet, after_batch=self._after_batch)
        self.tree_sock = (dealer(self.ctx, self.tree_endpoint, client_keys)
                          if self.tree_endpoint else None)
        self.gateway = GatewayLink(self.ctx, self.gateway_endpoint, client_keys,
                                   cfg.max_message_bytes, self.counters)
        self.output = Sockets(self.sock, self.transport, self.gateway, self.tree_sock,
                              self.pump.kick, self.counters,
                              ReplyBatches(self.sock, cfg.max_message_bytes, loop.call_soon,
                                           self.counters, self.pump.kick))
        self.rt = rt = Runtime(cfg, self.slot, self.map, self.store, loop, self.output,
                               self.transport, self.classes, self.handlers, self.counters,
                               supervised=self.tree_endpoint is not None, beats=self.beats)
        self.catalog, self.turns, self.commit = rt.catalog, rt.turns, rt.commit
        rt.catalog.grants = self.grants
        self.shard_commands = ShardCommands(self.grants, rt, self.output, cfg.turn_timeout)
        if self.lost:       # (never a leader shard of an empty copy: grants.py)
            self.shard_commands.lost_path = path
        self.shard_commands.on_keys = partial(apply_member_keys, self.listener.guard)
        # (idle until a grant names replicas: issue 16)
        self.replication = Replication(loop, self.ctx, client_keys, rt.commit, self.grants,
                                       cfg.max_message_bytes)
        self.shard_commands.replication = self.replication
        self.replication.on_refused = self.shard_commands.stop_serving
        self.replication.follower.busy = self.shard_commands.drains.busy
        self.routes: GatewayRoutes | None = None
        if cfg.cluster is not None:      # effects to every member's gateway (ws_routes.py)
            self.routes = GatewayRoutes(self.ctx, self.gateway, client_keys, cfg.max_message_bytes,
                                        self.counters, rt.services)
            self.output.gateway = self.routes
            self.shard_commands.on_gateways = self.routes.update
        self.children, self.alarms = rt.children, rt.alarms
        self.loud = self.turns.loud
        self.loud.epoch_of = self._epoch_of
        self.metrics = self._metrics(cfg)
        self.dispatch = Dispatch(cfg, self.slot, self.endpoints[self.slot], self.tree_endpoint,
                                 self.map, self.classes, self.counters, self.output, rt,
                                 self.store, self.grants, self.shard_commands, self.replication,
                                 self.metrics, self.lost, self.pump)
        self.pump.on_frames = self.dispatch.on_frames
        self.dispatch.guard = self.listener.guard
        if cfg.tracing:
            self.turns.telemetry.tracing = tracing.start("worker", self.slot)
        self.watch: SlowTurnWatch | None = None
        if cfg.slow_turn > 0:
            self.turns.clock = StepClock()
            self.watch = SlowTurnWatch(self.turns.clock, cfg.slow_turn, cfg.turn_timeout, self.slot,
                                       board=self.board)
            self.watch.start()
        self._beat()
        self._done = loop.create_future()
        for sig in (signal.SIGTERM,):   # SIGINT (Ctrl-C) is the supervisor's alone
            loop.add_signal_handler(sig, self._begin_shutdown)
        tick = min(max(cfg.idle_timeout / 4, 0.05), 1.0)
        self._sweeping: asyncio.Handle | None = None     # the idle sweep's next step
        self._commits_at_tick = self._commits_flushed = self.store.commits
        self._reaper = loop.call_later(tick, self._passivate_idle, tick)
        clock = self.alarms.start_clock(loop, self.dispatch.alarms_due, alarm_store.REDELIVER_AFTER
                                        + cfg.turn_timeout)
        self._map_fetch: asyncio.Task[None] | None = None
        if cfg.cluster is not None:
            self.shard_commands.activate()    # nothing is served before the first grant
            self._map_fetch = loop.create_task(self._fetch_map())
        clock.scan()       # alarms that came due while this slot was down fire now
        self.serving = True
        if self.store.broken is not None:     # a full or read-only disk (logged): open it later
            rt.recovery.start()
        try:
            await self._done
        finally:
            if self.watch is not None:
                self.watch.stop()
                self.turns.clock = None      # (it holds the last actor that ran)
            self.loud.flush()
            self.replication.close()
            rt.close()
            if self._map_fetch is not None:
                self._map_fetch.cancel()
            self.pump.close()
            self.transport.close()
            if self.tree_sock is not None:
                self.tree_sock.close(500)
            self.gateway.close()
            if self.routes is not None:
                self.routes.close()
            self.output.replies.flush()
            self.listener.close(500)   # give the last flushed replies time to leave
            self.store.close()
            if self.turns.telemetry.tracing is not None:
                self.turns.telemetry.tracing.close()      # (its last spans exported)
            self.ctx.term()

    async def _fetch_map(self) -> None:
        """A cluster worker's first map of the cluster, from its router (which may start
        after it); later ones come as its asks meet ``wrong_shard``."""
        said = False
        while not self.turns.stopping:
            try:
                await self.transport.connect(timeout=5.0)
                return
            except ActorError as exc:      # not up yet, or refused (a key): say so once
                if not said:
                    log.warning("worker slot %d has no cluster map from its router yet: %s",
                                self.slot, exc)
                    said = True
                await asyncio.sleep(1.0)

    def _beat(self) -> None:
        now = time.monotonic()
        if self.beats is not None:
            self.beats[2 * self.slot] = now
        if self.turns.clock is not None:
            self.turns.clock.beat = now
        self._beater = self.loop.call_later(HEARTBEAT_INTERVAL, self._beat)

    @property
    def stopping(self) -> bool:
        return self.turns.stopping

    def _begin_shutdown(self) -> None:
        if self.turns.stopping:
            return
        self.turns.stopping = True
        self.loop.create_task(self._shutdown())

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + max(self.cfg.shutdown_timeout - 1.0, 0.5)
        for act in list(self.catalog.acts.values()):
            if act.status is not RUNNING:      # exited or stopped children: nothing to passivate
                for m in act.mailbox:
                    if m.reply_to is None and not isinstance(m, Internal):
                        self.loud.dropped(act.type_name, act.key, m.method, NodeUnavailable(
                            f"worker slot {self.slot} is shutting down and this child is not running"))
                    elif m.reply_to is not None and not (type(m) is Internal and (m.kind in ENDING
                                                                                or m.kind is START)):
                        self.commit.reply(m.reply_to, wire.err(m.rid, NodeUnavailable(
                            f"worker slot {self.slot} is shutting down").to_wire()))
                self.catalog.forget(act)
                continue
            self.turns.passivate(act)
        while self.catalog.acts and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.commit.flush()
        while self.replication.held and time.monotonic() < deadline + 0.5:
            await asyncio.sleep(0.01)     # groups waiting for their replicas' acks
        running = [act for act in self.catalog.acts.values() if act.task is not None]
        if running:   # their turns are cancelled with the loop: nothing of them commits
            log.warning("worker slot %d stops with %d turn(s) still running past shutdown_timeout "
                        "(%g s), abandoned uncommitted (their callers get WorkerLost): %s",
                        self.slot, len(running), self.cfg.shutdown_timeout,
                        ", ".join(f"{a.type_name}/{a.key:.100}" for a in running[:10])
                        + (" ..." if len(running) > 10 else ""))
        if not self._done.done():
            self._done.set_result(None)

    def _passivate_idle(self, tick: float) -> None:
        """The reaper's tick: passivate idle actors (in steps: :meth:`_sweep_step`),
        recount the queued bytes, write the memtable out after a quiet tick, summarize
        the rate-limit windows that ended. The next tick is scheduled whatever happens
        here (a failure is logged): a reaper that stopped would stop all of that for good."""
        if not self.turns.stopping:
            self._reaper = self.loop.call_later(tick, self._passivate_idle, tick)
        try:
            if self._sweeping is None:
                self._sweep_step()
            self.catalog.recount_queued()
            # quiet for a whole tick after writes: write the memtable out, so that a kill -9
            # now leaves no log for the restarted worker to replay (issue 19)
            commits = self.store.commits
            if commits == self._commits_at_tick and commits != self._commits_flushed:
                self.store.flush_log()
                self._commits_flushed = commits
            self._commits_at_tick = commits
            self.loud.sweep()       # the summaries of rate-limit windows that ended
            self.dispatch.refusals.sweep()
        except Exception:
            log.exception("worker slot %d: the reaper's tick failed (it runs again in %g s)",
                          self.slot, tick)

    def _sweep_step(self) -> None:
        """One bounded step of the idle sweep (catalog.SWEEP_STEP actors at most); the
        next runs with call_soon, after the loop has served what is ready, until the
        sweep reaches an actor that is not idle."""
        self._sweeping = None
        if self.turns.stopping:
            return
        now = time.monotonic()
        if self.catalog.passivate_idle(now - self.cfg.idle_timeout, now):
            self._sweeping = self.loop.call_soon(self._sweep_step)

    def _tells_lost(self, n: int) -> None:
        self.counters["dropped_replies"] += n

    def _after_batch(self) -> None:
        self.commit.flush()


def _not_yet(frames: list[bytes]) -> None:
    raise AssertionError("a message was read before the worker's dispatch was made")


#: the worker's cyclic garbage collector thresholds (CPython's default: 700, 10, 10).
#: Every resident actor is a handful of long-lived objects (its record, instance, state,
#: storage view, request-id window); at the default, a collection of the young runs every
#: 700 allocations and the older generations' collections walk the growing resident set
#: over and over: at 100k-200k residents that was 40% of a worker's CPU while activating
#: actors. A young generation of 50,000 objects is walked in about a millisecond, well
#: inside a drain's budget; what a turn leaves in cycles waits at most that long. The
#: older generations are collected rarely, so the runtime itself leaves no cycle behind
#: a passivated or evicted actor (the storage view holds its instance weakly;
#: tests/unit/test_runtime_gc_cycles.py): reference counting frees it at once.
#: Measured: CPU per activation 108 -> 70 us at 200k residents (BENCHMARKS.md, issue 19).
GC_THRESHOLDS = (50_000, 20, 100)


def receive_hwm(cfg: NodeConfig) -> int:
    """The worker socket's RCVHWM: ``max_queued_bytes // max_message_bytes`` messages,
    within [:data:`RECEIVE_HWM_MIN`, :data:`RECEIVE_HWM`]. ZeroMQ counts messages, not
    bytes, and keeps reading into this queue while a handler blocks the loop (admission,
    which counts bytes against ``max_queued_bytes``, runs only when the loop does): sized
    so, what one connection can have queued at a blocked worker is at most
    ``max(max_queued_bytes, 16 * max_message_bytes)`` (each message is at most
    ``max_message_bytes``: a larger one is refused, and a coalesced batch is smaller),
    plus the kernel's socket buffers; the sender's own queue then fills and its sends
    raise Overloaded (``docs/configuration.md``, "Limits")."""
    return max(RECEIVE_HWM_MIN, min(RECEIVE_HWM, cfg.max_queued_bytes // max(cfg.max_message_bytes, 1)))


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS`, and move what the worker's start made (its actor
    classes, the node's config: objects that live as long as the process) out of the
    collector's sight (``gc.freeze``), as the supervisor froze what it forked the worker
    with (``supervisors/processes.py``): no collection walks them again. No collection
    here: a full one costs ~13 ms, on the path of a restart after a crash."""
    gc.freeze()            # (O(1); the supervisor froze what it forked with, collected)
    gc.set_threshold(*GC_THRESHOLDS)


def main(cfg: NodeConfig, layout: NodeLayout, slot: int, meta: dict[str, Any],
         beats: "memoryview[float] | None" = None, report_fd: int | None = None,
         board: SlotBoard | None = None) -> int:
    """Entry point of a worker process (forked by the node supervisor); returns its exit
    status: :data:`EXIT_STORAGE` (after writing why to ``report_fd``) when its storage
    cannot be opened or read at start. (Its logging is set up by the node supervisor's
    fork, as every child's: ``supervisors/processes.py``.)"""
    worker = Worker(cfg, layout, slot, meta, beats, board)
    tune_gc()
    # (a C-level handler: it writes even while the loop is blocked holding the interpreter)
    faulthandler.register(DUMP_SIGNAL, file=sys.stderr, all_threads=True)
    try:
        asyncio.run(worker.run())
    except StorageError as exc:
        if worker.serving:
            raise
        log.error("%s", exc)
        if report_fd is not None:
            os.write(report_fd, (str(exc)[:4000] + "\n").encode("utf-8", "replace"))
        return EXIT_STORAGE
    return 0
