"""Group commit and the output gate.

A finished turn stages its writes in the slot's store and puts what it sends in the
:class:`GroupCommit`'s outbox: its reply (:class:`Reply`), its tells
(:class:`~actorsys.protocol.messages.Tell`) and its WebSocket effects
(:class:`~actorsys.protocol.messages.WsEffects`). A flush, after each batch of incoming
messages, whenever a turn ends outside one, and as soon as the outbox holds
:data:`FLUSH_AT` items (:meth:`GroupCommit.flush_if_full`, between two messages of a
drain), writes everything staged in one LevelDB batch and only then releases the
outbox, in order, and the EXIT notices of supervised children
(:class:`~actorsys.protocol.messages.Exit`). No client ever sees the effect of a turn
that a crash could still take back.

The early flush is for overlap, not safety: a frame of a thousand asks to one actor
would otherwise be answered only after its thousandth turn, the client idle meanwhile;
flushed every :data:`FLUSH_AT`, the first replies are on their way (and the client
making the next asks) while the worker runs the rest. A group is any run of turns, so
a smaller one changes nothing a sender can observe but when its reply leaves.

A flush whose batch fails to commit fails every turn in it: asks get the
``StorageError``, tells and effects are dropped, and every activation that staged
writes (or may have read them) forgets its instance and reloads from disk. The store is
read-only from then on until :class:`Recovery` reopens it.

A worker with replicated shards (issue 16) hands its flush to ``repl``
(:class:`~.replication.Replication`), which commits the same way and then holds the
output until enough replicas hold the writes; with none, ``repl`` is None and the flush
below runs as it always did.

The sending itself is the worker's (:class:`Output`); the gateway's part of it is
:class:`GatewayLink`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

import zmq

from ..errors import ActorError, LimitExceeded, MessageTooLarge, StorageError
from ..log import get_logger
from ..net.sockets import dealer
from ..protocol import wire
from ..protocol.messages import Exit, Tell, WsEffects
from ..protocol.ws import split as split_parts

if TYPE_CHECKING:
    import asyncio

    from ..client.transport import AsyncTransport
    from ..net.keys import CurveKeys
    from ..storage.slot import SlotStore
    from .activation import Activation, Envelope
    from .catalog import Catalog
    from .replication import Replication
    from .replies import ReplyBatches
    from .ws_routes import GatewayRoutes

log = get_logger("worker")
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
#: a group's outbox is flushed, mid-drain, once it holds this many replies, tells and
#: effects (see the module docstring); each flush costs one LevelDB write
FLUSH_AT = 128
#: seconds between attempts to reopen storage that turned read-only after a failed commit
RECOVERY_INTERVAL = 0.5



def encode_end(state: Any, rid: int, result: Any, want_reply: bool, max_message_bytes: int,
               max_value_bytes: int) -> tuple[bytes, bytes | None]:
    """What a turn that ended leaves to commit and send: its state's bytes and its reply
    (None if nobody awaits it). Raises the error the turn then fails with: a state or
    result msgpack cannot encode (TypeError), a reply over ``max_message_bytes``
    (MessageTooLarge), a state over ``max_value_bytes`` (LimitExceeded)."""
    if not isinstance(state, dict):
        raise TypeError(f"self.state must be a dict, not {type(state).__name__}")
    try:
        state_bytes = wire.pack(state)
        reply = wire.ok(rid, result) if want_reply else None
    except Exception as exc:
        raise TypeError(f"turn result or state is not msgpack-able: {exc}") from None
    if reply is not None and len(reply) > max_message_bytes:
        raise MessageTooLarge(f"reply of {len(reply)} bytes; max_message_bytes is {max_message_bytes}")
    if len(state_bytes) > max_value_bytes:
        raise LimitExceeded(f"self.state is {len(state_bytes)} bytes; max_value_bytes is "
                            f"{max_value_bytes} (keep large data in self.storage)")
    return state_bytes, reply

@dataclass(slots=True, eq=False)
class Reply:
    """A reply waiting in the outbox for its turn's commit (one per ask: a slotted
    dataclass is cheaper to make than a NamedTuple)."""
    to: Envelope
    payload: bytes       #: an encoded ``OK`` or ``ERR`` (wire.ok / wire.err)


Outgoing = Union[Reply, Tell, WsEffects]


class Output(Protocol):
    """Where committed output goes (the worker's sockets; a list in unit tests)."""

    def send(self, to: Envelope, payload: bytes) -> None:
        """A reply (or an immediate error) to a peer of the worker's socket."""

    def forward(self, to: bytes, payload: bytes) -> bool:
        """A replicated shard's leader's reply, delivered by this follower to the peer
        whose routing id is ``to`` (:mod:`.repl_follower`); whether it left (False: no
        such peer here, or its queue is full)."""

    def tell(self, msg: Tell) -> None:
        """A tell to another actor; raises :class:`ActorError` if it cannot leave."""

    def effects(self, msg: WsEffects) -> None:
        """An actor's committed WebSocket effects, for the gateway."""

    def exit(self, msg: Exit) -> None:
        """A supervised child's EXIT, for the supervision tree."""

    def batch_peer(self, to: Envelope) -> None:
        """The peer ``to`` sent a BATCH: its replies may be coalesced (``replies.py``)."""

    def kick(self) -> None:
        """Output was released: send the replies held for coalescing, and re-check the
        incoming socket (its FD is edge-triggered)."""


class GroupCommit:
    """The outbox, the staged turns, and the flush that commits them and releases their
    output. See the module docstring."""

    def __init__(self, store: SlotStore, catalog: Catalog, output: Output,
                 call_soon: Callable[[Callable[[], None]], Any], counters: dict[str, int],
                 on_failure: Callable[[StorageError], None]) -> None:
        self.store, self.catalog, self.output = store, catalog, output
        self.call_soon, self.counters = call_soon, counters
        #: called after a failed commit (the worker logs it, starts recovery, wakes alarms)
        self.on_failure = on_failure
        #: what the turns staged since the last flush sends, in order
        self.outbox: list[Outgoing] = []
        #: the activations whose turns staged writes since the last flush
        self.staged: list[Activation] = []
        #: EXIT notices for the tree; they leave after the next commit
        self.exits: list[Exit] = []
        self._scheduled = False
        #: told of a committed tell that could not leave, and why (the worker logs it)
        self.on_dropped_tell: Callable[[Tell, ActorError], None] | None = None
        #: a cluster worker's fencing check (runtime/grants.py): an error once this node
        #: may no longer write, which then fails the whole group unwritten (None: no fence)
        self.fence: Callable[[], ActorError | None] | None = None
        #: the replication of a worker leading replicated shards (None: none; the one
        #: attribute the flush tests for it)
        self.repl: Replication | None = None

    def reply(self, to: Envelope, payload: bytes) -> None:
        self.outbox.append(Reply(to, payload))

    def stage(self, act: Activation, writes: dict[bytes, bytes | None]) -> None:
        """Stage a turn's writes (its listing and history entries included)."""
        self.store.stage(writes, act.prefix)
        self.staged.append(act)

    def exit(self, notice: Exit) -> None:
        """Queue a supervised child's EXIT; it leaves after the next commit."""
        self.exits.append(notice)
        self.schedule()

    def schedule(self) -> None:
        """Flush soon (after the current callback), once however often asked."""
        if not self._scheduled:
            self._scheduled = True
            self.call_soon(self.flush)

    def flush_if_full(self) -> None:
        """Flush now if the outbox holds :data:`FLUSH_AT` items (between two messages)."""
        if len(self.outbox) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Commit everything staged in one batch, then release the outbox and the exits."""
        self._scheduled = False
        if not self.outbox and not self.store.pending and not self.exits:
            return
        outbox, self.outbox = self.outbox, []
        staged, self.staged = self.staged, []
        touched = self.store.pending_actors
        if self.fence is not None and (refused := self.fence()) is not None:
            self.store.discard()
            if self.repl is not None:      # (after the groups still held, in order)
                return self.repl.failed(refused, outbox, staged, touched)
            return self.fail(refused, outbox, staged, touched)
        if self.repl is not None:
            return self.repl.flush(outbox, staged, touched)
        try:
            self.store.commit()
        except StorageError as exc:
            return self.fail(exc, outbox, staged, touched)
        exits, self.exits = self.exits, []
        self.release(outbox, exits)

    def release(self, outbox: list[Outgoing], exits: list[Exit]) -> None:
        """Send a committed group's output, in order, then its exits."""
        out = self.output
        for item in outbox:
            if type(item) is Reply:
                out.send(item.to, item.payload)
            elif type(item) is Tell:
                try:
                    out.tell(item)
                except ActorError as exc:
                    self.counters["dropped_replies"] += 1
                    if self.on_dropped_tell is not None:
                        self.on_dropped_tell(item, exc)
                except Exception:    # never lose the replies after it
                    self.counters["dropped_replies"] += 1
                    log.exception("a committed tell could not be sent")
            elif type(item) is WsEffects:
                out.effects(item)
        for notice in exits:
            out.exit(notice)
        out.kick()

    def fail(self, exc: ActorError, outbox: list[Outgoing], staged: list[Activation],
             touched: set[bytes], exits: list[Exit] | None = None) -> None:
        """Nothing of this group is durable (or, replicated, not known to be): fail its
        asks, drop its tells, and make every activation that staged writes, or may have
        read them (one activated after an eviction in this group), reload from disk.
        ``exits``: the group's EXIT notices (None: those queued now)."""
        if isinstance(exc, StorageError):
            self.counters["storage_errors"] += 1
        for act in list(self.catalog.acts.values()):
            if act.prefix in touched:
                act.drop_instance()
        for act in staged:
            act.drop_instance()
        if isinstance(exc, StorageError):
            self.on_failure(exc)
        error = exc.to_wire()
        for item in outbox:
            if type(item) is Reply:
                rid = wire.unpack(item.payload)[1]
                self.output.send(item.to, wire.err(rid, error))
        if exits is None:
            exits, self.exits = self.exits, []
        for notice in exits:
            self.output.exit(notice)
        self.output.kick()


class Recovery:
    """While the store is read-only after a failed commit: try to reopen it every
    :data:`RECOVERY_INTERVAL` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store: SlotStore,
                 on_recovered: Callable[[], None]) -> None:
        self.loop, self.store, self.on_recovered = loop, store, on_recovered
        self.timer: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return self.timer is not None

    def start(self) -> None:
        """Begin retrying (no-op while already retrying)."""
        if self.timer is None:
            self.timer = self.loop.call_later(RECOVERY_INTERVAL, self._try)

    def _try(self) -> None:
        if self.store.try_recover():
            self.timer = None                # (the store has logged it)
            self.on_recovered()
        else:
            self.timer = self.loop.call_later(RECOVERY_INTERVAL, self._try)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class GatewayLink:
    """Hands the gateway committed WebSocket effects, in parts that fit in a message.

    Without a gateway, or past its queue, they are dropped and counted (a socket-event
    batch's effects are sent again if the batch is redelivered). The socket is made on
    first use.
    """

    def __init__(self, ctx: zmq.Context[Any], endpoint: str | None, keys: CurveKeys | None,
                 max_message_bytes: int, counters: dict[str, int]) -> None:
        self.ctx, self.endpoint, self.keys = ctx, endpoint, keys
        self.limit = max_message_bytes - 1024
        self.counters = counters
        self.sock: zmq.Socket[Any] | None = None

    def send(self, msg: WsEffects) -> None:
        sock = self.sock
        if sock is None:
            if self.endpoint is None:
                self.counters["dropped_ws"] += 1
                return
            sock = self.sock = dealer(self.ctx, self.endpoint, self.keys)
        limit = self.limit
        payload = msg.encode()
        parts = [payload] if len(payload) <= limit else [
            msg._replace(effects=part, part=i).encode()
            for i, part in enumerate(split_parts(msg.effects, limit - len(msg.type_name) - len(msg.key)))]
        try:
            for p in parts:
                sock.send(p, _NOBLOCK)
        except zmq.ZMQError:
            self.counters["dropped_ws"] += 1

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(500)


class Sockets:
    """Where a worker's committed output leaves (:class:`~.commit.Output`): replies on
    its ROUTER socket (coalesced per peer: ``replies.py``), tells through its client
    transport, WebSocket effects to the gateway, EXITs to the supervision tree. What
    cannot leave is counted, never raised."""

    def __init__(self, sock: zmq.Socket[Any], transport: AsyncTransport,
                 gateway: GatewayLink | GatewayRoutes,
                 tree_sock: zmq.Socket[Any] | None, kick: Callable[[], None],
                 counters: dict[str, int], replies: ReplyBatches) -> None:
        self.sock, self.transport, self.gateway, self.tree_sock = sock, transport, gateway, tree_sock
        self._kick = kick
        self.counters = counters
        #: replies coalesced per peer until the next flush (``replies.py``)
        self.replies = replies

    def send(self, to: Envelope, payload: bytes) -> None:
        self.replies.send(to, payload)

    def batch_peer(self, to: Envelope) -> None:
        self.replies.batch_peer(to)

    def kick(self) -> None:
        """The end of a release: the tells queued by the transport leave, then the
        replies (so a turn's tells leave no later than its reply, as when each left at
        once), and the socket is re-checked."""
        self.transport.flush()
        self.replies.flush()
        self._kick()

    def forward(self, to: bytes, payload: bytes) -> bool:
        try:
            self.sock.send(to, _SNDMORE_NOBLOCK)     # (ROUTER_MANDATORY: raises if unknown)
            self.sock.send(payload, _NOBLOCK)
        except zmq.ZMQError:
            return False
        return True

    def tell(self, msg: Tell) -> None:
        self.transport.tell(msg.type_name, msg.key, msg.method, msg.args, msg.kwargs, msg.ctx)

    def effects(self, msg: WsEffects) -> None:
        self.gateway.send(msg)

    def exit(self, msg: Exit) -> None:
        if self.tree_sock is None:
            return
        try:
            self.tree_sock.send(msg.encode(), _NOBLOCK)
        except zmq.ZMQError:
            self.counters["dropped_replies"] += 1
