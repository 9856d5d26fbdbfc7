"""One actor address in a worker's memory: :class:`Activation`, its mailbox entries and
its states.

A mailbox holds three kinds of entry, each a typed record (a slotted dataclass, never
changed once made: cheaper to make than a NamedTuple, and one is made per message):

* :class:`Call`: an ASK, TELL or plain SPAWN from the wire, decoded: run a handler (a
  SPAWN runs none: the activation was the work).
* :class:`Waiting`: an ASK or TELL that had to wait for its turn, kept as the wire bytes
  that arrived; it is decoded into a :class:`Call` when its turn comes.
* :class:`Internal`: what the runtime itself queues (:class:`Kind`): passivate, start or
  stop a supervised child, the exit after ``self.stop()``, an alarm's turn. Internal
  kinds are never wire ops.

A supervised child's place in its life cycle is an :class:`ActivationState`; a plain
actor is always ``RUNNING``.
"""
from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from ..protocol import wire

if TYPE_CHECKING:
    from ..actor import Actor, Connection
    from ..protocol.messages import Tell
    from ..storage import history
    from ..storage.requests import RequestWindow
    from .host import Host
    from .nested import Nest

#: the ROUTER envelope a reply goes back through (peer id, and an empty frame for REQ peers)
Envelope = tuple[bytes, ...]


class ActivationState(enum.Enum):
    """Where an activation stands. Plain actors are always RUNNING; the others are a
    supervised child's (see ``runtime/children.py``)."""
    #: a START is queued or running: nothing that ends the activation is an exit yet
    STARTING = "starting"
    #: running; for a child, a crash or ``self.stop()`` from now on is an exit
    RUNNING = "running"
    #: exited (or its worker died with it): its messages wait until the tree restarts
    #: (START) or stops it; only system asks run meanwhile
    DEAD = "dead"
    #: stopped by its supervisor: messages fail with ActorStopped until a START
    STOPPED = "stopped"


STARTING, RUNNING, DEAD, STOPPED = (ActivationState.STARTING, ActivationState.RUNNING,
                                    ActivationState.DEAD, ActivationState.STOPPED)


class Kind(enum.Enum):
    """What an :class:`Internal` mailbox entry asks for (never a wire op)."""
    #: run ``on_stop`` and leave memory (idle, evicted, or the worker shutting down)
    PASSIVATE = "passivate"
    #: the tree (re)starts a supervised child: ``on_start(*args, **kwargs)``
    START = "start"
    #: the tree stops a child within its shutdown time: ``on_stop``
    SHUTDOWN = "shutdown"
    #: the actor called ``self.stop(reason)``: ``on_stop``, then the EXIT to the tree
    EXITING = "exiting"
    #: an alarm came due: ``on_alarm(name, payload)``
    ALARM = "alarm"


PASSIVATE, START, SHUTDOWN, EXITING, ALARM = (Kind.PASSIVATE, Kind.START, Kind.SHUTDOWN,
                                              Kind.EXITING, Kind.ALARM)
#: the kinds whose turn ends the instance (on_stop runs, the instance leaves memory)
ENDING = frozenset({PASSIVATE, SHUTDOWN, EXITING})


@dataclass(slots=True, eq=False)
class Call:
    """An ASK, TELL or plain SPAWN from the wire, decoded."""
    op: int                      #: wire.ASK, wire.TELL or wire.SPAWN
    reply_to: Envelope | None    #: None for a tell: nobody awaits the outcome
    rid: int                     #: the request id the reply carries
    method: str                  #: a handler of the actor's type, a system ask ($...) or "" (SPAWN)
    args: list[Any]
    kwargs: dict[str, Any]
    ctx: dict[str, Any] | None = None   #: the call's context (request id, call chain), checked


@dataclass(slots=True, eq=False)
class Waiting:
    """An ASK or TELL waiting for its turn as the bytes that arrived (decoded values can
    be 70 times larger; the worker's ``max_queued_bytes`` bounds these). The bytes were
    checked on arrival."""
    op: int
    reply_to: Envelope | None
    rid: int
    method: str
    #: the request's payload frame: [op, rid, type, key, method, args, kwargs, ctx?]
    raw: bytes


