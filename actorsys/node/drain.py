"""``actorsys run --drain``: a cluster node asked to stop cleanly first hands its shards
off to the other nodes (its router's ``LEAVE``), then stops.

The node supervisor (``supervisors/node.py``) sends one :class:`LeaveRequest` to its own
router when a stop signal arrives, and polls it between its own duties (restarting a
child that dies meanwhile: the handoff needs the workers). It stops anyway when the
drain deadline passes, when the router refuses (an error, logged), or at a second stop
signal. A single node has no shards to hand off: ``--drain`` is a no-op there.

The request goes over a DEALER socket of its own, a CURVE client with the node's own
keys on tcp (the node always lets itself in); msgpack only, as everywhere.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import zmq

from ..config import NodeConfig, NodeLayout
from ..errors import BadRequest, error_from_wire
from ..net.keys import node_keys
from ..net.sockets import Context, Socket, dealer
from ..protocol import wire
from ..protocol.messages import Control


class Answer(NamedTuple):
    """The router's answer to LEAVE: ``done`` once it came, ``result`` what it did."""
    done: bool
    result: Any = None


class LeaveRequest:
    """A ``LEAVE`` sent to the router of ``layout`` at construction; :meth:`poll` for the
    answer, :meth:`close` in the end."""

    def __init__(self, cfg: NodeConfig, layout: NodeLayout) -> None:
        keys = node_keys(cfg)
        self.ctx: Context = zmq.Context()
        self.sock: Socket = dealer(self.ctx, layout.router, keys.client if keys else None)
        self.sock.send(Control(wire.LEAVE, 1).encode())

    def poll(self, timeout_s: float) -> Answer:
        """The answer if it comes within ``timeout_s``; the router's error is raised."""
        if not self.sock.poll(max(int(timeout_s * 1000), 0)):
            return Answer(False)
        msg = wire.unpack(self.sock.recv_multipart()[-1])
        if not (isinstance(msg, list) and len(msg) == 3 and msg[1] == 1):
            raise BadRequest(f"malformed answer to leave: {msg!r:.200}")
        if msg[0] == wire.OK:
            return Answer(True, msg[2])
        raise error_from_wire(msg[2])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
