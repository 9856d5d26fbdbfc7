"""The wire format: every message is one msgpack-encoded frame.

A ROUTER socket sees ``[peer-id, payload]`` from a DEALER peer and
``[peer-id, b"", payload]`` from a REQ peer; replies keep the same envelope.

Requests are msgpack arrays ``[op, request_id, ...]``:

======  ============================================================
op      body
======  ============================================================
ASK     ``[ASK, id, type, key, method, args, kwargs, ctx?]`` -> one reply
TELL    ``[TELL, 0, type, key, method, args, kwargs, ctx?]`` -> no reply
SPAWN   ``[SPAWN, id, type, key]``: activate now -> ``OK`` reply;
        ``[SPAWN, id, type, key, opts]`` from the tree: start a supervised child
MAP     ``[MAP, id]``: the shard map (router)
STATUS  ``[STATUS, id]``: counters and processes
PING    ``[PING, id]`` -> ``OK "pong"``
STOP    ``[STOP, id, type, key, opts]``: the tree stops (or forgets) a child
EXIT    ``[EXIT, 0, sup, child, type, key, inc, reason, detail]``: a worker tells the
        tree that a supervised child exited (no reply)
SUP     ``[SUP, id, supervisor, command, arg, deadline]``: a supervisor's runtime API
        (tree); ``deadline`` (epoch seconds, optional): not carried out after it
LIST    ``[LIST, id, type, start_after, limit]``: a worker's keys of actors of ``type``
        with persisted data, in order, after ``start_after`` (a string or nil)
CLUSTER ``[CLUSTER, id]``: the cluster's view (router): name, epoch, nodes
LEAVE   ``[LEAVE, id]``: the node hands its shards off to the others, then replies (router)
METRICS ``[METRICS, id]``: Prometheus samples, ``[[name, type, help, [[sample, {label: value},
        value], ...]], ...]``: a process's own (worker, tree, gateway), or the whole node's
        (router: every process's, labelled with its ``role`` and ``slot``;
        ``actorsys/metrics``)
TOP     ``[TOP, id, n, by]``: the ``n`` (1..1000) busiest actors of about the last minute,
        ordered ``by`` busy, turns, errors or mailbox: ``[{"type", "key", "slot",
        "turns_per_s", "busy", "errors", "mailbox"}, ...]`` (a worker's own; the
        router's: every worker's, merged; ``actorsys/runtime/hot.py``)
WS      ``[WS, 0, type, key, effects, batch, part]``: a worker hands the gateway what
        one actor's committed turn did to its WebSockets (a large turn's in parts 0,
        1, ...); ``batch``: ``[gateway, number]`` of the socket events' batch it ran,
        or nil (no reply; see ``ws.py``)
SHARDS  ``[SHARDS, id, cmd, args]``: a cluster node's router tells its worker which
        shards it may serve (``cmd`` "grant") and moves shard data ("export",
        "import", "drop"); ``args`` a map (``actorsys/runtime/grants.py``)
BATCH   ``[BATCH, 0, [payload, ...]]``: 2 to :data:`MAX_BATCH` whole messages (each the
        bytes of one request above, never a BATCH) that one peer sent in one turn of its
        event loop, in the order sent; each is handled, and answered, exactly as if it
        had come alone (see "Coalescing" below)
======  ============================================================

``ctx`` (optional; absent when empty) is the call's context, a map: ``"id"`` (bytes,
an ask's request id unique to its client: a repeated id is answered with the recorded
outcome, not run again) and ``"chain"`` (an array of ``[type, key, token]``: the turns
waiting on this call, oldest first, each with its random token: call-chain reentrancy,
``actorsys/runtime/chains.py``) and ``"trace"`` (a map of the W3C trace context's
``traceparent`` and ``tracestate``: the caller's span, ``actorsys/tracing.py``). Unknown
keys are refused, so a peer's typo is an error, not a silent no-op.

An ``ASK`` whose method starts with ``$`` is a system call served by the worker in the
actor's turn order without running its code: ``$history``, ``$rewind`` (kwargs
``version`` or ``time``), ``$destroy``. ``$ws`` (from the gateway) runs the actor's
WebSocket handlers for a batch of socket events (``ws.py``, ``actorsys/runtime/ws_turns.py``).

Replies are ``[OK, id, result]`` or ``[ERR, id, {"code", "type", "message", ...}]``.
A reply to an ask may come from another worker than the one asked: a follower of a
replicated shard delivers its leader's reply once it holds the write (on the asker's
connection to it, found by the asker's routing id). A leader's ``OK`` reply that such a
follower could not deliver (the asker was not connected there) is
``[OK, id, result, endpoint]``: the follower's worker endpoint, which the asker may
connect to (``actorsys/runtime/replication.py``, ``actorsys/client/transport.py``).

Coalescing (issue 19). A client transport running in an event loop sends the requests
and tells it makes in one turn of the loop to one worker slot as one ``BATCH`` frame, in
the loop's next turn (never on a timer: nothing waits for company), and a worker sends
the replies of one group commit to one peer as one ``BATCH`` of replies
(``[BATCH, 0, [reply, ...]]``), but only to a peer that has sent it a ``BATCH``: a peer
that sends single messages always gets one reply per frame. A node's map says whether
its workers read batches (``"batches": true``); a client sends them only then. A
batch's frame is at most 256 KiB (or the node's ``max_message_bytes``, if smaller);
order within a batch is the order sent, so per-sender order holds.

Nothing arriving from a socket is ever unpickled: msgpack only, and extension types
are left as opaque ``msgpack.ExtType`` values.

An actor key is at most :data:`MAX_KEY_BYTES` bytes of UTF-8 and has no NUL
(:func:`check_key`: the one check of the worker's catalog, the gateway's URLs and
subscriptions, and the clients' subscribe).
"""
from __future__ import annotations

