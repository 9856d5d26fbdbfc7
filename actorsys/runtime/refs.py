"""References to actors from inside a handler (``self.ref(type, key)``): the runtime's
:class:`actorsys.actor.ActorRef`, and the :class:`actorsys.proxy.Channel` that
``self.proxy(cls, key)`` sends through (the same object: a proxy's calls are the ref's
sends, with the arguments passed whole)."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .. import tracing
from ..errors import ActorError, ActorStopped, MessageTooLarge
from ..protocol.messages import Tell
from .chains import CALL_CHAIN, TURN_ASK_IDS, outgoing

if TYPE_CHECKING:
    from .activation import Activation
    from .host import Services


class InnerRef:
    """A reference to an actor from inside a handler (``self.ref(type, key)``)."""

    __slots__ = ("_services", "_sender", "_gen", "type_name", "key")

    def __init__(self, services: Services, sender: Activation, type_name: str, key: str) -> None:
        if type(type_name) is not str or type(key) is not str:
            raise TypeError(f"self.ref(type, key) takes two strings, got "
                            f"{type(type_name).__name__} and {type(key).__name__}")
        self._services, self._sender, self.type_name, self.key = services, sender, type_name, key
        self._gen = sender.gen

    def _killed(self) -> bool:
        """Made by a turn that was killed since (brutal_kill): what it sends is dropped."""
        s = self._sender
        return s.gen != self._gen or s.gen < 0

    def tell(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a one-way message; it leaves after the current turn commits."""
        self.send_tell(method, args, kwargs)

    def send_tell(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """:meth:`tell`, the arguments passed whole (a proxy's ``tell``)."""
        if type(method) is not str:
            raise TypeError(f"a method name is a string, got {type(method).__name__}")
        trace = tracing.current()    # (this turn's span, when the node traces)
        msg = Tell(0, self.type_name, self.key, method, list(args), kwargs,
                   {"trace": trace} if trace is not None else None)
        # the exact payload size; packing also fails the turn now if not msgpack-able
        size = len(msg.encode())
        limit = self._services.max_message_bytes
        if size > limit:
            raise MessageTooLarge(f"tell of {size} bytes to {self.type_name}/{self.key:.100}; "
                                  f"max_message_bytes is {limit}")
        s = self._sender
        if self._killed():
            return              # discarded with the killed turn, like its other effects
        if s.running:
            if s.tells:
                s.tells.append(msg)
            else:
                s.tells = [msg]
        else:
            self._services.transport.tell(self.type_name, self.key, method, args, kwargs, msg.ctx)

    def ask(self, method: str, /, *args: Any, timeout: float | None = None,
            **kwargs: Any) -> "asyncio.Future[Any]":
        """Send an ask now and return a future (see :meth:`send_ask`)."""
        return self.send_ask(method, args, kwargs, timeout)

    def send_ask(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 timeout: float | None = None, retry: bool | None = None) -> "asyncio.Future[Any]":
        """Send an ask now and return a future: ``await`` it from an ``async def`` handler.

        In a synchronous turn it raises ``TypeError`` at once (nothing could await the
        answer). The ask carries the call chain of this turn plus this actor (see
        ``chains.py``), so an ask that comes back to this actor runs as a nested turn;
        and, in a turn answering an ask with a request id, a request id derived from it,
        so a retry of that ask that re-runs this turn does not run this ask twice.

        To keep per-sender order, what this actor sent before (tells of earlier turns,
        and the tells this turn has made so far) leaves first: earlier turns are
        committed at once, and this turn's earlier tells are released with the ask.

        ``retry`` is not offered inside a handler (None only): the ask is sent once; a
        retry of the ask that runs this turn sends it again with the same derived id.
        """
        if retry is not None:
            raise TypeError("an ask from inside a handler takes no retry option")
        s, services = self._sender, self._services
        if type(method) is not str:
            raise TypeError(f"a method name is a string, got {type(method).__name__}")
        if self._killed():
            raise ActorStopped(f"{s.type_name}/{s.key:.100} was killed: this turn is discarded")
        if s.running and s.task is None:
            # a synchronous turn (an async one has its task from its first await on; a
            # nested sync turn clears it while it runs): the future could only be dropped
            raise TypeError("ask needs an async handler; use tell, or make the handler async")
        if s.running and s.type_name == self.type_name and s.key == self.key:
            raise ActorError(f"{self.type_name}/{self.key:.100} asked itself: its turns never "
                             f"overlap, so the ask could only time out; call the method directly")
        ctx: dict[str, Any] = {"chain": outgoing(CALL_CHAIN.get(), s.type_name, s.key)}
        ids = TURN_ASK_IDS.get()
        if ids is not None:   # the turn answers an ask with an id: its asks' ids derive from it
            ctx["id"] = ids.next(self.type_name, self.key, method, args, kwargs)
        services.flush()
        if s.tells:
            tells, s.tells = s.tells, ()
            for t in tells:
                services.transport.tell(t.type_name, t.key, t.method, t.args, t.kwargs, t.ctx)
        return services.transport.ask(self.type_name, self.key, method, args, kwargs, timeout,
                                      ctx=ctx)

    def __repr__(self) -> str:
        return f"<InnerRef {self.type_name}/{self.key}>"
