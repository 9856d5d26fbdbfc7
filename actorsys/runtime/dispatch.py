"""A worker's dispatch: every request that arrives on its socket, and every batch of due
alarms its clock hands over, to the collaborator that serves it (made by
:class:`~.worker.Worker`, which owns one; the pump of its socket calls
:meth:`Dispatch.on_frames` for each message).

* **Messages to actors** (ASK, TELL, SPAWN without options): admitted to their actor's
  mailbox, or refused at once with an error the sender can read (a tell's refusal is
  logged: nobody awaits it). Refused: an address the catalog will not make (unknown
  type, a shard not served here), an actor stopped by its tree, an unknown method, a full
  mailbox (``mailbox_limit``) or too many bytes queued on the worker
  (``max_queued_bytes``), anything once the worker is shutting down. An ask coming back
  along the call chain of the turn waiting on it runs nested (``nested.py``). A message
  that has to wait is kept as the bytes that arrived, decoded at its turn; one for an
  idle actor with an empty mailbox runs at once.
* **The supervision tree's** SPAWN with options and STOP (``children.py``); refused
  where there is no tree.
* **Batches** (``wire.BATCH``): a peer's messages coalesced in one frame, each handled
  (and answered) in order exactly as if it had come alone; a batch inside a batch is
  refused.
* **What the worker answers itself**: LIST, PING, METRICS, TOP, STATUS, MAP, and the
  router's SHARDS commands (``grants.py``).
* **What only a node started for testing serves** (``testing_asks.py``): ``$run`` is every
  type's handler there and refused elsewhere; ``$fire_alarm`` queues an alarm's turn now
  (``alarm_turns.py``). Refused with ``NotTesting`` on any other node.
* **Authority** (tcp nodes): each request is checked against the sender's key's role
  and types (``net/authz.py``); one it may not make is answered ``forbidden``,
  counted and logged (rate-limited), and never runs.
* **Bad input** (wrong frame counts, undecodable or ill-typed payloads, oversized
  messages, EXIT and SUP, which are the tree's) is answered with an error where the
  sender can be addressed, counted in ``bad_frames``, and never stops the worker.
* **Due alarms** (:meth:`Dispatch.alarms_due`): each attempt is counted durably before
  its turn runs (``alarm_turns.py``).

Nothing here runs a turn's code itself: :class:`~.turns.Turns` does. Invariant: every
field is set once, at construction, to the worker's own collaborators.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import (ActorError, BadRequest, MessageTooLarge, NodeUnavailable, Overloaded,
                      ShardUnavailable, UnknownActorType, UnknownMethod, WrongShard)
from ..config.defaults import LOG_BURST, LOG_WINDOW
from ..log import get_logger
from ..lograte import RateLimit
from ..net.authz import ADMIN, Refusals, refuse_request
from ..net.sockets import DRAIN_BUDGET, SocketPump
from ..protocol import wire
from .activation import DEAD, STOPPED, Activation, Call, Envelope, Waiting
from .children import stopped_error
from .system import SYSTEM_METHODS, list_actors, status
from .testing_asks import FIRE_ALARM, TESTING_METHODS, refusal

if TYPE_CHECKING:
    from .. import metrics
    from ..config import NodeConfig
    from ..net.guard import Guard
    from ..protocol.shardmap import ShardMap
    from ..storage.slot import SlotStore
    from .assembly import Runtime
    from .commit import Output
    from .grants import Grants, ShardCommands
    from .replication import Replication

_ASK, _TELL, _SPAWN, _BATCH = wire.ASK, wire.TELL, wire.SPAWN, wire.BATCH
log = get_logger("worker")
#: the log of a batch's messages whose handling raised, per exception type
_failures = RateLimit(log, "batched messages whose handling failed", burst=LOG_BURST,
                      window=LOG_WINDOW, label="raising")
#: what the catalog refuses an address for (answered to the sender, if it awaits a reply)
_REFUSED = (UnknownActorType, BadRequest, WrongShard, ShardUnavailable)


class Dispatch:
    """Routes a worker's incoming requests and due alarms (see the module docstring)."""

    def __init__(self, cfg: NodeConfig, slot: int, endpoint: str, tree_endpoint: str | None,
                 shard_map: ShardMap, classes: dict[str, type], counters: dict[str, int],
                 output: Output, rt: Runtime, store: SlotStore, grants: Grants,
                 shard_commands: ShardCommands, replication: Replication,
                 process_metrics: metrics.ProcessMetrics, lost: bool, pump: SocketPump) -> None:
        self.cfg, self.slot, self.endpoint = cfg, slot, endpoint
        #: the worker socket's pump (held while a batch goes on past its budget)
        self.pump, self.loop = pump, pump.loop
        #: the supervision tree's endpoint (None: no tree; its requests are refused)
        self.tree_endpoint = tree_endpoint
        self.map, self.classes, self.counters, self.output = shard_map, classes, counters, output
        self.catalog, self.turns, self.children = rt.catalog, rt.turns, rt.children
        self.commit, self.alarms = rt.commit, rt.alarms
        self.store, self.grants, self.shard_commands = store, grants, shard_commands
        self.replication, self.metrics = replication, process_metrics
        self.loud = rt.turns.loud
        #: the slot's database was lost at start (STATUS says so; worker.py)
        self.lost = lost
        #: the guard of the worker's socket (set by the worker; None: ipc, everyone admin)
        self.guard: Guard | None = None
        self.refusals = Refusals(log, counters)

    def reject(self, envelope: Envelope | None, rid: int, exc: ActorError) -> ActorError | None:
        """Answer a request at once with an error (nothing of it ran: no output gate).
        A tell (no envelope) has nobody to answer: the error is returned, for the log."""
        if envelope is None:
            return exc
        body = exc.to_wire()
        if isinstance(exc, WrongShard):
            body["epoch"] = self.grants.epoch if self.grants.active else self.map.epoch
        self.output.send(envelope, wire.err(rid, body))
        return None

    def on_frames(self, frames: list[bytes]) -> None:
        """One message from the worker's socket."""
        c = self.counters
        c["received"] += 1
        try:
            envelope, op, rid, rest = wire.decode_frames(frames, self.cfg.max_message_bytes)
        except wire.Rejected as r:
            c["bad_frames"] += 1
            self.reject(r.envelope, r.rid, r.error)
            if r.rid == 0 and isinstance(r.error, MessageTooLarge):   # a tell (rid 0): no reader
                self.loud.dropped("?", "?", "?", r.error)
            return
        if op == _BATCH:
            self._batch(envelope, rest[0])
            return
        self._one(envelope, op, rid, rest, frames[-1])
        self._flush_if_full()

    def _batch(self, envelope: Envelope, payloads: list[bytes], start: int = 0) -> bool:
        """A peer's coalesced messages (``wire.BATCH``): each in order, as if alone; True
        when all have been handled. Past ``DRAIN_BUDGET`` seconds the pump is held and
        the rest goes on in the next turn of the loop (timers, the heartbeat among them,
        run between): False."""
        c = self.counters
        if start == 0:
            c["received"] += len(payloads) - 1
            c["batches"] += 1
            self.output.batch_peer(envelope)
        decode = wire.decode_payload
        until = time.monotonic() + DRAIN_BUDGET
        for i in range(start, len(payloads)):
            payload = payloads[i]
            try:
                op, rid, rest = decode(envelope, payload)
                if op == _BATCH:
                    c["bad_frames"] += 1
                    self.reject(envelope, rid, BadRequest("a batch holds no batch"))
                else:
                    self._one(envelope, op, rid, rest, payload)
            except wire.Rejected as r:
                c["bad_frames"] += 1
                self.reject(r.envelope, r.rid, r.error)
            except Exception as exc:    # a bug in one message's handling: not the others'
                if _failures.allow(type(exc).__name__):     # (a peer can repeat it)
                    log.exception("handling message %d of a batch failed", i)
                self.reject(envelope, wire.peek_id(payload), ActorError(
                    f"the worker failed to handle this message ({type(exc).__name__})"))
            self._flush_if_full()
            if i + 1 < len(payloads) and time.monotonic() > until:
                self.pump.hold()
                self.loop.call_soon(self._go_on, envelope, payloads, i + 1)
                return False
        return True

    def _go_on(self, envelope: Envelope, payloads: list[bytes], start: int) -> None:
        """The rest of a batch that ran past its budget; what its turns staged commits
        as after a drain; the pump reads again once the batch is done."""
        done = True
        try:
            done = self._batch(envelope, payloads, start)
        finally:
            try:
                if self.pump.after_batch is not None:
                    self.pump.after_batch()
            except Exception:
                log.exception("after a part of a batch")
            finally:
                if done:
                    self.pump.release()

    def _flush_if_full(self) -> None:
        """Between two messages: a long drain's first replies leave now (commit.py,
        ``FLUSH_AT``). A failure of the flush is no message's: logged, and the drain goes
        on (as one in ``after_batch`` is)."""
        try:
            self.commit.flush_if_full()
        except Exception:
            log.exception("flushing a group between two messages failed")

    def _one(self, envelope: Envelope, op: int, rid: int, rest: list[Any], payload: bytes) -> None:
        """One message, alone in its frame or out of a batch (``payload``: its bytes)."""
        if self.guard is not None:
            grant = self.guard.grant(self.pump.user)
            if grant is not ADMIN and (no := refuse_request(grant, op, rest)) is not None:
                self.reject(envelope, rid, self.refusals.refused(grant, no))
                return
        try:
            self._dispatch(envelope, op, rid, rest, payload)
        except ActorError as exc:   # refused, or an address's record could not be read
            self.reject(envelope, rid, exc)
            if op == _TELL:
                self.loud.dropped(rest[0], rest[1], rest[2], exc)

    def _dispatch(self, envelope: Envelope, op: int, rid: int, rest: list[Any],
                  payload: bytes) -> None:
        c = self.counters
        if op == _ASK or op == _TELL:
            dropped = self._deliver(op, envelope if op == _ASK else None, rid, rest[0], rest[1],
                                    rest[2], rest[3], rest[4], payload,
                                    rest[5] if len(rest) > 5 else None)
            if dropped is not None:     # a tell refused: the log is the only place it shows
                self.loud.dropped(rest[0], rest[1], rest[2], dropped)
        elif (op == wire.STOP or (op == _SPAWN and len(rest) == 3)) and self.tree_endpoint is None:
            c["bad_frames"] += 1     # only a supervision tree starts and stops children
            self.reject(envelope, rid, BadRequest(
                f"{wire.OPS[op]} with options is the supervision tree's; this node has none"))
        elif op == _SPAWN:
            if len(rest) == 3:
                self.children.start(envelope, rid, rest[0], rest[1], rest[2])
            else:
                self._deliver(op, envelope, rid, rest[0], rest[1], "", [], {})
        elif op == wire.STOP:
            self.children.stop(envelope, rid, rest[0], rest[1], rest[2])
        elif op == wire.LIST:
            if rest[0] not in self.classes:
                c["bad_frames"] += 1
                self.reject(envelope, rid, self.catalog.unknown_type(rest[0]))
                return
            self.output.send(envelope, wire.ok(rid, list_actors(
                self.store, rest[0], rest[1], rest[2],
                served=self.grants.served if self.grants.active else None)))
        elif op == wire.PING:
            self.output.send(envelope, wire.ok(rid, "pong"))
        elif op == wire.METRICS:
            self.output.send(envelope, wire.ok(rid, self.metrics.families()))
        elif op == wire.TOP:
            hot = self.turns.telemetry.hot.top(rest[0], rest[1], time.monotonic())
            for h in hot:
                h["slot"] = self.slot
            self.output.send(envelope, wire.ok(rid, hot))
        elif op == wire.STATUS:
            st = status(self.slot, self.endpoint, self.catalog, self.alarms, self.store,
                        self.counters)
            st["granted"] = len(self.grants.shards) if self.grants.active else None
            st["fenced"] = self.grants.fenced()
            st["lost"] = self.lost
            st["replication"] = self.replication.status()
            self.output.send(envelope, wire.ok(rid, st))
        elif op == wire.SHARDS:
            self.shard_commands.serve(envelope, rid, rest[0], rest[1])
        elif op == wire.MAP:
            self.output.send(envelope, wire.ok(rid, self.map.to_wire(
                max_message_bytes=self.cfg.max_message_bytes, tree=self.tree_endpoint)))
        else:   # EXIT and SUP belong to the supervision tree
            c["bad_frames"] += 1
            self.reject(envelope, rid, BadRequest(f"a worker does not serve {wire.OPS[op]} requests"))

    def _deliver(self, op: int, reply_to: Envelope | None, rid: int, type_name: str, key: str,
                 method: str, args: list[Any], kwargs: dict[str, Any],
                 raw: bytes | None = None, ctx: dict[str, Any] | None = None) -> ActorError | None:
        """Admit a message to its actor's mailbox (or refuse it), and run it if it can.
        Returns why a tell was refused (None: admitted, or an ask, answered)."""
        if self.turns.stopping:  # passivation is under way; a new turn would reactivate the actor
            return self.reject(reply_to, rid, NodeUnavailable(
                f"worker slot {self.slot} is shutting down"))
        try:
            act = self.catalog.resident(type_name, key)
        except _REFUSED as exc:
            return self.reject(reply_to, rid, exc)
        if self.grants.active and (refused := self.grants.refuse(act.shard)) is not None:
            return self.reject(reply_to, rid, refused)
        if act.status is STOPPED and not (op == _ASK and method in SYSTEM_METHODS):
            return self.reject(reply_to, rid, stopped_error(act))
        if op != _SPAWN and method not in act.handlers and not (
                op == _ASK and method in SYSTEM_METHODS):
            if method in TESTING_METHODS:
                return self._testing(act, reply_to, rid, method, args, kwargs)
            self.counters["bad_frames"] += 1
            if not act.mailbox and not act.running and act.instance is None and act.sup is None:
                self.catalog.forget(act)
            return self.reject(reply_to, rid, UnknownMethod(
                f"actor type '{type_name}' has no method '{method:.200}'"))
        cfg = self.cfg
        # (asks held for a nested turn, see nested.py, count as mail)
        if len(act.mailbox) + (len(act.nest.pending) if act.nest else 0) >= cfg.mailbox_limit:
            self.counters["overloaded"] += 1
            return self.reject(reply_to, rid, Overloaded(
                f"mailbox of {type_name}/{key:.200} is full ({cfg.mailbox_limit} messages)"))
        if (act.running and ctx is not None and op == _ASK and "chain" in ctx
                and method not in SYSTEM_METHODS and self.turns.reenter(
                    act, Call(op, reply_to, rid, method, args, kwargs, ctx))):
            return None   # a nested turn: it came back to the turn waiting on it (or Deadlock)
        if raw is not None and (act.running or act.mailbox):
            # it has to wait: keep its wire bytes, not the decoded values (which can be
            # 70 times larger), so max_queued_bytes bounds the memory it holds
            catalog = self.catalog
            if catalog.queued_bytes + len(raw) > cfg.max_queued_bytes:
                self.counters["overloaded"] += 1
                return self.reject(reply_to, rid, Overloaded(
                    f"worker slot {self.slot} holds {catalog.queued_bytes} bytes of queued messages "
                    f"(max_queued_bytes is {cfg.max_queued_bytes})"))
            catalog.queue(act, Waiting(op, reply_to, rid, method, raw))
        elif not act.running and not act.mailbox and act.status is not DEAD:
            self.turns.run_now(act, Call(op, reply_to, rid, method, args, kwargs, ctx))
            return None
        else:
            act.mail().append(Call(op, reply_to, rid, method, args, kwargs, ctx))
        if not act.running:
            self.turns.pump(act)
        return None

    def _testing(self, act: Activation, reply_to: Envelope | None, rid: int, method: str,
                 args: list[Any], kwargs: dict[str, Any]) -> ActorError | None:
        """``$run`` on a node not started for testing (on one that is, it is every type's
        handler), and ``$fire_alarm`` (``testing_asks.py``)."""
        if not self.cfg.testing or method != FIRE_ALARM:
            if not act.mailbox and not act.running and act.instance is None and act.sup is None:
                self.catalog.forget(act)
            return self.reject(reply_to, rid, refusal(method))
        given = [*args, *kwargs.values()]
        name = given[0] if given else None
        if len(given) > 1 or set(kwargs) - {"name"} or not (name is None or isinstance(name, str)):
            return self.reject(reply_to, rid, BadRequest("$fire_alarm takes an alarm's name (a "
                                                         "string), or nothing to list them"))
        if name is None:           # the names of its alarms, as committed
            if reply_to is not None:
                self.output.send(reply_to, wire.ok(rid, self.alarms.names(act)))
            return None
        if not self.alarms.fire(act, name, reply_to, rid):
            if reply_to is not None:   # (after the commit of a drop it may have staged)
                self.commit.reply(reply_to, wire.ok(rid, False))
            self.commit.schedule()
            return None
        self.commit.flush()        # the attempt is durable before on_alarm runs (alarms_due)
        if not act.running:
            self.turns.pump(act)
        return None

    def alarms_due(self, batch: list[tuple[int, int, str, str, str]]) -> None:
        """The alarm clock hands over due alarms: count each attempt durably (and lease
        the alarm until its backoff), then run the turns (activating the actors)."""
        if self.turns.stopping:
            return
        queued = self.alarms.admit(batch)
        self.commit.flush()    # the attempts are durable before any on_alarm runs (if the
        for act in queued:     # commit failed, the turns find their lease missing: no-ops)
            if not act.running:
                self.turns.pump(act)