@dataclass(slots=True, eq=False)
class Internal:
    """A mailbox entry the runtime itself queues."""
    kind: Kind
    reply_to: Envelope | None = None   #: START, SHUTDOWN: the tree's request, answered after the turn
    rid: int = 0
    name: str = ""       #: EXITING: the reason given to stop(); ALARM: the alarm's name
    due: int = 0         #: ALARM: the due time (microseconds) it was handed out for: its lease


Mail = Union[Call, Waiting, Internal]
#: the mailbox of an activation with no waiting messages (see :meth:`Activation.mail`)
NO_MAIL: tuple[()] = ()


class Activation:
    """The in-memory record of one actor address on this worker.

    The catalog holds at most one per address. Its instance comes and goes (passivation,
    crashes, kills); the record stays while it is in use: running, with mail, or a
    supervised child that is not stopped.
    """

    __slots__ = ("type_name", "key", "prefix", "cls", "handlers", "instance", "host", "mailbox",
                 "running", "last_used", "snapshot", "tells", "sup", "status", "task",
                 "kill_timer", "gen", "versions", "indexed", "ws", "ws_gateways", "ws_out",
                 "ws_batch", "ws_parts", "chain", "turn_id", "nest", "requests", "shard")

    def __init__(self, type_name: str, key: str, prefix: bytes, cls: type[Actor],
                 handlers: dict[str, Any]) -> None:
        self.type_name, self.key = type_name, key
        #: the actor's key prefix in the slot's store (see storage/keys.py)
        self.prefix = prefix
        #: its shard (the prefix's, storage/keys.py): what a cluster worker's grant admits
        self.shard = int.from_bytes(prefix[1:3], "big")
        self.cls = cls
        #: the type's handlers by method name (shared by every activation of the type)
        self.handlers = handlers
        #: the live instance, or None (not activated yet, passivated, crashed, killed);
        #: ``host`` is its runtime handle: both are set together and cleared together
        self.instance: Actor | None = None
        self.host: Host | None = None
        #: entries waiting for their turn, in order; the empty tuple NO_MAIL while none
        #: do (an empty deque is 760 bytes, the largest part of an idle resident actor)
        self.mailbox: deque[Mail] | tuple[()] = NO_MAIL
        #: a turn is in progress (sync, or an async one awaiting): nothing else starts
        self.running = False
        #: time.monotonic() when its last turn ended (the idle clock and the LRU order)
        self.last_used = time.monotonic()
        #: the state's bytes as of the last commit; b"": none stored; None: not read yet
        self.snapshot: bytes | None = None
        #: tells the running turn made; they leave with its commit (output gate). The
        #: empty tuple while there are none (no list made per turn; see InnerRef.tell)
        self.tells: list[Tell] | tuple[()] = ()
        #: the supervision record (a supervised child), or None (a plain actor)
        self.sup: SupRecord | None = None
        #: where a supervised child stands; always RUNNING for a plain actor
        self.status = RUNNING
        #: the async turn in progress, if any
        self.task: asyncio.Task[None] | None = None
        #: a timed shutdown's deadline (a SHUTDOWN is queued or running)
        self.kill_timer: asyncio.TimerHandle | None = None
        #: bumped by a kill and by a START that activates: an async turn of an earlier
        #: generation that finishes later (it awaited while being cancelled) is discarded;
        #: -1 only in a detached record (:meth:`ghost`)
        self.gen = 0
        #: the history bookkeeping, loaded at the first commit (types with history only)
        self.versions: history.Versions | None = None
        #: its listing entry was written by this activation (so later turns skip it);
        #: cleared when a turn leaves the actor with no data and unlists it (destroy.py)
        self.indexed = False
        #: its WebSockets as the gateways last sent them (None: not known), and which
        #: gateway incarnation holds which of them (see ws_turns.py)
        self.ws: dict[str, Connection] | None = None
        self.ws_gateways: dict[str, set[str]] | None = None
        #: the running turn's effects on its sockets; they leave with its commit (the
        #: empty tuple while there are none, as tells)
        self.ws_out: list[list[Any]] | tuple[()] = ()
        #: [gateway, number] of the socket events' batch the running turn runs
        self.ws_batch: list[Any] | None = None
        #: a roster arriving in parts: [the next part's index, records so far]
        self.ws_parts: list[Any] | None = None
        #: the own chain of the running async turn (its call chain and its own link with
        #: its token: chains.py); set as it goes async
        self.chain: list[list[Any]] | None = None
        #: the request id of the running async turn's ask (exactly-once), if it has one
        self.turn_id: bytes | None = None
        #: its nested turns (see nested.py), while it has had any; for ``nest.task`` only
        self.nest: Nest | None = None
        #: its request-id window (exactly-once asks), loaded at its first ask with an id
        self.requests: RequestWindow | None = None

    def mail(self) -> deque[Mail]:
        """The mailbox, to add to (made on first use)."""
        mb = self.mailbox
        if mb.__class__ is tuple:
            mb = self.mailbox = deque()
        return mb  # type: ignore[return-value]

    def drop_instance(self) -> None:
        """Forget the live instance without on_stop (its memory no longer matches
        storage): the next message activates it from the last commit."""
        self.instance = self.host = None
        self.snapshot = None
        self.versions = None
        self.indexed = False
        self.requests = None

    def crashed(self) -> None:
        """A turn failed: the instance and everything the turn would have sent are gone;
        the next message reactivates it from the last commit. Its sockets are asked
        of the gateway again (the turn may have changed them)."""
        self.instance = self.host = None
        self.tells = ()
        self.ws, self.ws_out, self.ws_batch, self.ws_parts = None, (), None, None
        self.running = False
        self.last_used = time.monotonic()

    def cancel_kill_timer(self) -> None:
        if self.kill_timer is not None:
            self.kill_timer.cancel()
            self.kill_timer = None

    def ghost(self) -> Activation:
        """A detached record of the same address (generation -1): what a killed instance
        still sends lands there, and nobody reads it."""
        ghost = Activation(self.type_name, self.key, self.prefix, self.cls, self.handlers)
        ghost.gen = -1
        return ghost

    def held(self) -> bool:
        """In use: it must stay resident (running, mail waiting, or a supervised child
        the tree has not stopped)."""
        return bool(self.running or self.mailbox or (self.sup is not None and self.status is not STOPPED))


