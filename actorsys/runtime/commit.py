"""Group commit and the output gate.

A finished turn stages its writes in the slot's store and puts what it sends in the
:class:`GroupCommit`'s outbox: its reply (:class:`Reply`), its tells
(:class:`~actorsys.protocol.messages.Tell`) and its WebSocket effects
(:class:`~actorsys.protocol.messages.WsEffects`). A flush, after each batch of incoming
messages and whenever a turn ends outside one, writes everything staged in one LevelDB
batch and only then releases the outbox, in order, and the EXIT notices of supervised
children (:class:`~actorsys.protocol.messages.Exit`). No client ever sees the effect
of a turn that a crash could still take back.

A flush whose batch fails to commit fails every turn in it: asks get the
``StorageError``, tells and effects are dropped, and every activation that staged
writes (or may have read them) forgets its instance and reloads from disk. The store is
read-only from then on until :class:`Recovery` reopens it.

In fsync mode (``durability = "fsync"``, issue 19) the commit runs off the event loop, on
the store's commit thread (:mod:`actorsys.storage.slot`), so turns go on during the fsync:

* A flush of at most one output with no batch in flight while the worker is not busy
  (:attr:`GroupCommit.incoming`: its latest read of the socket got one message, and none
  waits) writes on the loop as in process mode: a lone ask skips two thread hops (its latency), and nothing
  is there to overlap the fsync with.
* Otherwise a flush makes the staged turns a *group* (its outbox, staged activations, touched
  actors, EXITs). With no commit in flight it starts one at once; otherwise the group
  waits, and every group that waits is committed together, in one batch, when the
  in-flight one lands (natural group commit). At most one batch is in flight.
* Output leaves strictly in commit order, group by group: nothing of a group (reply,
  tell, effect, EXIT) leaves before its batch is durable, and a group that wrote nothing
  still waits for the groups flushed before it (its turns may have read their writes,
  which reads see while in flight).
* The write's end comes back to the loop with ``call_soon_threadsafe`` (:meth:`GroupCommit.
  settle` takes it at once, blocking, where a caller needs it now).
* A failed batch fails its groups and every group after it, waiting or not yet flushed
  (they may have read its values): each through :meth:`GroupCommit.fail`, and the store
  is read-only as after any failed commit.
* ``flush(then=...)``: ``then`` runs once everything flushed so far is durable (or has
  failed): the alarm attempts counted before ``on_alarm`` runs, a shard grant's reply
  after its drain's commit. An ask sent from inside a handler (``refs.py``), the shard
  data commands (``shard_moves.py``) and a worker that starts replicating settle first.
* Replicated shards keep the synchronous path: with ``repl`` set, a flush settles the
  commit in flight, then hands its group to ``repl`` as below.

In process mode the flush writes on the loop, as it always did: a write to the OS's
cache costs less than the thread hop.

A worker with replicated shards (issue 16) hands its flush to ``repl``
(:class:`~.replication.Replication`), which commits the same way and then holds the
output until enough replicas hold the writes; with none, ``repl`` is None and the flush
below runs as it always did.

The sending itself is the worker's (:class:`Output`, implemented by
:class:`~.outlets.Sockets`).
"""
from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union


from ..errors import ActorError, LimitExceeded, MessageTooLarge, StorageError
from ..log import get_logger
from ..protocol import wire
from ..protocol.messages import Exit, Tell, WsEffects

if TYPE_CHECKING:
    import asyncio

    from ..storage.slot import SlotStore
    from .activation import Activation, Envelope
    from .catalog import Catalog
    from .replication import Replication

log = get_logger("worker")
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


