"""The asyncio client: :func:`connect_async` gives an :class:`AsyncClient` on the same
transport the node's own processes use (see :mod:`.transport`), with the same deadlines,
retries, worker-loss handling, overload bounds and failing fast on an unreachable node
(``connect_timeout``, see :mod:`.reachability`) as the blocking client."""
from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any, Callable, Generator, Sequence, TypeVar, overload

import zmq

from ..errors import NodeUnavailable
from ..net.keys import client_keys
from ..net.sockets import Context
from ..protocol import wire
from ..protocol.messages import Top
from ..protocol.subs import DEFAULT_WINDOW
from ..proxy import AsyncProxy, C, address
from .common import (CLOSE_LINGER_MS, CONNECT_TIMEOUT, DEFAULT_TIMEOUT, check_top, node_of,
                     router_list, version_of)
from .proxies import ClientChannel
from .sublink import Subscriber, Where
from .subscriptions import Subscription, Target, options, target_of
from .transport import AsyncTransport

__all__ = ["AsyncClient", "AsyncProxy", "AsyncRef", "AsyncSupervisorRef", "Subscription",
           "connect_async"]

T = TypeVar("T")


class AsyncRef:
    """A handle on one actor address, from an :class:`AsyncClient`."""

    __slots__ = ("client", "type_name", "key")

    def __init__(self, client: "AsyncClient", type_name: str, key: str) -> None:
        self.client, self.type_name, self.key = client, type_name, key

    def ask(self, method: str, /, *args: Any, timeout: float | None = None,
            retry: bool | None = None, **kwargs: Any) -> "asyncio.Future[Any]":
        """Send ``method`` now; await the returned future for the result (or the error).

        The message leaves at the call, not at the first await, so call order is send
        order (``fut = ref.ask("a"); ref.tell("b")`` delivers a before b). ``retry``
        (default: the client's): see :meth:`Ref.ask`.
        """
        return self.client.ask(self.type_name, self.key, method, *args, timeout=timeout,
                               retry=retry, **kwargs)

    def tell(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send ``method`` one-way and return at once."""
        self.client.tell(self.type_name, self.key, method, *args, **kwargs)

    def history(self, *, timeout: float | None = None) -> "asyncio.Future[list[dict[str, Any]]]":
        """See :meth:`Ref.history`; await the result."""
        return self.ask("$history", timeout=timeout)

    def inspect(self, after: str | None = None, limit: int = 50, *,
                timeout: float | None = None) -> "asyncio.Future[dict[str, Any]]":
        """See :meth:`Ref.inspect`; await the result."""
        return self.ask("$inspect", after=after, limit=limit, timeout=timeout)

    def rewind(self, version: "int | dict[str, Any] | None" = None, *, time: float | None = None,
               timeout: float | None = None) -> "asyncio.Future[dict[str, int]]":
        """See :meth:`Ref.rewind`; await the result."""
        return self.ask("$rewind", version=version_of(version), time=time, timeout=timeout)

    def destroy(self, *, timeout: float | None = None) -> "asyncio.Future[dict[str, int]]":
        """See :meth:`Ref.destroy`; await the result."""
        return self.ask("$destroy", timeout=timeout)

    def __repr__(self) -> str:
        return f"<AsyncRef {self.type_name}/{self.key}>"


class AsyncClient:
    """An asyncio connection to a node: ``async with connect_async(ep) as client: ...``.

    Use it from one event loop. ``await connect_async(ep)`` also works.
    ``key`` / ``server_key``: CURVE key files for a tcp node (see :func:`connect`);
    ``retry``: the default of every ask's ``retry`` (see :meth:`Ref.ask`).
    """

    def __init__(self, endpoint: "str | Sequence[str]", *, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT, max_pending: int = 100_000,
                 key: "str | os.PathLike[str] | None" = None,
                 server_key: "str | os.PathLike[str] | None" = None, retry: bool = False) -> None:
        #: the router endpoints (a cluster's several), the one that answered first once connected
        self.endpoints = router_list(endpoint)
        self.endpoint = self.endpoints[0]
        self.timeout = timeout
        self.retry = retry
        self._keys = client_keys(key, server_key)
        self.connect_timeout = connect_timeout
        self.max_pending = max_pending
        self._transport: AsyncTransport | None = None
        self._ctx: Context | None = None
        self._subscriber: Subscriber | None = None

    async def connect(self) -> "AsyncClient":
        """Fetch the shard map (``NodeUnavailable`` after ``connect_timeout``, or at once
        if the node refuses this client's key)."""
        if self._transport is not None:
            return self
        self._ctx = zmq.Context()
        t = AsyncTransport(self._ctx, self.endpoint, max_pending=self.max_pending,
                           default_timeout=self.timeout, keys=self._keys)
        t.routers = list(self.endpoints)
        t.watch_node(self.connect_timeout)
        self._transport = t
        try:
            await t.connect(self.connect_timeout)
        except BaseException:
            await self.close()
            raise
        self.endpoint = t.router_endpoint or self.endpoint
        return self

    @property
    def transport(self) -> AsyncTransport:
        if self._transport is None:
            raise NodeUnavailable("not connected: use 'async with connect_async(...)'")
        return self._transport

    def ref(self, type_name: str, key: str) -> AsyncRef:
        """A reference to actor ``(type_name, key)``."""
        return AsyncRef(self, type_name, key)

    def ask(self, type_name: str, key: str, method: str, /, *args: Any,
            timeout: float | None = None, retry: bool | None = None,
            **kwargs: Any) -> "asyncio.Future[Any]":
        """Send an ask to actor ``(type_name, key)`` now; await the future for the result."""
        return self.ask_args(type_name, key, method, args, kwargs, timeout=timeout, retry=retry)

    def ask_args(self, type_name: str, key: str, method: str, args: "tuple[Any, ...] | list[Any]",
                 kwargs: dict[str, Any], *, timeout: float | None = None,
                 retry: bool | None = None) -> "asyncio.Future[Any]":
        """:meth:`ask` with the handler's arguments passed whole (see :meth:`Client.ask_args`)."""
        return self.transport.ask(type_name, key, method, args, kwargs, timeout,
                                  retry=self.retry if retry is None else retry)

    def proxy(self, cls: type[C], key: str, *, type_name: str | None = None) -> AsyncProxy[C]:
        """A typed proxy (see :meth:`Client.proxy`): ``await aclient.proxy(Counter,
        "visits").add(5)``; a call sends at once and returns a future."""
        type_name, key = address(cls, key, type_name)
        return AsyncProxy(cls, ClientChannel(self, type_name, key))

    def tell(self, type_name: str, key: str, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send ``method`` one-way (at-most-once)."""
        self.transport.tell(type_name, key, method, args, kwargs)

    @overload
    def subscribe(self, target: Target, tag: str | None = None, *, query: dict[str, str] | None = None,
                  window: int = DEFAULT_WINDOW, timeout: float | None = None
                  ) -> Subscription[str | bytes]: ...

    @overload
    def subscribe(self, target: Target, tag: str | None = None, *,
                  decode: Callable[[str | bytes], T], query: dict[str, str] | None = None,
                  window: int = DEFAULT_WINDOW, timeout: float | None = None) -> Subscription[T]: ...

    def subscribe(self, target: Target, tag: str | None = None, *,
                  decode: Callable[[str | bytes], Any] | None = None,
                  query: dict[str, str] | None = None, window: int = DEFAULT_WINDOW,
                  timeout: float | None = None) -> Subscription[Any]:
        """Receive what actor ``target`` (a ref, a proxy or ``(type_name, key)``) sends its
        connections: ``async with aclient.subscribe(ref) as sub: async for event in sub``
        (see :mod:`actorsys.client.subscriptions`). Opened by ``await``, ``async with`` or
        the first ``async for``, once its ``on_connect`` has committed (``timeout``: the
        client's by default). ``tag``: the connection's tag from its connect, for
        ``self.broadcast(data, tag=...)``; ``query``: its ``conn.query``; ``decode``:
        applied to each event (``json.loads``); ``window``: frames the gateway may send
        ahead of what is taken."""
        type_name, key = target_of(target)
        query = options(tag, query, window)
        t = self.transport
        if self._subscriber is None:
            assert self._ctx is not None
            self._subscriber = Subscriber(self._ctx)

        def where() -> Where:
            router = t.router_endpoint or self.endpoint
            return Where(t.subscribers, t.keys_for(router), router)
        return Subscription(self._subscriber, where, type_name, key, tag=tag, query=query,
                            decode=decode, window=window,
                            timeout=self.timeout if timeout is None else timeout)

    async def spawn(self, type_name: str, key: str | None = None, *,
                    timeout: float | None = None) -> AsyncRef:
        """Activate an actor now and return its ref (a fresh key if none is given)."""
        key = uuid.uuid4().hex if key is None else key
        await self.transport.spawn(type_name, key, timeout)
        return AsyncRef(self, type_name, key)

    async def list_actors(self, type_name: str, start_after: str | None = None,
                          limit: int = 1000, *, timeout: float | None = None) -> list[str]:
        """See :meth:`Client.list_actors` (the slots are asked concurrently)."""
        return await self.transport.list_keys(type_name, start_after, limit,
                                              self.timeout if timeout is None else timeout)

    async def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """The node's status (see :meth:`Client.status`)."""
        st: dict[str, Any] = await self.transport.call_router(wire.STATUS, timeout)
        return st

    async def metrics(self, timeout: float = 10.0) -> list[Any]:
        """The node's Prometheus samples (see :meth:`Client.metrics`)."""
        families: list[Any] = await self.transport.call_router(wire.METRICS, timeout)
        return families

    async def top(self, n: int = 10, by: str = "busy", timeout: float = 10.0) -> list[dict[str, Any]]:
        """The node's busiest actors (see :meth:`Client.top`)."""
        check_top(n, by)
        got: list[dict[str, Any]] = await self.transport.request_router(
            lambda rid: Top(rid, n, by), timeout)
        return got

    async def cluster(self, timeout: float = 10.0) -> dict[str, Any]:
        """The cluster as the router sees it (see :meth:`Client.cluster`)."""
        view: dict[str, Any] = await self.transport.call_router(wire.CLUSTER, timeout)
        return view

    async def leave(self, timeout: float = 120.0) -> Any:
        """Ask the node of the router in use to hand its shards off (see :meth:`Client.leave`)."""
        return await self.transport.call_router(wire.LEAVE, timeout)

    def supervisor(self, name: str) -> "AsyncSupervisorRef":
        """A handle on the running supervisor ``name``; its methods are coroutines."""
        return AsyncSupervisorRef(self, name)

    async def supervise(self, supervisor: str, command: str, arg: Any = None, *,
                        timeout: float | None = None) -> Any:
        """One command of supervisor ``supervisor``'s runtime API (see
        :meth:`Client.supervise`)."""
        return await self.transport.supervise(supervisor, command, arg,
                                              self.timeout if timeout is None else timeout)

    async def close(self) -> None:
        """Close the client: its subscriptions end (as closed by it), what is pending fails."""
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None
        if self._transport is not None:
            self._transport.close(CLOSE_LINGER_MS)      # (a tell just sent leaves)
            self._transport = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, "AsyncClient"]:
        return self.connect().__await__()


class AsyncSupervisorRef:
    """A running supervisor, from an :class:`AsyncClient` (see :class:`SupervisorRef`)."""

    __slots__ = ("client", "name")

    def __init__(self, client: AsyncClient, name: str) -> None:
        self.client, self.name = client, name

    async def which_children(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        children: list[dict[str, Any]] = await self.client.supervise(
            self.name, "which_children", timeout=timeout)
        return children

    async def count_children(self, *, timeout: float | None = None) -> dict[str, int]:
        counts: dict[str, int] = await self.client.supervise(self.name, "count_children",
                                                             timeout=timeout)
        return counts

    async def start_child(self, spec: dict[str, Any] | None = None, *,
                          timeout: float | None = None) -> Any:
        return await self.client.supervise(self.name, "start_child", spec, timeout=timeout)

    async def terminate_child(self, child_id: str, *, timeout: float | None = None) -> None:
        await self.client.supervise(self.name, "terminate_child", child_id, timeout=timeout)

    async def restart_child(self, child_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        info: dict[str, Any] = await self.client.supervise(self.name, "restart_child", child_id,
                                                           timeout=timeout)
        return info

    async def delete_child(self, child_id: str, *, timeout: float | None = None) -> None:
        await self.client.supervise(self.name, "delete_child", child_id, timeout=timeout)

    def __repr__(self) -> str:
        return f"<AsyncSupervisorRef {self.name}>"


def connect_async(endpoint: "str | Sequence[str] | None" = None, *,
                  config: "str | os.PathLike[str] | None" = None,
                  timeout: float = DEFAULT_TIMEOUT,
                  connect_timeout: float = CONNECT_TIMEOUT, max_pending: int = 100_000,
                  key: "str | os.PathLike[str] | None" = None,
                  server_key: "str | os.PathLike[str] | None" = None,
                  retry: bool = False) -> AsyncClient:
    """An asyncio client; use as ``async with connect_async(ep) as c`` or ``c = await connect_async(ep)``.
    ``endpoint`` or ``config`` (one of them), ``key`` / ``server_key``, ``retry``: as for
    :func:`connect` (a list of a cluster's router endpoints too). A config is read here,
    at the call (a node that is not running: ``NodeUnavailable`` at once)."""
    routers, key, server_key = node_of(endpoint, config, key, server_key)
    return AsyncClient(routers, timeout=timeout, connect_timeout=connect_timeout,
                       max_pending=max_pending, key=key, server_key=server_key, retry=retry)

