"""The benchmarks' raw baseline: a pyzmq + msgpack echo server process and its client side
(and, for the replication benchmark, a raw chain of a relay and a follower).

Every benchmark measures actorsys beside this: a ROUTER echo server, one hop away over
ipc, decoding each request (the same shape as an actorsys ask) and replying. This module
imports no actorsys code (the wire ops are repeated below), and its server process is
started by file path (:func:`echo_command`), not ``python -m``, so that process loads
nothing of actorsys either: the baseline's start-up, which the recovery benchmark
measures, is a bare python with pyzmq and msgpack.

A second baseline, the **durable floor** (:func:`raw_durable_server`), also commits each
batch of messages to LevelDB before it answers, as a worker does: the least any Python
process pays for a durable turn, without a runtime. A ratio to the echo says what the
runtime and durability cost together; a ratio to the floor, what the runtime costs.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import signal
import sys
import time
from typing import Any, Callable

import msgpack
import zmq

# The wire ops of actorsys.protocol.wire, repeated so this module imports only zmq + msgpack.
ASK, TELL, PING, OK = 1, 2, 6, 10

packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def unpackb(data: bytes) -> Any:
    """One msgpack frame, decoded as actorsys decodes it (str keys and values, no hooks)."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def die_with_parent() -> None:
    """SIGKILL this process when its parent exits (Linux prctl; elsewhere a no-op). A copy
    of actorsys.testing.processes.die_with_parent: this module imports no actorsys."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def echo_command(endpoint: str, *chain: str) -> list[str]:
    """The command line of an echo server process bound to ``endpoint``; with ``chain``
    (``"--relay", to`` or ``"--follower", clients``), a link of the raw replication
    chain (:func:`raw_relay`, :func:`raw_follower`); with ``"--durable", path`` or
    ``"--durable-fsync", path``, the durable floor (:func:`raw_durable_server`)."""
    return [sys.executable, os.path.abspath(__file__), endpoint, *chain]


def _router(ctx: zmq.Context[Any], endpoint: str) -> zmq.Socket[Any]:
    s: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    s.bind(endpoint)
    return s


def _serve(handlers: dict[zmq.Socket[Any], Callable[[], None]]) -> None:
    """Call each socket's handler whenever it is readable, until the parent is gone."""
    die_with_parent()
    parent = os.getppid()
    poller = zmq.Poller()
    for sock in handlers:
        poller.register(sock, zmq.POLLIN)
    while True:
        ready = dict(poller.poll(1000))
        if not ready and os.getppid() != parent:
            break
        for sock in ready:
            handlers[sock]()


def raw_relay(endpoint: str, follower: str) -> None:
    """The raw replication chain's leader: each ask (from a DEALER with a routing id)
    goes on to the follower at ``follower`` as ``[routing id, reply]``, whose answers it
    reads and drops; pings it answers itself. The floor of a replicated write's three
    hand-offs (client, leader, follower, client) with no runtime in them."""
    ctx = zmq.Context()
    s, f = _router(ctx, endpoint), raw_socket(ctx, follower)

    def ask() -> None:
        frames = s.recv_multipart()
        msg = unpackb(frames[-1])
        if msg[0] == ASK:
            f.send(packb([frames[0], packb([OK, msg[1], len(msg[5])])]))
        else:
            s.send_multipart([frames[0], packb([OK, msg[1], "pong"])])
    _serve({s: ask, f: lambda: unpackb(f.recv())})


def raw_follower(endpoint: str, clients: str) -> None:
    """The raw replication chain's follower: each ``[routing id, reply]`` from the
    relay is sent on to that client through ``clients`` (a ROUTER the clients' DEALERs
    connect to with the same routing id), then answered to the relay; pings from the
    clients it answers (so they know their link is up)."""
    ctx = zmq.Context()
    s, c = _router(ctx, endpoint), _router(ctx, clients)

    def relayed() -> None:
        frames = s.recv_multipart()
        to, reply = unpackb(frames[-1])
        c.send_multipart([to, reply])
        s.send_multipart([frames[0], packb([OK, 0, 1])])

    def ping() -> None:
        frames = c.recv_multipart()
        c.send_multipart([frames[0], packb([OK, unpackb(frames[-1])[1], "pong"])])
    _serve({s: relayed, c: ping})


