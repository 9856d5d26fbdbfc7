"""The ``auth`` hook of ``[gateway]``: a function ``f(request: GatewayRequest)``, maybe
``async``, asked about every request that passed the gateway's own checks. A falsy
result (or an exception, or no answer within :data:`AUTH_TIMEOUT`) refuses the request
(403); ``True`` lets it in; any other value lets it in and travels to the actor as
``conn.user`` (so it must be msgpack-able).
"""
from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ..log import get_logger
from ..protocol import wire

log = get_logger("gateway")

#: seconds an async auth hook may take (then the request is refused)
AUTH_TIMEOUT = 10.0


@dataclass(frozen=True)
class GatewayRequest:
    """What the ``auth`` hook sees of a request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]          # lower-case names
    cookies: dict[str, str]
    remote: str | None
    origin: str | None
    actor_type: str
    actor_key: str
    actor_method: str | None         # None for a WebSocket
    websocket: bool


class Refused(Exception):
    """A request refused before it reaches an actor: answered with ``status`` and
    ``{"error": code, "message": ...}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class AuthHook:
    """The user's hook, called with a timeout; its verdict read as the module says."""

    def __init__(self, hook: Callable[[GatewayRequest], Any], counters: dict[str, int]) -> None:
        self.hook, self.counters = hook, counters

    async def user(self, request: GatewayRequest) -> Any:
        """The value for ``conn.user`` (None for ``True``), or :class:`Refused`."""
        try:
            verdict = self.hook(request)
            if inspect.isawaitable(verdict):
                verdict = await asyncio.wait_for(verdict, AUTH_TIMEOUT)
            if verdict and verdict is not True:
                wire.pack(verdict)        # it travels to the actor as conn.user
        except Exception as exc:
            log.warning("the auth hook raised on %s: %s: %s", request.path, type(exc).__name__, exc)
            verdict = False
        if not verdict:
            self.counters["hook_refused"] += 1
            raise Refused(403, "forbidden", "refused by the auth hook")
        return None if verdict is True else verdict