from typing import Any, Callable

import msgpack

from .. import tracing
from ..errors import ActorError, BadRequest, MessageTooLarge

ASK, TELL, SPAWN, MAP, STATUS, PING, STOP, EXIT, SUP = 1, 2, 3, 4, 5, 6, 7, 8, 9
OK, ERR = 10, 11
LIST = 12
WS = 13
SHARDS = 14
OPS = {ASK: "ask", TELL: "tell", SPAWN: "spawn", MAP: "map", STATUS: "status", PING: "ping",
       STOP: "stop", EXIT: "exit", SUP: "sup", LIST: "list", WS: "ws", SHARDS: "shards"}
MAX_LIST_LIMIT = 10_000
CLUSTER, LEAVE = 15, 16     # client -> router (the cluster's view; hand this node's shards off)
OPS.update({CLUSTER: "cluster", LEAVE: "leave"})
METRICS = 17                # anyone -> any node process (the router's answer is the whole node's)
OPS[METRICS] = "metrics"
TOP = 18                    # anyone -> router or worker: the hot actors
OPS[TOP] = "top"
#: what a TOP can be ordered by (actorsys/runtime/hot.py)
TOP_ORDERS = ("busy", "turns", "errors", "mailbox")
MAX_TOP = 1000
#: the longest actor key, in bytes of UTF-8 (:func:`check_key`)
MAX_KEY_BYTES = 1024
BATCH = 19                  # coalesced messages of one peer's loop turn (see the table)
OPS[BATCH] = "batch"
#: the most messages one BATCH carries
MAX_BATCH = 1024
#: what a BATCH costs around its messages' bytes: its header, and per message (the
#: msgpack bin header): a batch of payloads ``p`` is at most ``BATCH_OVERHEAD +
#: sum(len(x) + BATCH_ITEM_OVERHEAD for x in p)`` bytes
BATCH_OVERHEAD, BATCH_ITEM_OVERHEAD = 16, 5

_packb: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def pack(obj: Any) -> bytes:
    """Encode one message or stored value (raises ``TypeError`` for non-msgpack values)."""
    return _packb(obj)


def unpack(data: bytes) -> Any:
    """Decode one message or stored value; raises :class:`BadRequest` on any malformed input."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises a zoo of types (ExtraData, FormatError, ...)
        raise BadRequest(f"undecodable msgpack payload ({type(exc).__name__}: {exc})") from None


def unpack_stored(data: bytes) -> Any:
    """Decode a value read from our own storage."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def batch(payloads: list[bytes]) -> bytes:
    """One ``BATCH`` frame of ``payloads`` (whole messages, 2 to :data:`MAX_BATCH`, sized
    by the sender within its limit)."""
    return _packb([BATCH, 0, payloads])


def peek_id(payload: bytes) -> int:
    """The request id of a payload we refuse to decode whole (oversized, extra frames); 0 if none.

    Reads only the array header and the first two items, so a huge payload costs nothing.
    """
    try:
        u = msgpack.Unpacker(raw=False, max_buffer_size=64)
        u.feed(payload[:64])
        if u.read_array_header() >= 2:
            u.skip()
            rid = u.unpack()
            if type(rid) is int:
                return rid
    except Exception:
        pass
    return 0


