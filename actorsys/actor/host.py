"""The seam between an actor and the runtime that hosts it.

An :class:`~actorsys.Actor` and its :class:`~actorsys.actor.Connection` objects know
their runtime only through the interfaces below (as a Pykka actor knows its runtime only
through its ``actor_ref``): the runtime (``actorsys.runtime``) implements them, and
nothing in this package imports the runtime or storage.

* :class:`ActorHost`: what a live actor instance may ask of its runtime: references to
  other actors (and the channels ``self.proxy`` sends through), stopping or destroying
  itself, and its WebSockets (the sockets as last known, this turn's effects on them and
  their size limit). One host per live instance; a host whose instance was killed keeps
  answering, but what it is asked to send goes nowhere.
* :class:`StorageAPI`: ``self.storage``, the actor's durable key-value storage.
* :class:`ActorRef`: what ``self.ref(type, key)`` returns.
"""
from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, overload

if TYPE_CHECKING:
    from ..proxy import Channel
    from .connection import Connection


class ActorRef(Protocol):
    """A reference to an actor from inside a handler (``self.ref(type, key)``)."""

    @property
    def type_name(self) -> str: ...

    @property
    def key(self) -> str: ...

    def tell(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a one-way message; it leaves after the current turn commits."""

    def ask(self, method: str, /, *args: Any, timeout: float | None = None,
            **kwargs: Any) -> "asyncio.Future[Any]":
        """Send an ask now; ``await`` the future from an ``async def`` handler (in a
        synchronous one it raises ``TypeError``: use ``tell`` there)."""


class StorageAPI(Protocol):
    """``self.storage``: the actor's durable key-value storage; writes commit with the
    turn (the runtime's implementation documents the limits)."""

    @overload
    def get(self, key: str, default: Any = None) -> Any: ...
    @overload
    def get(self, key: list[str] | tuple[str, ...], default: Any = None) -> dict[str, Any]: ...

    def put(self, key: str | dict[str, Any], value: Any = ...) -> None: ...

    def delete(self, key: Any) -> Any: ...

    def list(self, prefix: str | None = None, start: str | None = None, end: str | None = None,
             reverse: bool = False, limit: int | None = None,
             start_after: str | None = None) -> dict[str, Any]: ...

    def delete_all(self) -> int: ...

    def size(self) -> int: ...

    def transaction(self) -> AbstractContextManager[Any]: ...

    def set_alarm(self, when: "float | datetime.datetime | None" = None, name: str = "default",
                  payload: Any = None, *, cron: str | None = None,
                  every: "float | datetime.timedelta | None" = None,
                  tz: str | None = None) -> float:
        """Checks everything (raising ``TypeError``/``ValueError`` before anything is
        staged) and stages the alarm; returns its first due time."""

    def alarms(self) -> dict[str, dict[str, Any]]: ...

    def cancel_alarm(self, name: str = "default") -> bool: ...


class ActorHost(Protocol):
    """What an actor instance (and its connections) may ask of the runtime hosting it."""

    @property
    def generation(self) -> int:
        """The activation's generation: bumped when the tree restarts a child and when an
        instance is killed. A :class:`Connection` made in an older generation sends
        nothing (the socket list it belonged to is gone)."""

    @property
    def max_effect_bytes(self) -> int:
        """The largest packed WebSocket effect (the node's ``max_message_bytes`` less 4 KiB)."""

    def ref(self, type_name: str, key: str) -> ActorRef:
        """A reference to another actor, sending on this instance's behalf."""

    def channel(self, type_name: str, key: str) -> "Channel":
        """What ``self.proxy(cls, key)`` sends through: the same sends as :meth:`ref`'s
        (``send_ask`` is ``ask``, ``send_tell`` is ``tell``, with every rule of theirs),
        the arguments passed whole."""

    def stop(self, reason: str) -> None:
        """Stop this actor once the current turn has committed (see ``Actor.stop``)."""

    def destroy(self) -> None:
        """Delete this actor when the current turn commits (see ``Actor.destroy``)."""

    def sockets(self) -> "Mapping[str, Connection] | None":
        """The actor's WebSockets by id, oldest first, as of the last socket event this
        activation saw (None: not known yet)."""

    def socket_gateways(self) -> "list[str] | None":
        """The gateways (incarnations) whose sockets :meth:`sockets` holds (None: not
        known yet): another gateway's sockets are not in it."""

    def emit(self, effect: list[Any]) -> None:
        """Add a WebSocket effect (checked against :attr:`max_effect_bytes` by the
        caller) to this turn's; effects leave when the turn commits."""
