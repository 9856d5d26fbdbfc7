"""What actors' committed turns do to their sockets (effects), applied once; and the
gateway's endpoint inside the node, where workers send effects and the router asks for
status.

Effects arrive in a batch's reply (:mod:`.batches`) or, from turns that are not a
socket event's and for output too large for a reply, in ``wire.WS`` messages on the
gateway's internal endpoint. Both carry ``[incarnation, batch number]`` (or nil) and a
part number: effects of another incarnation of the gateway are stale (their sockets are
gone), and a ``(batch, part)`` at or below the room's :class:`~.rooms.Mark` was applied
already (a batch delivered again after its worker died). The kinds are those of
:mod:`actorsys.protocol.ws`.

In a cluster (issue 15) every worker sends every gateway its effects
(:mod:`actorsys.runtime.ws_routes`), and a gateway's incarnation is ``token@endpoint``:
effects of ANOTHER gateway's batch (another endpoint) are applied to this gateway's
sockets without a mark (only the sockets they name, or that their broadcast lists, are
touched; a broadcast that does not name this gateway among those whose sockets the actor
knew reaches its joined sockets of the actor); those of this endpoint's earlier
incarnation are stale, as on a single node.
The router sends the members' CURVE keys in a SHARDS ``keys`` request
(:mod:`actorsys.net.members`): the other nodes' workers may then connect.

Only the node's own processes and the cluster's members talk to this endpoint: on tcp,
a key whose ``authorized_keys`` file makes it less than an admin of every type (a
client's, :mod:`actorsys.net.authz`) is refused everything but PING (``forbidden``,
counted and logged, rate-limited): it could otherwise forge any actor's effects to
browsers, or add keys of its own to the members'.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import zmq

from ..errors import BadRequest, Forbidden
from ..log import get_logger
from ..net.authz import Refusals
from ..protocol import wire
from ..protocol.messages import WsEffects
from .rooms import Mark
from .sockets import Hub

if TYPE_CHECKING:
    from ..net.guard import Guard
    from ..net.sockets import SocketPump

log = get_logger("gateway")

#: effect kinds (see the module docstring)
SEND, BROADCAST, CLOSE, TAGS, ATTACH = "s", "b", "x", "t", "a"


class Effects:
    """Applies effects to the sockets of :class:`~.sockets.Hub`, each batch's once."""

    def __init__(self, hub: Hub, incarnation: str, counters: dict[str, int]) -> None:
        self.hub, self.incarnation, self.counters = hub, incarnation, counters
        #: the endpoint part of a cluster incarnation (``token@endpoint``); '' on a node
        self.home = incarnation.partition("@")[2]

    def apply(self, type_name: str, key: str, effects: list[Any], batch: list[Any] | None,
              part: int) -> None:
        hub = self.hub
        room = hub.rooms.get((type_name, key))
        if batch is not None and batch[0] != self.incarnation:
            other = batch[0].partition("@")[2] if isinstance(batch[0], str) else ""
            if not other or other == self.home:
                self.counters["stale_effects"] += 1
                return           # a batch of the gateway before a restart: its sockets are gone
            batch = None         # another gateway's batch: for our sockets it names, unmarked
        if batch is not None and room is not None:
            mark = Mark(batch[1], part)
            if mark <= room.applied:
                self.counters["duplicate_effects"] += 1
                return           # sent again after a crash, but they had left the first time
            room.applied = mark
        for e in effects:
            self.counters["effects"] += 1
            kind = e[0]
            if kind == BROADCAST:
                if room is None:
                    continue
                tag, exclude, data, ids = e[1], e[2], e[3], e[4]
                known = e[5] if len(e) > 5 else None     # the gateways whose sockets ids lists
                if ids is not None and (known is None or self.incarnation in known):
                    # the sockets the actor knew at that point
                    targets = [room.sockets.get(i) for i in ids]
                else:
                    targets = [s for s in room.sockets.values() if s.joined
                               and s.id != exclude and (tag is None or tag in s.tags)]
                for s in targets:
                    if s is not None:
                        hub.push(s, data)
                continue
            s = hub.sockets.get(e[1])
            if s is None or s.room is not room:
                continue                     # closed meanwhile, or not this actor's
            if kind == SEND:
                hub.push(s, e[2])
            elif kind == CLOSE:
                hub.close(s, int(e[2]), str(e[3]))
            elif kind == TAGS:
                s.tags.update(t for t in e[2] if isinstance(t, str))
            elif kind == ATTACH:
                s.attachment = e[2]