def check_key(key: str) -> None:
    """BadRequest unless ``key`` is a valid actor key: at most :data:`MAX_KEY_BYTES`
    bytes of UTF-8, no NUL (the storage keys are NUL-separated)."""
    if "\x00" in key:
        raise BadRequest(f"an actor key contains no NUL; got {key!r:.60}")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise BadRequest(f"an actor key is at most {MAX_KEY_BYTES} bytes (UTF-8); got {size}")


def _brief(value: Any) -> str:
    """A short description of a decoded value for an error message. Never the value's
    repr: a peer's value may be huge, or nested too deep to repr (RecursionError)."""
    if value is None or type(value) in (bool, int, float):
        return repr(value)
    if type(value) is str:
        return repr(value[:50])
    return f"of type {type(value).__name__}"


#: the keys a call's context may carry (see the table above)
CTX_KEYS = frozenset({"id", "chain", "trace"})
#: the longest call chain a context may carry (a longer one is a runaway recursion)
MAX_CHAIN = 64


def check_ctx(ctx: Any) -> None:
    """Check a call's context map (the optional last field of ASK and TELL)."""
    if not isinstance(ctx, dict):
        raise BadRequest("a call's ctx must be a map")
    if not CTX_KEYS.issuperset(ctx):
        unknown = [k for k in ctx if k not in CTX_KEYS]
        raise BadRequest(f"unknown ctx key {_brief(unknown[0])}; known: id, chain, trace")
    rid = ctx.get("id")
    if rid is not None and (type(rid) is not bytes or not 1 <= len(rid) <= 64):
        raise BadRequest("ctx id must be 1 to 64 bytes")
    chain = ctx.get("chain")
    if chain is not None and (
            not isinstance(chain, list) or len(chain) > MAX_CHAIN
            or not all(isinstance(c, list) and len(c) == 3 and type(c[0]) is str
                       and type(c[1]) is str and type(c[2]) is bytes and 0 < len(c[2]) <= 16
                       for c in chain)):
        raise BadRequest(f"ctx chain must be an array of at most {MAX_CHAIN} [type, key, token] "
                         f"links (token: 1 to 16 bytes)")
    trace = ctx.get("trace")
    if trace is not None and not tracing.check(trace):
        raise BadRequest(f"ctx trace must be a map of W3C trace context fields "
                         f"({', '.join(tracing.FIELDS)}) to strings of at most "
                         f"{tracing.MAX_FIELD} characters")


def parse_request(msg: Any) -> tuple[int, int, list[Any]]:
    """Check a decoded request's shape; return ``(op, id, rest)`` or raise BadRequest."""
    if not isinstance(msg, list) or len(msg) < 2:
        raise BadRequest("a request is a msgpack array [op, id, ...]")
    op, req_id = msg[0], msg[1]
    if type(op) is not int or op not in OPS:
        raise BadRequest(f"unknown op {_brief(op)}")
    if type(req_id) is not int:
        raise BadRequest("request id must be an integer")
    rest = msg[2:]
    if op in (ASK, TELL):
        if len(rest) != 5:
            if len(rest) != 6:
                raise BadRequest(f"{OPS[op]} takes [op, id, type, key, method, args, kwargs, ctx?]")
            check_ctx(rest[5])
        type_name, key, method, args, kwargs = rest[:5]
        if not isinstance(type_name, str) or not isinstance(key, str) or not isinstance(method, str):
            raise BadRequest("type, key and method must be strings")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise BadRequest("args must be an array and kwargs a map")
        if kwargs and any(not isinstance(k, str) for k in kwargs):
            raise BadRequest("kwargs keys must be strings")
    elif op == SPAWN or op == STOP:
        if (len(rest) not in (2, 3) or not isinstance(rest[0], str) or not isinstance(rest[1], str)
                or (len(rest) == 3 and not isinstance(rest[2], dict)) or (op == STOP and len(rest) != 3)):
            raise BadRequest(f"{OPS[op]} takes [op, id, type, key, {{options}}]")
        if len(rest) == 3 and any(not isinstance(k, str) for k in rest[2]):
            raise BadRequest("option names must be strings")
    elif op == EXIT:
        if (len(rest) != 7 or not all(isinstance(v, str) for v in rest[:4])
                or type(rest[4]) is not int or not isinstance(rest[5], str)):
            raise BadRequest("exit takes [op, 0, sup, child, type, key, inc, reason, detail]")
    elif op == TOP:
        if (len(rest) != 2 or type(rest[0]) is not int or not 1 <= rest[0] <= MAX_TOP
                or rest[1] not in TOP_ORDERS):
            raise BadRequest(f"top takes [op, id, n (1..{MAX_TOP}), by (one of {TOP_ORDERS})]")
    elif op == LIST:
        if (len(rest) != 3 or not isinstance(rest[0], str)
                or not (rest[1] is None or isinstance(rest[1], str))
                or type(rest[2]) is not int or not 0 <= rest[2] <= MAX_LIST_LIMIT):
            raise BadRequest(f"list takes [op, id, type, start_after or nil, limit 0..{MAX_LIST_LIMIT}]")
    elif op == WS:
        if (len(rest) != 5 or not isinstance(rest[0], str) or not isinstance(rest[1], str)
                or not isinstance(rest[2], list) or type(rest[4]) is not int
                or not (rest[3] is None or (isinstance(rest[3], list) and len(rest[3]) == 2
                                            and isinstance(rest[3][0], str)
                                            and type(rest[3][1]) is int))):
            raise BadRequest("ws takes [op, 0, type, key, effects, batch or nil, part]")
    elif op == SUP:
        if (len(rest) not in (3, 4) or not isinstance(rest[0], str) or not isinstance(rest[1], str)
                or (len(rest) == 4 and type(rest[3]) not in (int, float))):
            raise BadRequest("sup takes [op, id, supervisor, command, arg, deadline]")
    elif op == BATCH:
        if (len(rest) != 1 or not isinstance(rest[0], list) or not 2 <= len(rest[0]) <= MAX_BATCH
                or not all(type(p) is bytes for p in rest[0])):
            raise BadRequest(f"batch takes [op, 0, [2 to {MAX_BATCH} messages, each as bytes]]")
    elif op == SHARDS:
        if (len(rest) != 2 or not isinstance(rest[0], str) or not isinstance(rest[1], dict)
                or any(not isinstance(k, str) for k in rest[1])):
            raise BadRequest("shards takes [op, id, command, {arguments}]")
    return op, req_id, rest


