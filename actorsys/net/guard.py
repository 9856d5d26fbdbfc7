"""The gate of a node process's tcp sockets: ZAP authentication and refusal counters.

Each process of a tcp node (router, every worker, the supervision tree) runs one
:class:`Guard` on its event loop. It answers ZeroMQ's authentication requests (ZAP,
RFC 27) for every socket the process binds: a client whose CURVE public key is the
node's own or in ``authorized_keys`` is let in, any other is refused and counted as
``auth_refused``. In a cluster the process also lets in the other members' keys
(:meth:`Guard.admit_extra`, set at run time from the membership in etcd: see
:mod:`.members`); each call replaces the previous set, so a member that left is refused
from then on. Admission is checked at each handshake: a connection already made stays
until it drops. A peer that cannot complete the CURVE handshake at all (no keys,
plain tcp, the wrong server key, garbage) is counted as ``handshake_failed``. Both
counters are in the process's status. Counts are per connection attempt: a refused
peer that keeps reconnecting is counted each time.

Each admitted connection's ``User-Id`` (ZAP's answer, attached by libzmq to every
message it carries) is the client's public key in Z85 text; :meth:`Guard.grant` turns it
into what the key may do (:mod:`.authz`).

The ZAP handler must be running before a protected socket binds and stop only after it
is closed: without a handler, libzmq lets every CURVE client in.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from .authz import ADMIN, Grant
from .keys import NodeKeys, curve_server
from .sockets import SocketPump

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_FAILED = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL


class Guard:
    """Authenticates the CURVE clients of one process's bound sockets; counts refusals
    in ``counters`` (``auth_refused``, ``handshake_failed``)."""

    def __init__(self, ctx: zmq.Context[Any], loop: asyncio.AbstractEventLoop, keys: NodeKeys,
                 counters: dict[str, int]) -> None:
        self.ctx, self.loop, self.keys, self.counters = ctx, loop, keys, counters
        counters.setdefault("auth_refused", 0)
        counters.setdefault("handshake_failed", 0)
        self.zap = ctx.socket(zmq.REP)
        self.zap.setsockopt(zmq.LINGER, 0)
        self.zap.bind(ZAP_ENDPOINT)
        self._pumps = [SocketPump(loop, self.zap, self._on_zap)]
        self._monitors: list[zmq.Socket[Any]] = []
        #: raw public keys let in besides ``keys.allowed`` (the cluster's other members)
        self.extra: frozenset[bytes] = frozenset()

    def admit_extra(self, keys: Iterable[bytes]) -> None:
        """Let in these raw (32-byte) public keys from now on, besides the node's own and
        ``authorized_keys``; replaces the previous extra set (empty: none)."""
        extra = frozenset(keys)
        bad = [k for k in extra if not (isinstance(k, bytes) and len(k) == 32)]
        if bad:
            raise ValueError(f"{len(bad)} extra key(s) are not raw 32-byte CURVE public keys")
        self.extra = extra
        self.counters["member_keys"] = len(extra)

    def protect(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` a CURVE server watched for failed handshakes (call before bind)."""
        curve_server(sock, self.keys)
        mon = sock.get_monitor_socket(_FAILED)
        self._monitors.append(mon)
        self._pumps.append(SocketPump(self.loop, mon, self._on_event))

    def _on_zap(self, frames: list[bytes]) -> None:
        # [version, request_id, domain, address, identity, mechanism, client public key]
        ok = (len(frames) == 7 and frames[0] == b"1.0" and frames[5] == b"CURVE"
              and (frames[6] in self.keys.allowed or frames[6] in self.extra))
        if not ok:
            self.counters["auth_refused"] += 1
        version = frames[0] if frames else b"1.0"
        request_id = frames[1] if len(frames) > 1 else b""
        # the REP socket must answer every request, or it stops receiving; the user id
        # (the key, Z85) comes with every message of the connection (authz.py)
        self.zap.send_multipart([version, request_id, b"200" if ok else b"400",
                                 b"OK" if ok else b"key not authorized",
                                 z85.encode(frames[6]) if ok else b"", b""], zmq.NOBLOCK)

    def grant(self, user: str | None) -> Grant:
        """What the key whose User-Id is ``user`` may do (None: no User-Id, a peer on
        ipc: admin). Keys without a role in their file, the node's own and the
        cluster members' are admins."""
        if user is None:
            return ADMIN
        return self.keys.grants.get(user, ADMIN)

    def _on_event(self, frames: list[bytes]) -> None:
        try:
            event = parse_monitor_message(frames)["event"]
        except Exception:
            return
        if event & _FAILED:
            self.counters["handshake_failed"] += 1

    def close(self) -> None:
        """Stop (after the protected sockets are closed)."""
        for p in self._pumps:
            p.close()
        for m in self._monitors:
            m.close(0)
        self.zap.close(0)
