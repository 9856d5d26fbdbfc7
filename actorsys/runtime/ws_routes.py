"""WebSocket effects across a cluster (issue 15): every gateway gets every effect.

On a single node the worker's :class:`~.commit.GatewayLink` hands its actors' committed
effects to the node's one gateway, and nothing here runs. On a cluster node a browser's
socket may be held by the gateway of ANY node, while its actor runs on the node that owns
its shard, and the shard may move while the socket stays open. So:

* Each node publishes its gateway's internal endpoint in its membership record; the
  router sends the whole list, ``[[endpoint, public_key], ...]`` of every live member
  (this node's included), in every SHARDS ``grant`` (``args["gateways"]``), and the
  worker keeps one :class:`~.commit.GatewayLink` per gateway (:class:`GatewayRoutes`).
* Every committed ``WsEffects`` message goes to every gateway, each over its own DEALER
  socket, so each gateway receives a worker's effects in commit order. A gateway applies
  only what concerns the sockets it holds: a socket-addressed effect names a socket
  (unknown ids are skipped), a broadcast lists the socket ids the actor knew and the
  gateways they are on, or (nil: the actor knew none, e.g. a fresh activation after a
  move; or this gateway is not among those named) reaches every joined socket of that
  actor on that gateway. Why every gateway rather than only those in the
  actor's roster: the roster lives in the gateways, not in storage, so a fresh
  activation (after passivation, a crash or a shard move) does not know which gateways
  hold its sockets until their next batch; sending to all needs no such knowledge.
  The cost is one small message per gateway per effect message: clusters are a few
  nodes.
* A socket-event batch's effects still travel in its reply to the gateway that sent it
  (applied once, by its delivery mark); with more than one gateway they ALSO leave in a
  ``WsEffects`` with the batch's ``[incarnation, number]`` and part 0, for the other
  gateways' sockets (``Services.ws_fanout``, read by :mod:`.ws_turns`). The sending
  gateway has already applied (or will skip) that same ``(batch, part)``: its mark
  makes it apply once whichever copy comes first; another gateway applies it unmarked.
  A worker killed after the commit and before the send loses the other gateways' copy
  (at most once for them), as for effects outside a batch on a single node.
* CURVE. Another node's gateway lets this node's key in once its router has pushed it
  the members' keys (SHARDS ``keys``), which may come a moment after this worker first
  connects; libzmq never retries a refused handshake on that socket, so a link to
  another node's gateway (:class:`RemoteLink`) connects as soon as it is listed, watches
  its handshake, and after a refusal connects anew (checked at every send and every
  grant, i.e. every 0.1 s). Effects sent into a refused connection are lost.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import zmq

from ..errors import BadRequest
from ..log import get_logger
from ..net.sockets import dealer
from ..protocol.messages import WsEffects
from .commit import GatewayLink

if TYPE_CHECKING:
    from ..net.keys import CurveKeys
    from .host import Services

log = get_logger("worker")


def check_gateways(gateways: Any) -> list[tuple[str, str | None]]:
    """A grant's ``gateways``: ``[[endpoint, public_key or nil], ...]``; else BadRequest."""
    if not isinstance(gateways, (list, tuple)):
        raise BadRequest("grant gateways must be a list of [endpoint, public_key]")
    out = []
    for g in gateways:
        if not (isinstance(g, (list, tuple)) and len(g) == 2 and isinstance(g[0], str)
                and (g[1] is None or isinstance(g[1], str))):
            raise BadRequest("grant gateways must be a list of [endpoint, public_key]")
        out.append((g[0], g[1]))
    return out


_REFUSED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class RemoteLink(GatewayLink):
    """A link to another node's gateway: connected at once, and again after a refused
    handshake (see the module docstring)."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, keys: CurveKeys | None,
                 max_message_bytes: int, counters: dict[str, int]) -> None:
        super().__init__(ctx, endpoint, keys, max_message_bytes, counters)
        self.monitor: zmq.Socket[Any] | None = None
        self._open()

    def _open(self) -> None:
        assert self.endpoint is not None
        sock = self.sock = dealer(self.ctx, self.endpoint, self.keys, connect=False)
        if self.keys is not None:
            self.monitor = sock.get_monitor_socket(_REFUSED)
        sock.connect(self.endpoint)

    def check(self) -> None:
        """Connect anew if the gateway refused our handshake."""
        mon = self.monitor
        if mon is None or not int(mon.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            return
        log.info("the gateway at %s refused this node's CURVE key (not told of it yet?): "
                 "connecting again", self.endpoint)
        self.close()
        self._open()

    def send(self, msg: WsEffects) -> None:
        self.check()
        super().send(msg)

    def close(self) -> None:
        if self.monitor is not None and self.sock is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
            self.monitor = None
        super().close()
        self.sock = None


class GatewayRoutes:
    """The gateways of every live member (see the module docstring). ``own`` is the
    worker's link to its node's gateway (reused when the list names it)."""

    def __init__(self, ctx: zmq.Context[Any], own: GatewayLink, keys: CurveKeys | None,
                 max_message_bytes: int, counters: dict[str, int], services: Services) -> None:
        self.ctx, self.own, self.keys = ctx, own, keys
        self.max_message_bytes, self.counters, self.services = max_message_bytes, counters, services
        self.links: dict[str, GatewayLink] = {}
        self.listed: list[tuple[str, str | None]] = []

    def update(self, gateways: Any) -> None:
        """Send to these gateways from now on (a grant's list; the same list again
        changes nothing)."""
        listed = check_gateways(gateways)
        if listed == self.listed:
            for each in self.links.values():
                if type(each) is RemoteLink:
                    each.check()
            return
        links: dict[str, GatewayLink] = {}
        for endpoint, key in listed:
            link = self.links.get(endpoint)
            if link is not None:
                del self.links[endpoint]
            else:
                if endpoint == self.own.endpoint:
                    link = self.own
                else:
                    keys = self.keys.for_server(key.encode()) if self.keys and key else self.keys
                    link = RemoteLink(self.ctx, endpoint, keys, self.max_message_bytes, self.counters)
            links[endpoint] = link
        for gone in self.links.values():
            if gone is not self.own:
                gone.close()
        self.links, self.listed = links, listed
        self.services.ws_fanout = len(links) > 1
        log.info("WebSocket effects go to %d gateway(s): %s", len(links), ", ".join(links) or "none")

    def send(self, msg: WsEffects) -> None:
        """One committed effects message to every gateway (the own link's counters
        count what is dropped)."""
        links = self.links
        if not links:
            self.own.send(msg)       # no list yet (or no gateway anywhere): as a single node
            return
        for link in links.values():
            link.send(msg)

    def close(self) -> None:
        for link in self.links.values():
            if link is not self.own:
                link.close()
        self.links = {}
