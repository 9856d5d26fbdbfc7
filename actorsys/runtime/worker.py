"""A worker slot: one OS process, one asyncio loop, many actors, one LevelDB database.

What a worker guarantees (see ``actor.py`` for the user's view of a turn):

* **One activation per address.** The slot owns a set of shards; every actor of those
  shards lives in exactly one :class:`Activation` here, found by ``(type, key)``.
* **Turns never overlap.** Each activation has a bounded mailbox processed one message
  at a time; an ``async def`` handler keeps its actor busy until it returns, while other
  actors run at its awaits.
* **Group commit and output gate.** A finished turn stages its writes; after each batch
  of incoming messages (and after async turns finish) the worker writes everything staged
  in one LevelDB batch, and only then sends the replies and tells of those turns.
* **Failure.** A handler that raises has its turn discarded; the actor restarts from its
  last commit on its next message and the caller gets the error.
* **Passivation.** An actor idle for ``idle_timeout`` runs ``on_stop`` and leaves memory;
  its next message reactivates it from storage. Supervised children that are running
  stay resident.
* **Supervised children** (see ``supervisors/tree.py``): the tree starts a child with a
  SPAWN carrying its supervisor, child id, start arguments and incarnation, persisted
  beside the actor's state (``prefix + b"m"``). A child that crashes (a handler raises
  and its type's ``on_error`` is "stop", the default for children) or stops itself
  (``self.stop()``) is reported to the tree with an EXIT message once its last turn is
  committed; its messages wait in its mailbox until the tree restarts it (SPAWN) or
  stops it (STOP), after which they fail with ``ActorStopped``. STOP runs ``on_stop``
  within the child's shutdown time, or cancels it at once (``brutal_kill``); a killed
  turn that still awaits is discarded when it ends (its caller gets ``ActorStopped``). A
  SPAWN adopts only a running child of the same supervisor and id; any other live
  activation leaves memory (``on_stop``) and starts again with the child's arguments.
* **Deadlines.** An ``async`` turn running past ``turn_timeout`` is cancelled (the
  actor's crash); the worker's heartbeat and its current sync turn's start time are
  written to memory shared with the node supervisor, which kills a worker whose sync
  turn runs past ``turn_timeout`` or whose loop misses heartbeats.
* **Bad input** (wrong frame counts, undecodable or ill-typed payloads, oversized
  messages, unknown types or methods) is answered with an error where the sender can be
  addressed, counted, and never stops the worker.
* **Bounds.** A mailbox holds at most ``mailbox_limit`` messages, and all mailboxes
  together at most ``max_queued_bytes``: a message that has to wait is kept as the bytes
  that arrived and decoded at its turn. Past either bound the sender gets ``Overloaded``.
* **Storage faults.** A failed group commit fails its turns and turns the store
  read-only (see ``storage.py``): turns that would write get ``StorageError``, reads go
  on, alarms wait, and every 0.5 s the worker tries to reopen the database. A database
  that cannot be opened at start for good (locked, damaged) ends the worker with
  :data:`EXIT_STORAGE`, and the node stops saying why.
"""
from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sys
import time
import traceback
from collections import deque
from typing import Any

import zmq

from ..actor import Actor, handlers_of
from ..actor.classes import import_actor_class
from ..client.transport import AsyncTransport
from ..config import NodeConfig, NodeLayout
from ..net.guard import Guard
from ..net.keys import node_keys
from ..net.sockets import SocketPump, bound_router, dealer
from ..protocol import wire
from ..protocol.messages import WsEffects
from ..protocol.shardmap import ShardMap, shard_of
from ..protocol.ws import METHOD as WS_METHOD
from ..protocol.ws import split as split_parts
from ..storage import alarms, history
from ..storage.keys import actor_prefix, alarm_ident, due_us, record_index_key, listing_key, mark_key, meta_key, next_prefix, state_key
from ..storage.keys import index_key as alarm_index_key
from ..storage.keys import record_key as alarm_record_key
from ..storage.slot import SlotStore
from ..storage.view import Storage
from . import ws_turns
from .activation import _NO_MAIL, Activation, mail
from .refs import InnerRef
from ..errors import (ActorError, ActorStopped, BadArguments, BadRequest, LimitExceeded,
                     MessageTooLarge,
                     NodeUnavailable, Overloaded, StorageError, UnknownActorType, UnknownMethod,
                     WrongShard)

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
PASSIVATE = -1          # internal mailbox op: run on_stop and leave memory
START = -2              # internal: the tree (re)starts a supervised child: on_start(*args)
SHUTDOWN = -3           # internal: the tree stops a child within its shutdown time: on_stop
EXITING = -4            # internal: the actor called self.stop(reason): on_stop, then EXIT
ALARM = -5              # internal: an alarm came due: on_alarm(name, payload)
#: asks served by the worker itself, in the actor's turn order, without running its code
SYSTEM_METHODS = frozenset({"$history", "$rewind", "$destroy"})
_ENDING = (PASSIVATE, SHUTDOWN, EXITING)
#: in a mailbox entry's args place: the entry holds the request's wire bytes (see _deliver)
_QUEUED = object()
#: in the outbox's destination place: a turn's WebSocket effects, for the gateway
_GATEWAY = ("gateway",)
MAX_KEY_BYTES = 1024
#: messages ZeroMQ queues per peer on a worker's socket before the peer's send queue fills:
#: what a worker takes in while a sync turn blocks its loop (which drains 512 at a time)
RECEIVE_HWM = 1000
#: seconds between attempts to reopen storage that turned read-only after a failed commit
RECOVERY_INTERVAL = 0.5
#: a worker's exit status when its storage cannot be opened at start (the node stops)
EXIT_STORAGE = 78
_EMPTY_STATE = wire.pack({})

HEARTBEAT_INTERVAL = 0.1




_MAX_INC = 2 ** 63 - 1


def _bad_inc(inc: Any) -> bool:
    return type(inc) is not int or not 0 <= inc <= _MAX_INC


def _bad_spawn_opts(opts: dict[str, Any]) -> str | None:
    """Why the options of a SPAWN from the tree are unusable (None: they are fine)."""
    for name in ("sup", "child", "args", "kwargs", "inc"):
        if name not in opts:
            return f"spawn options need sup, child, args, kwargs and inc; '{name}' is missing"
    if not isinstance(opts["sup"], str) or not isinstance(opts["child"], str):
        return "spawn options 'sup' and 'child' must be strings"
    if not isinstance(opts["args"], list):
        return "spawn option 'args' must be an array"
    kwargs = opts["kwargs"]
    if not isinstance(kwargs, dict) or any(not isinstance(k, str) for k in kwargs):
        return "spawn option 'kwargs' must be a map with string keys"
    if _bad_inc(opts["inc"]):
        return f"spawn option 'inc' must be an integer in 0..{_MAX_INC}"
    return None