class SupRecord(NamedTuple):
    """A supervised child's record, persisted beside its state (``prefix + b"m"``) as
    the map ``{"sup", "child", "args", "kwargs", "inc", "running"}``."""
    sup: str             #: its supervisor's name
    child: str           #: its child id
    args: list[Any]      #: on_start's arguments (from the child spec)
    kwargs: dict[str, Any]
    inc: int             #: the incarnation the tree gave this start (echoed in its EXIT)
    running: bool        #: False once the tree has stopped it

    @classmethod
    def from_stored(cls, rec: dict[str, Any]) -> SupRecord:
        return cls(rec["sup"], rec["child"], rec["args"], rec["kwargs"], rec["inc"], rec["running"])

    def to_stored(self) -> dict[str, Any]:
        return {"sup": self.sup, "child": self.child, "args": self.args,
                "kwargs": self.kwargs, "inc": self.inc, "running": self.running}


def method_label(msg: Call | Internal) -> str:
    """A turn's ``method`` label: the handler's name (checked against the actor's class
    before it was queued: the series stay bounded), ``$spawn``, or the runtime's own
    turn (``$start``, ``$alarm``, ``$passivate``, ``$shutdown``, ``$exiting``)."""
    if isinstance(msg, Call):
        return msg.method if msg.op != wire.SPAWN else "$spawn"
    kind: str = msg.kind.value
    return "$" + kind
