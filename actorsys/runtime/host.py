"""The runtime's side of the actor seam: :class:`Host` implements
:class:`actorsys.actor.ActorHost` for one live actor instance.

Every instance gets its own host when it is activated (see ``Turns``): ``stop()`` and
``destroy()`` requests then die with the instance (a crash or a passivation forgets
them), and a kill detaches the host (:meth:`Host.detach`), so whatever the killed
instance still sends lands in a record nobody reads. The worker-wide part every host shares is
:class:`Services`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .refs import InnerRef

if TYPE_CHECKING:
    from ..actor import Connection
    from ..client.transport import AsyncTransport
    from .activation import Activation

#: what a WebSocket effect leaves of ``max_message_bytes`` for its envelope
EFFECT_HEADROOM = 4096


class Services:
    """What every host (and every :class:`InnerRef`) of a worker uses."""

    __slots__ = ("transport", "flush", "max_message_bytes", "ws_fanout")

    def __init__(self, transport: AsyncTransport, flush: Callable[[], None],
                 max_message_bytes: int) -> None:
        #: the worker's client transport: asks and tells to other actors
        self.transport = transport
        #: the group commit, run before an ask leaves (earlier turns' tells go first)
        self.flush = flush
        self.max_message_bytes = max_message_bytes
        #: a cluster worker with more than one gateway: a socket batch's effects also
        #: leave for the other gateways (ws_routes.py)
        self.ws_fanout = False


class Host:
    """The runtime of one live actor instance (:class:`actorsys.actor.ActorHost`)."""

    __slots__ = ("act", "services", "stop_reason", "destroying")

    def __init__(self, act: Activation, services: Services) -> None:
        #: the activation it runs in; after a kill, a detached record (see detach)
        self.act = act
        self.services = services
        #: set by ``self.stop(reason)``: the instance stops once its turn has committed
        self.stop_reason: str | None = None
        #: set by ``self.destroy()``: the turn's commit deletes the actor (runtime/destroy.py)
        self.destroying = False

    @property
    def generation(self) -> int:
        return self.act.gen

    @property
    def max_effect_bytes(self) -> int:
        return self.services.max_message_bytes - EFFECT_HEADROOM

    def ref(self, type_name: str, key: str) -> InnerRef:
        return InnerRef(self.services, self.act, type_name, key)

    def channel(self, type_name: str, key: str) -> InnerRef:
        return InnerRef(self.services, self.act, type_name, key)

    def stop(self, reason: str) -> None:
        self.stop_reason = reason

    def destroy(self) -> None:
        self.destroying = True

    def sockets(self) -> dict[str, Connection] | None:
        return self.act.ws

    def socket_gateways(self) -> list[str] | None:
        held = self.act.ws_gateways
        return None if held is None else sorted(held)

    def emit(self, effect: list[Any]) -> None:
        act = self.act
        if act.ws_out:
            act.ws_out.append(effect)
        else:
            act.ws_out = [effect]

    def detach(self) -> None:
        """The instance was killed: from now on what it sends goes nowhere (its refs
        made from now on name a detached record; its earlier refs and connections
        name a past generation)."""
        self.act = self.act.ghost()