def raw_echo_server(endpoint: str) -> None:
    """ROUTER echo: decode each request (same shape as an actorsys ask), reply to asks.

    It keeps one integer per key (``add`` adds ``args[0]``, anything else reads it) so the
    tell baseline can check every one-way message arrived. Exits when its parent is gone.
    """
    die_with_parent()
    parent = os.getppid()
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)      # unbounded: a pipelined window must never be dropped
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.RCVTIMEO, 1000)  # wake up once a second to check the parent
    s.bind(endpoint)
    counts: dict[str, int] = {}
    recv, send = s.recv_multipart, s.send_multipart
    while True:
        try:
            frames = recv()
        except zmq.Again:
            if os.getppid() != parent:
                break
            continue
        msg = unpackb(frames[-1])
        op = msg[0]
        if op == ASK or op == TELL:
            key, args = msg[3], msg[5]
            n = counts.get(key, 0) + (args[0] if args else 0)
            counts[key] = n
            if op == ASK:
                send([frames[0], packb([OK, msg[1], n])])
        else:
            send([frames[0], packb([OK, msg[1], "pong"])])
    s.close(0)
    ctx.term()


def raw_durable_server(endpoint: str, path: str, sync: bool) -> None:
    """The floor of a durable turn: :func:`raw_echo_server` that, like an actorsys worker,
    commits before it answers. It reads what has arrived (up to :data:`DURABLE_BATCH`
    messages), applies each ``add`` to its key's integer, writes every changed key's
    msgpack value in one LevelDB batch (at ``path``; ``sync``: fsynced, as
    ``durability = "fsync"``) and only then sends the batch's replies: a group commit
    and an output gate with no runtime around them, so what any Python process doing a
    durable write per message pays in decoding, encoding and LevelDB. Exits when its
    parent is gone."""
    import plyvel          # (only here: the plain echo loads zmq and msgpack alone)

    die_with_parent()
    parent = os.getppid()
    db = plyvel.DB(path, create_if_missing=True)
    ctx = zmq.Context()
    s = _router(ctx, endpoint)
    counts: dict[str, int] = {}
    recv, send = s.recv_multipart, s.send_multipart
    while True:
        if not s.poll(1000):
            if os.getppid() != parent:
                break
            continue
        writes: dict[str, int] = {}
        replies: list[list[bytes]] = []
        for _ in range(DURABLE_BATCH):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            msg = unpackb(frames[-1])
            op = msg[0]
            if op == ASK or op == TELL:
                key, args = msg[3], msg[5]
                n = counts.get(key, 0)
                if args:
                    n = writes[key] = counts[key] = n + args[0]
                if op == ASK:
                    replies.append([frames[0], packb([OK, msg[1], n])])
            else:
                replies.append([frames[0], packb([OK, msg[1], "pong"])])
        if writes:
            with db.write_batch(sync=sync) as wb:
                for key, n in writes.items():
                    wb.put(key.encode(), packb({"n": n}))
        for reply in replies:
            send(reply)
    s.close(0)
    ctx.term()
    db.close()


#: the most messages :func:`raw_durable_server` commits in one batch (a worker's drain: 1024)
DURABLE_BATCH = 1024


def raw_socket(ctx: zmq.Context[Any], endpoint: str, timeout: float = 10.0,
               identity: bytes | None = None) -> zmq.Socket[Any]:
    """A DEALER to the echo server: unbounded queues, every recv/send with a deadline
    (``identity``: its routing id, as a chain's client needs one on both its sockets)."""
    s: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    s.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    s.setsockopt(zmq.RECONNECT_IVL, 10)       # as actorsys' client sockets
    s.setsockopt(zmq.RECONNECT_IVL_MAX, 100)
    s.connect(endpoint)
    return s


def raw_recv(sock: zmq.Socket[Any]) -> list[Any]:
    """The next reply to an ask (pongs to resent pings, negative ids, are skipped)."""
    while True:
        try:
            msg: list[Any] = unpackb(sock.recv())
        except zmq.Again:
            raise TimeoutError("raw echo server did not answer before the deadline") from None
        if msg[1] >= 0:
            return msg


_ping_ids = itertools.count(-1, -1)


def raw_wait_ready(sock: zmq.Socket[Any], deadline: float, resend: float = 0.05) -> None:
    """Ping until the echo server answers (resending, since a ping can be lost in a crash).

    Pings have negative ids, unique in this process, so a late pong to an earlier ping
    is never taken for this one, and :func:`raw_recv` skips them.
    """
    sent: set[int] = set()
    while True:
        rid = next(_ping_ids)
        sent.add(rid)
        sock.send(packb([PING, rid]))
        until = min(deadline, time.monotonic() + resend)
        while True:
            remaining = until - time.monotonic()
            if remaining <= 0 or not sock.poll(max(int(remaining * 1000), 1)):
                break
            if unpackb(sock.recv())[1] in sent:
                return
        if time.monotonic() >= deadline:
            raise TimeoutError("raw echo server did not answer a ping before the deadline")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--relay":
        raw_relay(sys.argv[1], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[2] == "--follower":
        raw_follower(sys.argv[1], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[2] in ("--durable", "--durable-fsync"):
        raw_durable_server(sys.argv[1], sys.argv[3], sync=sys.argv[2] == "--durable-fsync")
    else:
        raw_echo_server(sys.argv[1])