def _bad_stop_opts(opts: dict[str, Any]) -> str | None:
    """Why the options of a STOP from the tree are unusable (None: they are fine)."""
    if "forget" in opts and type(opts["forget"]) is not bool:
        return "stop option 'forget' must be a boolean"
    if "shutdown" in opts:
        sd = opts["shutdown"]
        if not (sd in ("brutal_kill", "infinity") if isinstance(sd, str)
                else type(sd) is int and 0 <= sd <= _MAX_INC):
            return ("stop option 'shutdown' must be a non-negative integer (milliseconds), "
                    "\"brutal_kill\" or \"infinity\"")
    if "inc" in opts and _bad_inc(opts["inc"]):
        return f"stop option 'inc' must be an integer in 0..{_MAX_INC}"
    return None


class Worker:
    def __init__(self, cfg: NodeConfig, layout: NodeLayout, slot: int, meta: dict[str, Any],
                 beats: memoryview | None = None) -> None:
        self.cfg, self.slot, self.endpoints = cfg, slot, list(layout.workers)
        self.router_endpoint = layout.router
        self.tree_endpoint = layout.tree
        self.gateway_endpoint = layout.gateway
        self.beats = beats           # shared with the node supervisor: [heartbeat, sync turn start]
        self.exits: list[list] = []  # EXIT notices to send to the tree after the next commit
        self.map = ShardMap(epoch=meta["epoch"], shards=meta["shards"], owner=list(meta["owner"]),
                            endpoints=self.endpoints)
        self.classes: dict[str, type] = {}
        self.handlers: dict[str, dict[str, Any]] = {}
        self.acts: dict[tuple[str, str], Activation] = {}
        self.outbox: list[tuple] = []
        self.staged: list[Activation] = []
        self._flush_scheduled = False
        self._recovery: asyncio.TimerHandle | None = None   # while storage is read-only
        self.gateway_sock: zmq.Socket | None = None   # to the gateway, made on first use
        self.queued_bytes = 0    # wire bytes of the messages waiting in mailboxes
        self.serving = False     # storage opened and the socket bound
        self.stopping = False
        self.counters = {"received": 0, "bad_frames": 0, "turns": 0, "failures": 0,
                         "activations": 0, "passivations": 0, "evictions": 0,
                         "dropped_replies": 0, "dropped_ws": 0, "overloaded": 0, "storage_errors": 0,
                         "exits": 0,
                         "turn_timeouts": 0, "alarms_fired": 0, "alarms_failed": 0,
                         "alarms_dropped": 0, "auth_refused": 0, "handshake_failed": 0}
        # type name -> seconds of history kept (0: none)
        self.history_window = {t: cfg.history.get(t, cfg.history_window) for t in cfg.actors}

    # -- life cycle ------------------------------------------------------------
    def load_classes(self) -> None:
        for name, spec in self.cfg.actors.items():
            cls = import_actor_class(spec, self.cfg.python_path)
            self.classes[name] = cls
            self.handlers[name] = handlers_of(cls)
            self.handlers[name][WS_METHOD] = ws_turns.run_batch

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.load_classes()
        path = os.path.join(self.cfg.data_dir, f"slot-{self.slot}")
        self.store = SlotStore(path, fsync=self.cfg.durability == "fsync",
                               max_value_bytes=self.cfg.max_value_bytes, what=f"worker slot {self.slot}")
        self.ctx = zmq.Context()
        keys = node_keys(self.cfg)      # tcp: CURVE server and client, ZAP before the bind
        self.guard = Guard(self.ctx, self.loop, keys, self.counters) if keys else None
        self.sock = bound_router(self.ctx, self.endpoints[self.slot], self.cfg.max_message_bytes,
                                 self.guard, send_hwm=100_000, receive_hwm=RECEIVE_HWM)
        self.transport = AsyncTransport(self.ctx, self.router_endpoint, shard_map=self.map,
                                        max_message_bytes=self.cfg.max_message_bytes,
                                        max_pending=self.cfg.max_pending_asks,
                                        default_timeout=self.cfg.ask_timeout,
                                        keys=keys.client if keys else None)
        self.pump = SocketPump(self.loop, self.sock, self._on_frames, after_batch=self._flush)
        self.tree_sock = (dealer(self.ctx, self.tree_endpoint, keys.client if keys else None)
                          if self.tree_endpoint else None)
        self._beat()
        self._done = self.loop.create_future()
        for sig in (signal.SIGTERM,):   # SIGINT (Ctrl-C) is the supervisor's alone
            self.loop.add_signal_handler(sig, self._begin_shutdown)
        tick = min(max(self.cfg.idle_timeout / 4, 0.05), 1.0)
        self._reaper = self.loop.call_later(tick, self._passivate_idle, tick)
        self.clock = alarms.AlarmClock(self.loop, self.store, self._deliver_alarms,
                                       redeliver_after=alarms.REDELIVER_AFTER + self.cfg.turn_timeout)
        self.clock.scan()       # alarms that came due while this slot was down fire now
        self.serving = True
        if self.store.broken is not None:     # a full or read-only disk: open it later
            print(f"actorsys worker {self.slot}: {self.store.broken}", file=sys.stderr, flush=True)
            self._recovery = self.loop.call_later(RECOVERY_INTERVAL, self._recover_storage)
        try:
            await self._done
        finally:
            self.clock.close()
            if self._recovery is not None:
                self._recovery.cancel()
            self.pump.close()
            self.transport.close()
            if self.tree_sock is not None:
                self.tree_sock.close(500)
            if self.gateway_sock is not None:
                self.gateway_sock.close(500)
            self.sock.close(500)   # give the last flushed replies time to leave
            if self.guard is not None:      # after the socket it protects
                self.guard.close()
            self.store.close()
            self.ctx.term()

    def _beat(self) -> None:
        if self.beats is not None:
            self.beats[2 * self.slot] = time.monotonic()
        self._beater = self.loop.call_later(HEARTBEAT_INTERVAL, self._beat)

    def _begin_shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.loop.create_task(self._shutdown())

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + max(self.cfg.shutdown_timeout - 1.0, 0.5)
        for act in list(self.acts.values()):
            if act.status != "running":      # exited or stopped children: nothing to passivate
                for m in act.mailbox:
                    if m[1] is not None and m[0] not in _ENDING and m[0] != START:
                        self.outbox.append((m[1], wire.err(m[2], NodeUnavailable(
                            f"worker slot {self.slot} is shutting down").to_wire())))
                self.acts.pop((act.type_name, act.key), None)
                continue
            self._enqueue_passivation(act)
        while self.acts and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._flush()
        if not self._done.done():
            self._done.set_result(None)

    # -- incoming --------------------------------------------------------------
    def _send(self, envelope: tuple, payload: bytes) -> None:
        send = self.sock.send
        try:
            for frame in envelope:      # plain sends: send_multipart costs ~4 us more per reply
                send(frame, _SNDMORE_NOBLOCK)
            send(payload, _NOBLOCK)
        except zmq.ZMQError:
            self.counters["dropped_replies"] += 1

    def _reject(self, envelope: tuple | None, rid: int, exc: ActorError) -> None:
        if envelope is not None:
            self._send(envelope, wire.err(rid, exc.to_wire()))

    def _on_frames(self, frames: list[bytes]) -> None:
        c = self.counters
        c["received"] += 1
        try:
            envelope, op, rid, rest = wire.decode_frames(frames, self.cfg.max_message_bytes)
        except wire.Rejected as r:
            c["bad_frames"] += 1
            self._reject(r.envelope, r.rid, r.error)
            return
        try:
            self._dispatch(envelope, op, rid, rest, frames)
        except StorageError as exc:      # an address's record could not be read
            self._reject(envelope, rid, exc)

    def _dispatch(self, envelope: tuple, op: int, rid: int, rest: list, frames: list[bytes]) -> None:
        c = self.counters
        if op == wire.ASK or op == wire.TELL:
            self._deliver(op, envelope if op == wire.ASK else None, rid, *rest, raw=frames[-1])
        elif (op == wire.STOP or (op == wire.SPAWN and len(rest) == 3)) and self.tree_endpoint is None:
            c["bad_frames"] += 1     # only a supervision tree starts and stops children
            self._reject(envelope, rid, BadRequest(
                f"{wire.OPS[op]} with options is the supervision tree's; this node has none"))
        elif op == wire.SPAWN:
            if len(rest) == 3:
                self._start_child(envelope, rid, rest[0], rest[1], rest[2])
            else:
                self._deliver(op, envelope, rid, rest[0], rest[1], "", [], {})
        elif op == wire.STOP:
            self._stop_child(envelope, rid, rest[0], rest[1], rest[2])
        elif op == wire.LIST:
            if rest[0] not in self.classes:
                self.counters["bad_frames"] += 1
                return self._reject(envelope, rid, self._unknown_type(rest[0]))
            self._send(envelope, wire.ok(rid, self.list_actors(*rest)))
        elif op == wire.PING:
            self._send(envelope, wire.ok(rid, "pong"))
        elif op == wire.STATUS:
            self._send(envelope, wire.ok(rid, self.status()))
        elif op == wire.MAP:
            self._send(envelope, wire.ok(rid, self.map.to_wire(
                max_message_bytes=self.cfg.max_message_bytes, tree=self.tree_endpoint)))
        else:   # EXIT and SUP belong to the supervision tree
            c["bad_frames"] += 1
            self._reject(envelope, rid, BadRequest(f"a worker does not serve {wire.OPS[op]} requests"))

    def _deliver(self, op: int, reply_to: tuple | None, rid: int, type_name: str, key: str,
                 method: str, args: list, kwargs: dict, raw: bytes | None = None) -> None:
        if self.stopping:  # passivation is under way; a new turn would reactivate the actor
            return self._reject(reply_to, rid, NodeUnavailable(
                f"worker slot {self.slot} is shutting down"))
        act = self._resident(reply_to, rid, type_name, key)
        if act is None:
            return
        if act.status == "stopped" and not (op == wire.ASK and method in SYSTEM_METHODS):
            return self._reject(reply_to, rid, self._stopped_error(act))
        if op != wire.SPAWN and method not in act.handlers and not (
                op == wire.ASK and method in SYSTEM_METHODS):
            self.counters["bad_frames"] += 1
            if not act.mailbox and not act.running and act.instance is None and act.sup is None:
                self.acts.pop((type_name, key), None)
            return self._reject(reply_to, rid, UnknownMethod(
                f"actor type '{type_name}' has no method '{method:.200}'"))
        if len(act.mailbox) >= self.cfg.mailbox_limit:
            self.counters["overloaded"] += 1
            return self._reject(reply_to, rid, Overloaded(
                f"mailbox of {type_name}/{key:.200} is full ({self.cfg.mailbox_limit} messages)"))
        if raw is not None and (act.running or act.mailbox):
            # it has to wait: keep its wire bytes, not the decoded values (which can be
            # 70 times larger), so max_queued_bytes bounds the memory it holds
            if self.queued_bytes + len(raw) > self.cfg.max_queued_bytes:
                self.counters["overloaded"] += 1
                return self._reject(reply_to, rid, Overloaded(
                    f"worker slot {self.slot} holds {self.queued_bytes} bytes of queued messages "
                    f"(max_queued_bytes is {self.cfg.max_queued_bytes})"))
            self.queued_bytes += len(raw)
            mail(act).append((op, reply_to, rid, method, _QUEUED, raw))
        else:
            mail(act).append((op, reply_to, rid, method, args, kwargs))
        if not act.running:
            self._pump(act)

    def _deliver_alarms(self, batch: list[tuple[int, int, str, str, str]]) -> None:
        """The alarm clock hands over due alarms: count each attempt durably (and lease
        the alarm until its backoff), then run the turns (activating the actors)."""
        if self.stopping:
            return
        now = time.time()
        clock = self.clock
        queued = []
        for due, shard, type_name, key, name in batch:
            if self.map.owner[shard] != self.slot or type_name not in self.classes:
                continue     # (a type that left the config: handed out again later)
            act = self._resident(None, 0, type_name, key)
            if act is None:
                continue
            ident = alarm_ident(act.prefix, name)
            writes, at, attempt = alarms.reschedule(self.store, act.prefix, name, due,
                                                    self.cfg.alarm_retry, now, attempt_starts=True)
            if writes:
                self.store.stage(writes, act.prefix)
                if act.instance is not None:
                    act.instance.storage._forget(writes)
            if at is None:
                if attempt >= 0:
                    self._alarm_dropped(act, name, attempt, "its attempts may have crashed the worker")
                clock.done(ident)
                clock.note(now)     # a stale entry may have hidden this alarm's real one
                continue
            clock.note(at)          # the lease: due again then if this attempt is lost
            if act.status == "stopped":
                # a stopped supervised child does not run: this attempt failed
                self.counters["alarms_failed"] += 1
                clock.done(ident)
                continue
            self.counters["alarms_fired"] += 1
            # queued now (a queued actor is never evicted), run once the attempts are durable
            mail(act).append((ALARM, None, 0, name, [due_us(at)], {}))
            queued.append(act)
        self._flush()      # the attempts are durable before any on_alarm runs (if the
        for act in queued:  # commit failed, the turns find their lease missing: no-ops)
            if not act.running:
                self._pump(act)

    def _alarm_failed(self, act: Activation, name: str, due: int, exc: BaseException) -> None:
        """on_alarm raised: retry after the backoff, or drop it after the last attempt."""
        self.counters["alarms_failed"] += 1
        writes, at, attempt = alarms.reschedule(self.store, act.prefix, name, due,
                                                self.cfg.alarm_retry, time.time(),
                                                attempt_starts=False)
        if writes:
            self.store.stage(writes, act.prefix)
            self._schedule_flush()
        if at is not None:
            self.clock.note(at)
        elif attempt >= 0:
            self._alarm_dropped(act, name, attempt, f"last error: {type(exc).__name__}: {str(exc):.300}")
        self.clock.done(alarm_ident(act.prefix, name))

    def _alarm_dropped(self, act: Activation, name: str, attempts: int, why: str) -> None:
        self.counters["alarms_dropped"] += 1
        print(f"actorsys worker {self.slot}: alarm {name!r:.100} of {act.type_name}/{act.key:.100} "
              f"dropped after {attempts} failed attempts; {why}", file=sys.stderr, flush=True)

    def _resident(self, reply_to: tuple | None, rid: int, type_name: str,
                  key: str) -> Activation | None:
        """The in-memory record of an address, made if needed (None: refused, answered),
        moved to the most recently used end of the LRU order."""
        acts = self.acts
        act = acts.pop((type_name, key), None)
        if act is None:
            return self._activation(reply_to, rid, type_name, key)
        acts[(type_name, key)] = act
        return act

    def _activation(self, reply_to: tuple | None, rid: int, type_name: str,
                    key: str) -> Activation | None:
        """A new in-memory record for an address this slot owns (None: refused)."""
        cls = self.classes.get(type_name)
        if cls is None:
            self.counters["bad_frames"] += 1
            self._reject(reply_to, rid, self._unknown_type(type_name))
            return None
        kb = key.encode("utf-8")
        if "\x00" in key or len(kb) > MAX_KEY_BYTES:
            self.counters["bad_frames"] += 1
            self._reject(reply_to, rid, BadRequest(
                f"actor keys are at most {MAX_KEY_BYTES} bytes and contain no NUL"))
            return None
        shard = shard_of(type_name, key, self.map.shards)
        if self.map.owner[shard] != self.slot:
            exc = WrongShard(f"shard {shard} is not owned by slot {self.slot}")
            if reply_to is not None:
                body = exc.to_wire()
                body["epoch"] = self.map.epoch
                self._send(reply_to, wire.err(rid, body))
            return None
        act = Activation(type_name, key, actor_prefix(shard, type_name, key), cls,
                         self.handlers[type_name])
        if self.tree_endpoint is not None:
            raw = self.store.get(meta_key(act.prefix))
            if raw:
                act.sup = wire.unpack_stored(raw)
                # "running" in a record this process did not load before: the worker
                # process it ran in died with it. It is not running until the tree
                # restarts (SPAWN) or stops (STOP) it; its messages wait meanwhile.
                act.status = "dead" if act.sup["running"] else "stopped"
        acts = self.acts
        if len(acts) >= self.cfg.max_resident:
            self._evict()          # before adding: the new record is never its own victim
        acts[(type_name, key)] = act
        return act

    def _evict(self) -> None:
        """Over ``max_resident``: passivate the least recently used idle actors (1% of
        the bound at a time). Busy actors and running supervised children stay."""
        acts = self.acts
        want = len(acts) + 1 - self.cfg.max_resident + max(self.cfg.max_resident // 100, 1)
        victims, kept = [], []
        for act in acts.values():          # least recently used first (see _resident)
            if len(victims) >= want:
                break
            if act.running or act.mailbox or (act.sup is not None and act.status != "stopped"):
                kept.append(act)
            else:
                victims.append(act)
        for act in kept:      # in use: to the recent end, so later scans do not wade through
            k = (act.type_name, act.key)
            acts[k] = acts.pop(k)
        for act in victims:
            self.counters["evictions"] += 1
            if act.instance is None:
                del acts[(act.type_name, act.key)]
            else:
                self._enqueue_passivation(act)

    def _unknown_type(self, type_name: str) -> UnknownActorType:
        return UnknownActorType(f"actor type '{type_name:.200}' is not registered on this node "
                                f"(registered: {', '.join(sorted(self.classes)) or 'none'})")

    def _stopped_error(self, act: Activation) -> ActorStopped:
        sup = act.sup or {}
        return ActorStopped(f"{act.type_name}/{act.key:.200} is not running: its supervisor "
                            f"'{sup.get('sup')}' stopped it (child '{sup.get('child')}'). It runs "
                            f"again when a supervisor starts it (restart_child, or start_child "
                            f"if the child was removed), or answers as a plain actor after "
                            f"delete_child")

    # -- supervised children (requests from the supervision tree) ---------------
    def _start_child(self, reply_to: tuple, rid: int, type_name: str, key: str,
                     opts: dict[str, Any]) -> None:
        """Start (or adopt, if already running) a supervised child; reply after commit."""
        if self.stopping:
            return self._reject(reply_to, rid, NodeUnavailable(f"worker slot {self.slot} is shutting down"))
        why = _bad_spawn_opts(opts)
        if why is not None:
            self.counters["bad_frames"] += 1
            return self._reject(reply_to, rid, BadRequest(why))
        rec = {"sup": opts["sup"], "child": opts["child"], "args": opts["args"],
               "kwargs": opts["kwargs"], "inc": opts["inc"], "running": True}
        act = self._resident(reply_to, rid, type_name, key)
        if act is None:
            return
        prev, act.sup = act.sup, rec
        self.store.stage({meta_key(act.prefix): wire.pack(rec)}, act.prefix)
        if (prev is not None and prev.get("running") and prev.get("sup") == rec["sup"]
                and prev.get("child") == rec["child"] and act.status == "running"
                and act.instance is not None):
            # this child of this supervisor is already running (the tree restarted and
            # restores its children): adopt it
            self.outbox.append((reply_to, wire.ok(rid, "adopted")))
            return self._schedule_flush()
        # until its START has run, nothing that happens to the activation (a plain turn
        # still in flight, an on_start still running) is an exit of this child
        act.status = "starting"
        mail(act).appendleft((START, reply_to, rid, "", [], {}))
        if act.instance is not None:
            # a live plain activation (or another supervisor's child): it leaves memory
            # first (on_stop), then START runs on_start with this child's arguments
            mail(act).appendleft((PASSIVATE, None, 0, "", [], {}))
        if not act.running:
            self._pump(act)
        self._schedule_flush()

    def _stop_child(self, reply_to: tuple, rid: int, type_name: str, key: str,
                    opts: dict[str, Any]) -> None:
        """Stop a supervised child (``shutdown``: ms, "brutal_kill" or "infinity"), or with
        ``forget`` drop its supervision record so the address is a plain actor again."""
        why = _bad_stop_opts(opts)
        if why is not None:
            self.counters["bad_frames"] += 1
            return self._reject(reply_to, rid, BadRequest(why))
        act = self._resident(reply_to, rid, type_name, key)
        if act is None:
            return
        mk = meta_key(act.prefix)
        if opts.get("forget"):
            act.sup = None
            self.store.stage({mk: None}, act.prefix)
            if act.status != "running":
                act.status = "running"
                self._pump(act)
            self.outbox.append((reply_to, wire.ok(rid, "forgotten")))
            return self._schedule_flush()
        if act.sup is not None:
            act.sup = dict(act.sup, running=False)
            self.store.stage({mk: wire.pack(act.sup)}, act.prefix)
        act.status = "stopped"
        self._fail_queued(act)
        shutdown = opts.get("shutdown", 5000)
        if act.instance is None:
            self.outbox.append((reply_to, wire.ok(rid, "not_running")))
        elif shutdown == "brutal_kill" or shutdown == 0:
            self._kill(act)
            self.outbox.append((reply_to, wire.ok(rid, "killed")))
        else:
            mail(act).appendleft((SHUTDOWN, reply_to, rid, "", [], {}))
            if type(shutdown) is int:
                act.kill_timer = self.loop.call_later(shutdown / 1000, self._shutdown_overdue,
                                                      act, reply_to, rid)
            if not act.running:
                self._pump(act)
        self._schedule_flush()

    def _fail_queued(self, act: Activation) -> None:
        """Answer every queued message (and start) of a child that will not run them."""
        keep = deque(m for m in act.mailbox if m[0] in _ENDING)
        for m in act.mailbox:
            if m[0] == ALARM:
                self.clock.lost(alarm_ident(act.prefix, m[3]), m[4][0])
            elif m[0] not in _ENDING and m[1] is not None:
                self.outbox.append((m[1], wire.err(m[2], self._stopped_error(act).to_wire())))
        act.mailbox = keep

    def _kill(self, act: Activation) -> None:
        """brutal_kill: drop the instance now, no on_stop; an async turn in progress is
        cancelled and its changes discarded.

        The activation moves to a new generation at once: a cancelled turn that still
        awaits (in its ``except CancelledError``) is a zombie whose outcome is discarded
        when it ends, and a START does not wait for it."""
        killed, act.instance = act.instance, None
        if killed is not None:
            # what the killed instance still sends goes nowhere: its refs made from now on
            # name a detached record (generation -1), its earlier refs a past generation
            ghost = Activation(act.type_name, act.key, act.prefix, act.cls, act.handlers)
            ghost.gen = -1
            killed._act = ghost
        for m in act.mailbox:      # a queued timed STOP is answered, not dropped
            if m[0] == SHUTDOWN and m[1] is not None:
                self.outbox.append((m[1], wire.ok(m[2], "killed")))
        act.mailbox = deque(m for m in act.mailbox if m[0] not in _ENDING)
        act.gen += 1     # (its sockets' Connection objects are of the old generation now)
        act.ws, act.ws_out, act.ws_batch, act.ws_parts = None, [], None, None
        if act.kill_timer is not None:   # an earlier timed STOP must not kill a later incarnation
            act.kill_timer.cancel()
            act.kill_timer = None
        if act.task is not None:
            act.task.cancel()
            act.task = None
            act.running = False
            act.tells = []
        self._pump(act)

    def _shutdown_overdue(self, act: Activation, reply_to: tuple, rid: int) -> None:
        act.kill_timer = None
        if act.instance is None:
            # nothing left to kill, yet the STOP is pending: answer it, never hold it
            act.mailbox = deque(m for m in act.mailbox
                                if not (m[0] == SHUTDOWN and m[1] == reply_to and m[2] == rid))
            self.outbox.append((reply_to, wire.ok(rid, "not_running")))
        else:
            self._kill(act)
            self.outbox.append((reply_to, wire.ok(rid, "killed")))
        self._schedule_flush()

    def _notify_exit(self, act: Activation, reason: str, detail: str) -> None:
        """Queue an EXIT for the tree; it leaves after the next commit."""
        sup = act.sup
        assert sup is not None
        if act.status != "running":
            return      # the tree stopped it meanwhile: it already knows
        act.status = "dead"
        self.counters["exits"] += 1
        self.exits.append([wire.EXIT, 0, sup["sup"], sup["child"], act.type_name, act.key,
                           sup["inc"], reason, detail[:2000]])
        self._schedule_flush()

    # -- turns -----------------------------------------------------------------
    def inner_ref(self, type_name: str, key: str, sender: Activation | None = None) -> InnerRef:
        return InnerRef(self, sender, type_name, key)

    def _pump(self, act: Activation) -> None:
        while act.mailbox and not act.running:
            if act.status == "dead" and act.mailbox[0][0] != START and act.mailbox[0][0] not in _ENDING:
                # held until the tree restarts (START) or stops the child; system asks
                # (history, rewind, destroy) run no actor code: an operator can still
                # rewind or destroy a child whose state makes every start fail
                system = next((m for m in act.mailbox if m[0] == wire.ASK
                               and m[3] in SYSTEM_METHODS), None)
                if system is None:
                    return
                act.mailbox.remove(system)  # type: ignore[union-attr]
                self._turn(act, self._unqueue(system) if system[4] is _QUEUED else system)
                continue
            msg = act.mailbox.popleft()  # type: ignore[union-attr]
            self._turn(act, self._unqueue(msg) if msg[4] is _QUEUED else msg)
        if not act.mailbox:
            act.mailbox = _NO_MAIL

    def _unqueue(self, msg: tuple) -> tuple:
        """A queued message's arguments, decoded from its wire bytes (checked on arrival)."""
        raw = msg[5]
        self.queued_bytes -= len(raw)
        request = wire.unpack(raw)
        return (msg[0], msg[1], msg[2], msg[3], request[5], request[6])

    def _activate(self, act: Activation) -> Any:
        if act.snapshot is None:
            act.snapshot = self.store.get(state_key(act.prefix)) or b""
        inst = act.cls()
        inst.type_name, inst.key, inst._worker = act.type_name, act.key, self
        inst.state = wire.unpack_stored(act.snapshot) if act.snapshot else {}
        inst.storage = Storage(self.store, act.prefix, inst)
        inst._act = act
        act.instance = inst
        self.counters["activations"] += 1
        if act.sup is not None:
            return inst.on_start(*act.sup["args"], **act.sup["kwargs"])
        return inst.on_start()

    def _invoke(self, act: Activation, msg: tuple) -> Any:
        op = msg[0]
        inst = act.instance
        assert inst is not None
        if op == wire.ASK or op == wire.TELL:
            try:
                return act.handlers[msg[3]](inst, *msg[4], **msg[5])
            except TypeError as exc:
                if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                    # raised by the call itself, before the handler ran: the caller's
                    # arguments do not fit (a bad request, not the actor's crash)
                    raise BadArguments(f"{act.type_name}.{msg[3]}(): {exc}") from None
                raise
        if op in _ENDING:
            return inst.on_stop()
        if op == ALARM:
            return self._run_alarm(act, inst, msg[3], msg[4][0])
        return None  # SPAWN, START: the activation was the work

    def _run_alarm(self, act: Activation, inst: Actor, name: str, due: int) -> Any:
        """An alarm's turn: its record goes with this turn's commit, then on_alarm runs."""
        st = inst.storage
        rk = alarm_record_key(act.prefix, name)
        raw = st.read_raw(rk)
        if raw is None:
            return None                  # cancelled meanwhile
        rec = wire.unpack_stored(raw)
        if due_us(rec["when"]) != due:
            return None                  # set again meanwhile: that one fires at its time
        st.write_raw(rk, None)
        st.write_raw(alarm_index_key(act.prefix, due, name), None)
        return inst.on_alarm(name, rec["payload"])

    # -- system asks: history, rewind, destroy (no actor code runs) -----------------
    def _system_turn(self, act: Activation, msg: tuple) -> None:
        _op, reply_to, rid, method, args, kwargs = msg
        try:
            if method != "$history" and self.store.broken is not None:
                raise self.store.broken      # rewind and destroy write
            if method == "$history":
                result: Any = history.bookmarks(self.store, act.prefix)
            elif method == "$rewind":
                result = self._rewind(act, *args, **kwargs)
            else:
                result = self._destroy(act)
        except (TypeError, ValueError) as exc:
            self.outbox.append((reply_to, wire.err(rid, BadRequest(str(exc)[:1000]).to_wire())))
        except ActorError as exc:
            self.outbox.append((reply_to, wire.err(rid, exc.to_wire())))
        except Exception as exc:     # a system ask is always answered
            self.outbox.append((reply_to, wire.err(rid, ActorError(
                f"{method} failed: {type(exc).__name__}: {str(exc):.500}").to_wire())))
        else:
            self.outbox.append((reply_to, wire.ok(rid, result)))
        act.last_used = time.monotonic()
        self._schedule_flush()

    def _drop_instance(self, act: Activation) -> None:
        """Forget the live instance without on_stop: its memory no longer matches storage."""
        act.instance = None
        act.snapshot = None
        act.versions = None
        act.indexed = False

    def _rewind(self, act: Activation, version: int | None = None,
                time: float | None = None) -> dict[str, int]:
        writes, target, earliest = history.rewind_writes(self.store, act.prefix, version, time)
        versions = act.versions or history.Versions(self.store, act.prefix)
        sk = state_key(act.prefix)
        if writes:
            versions.record(self.store, act.prefix, writes, self.store.get(sk),
                            self.history_window.get(act.type_name) or 0.0)
            # back to version 0 is back to no data: no longer listed
            writes[listing_key(act.type_name, act.key)] = act.prefix[1:3] if target else None
            self.store.stage(writes, act.prefix)
            self._drop_instance(act)     # (rewinding to the current version changes nothing)
        if earliest is not None:
            self.clock.note(earliest)
        return {"version": versions.last, "restored": target}

    def _destroy(self, act: Activation) -> dict[str, int]:
        prefix = act.prefix
        n = len(prefix)
        mk = meta_key(prefix)
        writes: dict[bytes, bytes | None] = {listing_key(act.type_name, act.key): None}
        deleted = 0
        for k, v in self.store.range(prefix, next_prefix(prefix), actor=prefix):
            if k == mk:
                continue                 # supervision is not data: a child stays supervised
            writes[k] = None
            deleted += 1
            if k[n:n + 1] == b"l":
                writes[record_index_key(prefix, k[n + 1:], v)] = None
        self.store.stage(writes, act.prefix)
        self._drop_instance(act)
        act.snapshot = b""
        return {"deleted": deleted}

    def _turn(self, act: Activation, msg: tuple) -> None:
        if msg[0] == START and act.instance is None:
            act.gen += 1
        elif msg[0] == wire.ASK and msg[3] in SYSTEM_METHODS:
            return self._system_turn(act, msg)
        act.running = True
        act.tells = []
        beats = self.beats
        if beats is not None:
            beats[2 * self.slot + 1] = time.monotonic()   # a sync turn is running since now
        try:
            if act.instance is None:
                if msg[0] in _ENDING:
                    return self._finish(act, msg, None)
                r = self._activate(act)
                if inspect.isawaitable(r):
                    return self._go_async(act, msg, r, started=False)
            r = self._invoke(act, msg)
            if inspect.isawaitable(r):
                return self._go_async(act, msg, r, started=True)
        except BaseException as exc:  # SystemExit or CancelledError from a handler: that actor's crash only
            return self._fail(act, msg, exc)
        finally:
            if beats is not None:
                beats[2 * self.slot + 1] = 0.0
        self._finish(act, msg, r)

    def _go_async(self, act: Activation, msg: tuple, awaitable: Any, started: bool) -> None:
        task = self.loop.create_task(self._turn_async(act, msg, awaitable, started, act.gen))
        act.task = task
        timer = self.loop.call_later(self.cfg.turn_timeout, self._turn_overdue, act, task)
        task.add_done_callback(lambda _t: timer.cancel())

    def _turn_overdue(self, act: Activation, task: asyncio.Task) -> None:
        if act.task is task and not task.done():
            self.counters["turn_timeouts"] += 1
            task.cancel(f"the turn ran past turn_timeout ({self.cfg.turn_timeout:g} s)")

    def _finish(self, act: Activation, msg: tuple, result: Any) -> None:
        try:
            self._commit_turn(act, msg, result)
        except BaseException as exc:  # e.g. a handler replaced self.storage: still only its crash
            self._fail(act, msg, exc)

    async def _turn_async(self, act: Activation, msg: tuple, awaitable: Any, started: bool,
                          gen: int) -> None:
        try:
            r = await awaitable
            if not started and act.gen == gen:
                r = self._invoke(act, msg)
                if inspect.isawaitable(r):
                    r = await r
        except asyncio.CancelledError as exc:
            if self.stopping:
                raise            # the worker's own shutdown cancelling what is left
            if act.gen != gen:
                return self._discard(act, msg)
            why = exc.args[0] if exc.args else "the handler was cancelled"
            self._fail(act, msg, (TimeoutError if "turn_timeout" in str(why) else
                                  asyncio.CancelledError)(why))
        except BaseException as exc:
            if act.gen != gen:
                return self._discard(act, msg)
            self._fail(act, msg, exc)
        else:
            if act.gen != gen:
                return self._discard(act, msg)
            self._finish(act, msg, r)
        act.task = None
        self._schedule_flush()
        self._pump(act)

    def _commit_turn(self, act: Activation, msg: tuple, result: Any) -> None:
        op, reply_to, rid = msg[0], msg[1], msg[2]
        inst = act.instance
        if inst is None and op not in _ENDING:
            if act.status == "stopped":   # killed by its supervisor while the turn was awaiting
                return self._fail(act, msg, self._stopped_error(act))
            # a failed group commit invalidated this actor while the turn was awaiting
            return self._fail(act, msg, StorageError(
                "an earlier commit of this actor failed; this turn was discarded"))
        if inst is not None:
            try:
                if not isinstance(inst.state, dict):
                    raise TypeError(f"self.state must be a dict, not {type(inst.state).__name__}")
                state_bytes = wire.pack(inst.state)
                reply = wire.ok(rid, result) if reply_to is not None else None
            except Exception as exc:
                return self._fail(act, msg, TypeError(f"turn result or state is not msgpack-able: {exc}"))
            if reply is not None and len(reply) > self.cfg.max_message_bytes:
                return self._fail(act, msg, MessageTooLarge(
                    f"reply of {len(reply)} bytes; max_message_bytes is {self.cfg.max_message_bytes}"))
            if len(state_bytes) > self.store.max_value_bytes:
                return self._fail(act, msg, LimitExceeded(
                    f"self.state is {len(state_bytes)} bytes; max_value_bytes is "
                    f"{self.store.max_value_bytes} (keep large data in self.storage)"))
            alarm_at = inst.storage.alarms_changed
            writes = inst.storage.take_writes()
            old_state = act.snapshot or None
            changed = state_bytes != act.snapshot and not (state_bytes == _EMPTY_STATE and not act.snapshot)
            if changed:
                # (an actor that never stored anything and still has an empty state
                # leaves nothing on disk: only actors with data exist in list_actors)
                writes[state_key(act.prefix)] = state_bytes
            if writes and self.store.broken is not None:
                # storage is read-only until it recovers: this turn's changes are dropped
                # (the actor reloads its last commit) and its caller learns why
                return self._fail(act, msg, self.store.broken)
            if changed:
                act.snapshot = state_bytes
            if writes:
                self._stage_turn(act, writes, old_state)
            if alarm_at is not None:
                self.clock.note(alarm_at)
        elif op in _ENDING and reply_to is not None:
            reply = wire.ok(rid, "not_running")
        else:
            reply = None    # only a passivation reaches here with no instance: nobody awaits it
        if op == SHUTDOWN and reply is not None:
            reply = wire.ok(rid, "shutdown")
            if act.kill_timer is not None:
                act.kill_timer.cancel()
                act.kill_timer = None
        if reply is not None:
            self.outbox.append((reply_to, reply))
        for t in act.tells:
            self.outbox.append((None, t))
        act.tells = []
        if act.ws_out:
            self.outbox.append((_GATEWAY, (act.type_name, act.key, act.ws_out, act.ws_batch)))
            act.ws_out = []
        act.ws_batch = None
        act.running = False
        act.last_used = time.monotonic()
        self.counters["turns"] += 1
        if op == START and act.status == "starting":
            act.status = "running"       # from now on, what ends it is an exit of this child
        elif op == ALARM:
            self.clock.done(alarm_ident(act.prefix, msg[3]))
        if op in _ENDING:
            act.instance = None
            self.counters["passivations"] += 1
            if op == EXITING and act.sup is not None and act.status == "running" and not self.stopping:
                self._notify_exit(act, msg[3], "")
            elif not act.mailbox:
                self.acts.pop((act.type_name, act.key), None)
        elif inst is not None and inst._stop_reason is not None:
            # self.stop(reason): on_stop runs next (ahead of queued messages), then the exit
            mail(act).appendleft((EXITING, None, 0, inst._stop_reason, [], {}))
            inst._stop_reason = None

    def _stage_turn(self, act: Activation, writes: dict[bytes, bytes | None],
                    old_state: bytes | None) -> None:
        """Stage a turn's writes for the group commit, with the actor's listing entry and,
        if its type keeps history, this version's undo record."""
        if not act.indexed and not (len(writes) == 1 and mark_key(act.prefix) in writes):
            # (an actor whose only write is its sockets' delivery mark has no data)
            writes[listing_key(act.type_name, act.key)] = act.prefix[1:3]
            act.indexed = True
        window = self.history_window.get(act.type_name)
        if window:
            if act.versions is None:
                act.versions = history.Versions(self.store, act.prefix)
            act.versions.record(self.store, act.prefix, writes, old_state, window)
        self.store.stage(writes, act.prefix)
        self.staged.append(act)

    def _fail(self, act: Activation, msg: tuple, exc: BaseException) -> None:
        op, reply_to, rid = msg[0], msg[1], msg[2]
        act.instance = None          # restart: the next message reactivates from the last commit
        act.tells = []
        # the turn may have changed them: ask the gateway again
        act.ws, act.ws_out, act.ws_batch, act.ws_parts = None, [], None, None
        act.running = False
        act.last_used = time.monotonic()
        self.counters["failures"] += 1
        if op == SHUTDOWN and act.kill_timer is not None:
            act.kill_timer.cancel()
            act.kill_timer = None
        elif op == ALARM:
            self._alarm_failed(act, msg[3], msg[4][0], exc)
        if (act.sup is not None and act.status == "running" and op not in (START, PASSIVATE)
                and not isinstance(exc, (StorageError, BadArguments))):
            # a supervised child's crash ends it (unless its type's policy is "restart"):
            # the tree decides; its later messages wait in the mailbox meanwhile. (A
            # refused write is the disk's fault, not the child's: the child reloads its
            # last commit at its next message, as if its policy were "restart".)
            if op == EXITING or self.cfg.on_error.get(act.type_name, "stop") == "stop":
                self._notify_exit(act, "crash", f"{type(exc).__name__}: {exc}")
        elif op == START and act.status in ("running", "starting"):
            act.status = "dead"      # the tree learns of the failed start from the reply
        if reply_to is not None and act.status == "stopped" and op not in _ENDING:
            self.outbox.append((reply_to, wire.err(rid, self._stopped_error(act).to_wire())))
        elif reply_to is not None and isinstance(exc, (StorageError, BadArguments)):
            self.outbox.append((reply_to, wire.err(rid, exc.to_wire())))
        elif reply_to is not None:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            body = {"code": "remote", "type": type(exc).__name__, "message": str(exc)[:10_000],
                    "traceback": tb[-20_000:]}
            self.outbox.append((reply_to, wire.err(rid, body)))
        if op in _ENDING and not act.mailbox and act.status != "dead":
            self.acts.pop((act.type_name, act.key), None)

    def _discard(self, act: Activation, msg: tuple) -> None:
        """A turn of an earlier generation (killed while it awaited) has ended: its outcome
        is dropped (no commit, no EXIT, nothing of the current generation touched) and
        its caller learns the actor was stopped."""
        op, reply_to, rid = msg[0], msg[1], msg[2]
        if op == ALARM:      # not done: it comes back at the end of its lease
            self.clock.lost(alarm_ident(act.prefix, msg[3]), msg[4][0])
        if reply_to is not None and op not in _ENDING:   # a killed SHUTDOWN was answered
            self.outbox.append((reply_to, wire.err(rid, self._stopped_error(act).to_wire())))
            self._schedule_flush()

    # -- group commit and output gate -----------------------------------------
    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.outbox and not self.store.pending and not self.exits:
            return
        outbox, self.outbox = self.outbox, []
        staged, self.staged = self.staged, []
        touched = self.store.pending_actors
        try:
            self.store.commit()
        except StorageError as exc:
            # Nothing of this group is durable: fail its asks, drop its tells, and make
            # every activation that staged writes, or may have read them (one activated
            # after an eviction in this group), reload from disk.
            self.counters["storage_errors"] += 1
            for act in list(self.acts.values()):
                if act.prefix in touched:
                    self._drop_instance(act)
            if self._recovery is None:
                print(f"actorsys worker {self.slot}: {exc}", file=sys.stderr, flush=True)
                self._recovery = self.loop.call_later(RECOVERY_INTERVAL, self._recover_storage)
            for act in staged:
                self._drop_instance(act)
            self.clock.note(time.time() + 1.0)   # an alarm turn's commit may be among them
            for dest, payload in outbox:
                if dest is not None and dest is not _GATEWAY:
                    rid = wire.unpack(payload)[1]
                    self._send(dest, wire.err(rid, exc.to_wire()))
            self._send_exits()
            self.pump.kick()
            return
        for dest, payload in outbox:
            if dest is None:
                try:
                    self.transport.tell(*payload)
                except ActorError:
                    self.counters["dropped_replies"] += 1
                except Exception:    # never lose the replies after it
                    self.counters["dropped_replies"] += 1
                    traceback.print_exc()
            elif dest is _GATEWAY:
                self._to_gateway(*payload)
            else:
                self._send(dest, payload)
        self._send_exits()
        self.pump.kick()

    def _to_gateway(self, type_name: str, key: str, effects: list[list], batch: int | None) -> None:
        """Hand the gateway one actor's committed WebSocket effects, in parts that fit in
        a message. Without a gateway, or past its queue, they are dropped and counted
        (a socket-event batch's effects are sent again if the batch is redelivered)."""
        sock = self.gateway_sock
        if sock is None:
            endpoint = self.gateway_endpoint
            if endpoint is None:
                self.counters["dropped_ws"] += 1
                return
            sock = self.gateway_sock = dealer(self.ctx, endpoint, node_keys(self.cfg))
        limit = self.cfg.max_message_bytes - 1024
        payload = WsEffects(0, type_name, key, effects, batch, 0).encode()
        parts = [payload] if len(payload) <= limit else [
            WsEffects(0, type_name, key, part, batch, i).encode()
            for i, part in enumerate(split_parts(effects, limit - len(type_name) - len(key)))]
        try:
            for p in parts:
                sock.send(p, _NOBLOCK)
        except zmq.ZMQError:
            self.counters["dropped_ws"] += 1

    def _recover_storage(self) -> None:
        """While storage is read-only: try to reopen it every RECOVERY_INTERVAL."""
        if self.store.try_recover():
            self._recovery = None
            print(f"actorsys worker {self.slot}: {self.store.what} is writable again",
                  file=sys.stderr, flush=True)
            self.clock.note(time.time())       # alarms waited for it
        else:
            self._recovery = self.loop.call_later(RECOVERY_INTERVAL, self._recover_storage)

    def _send_exits(self) -> None:
        exits, self.exits = self.exits, []
        if self.tree_sock is None:
            return
        for e in exits:
            try:
                self.tree_sock.send(wire.pack(e), _NOBLOCK)
            except zmq.ZMQError:
                self.counters["dropped_replies"] += 1

    # -- passivation -------------------------------------------------------------
    def _enqueue_passivation(self, act: Activation) -> None:
        mail(act).append((PASSIVATE, None, 0, "", [], {}))
        if not act.running:
            self._pump(act)
        self._schedule_flush()

    def _passivate_idle(self, tick: float) -> None:
        cutoff = time.monotonic() - self.cfg.idle_timeout
        queued = 0
        for act in list(self.acts.values()):
            if act.mailbox:
                queued += sum(len(m[5]) for m in act.mailbox if m[4] is _QUEUED)
            if not act.running and not act.mailbox and act.last_used < cutoff:
                if act.sup is not None and act.status != "stopped":
                    continue         # running (or exited) supervised children stay resident
                if act.instance is None:
                    self.acts.pop((act.type_name, act.key), None)
                else:
                    self._enqueue_passivation(act)
        self.queued_bytes = queued    # (mailboxes dropped without a pump: no drift lasts)
        if not self.stopping:
            self._reaper = self.loop.call_later(tick, self._passivate_idle, tick)

    def list_actors(self, type_name: str, start_after: str | None, limit: int) -> list[str]:
        """Keys of this slot's actors of a type that have persisted data, in key order."""
        base = listing_key(type_name, "")
        lo, hi = base, next_prefix(base)
        if start_after is not None:
            lo = base + start_after.encode("utf-8") + b"\x00"
        n = len(base)
        out: list[str] = []
        if limit <= 0:
            return out
        for k, _v in self.store.range(lo, hi, committed=True):   # replies skip the
            out.append(k[n:].decode("utf-8"))                     # output gate
            if len(out) >= limit:
                break
        return out

    def status(self) -> dict[str, Any]:
        return {"role": "worker", "slot": self.slot, "pid": os.getpid(),
                "endpoint": self.endpoints[self.slot], "resident": len(self.acts),
                "supervised": sum(1 for a in self.acts.values() if a.sup is not None),
                "alarms_in_flight": len(self.clock.inflight),
                "commits": self.store.commits,
                "queued_bytes": self.queued_bytes,
                "storage": "ok" if self.store.broken is None else "read-only",
                "storage_error": None if self.store.broken is None else str(self.store.broken),
                **self.counters}


def main(cfg: NodeConfig, layout: NodeLayout, slot: int, meta: dict[str, Any],
         beats: memoryview | None = None, report_fd: int | None = None) -> int:
    """Entry point of a worker process (forked by the node supervisor); returns its exit
    status: :data:`EXIT_STORAGE` (after writing why to ``report_fd``) when its storage
    cannot be opened or read at start."""
    worker = Worker(cfg, layout, slot, meta, beats)
    try:
        asyncio.run(worker.run())
    except StorageError as exc:
        if worker.serving:
            raise
        print(f"actorsys worker {slot}: {exc}", file=sys.stderr, flush=True)
        if report_fd is not None:
            os.write(report_fd, (str(exc)[:4000] + "\n").encode("utf-8", "replace"))
        return EXIT_STORAGE
    return 0
