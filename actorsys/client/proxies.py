"""The clients' side of typed proxies (:mod:`actorsys.proxy`): :class:`ClientChannel`,
one actor address of a blocking or an asyncio client, which ``client.proxy(cls, key)``
sends through."""
from __future__ import annotations

from typing import Any, Protocol


class _Sender(Protocol):
    """What both clients offer a channel: :meth:`Client.ask_args` and ``tell``."""

    def ask_args(self, type_name: str, key: str, method: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], *, timeout: float | None = None,
                 retry: bool | None = None) -> Any: ...

    def tell(self, type_name: str, key: str, method: str, /, *args: Any, **kwargs: Any) -> None: ...


class ClientChannel:
    """Actor ``(type_name, key)`` of ``client`` (an :class:`actorsys.proxy.Channel`): an
    ask is the client's (its result, or the asyncio client's future), with the client's
    deadline and ``retry`` unless given; a tell is the client's."""

    __slots__ = ("client", "type_name", "key")

    def __init__(self, client: _Sender, type_name: str, key: str) -> None:
        self.client, self.type_name, self.key = client, type_name, key

    def send_ask(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 timeout: float | None = None, retry: bool | None = None) -> Any:
        return self.client.ask_args(self.type_name, self.key, method, args, kwargs,
                                    timeout=timeout, retry=retry)

    def send_tell(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.client.tell(self.type_name, self.key, method, *args, **kwargs)