class Rejected(Exception):
    """A request refused before dispatch: answer ``error`` to ``envelope`` with ``rid``."""

    def __init__(self, envelope: tuple[bytes, ...], rid: int, error: ActorError) -> None:
        super().__init__(str(error))
        self.envelope, self.rid, self.error = envelope, rid, error


Envelope = tuple[bytes, ...]


def decode_frames(frames: list[bytes], max_message_bytes: int) -> tuple[Envelope, int, int, list[Any]]:
    """Split what a ROUTER socket received into ``(envelope, op, id, rest)``.

    Accepts ``[peer, payload]`` (DEALER) and ``[peer, b"", payload]`` (REQ); anything
    else, an oversized payload, or an undecodable or ill-formed request raises
    :class:`Rejected` with what to answer (the id is read from the payload's first
    bytes when the whole cannot be decoded, so the asker can match the error).
    """
    n = len(frames)
    if n == 2:
        envelope: Envelope = (frames[0],)
        payload = frames[1]
    elif n == 3 and frames[1] == b"":
        envelope, payload = (frames[0], b""), frames[2]
    else:
        # a REQ peer's frames start with an empty delimiter: answer inside it
        envelope = (frames[0], b"") if n > 1 and frames[1] == b"" else (frames[0],)
        raise Rejected(envelope, peek_id(frames[-1]),
                       BadRequest(f"expected one payload frame, got {n - 1} frames"))
    if len(payload) > max_message_bytes:
        raise Rejected(envelope, peek_id(payload), MessageTooLarge(
            f"message is {len(payload)} bytes; max_message_bytes is {max_message_bytes}"))
    op, rid, rest = decode_payload(envelope, payload)
    return envelope, op, rid, rest


def decode_payload(envelope: Envelope, payload: bytes) -> tuple[int, int, list[Any]]:
    """``(op, id, rest)`` of one message (alone in its frame, or one of a ``BATCH``'s);
    an undecodable or ill-formed one raises :class:`Rejected` with what to answer."""
    rid = 0
    try:
        msg = unpack(payload)
        if isinstance(msg, list) and len(msg) > 1 and type(msg[1]) is int:
            rid = msg[1]
        op, rid, rest = parse_request(msg)
    except BadRequest as exc:
        raise Rejected(envelope, rid, exc) from None
    return op, rid, rest


def ok(req_id: int, result: Any) -> bytes:
    return pack([OK, req_id, result])


def err(req_id: int, body: dict[str, Any]) -> bytes:
    return pack([ERR, req_id, body])


def ok_via(reply: bytes, endpoint: str) -> bytes:
    """An ``OK`` reply naming the follower's ``endpoint`` that could have delivered it
    (see the module docstring); any other reply unchanged."""
    msg = unpack(reply)
    if not isinstance(msg, list) or len(msg) != 3 or msg[0] != OK:
        return reply
    return pack([OK, msg[1], msg[2], endpoint])