class NodeSide:
    """The gateway's ROUTER socket inside the node: ``WS`` effects from workers,
    ``STATUS``, ``METRICS`` and ``PING`` from the router; anything else is answered with an error."""

    def __init__(self, sock: zmq.Socket[Any], effects: Effects, status: Callable[[], dict[str, Any]],
                 max_message_bytes: int, counters: dict[str, int],
                 on_keys: Callable[[Any], int] | None = None,
                 on_map: Callable[[Any], None] | None = None,
                 families: Callable[[], list[Any]] = list) -> None:
        self.sock, self.effects, self.status = sock, effects, status
        #: the gateway process's metrics (METRICS from the router)
        self.families = families
        self.max_message_bytes, self.counters = max_message_bytes, counters
        #: lets the cluster members' CURVE keys in (the gateway's guard; net/members.py)
        self.on_keys = on_keys
        #: the router's map version (with the keys): the gateway's transport follows it
        self.on_map = on_map
        #: the endpoint's CURVE guard and the pump reading it (set by the gateway; None:
        #: ipc, only the node's own processes can reach it)
        self.guard: Guard | None = None
        self.pump: SocketPump | None = None
        self.refusals = Refusals(log, counters)

    def on_frames(self, frames: list[bytes]) -> None:
        try:
            envelope, op, rid, rest = wire.decode_frames(frames, self.max_message_bytes)
        except wire.Rejected as r:
            self.counters["bad_frames"] += 1
            if r.rid == 0:         # nobody awaits an answer (a worker's effects): say it here
                log.warning("refused a message from a node process: %s", r.error)
                return
            return self._reply(r.envelope, wire.err(r.rid, r.error.to_wire()))
        if self.guard is not None and self.pump is not None and op != wire.PING:
            grant = self.guard.grant(self.pump.user)
            if not grant.admin or grant.types is not None:
                exc = self.refusals.refused(grant, Forbidden(
                    f"key '{grant.name}' may not send {wire.OPS.get(op, '?')} to the gateway's "
                    f"node endpoint: only the node's processes and the cluster's members do"))
                if rid:
                    self._reply(envelope, wire.err(rid, exc.to_wire()))
                return
        if op == wire.WS:
            m = WsEffects(rid, *rest)
            try:
                self.effects.apply(m.type_name, m.key, m.effects, m.batch, m.part)
            except (TypeError, ValueError, IndexError, KeyError):
                self.counters["bad_frames"] += 1
        elif op == wire.STATUS:
            self._reply(envelope, wire.ok(rid, self.status()))
        elif op == wire.METRICS:
            self._reply(envelope, wire.ok(rid, self.families()))
        elif op == wire.PING:
            self._reply(envelope, wire.ok(rid, "pong"))
        elif op == wire.SHARDS and self.on_keys is not None and rest and rest[0] == "keys":
            self._keys(envelope, rid, rest)
        else:
            self.counters["bad_frames"] += 1
            self._reply(envelope, wire.err(rid, {"code": "bad_request", "type": "BadRequest",
                                                 "message": f"the gateway does not serve "
                                                            f"{wire.OPS[op]} requests"}))

    def _keys(self, envelope: tuple[bytes, ...], rid: int, rest: list[Any]) -> None:
        """SHARDS ``keys`` ``{"keys": [Z85, ...], "map": version}`` from the router ->
        ``{"keys": n}``."""
        assert self.on_keys is not None
        args = rest[1] if len(rest) > 1 else None
        try:
            if not isinstance(args, dict):
                raise BadRequest("keys takes {\"keys\": [Z85 public key, ...]}")
            n = self.on_keys(args.get("keys"))
            if self.on_map is not None and args.get("map") is not None:
                self.on_map(args["map"])
        except BadRequest as exc:
            return self._reply(envelope, wire.err(rid, exc.to_wire()))
        self._reply(envelope, wire.ok(rid, {"keys": n}))

    def _reply(self, envelope: tuple[bytes, ...], payload: bytes) -> None:
        try:
            self.sock.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
