"""The fuzzer's raw peers of one endpoint, and the odd ones.

:class:`Peer` is one raw DEALER, REQ (relaxed) or ROUTER socket to an endpoint, sending
without blocking and draining replies. :func:`odd_peers_round` is a round of peers the
node must shrug off: PUSH, PUB and PAIR sockets (ZeroMQ refuses them at the handshake),
two DEALERs with the same routing id, and raw stream connections speaking garbage, a cut
ZMTP greeting, or a whole ZMTP 3.0 session whose frames carry fuzz payloads (some with
bogus flags or a 2**62-byte length).
"""
from __future__ import annotations

import errno
import random
import socket
import time
from typing import Any, Callable

import msgpack
import zmq

from actorsys.protocol import wire

from .mutator import Mutator

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)


class Peer:
    """One raw socket to an endpoint, with what the receiving ROUTER adds in front."""

    def __init__(self, ctx: zmq.Context[Any], kind: int, endpoint: str, label: str,
                 routing_id: bytes | None = None) -> None:
        self.kind, self.endpoint, self.label = kind, endpoint, label
        s = ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 2000)          # closed peers still deliver what they queued
        s.setsockopt(zmq.SNDHWM, 1000)
        s.setsockopt(zmq.RCVHWM, 1000)
        s.setsockopt(zmq.RECONNECT_IVL, 10)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 100)
        if routing_id is not None:
            s.setsockopt(zmq.ROUTING_ID, routing_id)
        if kind == zmq.REQ:
            s.setsockopt(zmq.REQ_RELAXED, 1)     # may send again without a reply
        self.dest: bytes | None = None
        if kind == zmq.ROUTER:                   # a ROUTER peer names the node's socket
            self.dest = b"node"
            s.setsockopt(zmq.CONNECT_ROUTING_ID, self.dest)
            s.setsockopt(zmq.ROUTER_MANDATORY, 1)
        s.connect(endpoint)
        self.sock = s
        # the receiver sees [peer-id, (b"" from REQ), *frames]
        self.prefix = [b"peer", b""] if kind == zmq.REQ else [b"peer"]

    def try_send(self, frames: list[bytes]) -> bool:
        """One non-blocking attempt; False when the peer cannot take it now."""
        try:
            if self.dest is not None:
                self.sock.send_multipart([self.dest, *frames], _NOBLOCK)
            else:
                self.sock.send_multipart(frames, _NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:  # the ROUTER peer is not connected yet
                return False
            raise

    def drain(self, on_reply: Callable[[list[bytes]], None]) -> int:
        """Hand every reply waiting to ``on_reply`` (without blocking); how many."""
        s, n = self.sock, 0
        while s.getsockopt(_EVENTS) & _POLLIN:
            try:
                frames = s.recv_multipart(_NOBLOCK)
            except zmq.Again:
                break
            n += 1
            on_reply(frames[1:] if self.dest is not None else frames)
        return n

    def close(self, linger: int | None = None) -> None:
        self.sock.close(linger)



# ---------------------------------------------------------------------------------------
# odd peers: incompatible socket types, duplicate identities, raw stream bytes


def _zmtp_greeting(r: random.Random) -> bytes:
    return (b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, r.choice((0, 1))]) + b"NULL".ljust(20, b"\x00")
            + b"\x00" + b"\x00" * 31)


def _zmtp_ready(socket_type: bytes) -> bytes:
    prop = bytes([11]) + b"Socket-Type" + len(socket_type).to_bytes(4, "big") + socket_type
    body = b"\x05READY" + prop
    return b"\x04" + bytes([len(body)]) + body


def _zmtp_frame(body: bytes, more: bool) -> bytes:
    if len(body) < 256:
        return bytes([1 if more else 0]) + bytes([len(body)]) + body
    return bytes([3 if more else 2]) + len(body).to_bytes(8, "big") + body


def _raw_connect(endpoint: str) -> socket.socket:
    if endpoint.startswith("ipc://"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        s.connect(endpoint[len("ipc://"):])
        return s
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=2.0)
    s.settimeout(2.0)
    return s


def raw_stream_session(endpoint: str, r: random.Random, mut: Mutator) -> int:
    """One raw connection speaking garbage or (cut, bent) ZMTP; returns the fuzz messages
    it carried in well-formed ZMTP (they may reach the node's ROUTER)."""
    try:
        s = _raw_connect(endpoint)
    except OSError:
        return 0
    carried = 0
    try:
        x = r.random()
        if x < 0.25:
            s.sendall(r.randbytes(r.randrange(1, 2000)))
        elif x < 0.45:
            g = bytearray(_zmtp_greeting(r))
            cut = r.randrange(1, len(g))
            for _ in range(r.randrange(3)):
                g[r.randrange(len(g))] = r.randrange(256)
            s.sendall(bytes(g[:cut]))
        else:
            out = [_zmtp_greeting(r), _zmtp_ready(r.choice((b"DEALER", b"DEALER", b"REQ", b"ROUTER",
                                                              b"PUSH", b"NOPE", b"")))]
            for _ in range(r.randrange(1, 20)):
                y = r.random()
                if y < 0.7:
                    _cat, frames = mut.frame()
                    frames = [f for f in frames if len(f) < 65536] or [b""]
                    for j, f in enumerate(frames):
                        out.append(_zmtp_frame(f, more=j < len(frames) - 1))
                    carried += 1
                elif y < 0.85:         # bogus flags
                    out.append(bytes([r.randrange(8, 256)]) + r.randbytes(r.randrange(1, 30)))
                elif y < 0.95:         # a huge declared length
                    out.append(b"\x02" + (1 << 62).to_bytes(8, "big") + r.randbytes(16))
                else:                  # an unknown command
                    out.append(b"\x04\x05" + b"\x04PING" if r.random() < 0.5 else b"\x04\x03\x03BAD")
            s.sendall(b"".join(out))
            try:
                s.recv(4096)           # the node's greeting, or nothing
            except OSError:
                pass
    except OSError:
        pass
    finally:
        s.close()
    return carried


def odd_peers_round(ctx: zmq.Context[Any], endpoint: str, r: random.Random, mut: Mutator,
                    raw_sessions: int) -> dict[str, int]:
    """Incompatible socket types, a duplicate routing id, raw stream sessions."""
    out = {"incompatible_sent": 0, "incompatible_refused": 0, "duplicate_id_replies": 0,
           "raw_sessions": 0, "raw_frames": 0}
    for kind in (zmq.PUSH, zmq.PUB, zmq.PAIR):
        s = ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 10)
        s.connect(endpoint)
        for _ in range(5):
            try:
                s.send(mut.valid_hostile()[0], _NOBLOCK)
                out["incompatible_sent"] += 1
            except zmq.Again:
                out["incompatible_refused"] += 1
        time.sleep(0.005)
        s.close(0)
    routing = b"dup-" + r.randbytes(4)
    dealers = []
    for _ in range(2):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTING_ID, routing)
        s.connect(endpoint)
        dealers.append(s)
    for i, s in enumerate(dealers):
        try:
            s.send(_pack([wire.PING, 1000 + i]), _NOBLOCK)
        except zmq.Again:
            pass
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        for s in dealers:
            while s.getsockopt(_EVENTS) & _POLLIN:
                s.recv_multipart(_NOBLOCK)
                out["duplicate_id_replies"] += 1
        time.sleep(0.01)
    for s in dealers:
        s.close(0)
    for _ in range(raw_sessions):
        out["raw_frames"] += raw_stream_session(endpoint, r, mut)
        out["raw_sessions"] += 1
    return out