@dataclass(slots=True, eq=False)
class Group:
    """One flush's turns, in fsync mode: what they send, once their batch is durable."""
    outbox: list[Outgoing]
    staged: list[Activation]
    touched: set[bytes]      #: the actors (prefixes) they wrote
    exits: list[Exit]
    then: list[Callable[[], None]] = field(default_factory=list)


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
                 on_failure: Callable[[StorageError], None],
                 call_soon_threadsafe: Callable[..., Any] | None = None) -> None:
        self.store, self.catalog, self.output = store, catalog, output
        self.call_soon, self.counters = call_soon, counters
        #: fsync mode: commit on the store's thread (the module docstring); needs a loop
        self.threaded = store.fsync and call_soon_threadsafe is not None
        self.call_soon_threadsafe = call_soon_threadsafe
        #: fsync mode: the groups of the batch in flight, and those flushed since
        self.committing: list[Group] = []
        self.waiting: list[Group] = []
        #: fsync mode: whether the worker is busy (more than one message in its latest read
        #: of the socket, or one waiting); if not, and no batch is in flight, the write
        #: stays on the loop (None: always the thread)
        self.incoming: Callable[[], bool] | None = None
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

    @property
    def busy(self) -> bool:
        """A batch is in flight (fsync mode), its groups' output not yet released."""
        return self.store.inflight is not None or bool(self.waiting)

    def flush(self, then: Callable[[], None] | None = None) -> None:
        """Commit everything staged in one batch, then release the outbox and the exits
        (fsync mode: hand it to the commit thread, or wait for the batch in flight).
        ``then``: called once all that is durable, or has failed."""
        self._scheduled = False
        if not self.outbox and not self.store.pending and not self.exits:
            if then is not None:
                self.after(then)
            return
        outbox, self.outbox = self.outbox, []
        staged, self.staged = self.staged, []
        touched = self.store.pending_actors
        if self.fence is not None and (refused := self.fence()) is not None:
            self.store.discard()
            if self.repl is not None:      # (after the groups still held, in order)
                self.repl.failed(refused, outbox, staged, touched)
            else:     # (the groups waiting lose their staged writes too)
                for g in self._take_waiting():
                    self._fail_group(refused, g)
                self.fail(refused, outbox, staged, touched)
            if then is not None:
                self.after(then)
            return None
        if self.repl is not None:
            self.settle()
            self.repl.flush(outbox, staged, touched)
            if then is not None:
                then()
            return None
        if self.threaded and (self.busy or self.incoming is None or len(outbox) > 1
                              or self.incoming()):
            exits, self.exits = self.exits, []
            self.waiting.append(Group(outbox, staged, touched, exits, [then] if then else []))
            if self.store.inflight is None:
                self._start()
            return None
        try:
            self.store.commit()
        except StorageError as exc:
            self.fail(exc, outbox, staged, touched)
        else:
            exits, self.exits = self.exits, []
            self.release(outbox, exits)
        if then is not None:
            then()
        return None

    def after(self, then: Callable[[], None]) -> None:
        """Call ``then`` once everything flushed so far is durable or has failed (at once
        if nothing is in flight)."""
        last = self.waiting[-1] if self.waiting else (self.committing[-1] if self.committing else None)
        if last is None:
            then()
        else:
            last.then.append(then)

    def settle(self) -> None:
        """fsync mode: wait (blocking the loop) until no batch is in flight and every
        group flushed so far is released or failed."""
        while (fut := self.store.inflight) is not None:
            wait_for([fut])
            self._landed(fut)

    def _take_waiting(self) -> list[Group]:
        groups, self.waiting = self.waiting, []
        return groups

    def _start(self) -> None:
        groups = self._take_waiting()
        try:
            wb = self.store.begin()
        except StorageError as exc:
            for g in groups:
                self._fail_group(exc, g)
            return
        if wb is None:          # nothing written: read-only groups, durable as they are
            for g in groups:
                self._release_group(g)
            return
        self.committing = groups
        self.store.submit(wb).add_done_callback(self._written)

    def _written(self, fut: Future[tuple[float, int]]) -> None:
        """(On the commit thread.) Back to the loop."""
        try:
            assert self.call_soon_threadsafe is not None
            self.call_soon_threadsafe(self._landed, fut)
        except RuntimeError:     # the loop is closed: the store's close waited for it
            pass

    def _landed(self, fut: Future[tuple[float, int]]) -> None:
        if fut is not self.store.inflight:
            return                      # (settled already)
        groups, self.committing = self.committing, []
        error = self.store.landed(fut)
        if error is None:
            for g in groups:          # (one kick for them all: their replies coalesce)
                self.release(g.outbox, g.exits, kick=False)
            self.output.kick()
            if self.waiting:      # (first: a callback's flush must queue behind them)
                self._start()
            for g in groups:
                for cb in g.then:
                    cb()
            return
        # every later group may have read what failed: the waiting ones and the turns
        # staged since the last flush fail with it
        later = self._take_waiting()
        if self.outbox or self.store.pending or self.staged:
            later.append(Group(self.outbox, self.staged, self.store.pending_actors, []))
            self.outbox, self.staged = [], []
        self.store.discard()
        for g in groups + later:
            self._fail_group(error, g)

    def _release_group(self, g: Group) -> None:
        self.release(g.outbox, g.exits)
        for cb in g.then:
            cb()

    def _fail_group(self, exc: ActorError, g: Group) -> None:
        self.fail(exc, g.outbox, g.staged, g.touched, g.exits)
        for cb in g.then:
            cb()

    def release(self, outbox: list[Outgoing], exits: list[Exit], kick: bool = True) -> None:
        """Send a committed group's output, in order, then its exits (``kick``: then
        :meth:`Output.kick`; False when more groups' output follows at once)."""
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
        if kick:
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
