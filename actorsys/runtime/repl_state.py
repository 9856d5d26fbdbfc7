"""The state of replication on a leader (issue 16; used by :mod:`.replication`): a
grant's replication arguments (:func:`parse_grant`), the quorum rule, each replicated
shard's position, replica list and in-memory log (:class:`ShardLog`), what the leader
knows of each peer's copy (:class:`Track`), the peers (:class:`Peer`) and the groups
whose output waits for their quorum (:class:`Held`)."""
from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ActorError, BadRequest
from ..storage.replica import NO_POSITION, Position

if TYPE_CHECKING:
    from ..protocol.messages import Exit
    from .activation import Activation
    from .commit import Outgoing, Reply
    from .repl_links import PeerLink

ACK_MODES = ("majority", "all")
#: a peer worker's endpoint (checked before a grant changes anything: a bad one would
#: make zmq raise half way through applying it)
_ENDPOINT = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}|ipc://[^\x00]{1,200}")
_Z85_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


def quorum(voters: int, ack: str) -> int:
    """Voters (leader included) that must hold a batch before its output leaves."""
    return voters if ack == "all" else voters // 2 + 1


class ReplicaArgs(NamedTuple):
    """A grant's replication arguments, checked."""

    peers: list[tuple[str, str, str | None]]       #: [(node_id, endpoint, public key)]
    replicas: dict[int, list[tuple[int, bool]]]    #: shard -> [(peer index, voter)]
    ack: str
    ack_timeout: float


def parse_grant(args: dict[str, Any], nshards: int) -> ReplicaArgs | None:
    """The replication arguments of a grant (None: it has none); BadRequest naming the
    argument on a bad shape."""
    if not any(k in args for k in ("peers", "replicas", "ack", "ack_timeout")):
        return None
    peers_raw, reps_raw = args.get("peers", []), args.get("replicas", {})
    ack, timeout = args.get("ack", "majority"), args.get("ack_timeout", 5.0)
    if not isinstance(peers_raw, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 3 and isinstance(p[0], str)
            and isinstance(p[1], str) and (p[2] is None or isinstance(p[2], str)) for p in peers_raw):
        raise BadRequest("grant peers must be a list of [node_id, endpoint, public_key or nil]")
    peers = [(p[0], p[1], p[2]) for p in peers_raw]
    for _node, endpoint, key in peers:
        if not _ENDPOINT.fullmatch(endpoint):
            raise BadRequest(f"grant peers endpoint {endpoint[:100]!r} must be tcp://host:port "
                             f"or ipc://path")
        if endpoint.startswith("tcp://") and not 0 < int(endpoint.rsplit(":", 1)[1]) < 65536:
            raise BadRequest(f"grant peers endpoint {endpoint[:100]!r}: port out of range")
        if key is not None and not _Z85_KEY.fullmatch(key):
            raise BadRequest(f"grant peers public key {key[:60]!r} must be a Z85 CURVE key "
                             f"(40 characters)")
    if not isinstance(reps_raw, dict):
        raise BadRequest("grant replicas must map shard -> [[peer_index, voter], ...]")
    replicas: dict[int, list[tuple[int, bool]]] = {}
    for s, lst in reps_raw.items():
        if type(s) is not int or not 0 <= s < nshards or not isinstance(lst, list) or not all(
                isinstance(r, (list, tuple)) and len(r) == 2 and type(r[0]) is int
                and 0 <= r[0] < len(peers) and type(r[1]) is bool for r in lst):
            raise BadRequest(f"grant replicas must map shard (0..{nshards - 1}) -> [[peer_index "
                             f"(0..{len(peers) - 1}), voter (bool)], ...]")
        replicas[s] = [(r[0], r[1]) for r in lst]
    if ack not in ACK_MODES:
        raise BadRequest("grant ack must be \"majority\" or \"all\"")
    if type(timeout) not in (int, float) or not 0 < timeout < 3600:
        raise BadRequest("grant ack_timeout must be seconds (0 < t < 3600)")
    return ReplicaArgs(peers, replicas, ack, float(timeout))


class Entry(NamedTuple):
    """One batch of a shard in the leader's log."""

    prev: Position
    pos: Position
    items: list[tuple[bytes, bytes | None]]
    size: int


class ShardLog:
    """A replicated shard this worker leads (or led: ``retired``)."""

    __slots__ = ("shard", "epoch", "pos", "voters", "learners", "quorum", "entries", "retired")

    def __init__(self, shard: int, pos: Position) -> None:
        self.shard = shard
        self.epoch = 0                 #: the granted epoch (the next batch's)
        self.pos = pos                 #: the position of the last batch committed here
        self.voters: list[str] = []    #: followers' endpoints (the leader is a voter too)
        self.learners: list[str] = []
        self.quorum = 1
        self.entries: deque[Entry] = deque()
        self.retired = False           #: revoked here: caught up, never written again

    def after(self, pos: Position, limit: int) -> list[Entry] | None:
        """The logged batches after ``pos`` (at most ``limit`` bytes, at least one), or
        None if ``pos`` is not in the log (or its next batch is larger than ``limit``)."""
        out: list[Entry] = []
        size = 0
        found = False
        for e in self.entries:
            if not found:
                found = e.prev == pos
                if not found:
                    continue
            if size + e.size > limit:
                break
            out.append(e)
            size += e.size
        return out or None


@dataclass(eq=False)
class Track:
    """What the leader knows of one peer's copy of one shard."""

    holds: Position = NO_POSITION          #: the peer holds this (as it last said)
    sent: Position | None = None           #: streaming: the last batch sent (None: catch up)
    catching: bool = False                 #: the catch-up task is at it


@dataclass(eq=False)
class Peer:
    node: str
    link: PeerLink
    tracks: dict[int, Track] = field(default_factory=dict)
    outq: deque[tuple[list[Any], int]] = field(default_factory=deque)   #: (batch, bytes)
    outq_bytes: int = 0                   #: the bytes of ``outq`` (bounded: repl_stream.OUTQ_BYTES)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    said: str = ""                        #: the last catch-up problem logged
    key: str | None = None                #: its CURVE public key (Z85) the link uses
    #: seconds an ``append`` takes to be answered, lately (a moving average; inf: none yet)
    rtt: float = math.inf
    #: the delayed send of what waits (repl_stream.py: LAZY)
    lazy: asyncio.TimerHandle | None = None


@dataclass(eq=False, slots=True)
class Held:
    """A committed group whose output waits for its quorum."""

    outbox: list[Outgoing]
    exits: list[Exit]
    staged: list[Activation]
    touched: set[bytes]
    need: dict[int, Position]
    deadline: float
    #: failed (its writes not applied, its instances dropped): its asks get this error,
    #: in group order, once the groups before it leave
    failed: ActorError | None = None
    #: the follower its replies were given to (replication.py, ``_delegate``), if any
    via: Peer | None = None


class Delegated(NamedTuple):
    """A group's replies given to ``peer`` to deliver (``replication.py``, ``_delegate``)."""

    peer: Peer
    outbox: list[Outgoing]      #: the held group's outbox (what the leader still sends)
    replies: list[Reply]        #: the replies as sent, in the ``append``'s order


class Gone(Exception):
    """The shard stopped being replicated to that peer (refused, or reconfigured)."""
