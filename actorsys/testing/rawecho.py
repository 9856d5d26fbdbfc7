"""The benchmarks' raw baseline: a pyzmq + msgpack echo server process and its client side.

Every benchmark measures actorsys beside this: a ROUTER echo server, one hop away over
ipc, decoding each request (the same shape as an actorsys ask) and replying. This module
imports no actorsys code (the wire ops are repeated below), and its server process is
started by file path (:func:`echo_command`), not ``python -m``, so that process loads
nothing of actorsys either: the baseline's start-up, which the recovery benchmark
measures, is a bare python with pyzmq and msgpack.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import signal
import sys
import time
from typing import Any

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


def echo_command(endpoint: str) -> list[str]:
    """The command line of an echo server process bound to ``endpoint``."""
    return [sys.executable, os.path.abspath(__file__), endpoint]


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


def raw_socket(ctx: zmq.Context[Any], endpoint: str, timeout: float = 10.0) -> zmq.Socket[Any]:
    """A DEALER to the echo server: unbounded queues, every recv/send with a deadline."""
    s: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
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
    raw_echo_server(sys.argv[1])
