"""Clients: reach a node's actors from any Python process.

``connect(endpoint)`` gives a blocking :class:`Client`; ``connect_async(endpoint)`` an
asyncio :class:`AsyncClient`. Both fetch the shard map from the router once and then
send every message straight to the worker slot that owns the actor (one hop). A stale
map (the worker answers ``wrong_shard``) is refreshed and the message resent.

tcp endpoints use CURVE: pass the client's key pair file and the node's public key file,
``connect(ep, key="me.key_secret", server_key="node.key")`` (see
:mod:`actorsys.net.keys`). A node that refuses the key fails the connect at once with
:class:`~actorsys.NodeUnavailable` saying so; other failed handshakes are named in the
``NodeUnavailable`` raised at the connect deadline.

Errors: the handler's exception arrives as :class:`~actorsys.RemoteError`; a missing
reply as :class:`~actorsys.AskTimeout`; a worker that dies while the ask is in flight as
:class:`~actorsys.WorkerLost` (at once, not at the deadline). Asks sent while a worker
is restarting wait in the client's queue and are answered once it is back. A node whose
router is unreachable for ``connect_timeout`` fails the pending asks, and every ask and
tell until it is back, with :class:`~actorsys.NodeUnavailable` (see :mod:`.reachability`).

The blocking client is a thin layer on the transport the asyncio client and the node's
own processes use (:mod:`.transport`), so deadlines, retries, worker-loss handling and
overload bounds are the same: each thread runs it on a lane of its own (:mod:`.lanes`).
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import Any, Callable, Sequence, TypeVar, overload

import zmq

from ..errors import AskTimeout, NodeUnavailable, WorkerLost
from ..net.keys import client_keys
from ..net.sockets import Context
from ..protocol import wire
from ..protocol.messages import Ask, Request, Spawn, Top
from ..protocol.shardmap import ShardMap
from ..protocol.subs import DEFAULT_WINDOW
from ..proxy import C, Proxy, address
from .common import (CLOSE_LINGER_MS, CONNECT_TIMEOUT, DEFAULT_TIMEOUT, check_top, node_of,
                     router_list, version_of)
from .lanes import Lane, ThreadLanes
from .proxies import ClientChannel
from .reachability import Reachability
from .requests import Wording, describe, no_answer
from .sublink import Where
from .subscriptions import Subscription, Target, options, target_of
from .subthread import BlockingSubscription, SubscriptionThread
from .supervisor_refs import SupervisorRef
from .transport import AsyncTransport

T = TypeVar("T")

__all__ = ["BlockingSubscription", "CONNECT_TIMEOUT", "DEFAULT_TIMEOUT", "Client", "Proxy", "Ref",
           "SupervisorRef", "connect"]


class Ref:
    """A handle on one actor address, from a blocking :class:`Client`."""

    __slots__ = ("client", "type_name", "key")

    def __init__(self, client: "Client", type_name: str, key: str) -> None:
        self.client, self.type_name, self.key = client, type_name, key

    def ask(self, method: str, /, *args: Any, timeout: float | None = None,
            retry: bool | None = None, **kwargs: Any) -> Any:
        """Call ``method`` and wait for its result (or its error) until ``timeout``.

        ``retry`` (default: the client's, ``connect(..., retry=...)``): after
        ``WorkerLost``, send the ask again with the same request id until it is
        answered, within the same ``timeout`` (a few attempts at most); the worker
        answers a repeated id with the reply it recorded, so the handler runs once.
        See docs/concepts/clients.md, "Deadlines".
        """
        return self.client.ask(self.type_name, self.key, method, *args, timeout=timeout,
                               retry=retry, **kwargs)

    def tell(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send ``method`` one-way and return at once (at-most-once delivery)."""
        self.client.tell(self.type_name, self.key, method, *args, **kwargs)

    def history(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """The actor's retained versions, oldest first: ``[{"version", "time"}]``; ``[]``
        if its type keeps no history (see ``history_window`` and ``actorsys/storage/history.py``)."""
        versions: list[dict[str, Any]] = self.ask("$history", timeout=timeout)
        return versions

    def inspect(self, after: str | None = None, limit: int = 50, *,
                timeout: float | None = None) -> dict[str, Any]:
        """What the actor holds, read-only and as last committed, without activating it:
        ``{"type", "key", "shard", "resident", "running", "mailbox", "status", "state",
        "storage": [[name, value], ...] (a page of at most ``limit`` entries after
        ``after``), "more", "alarms": {name: {"when", "payload", "attempt"}}, "history"}``
        (a recurring alarm's also has ``"cron"`` and ``"tz"``, or ``"every"``; the
        dashboard's actor inspector shows the same)."""
        got: dict[str, Any] = self.ask("$inspect", after=after, limit=limit, timeout=timeout)
        return got

    def rewind(self, version: "int | dict[str, Any] | None" = None, *, time: float | None = None,
               timeout: float | None = None) -> dict[str, int]:
        """Restore the actor to a version, or to its last version at or before ``time``
        (epoch seconds). Version 0 (or a time before the first version) is the actor
        before its first commit: rewinding there empties it. The rewind is a new version
        (rewind again to undo it); returns ``{"version": new version, "restored": the
        version restored}``. Only listed versions (and 0 while version 1 is kept) can be
        restored; anything else is ``BadRequest``. ``version`` may be a bookmark from
        :meth:`history`."""
        done: dict[str, int] = self.ask("$rewind", version=version_of(version), time=time,
                                        timeout=timeout)
        return done

    def destroy(self, *, timeout: float | None = None) -> dict[str, int]:
        """Delete the actor's state, storage, alarms and history (``{"deleted": keys}``);
        its next message starts it from nothing."""
        done: dict[str, int] = self.ask("$destroy", timeout=timeout)
        return done

    def __repr__(self) -> str:
        return f"<Ref {self.type_name}/{self.key}>"


class _BlockingWording(Wording):
    """The blocking client's texts for the transport's own errors, as they have always
    read: the request first, then what happened."""

    def timed_out(self, request: Request, timeout: float) -> str:
        return f"{describe(request)}: no reply before the deadline"

    def lost(self, request: Request, slot: int) -> str:
        return f"{describe(request)}: {super().lost(request, slot)}"


_WORDING = _BlockingWording()


async def _ping_workers(t: AsyncTransport, timeout: float) -> None:
    """Every worker slot answers a ping (one still starting is asked again every half
    second), or NodeUnavailable at the deadline."""
    loop = t.loop
    deadline = loop.time() + timeout
    assert t.map is not None
    for slot in range(len(t.map.endpoints)):
        while True:
            try:
                await t.call_slot(slot, wire.PING, max(min(deadline - loop.time(), 0.5), 0.001))
                break
            except (AskTimeout, WorkerLost, NodeUnavailable):
                if t.closed:
                    raise
                if loop.time() >= deadline:
                    raise NodeUnavailable(
                        f"worker slot {slot} did not answer within {timeout:g} s") from None


class Client:
    """A blocking connection to a node; a context manager.

    Thread-safe: each thread gets its own sockets (closed when the thread ends), so
    threads ask concurrently (:class:`~.lanes.ThreadLanes`). Call :meth:`close` when no
    thread is in the middle of an ask.
    ``key`` / ``server_key``: CURVE key files for a tcp node (see :func:`connect`).
    """

    def __init__(self, endpoint: "str | Sequence[str]", *, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 key: "str | os.PathLike[str] | None" = None,
                 server_key: "str | os.PathLike[str] | None" = None, retry: bool = False) -> None:
        #: the router endpoints (a cluster's several), the one that answered first once connected
        self.endpoints = router_list(endpoint)
        self.endpoint = self.endpoints[0]
        self.timeout = timeout
        self.connect_timeout = connect_timeout   # also how long the node may be unreachable
        #: how every thread's transport sees the node (see .reachability)
        self._reach = Reachability(self.endpoint, connect_timeout, time.monotonic(),
                                   others=tuple(self.endpoints[1:]))
        #: the default of every ask's ``retry`` (see :meth:`Ref.ask`)
        self.retry = retry
        self._keys = client_keys(key, server_key)
        self._ctx: Context = zmq.Context()
        #: every thread's lane, and the newest map any of them fetched
        self._threads = ThreadLanes(self._transport_on, CLOSE_LINGER_MS)
        #: where subscriptions live (made at the first subscribe: :mod:`.subthread`)
        self._subs: SubscriptionThread | None = None
        self._subs_lock = threading.Lock()
        try:
            self.refresh_map(connect_timeout)
        except BaseException:
            self.close()
            raise

    # -- this thread's lane ----------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._threads.closed

    def _lane(self) -> Lane:
        return self._threads.lane()

    def _transport_on(self, loop: asyncio.AbstractEventLoop) -> AsyncTransport:
        t = AsyncTransport(self._ctx, self.endpoint, default_timeout=self.timeout,
                           keys=self._keys, loop=loop, wording=_WORDING, coalesce=False)
        t.routers = [self.endpoint, *(e for e in self.endpoints if e != self.endpoint)]
        t.on_map = self._threads.newest.take
        t.watch_node(self.connect_timeout, self._reach)
        return t

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    # -- the map --------------------------------------------------------------------
    @property
    def map(self) -> ShardMap:
        """The shard map: which worker slot owns each actor (``map.slot_of(type, key)``)."""
        info = self._threads.newest.info
        if info is None:
            raise NodeUnavailable("no shard map yet")
        return info.map

    @property
    def max_message_bytes(self) -> int:
        """The node's largest message."""
        info = self._threads.newest.info
        return 1 << 20 if info is None else info.max_message_bytes

    @property
    def tree_endpoint(self) -> str | None:
        """The supervision tree's endpoint (None: the node declares no supervisors)."""
        info = self._threads.newest.info
        return None if info is None else info.tree_endpoint

    def refresh_map(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Fetch the shard map from the router again (with several, from the first that
        answers, each within ``timeout``: the one new threads start with)."""
        lane = self._lane()
        lane.run(lane.transport.connect(timeout))
        self.endpoint = lane.transport.router_endpoint or self.endpoint

    # -- control ----------------------------------------------------------------------
    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """The node's status: ``{"processes": [{"role", "pid", "slot", ...}], ...}``."""
        lane = self._lane()
        st: dict[str, Any] = lane.run(lane.transport.call_router(
            wire.STATUS, timeout, no_answer(f"router at {self.endpoint}", timeout)))
        return st

    def metrics(self, timeout: float = 10.0) -> list[Any]:
        """The node's Prometheus samples, every process's, as the router gathered them:
        ``[[family, type, help, [[sample, {label: value}, value], ...]], ...]`` (the
        ``actorsys/metrics`` catalog says what each is; ``/metrics`` serves the same)."""
        lane = self._lane()
        families: list[Any] = lane.run(lane.transport.call_router(
            wire.METRICS, timeout, no_answer(f"router at {self.endpoint}", timeout)))
        return families

    def top(self, n: int = 10, by: str = "busy", timeout: float = 10.0) -> list[dict[str, Any]]:
        """The node's ``n`` busiest actors of about the last minute, ordered ``by``
        ``"busy"`` (the share of a worker's loop their turns took), ``"turns"`` (per
        second), ``"errors"`` or ``"mailbox"`` (the deepest seen): ``[{"type", "key",
        "slot", "turns_per_s", "busy", "errors", "mailbox"}, ...]``. Per key, which the
        metrics never are."""
        check_top(n, by)
        lane = self._lane()
        got: list[dict[str, Any]] = lane.run(lane.transport.request_router(
            lambda rid: Top(rid, n, by), timeout))
        return got

    def cluster(self, timeout: float = 10.0) -> dict[str, Any]:
        """The cluster as the router in use sees it: ``{"name", "epoch", "nodes": [{"id",
        "endpoint", "alive", "shards"}, ...]}`` (a single node: no name, one node, no id)."""
        lane = self._lane()
        view: dict[str, Any] = lane.run(lane.transport.call_router(
            wire.CLUSTER, timeout, no_answer(f"router at {lane.transport.router_endpoint}", timeout)))
        return view

    def leave(self, timeout: float = 120.0) -> Any:
        """Ask the node of the router in use (the first that answered ``connect``) to hand
        its shards off to the other nodes; returns what it did once they are moved.
        ``BadRequest`` for a single node."""
        lane = self._lane()
        return lane.run(lane.transport.call_router(
            wire.LEAVE, timeout, no_answer(f"router at {lane.transport.router_endpoint}", timeout)))

    def supervisor(self, name: str) -> "SupervisorRef":
        """A handle on the running supervisor ``name`` (OTP's runtime API)."""
        return SupervisorRef(self, name)

    def supervise(self, supervisor: str, command: str, arg: Any = None, *,
                  timeout: float | None = None) -> Any:
        """One command of supervisor ``supervisor``'s runtime API (what
        :class:`SupervisorRef`'s methods send); not resent, since start_child is not
        idempotent."""
        lane = self._lane()
        return lane.run(lane.transport.supervise(supervisor, command, arg, self._timeout(timeout)))

    def ping_workers(self, timeout: float = 10.0) -> None:
        """Wait until every worker slot answers (raises NodeUnavailable at the deadline)."""
        lane = self._lane()
        lane.run(_ping_workers(lane.transport, timeout))

    # -- actors -----------------------------------------------------------------------
    def ask(self, type_name: str, key: str, method: str, /, *args: Any, timeout: float | None = None,
            retry: bool | None = None, **kwargs: Any) -> Any:
        """Ask actor ``(type_name, key)`` to run ``method``; wait for the result
        (``retry``: see :meth:`Ref.ask`)."""
        return self.ask_args(type_name, key, method, args, kwargs, timeout=timeout, retry=retry)

    def ask_args(self, type_name: str, key: str, method: str, args: "tuple[Any, ...] | list[Any]",
                 kwargs: dict[str, Any], *, timeout: float | None = None,
                 retry: bool | None = None) -> Any:
        """:meth:`ask` with the handler's arguments passed whole, so every keyword is the
        handler's (one named ``timeout`` too): what proxies send through."""
        lane = self._lane()
        t = lane.transport
        timeout = self.timeout if timeout is None else timeout
        if self.retry if retry is None else retry:
            return lane.wait(t.ask(type_name, key, method, args, kwargs, timeout, retry=True))
        rid = t.new_id()
        return lane.wait_pending(t.send(Ask(rid, type_name, key, method, list(args), kwargs,
                                            t.request_ctx(rid)), timeout))

    def tell(self, type_name: str, key: str, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send ``method`` one-way (at-most-once); returns at once."""
        self._lane().transport.tell(type_name, key, method, args, kwargs)

    @overload
    def subscribe(self, target: Target, tag: str | None = None, *, query: dict[str, str] | None = None,
                  window: int = DEFAULT_WINDOW, timeout: float | None = None
                  ) -> BlockingSubscription[str | bytes]: ...

    @overload
    def subscribe(self, target: Target, tag: str | None = None, *,
                  decode: Callable[[str | bytes], T], query: dict[str, str] | None = None,
                  window: int = DEFAULT_WINDOW, timeout: float | None = None
                  ) -> BlockingSubscription[T]: ...

    def subscribe(self, target: Target, tag: str | None = None, *,
                  decode: Callable[[str | bytes], Any] | None = None,
                  query: dict[str, str] | None = None, window: int = DEFAULT_WINDOW,
                  timeout: float | None = None) -> BlockingSubscription[Any]:
        """Receive what actor ``target`` (a ref, a proxy or ``(type_name, key)``) sends its
        connections: ``with client.subscribe(ref) as sub: for event in sub: ...`` (see
        :mod:`actorsys.client.subscriptions`). Returns once its ``on_connect`` has
        committed (within ``timeout``, the client's by default). ``tag``, ``query``,
        ``decode``, ``window``: see :meth:`AsyncClient.subscribe`."""
        type_name, key = target_of(target)
        query = options(tag, query, window)
        t = self._lane().transport
        router = t.router_endpoint or self.endpoint
        place = Where(t.subscribers, t.keys_for(router), router)   # (read on this thread)
        runner = self._subscription_thread()
        sub: Subscription[Any] = Subscription(runner.subscriber, lambda: place, type_name, key,
                                              tag=tag, query=query, decode=decode, window=window,
                                              timeout=self._timeout(timeout))
        try:
            runner.call(sub.open())
        except BaseException:
            runner.post(sub.abandon, "its subscribe was interrupted")   # (if it had opened)
            raise
        return BlockingSubscription(runner, sub)

    def _subscription_thread(self) -> SubscriptionThread:
        with self._subs_lock:
            if self.closed:
                raise NodeUnavailable("client is closed")
            if self._subs is None:
                self._subs = SubscriptionThread(self._ctx)
            return self._subs

    def ref(self, type_name: str, key: str) -> Ref:
        """A reference to actor ``(type_name, key)``; it exists from its first message."""
        return Ref(self, type_name, key)

    def proxy(self, cls: type[C], key: str, *, type_name: str | None = None) -> Proxy[C]:
        """A typed proxy of actor ``(type_name, key)``: ``client.proxy(Counter, "visits").add(5)``
        asks ``add`` and waits for the result, within the client's deadline (another:
        ``.with_options(timeout=2)``); ``.tell.add(5)`` sends one way.

        ``cls`` gives the handlers' names and signatures only (it is never instantiated);
        the type name is ``type_name``, else ``cls.__name__``. A name that is not a
        handler raises ``AttributeError``, arguments that do not fit its signature
        ``TypeError``, before anything is sent. See :mod:`actorsys.proxy`, and
        :mod:`actorsys.mypy` for the type checker.
        """
        type_name, key = address(cls, key, type_name)
        return Proxy(cls, ClientChannel(self, type_name, key))

    def list_actors(self, type_name: str, start_after: str | None = None, limit: int = 1000, *,
                    timeout: float | None = None) -> list[str]:
        """Keys of the actors of ``type_name`` that have persisted data, in key order,
        after ``start_after``, at most ``limit`` (up to 10,000): pass the last key of one
        page as ``start_after`` of the next. Asks every worker slot. An unregistered type
        is ``UnknownActorType``."""
        lane = self._lane()
        keys: list[str] = lane.run(lane.transport.list_keys(
            type_name, start_after, limit, self._timeout(timeout),
            lambda _why: AskTimeout(f"list {type_name}: no reply before the deadline")))
        return keys

    def spawn(self, type_name: str, key: str | None = None, *, timeout: float | None = None) -> Ref:
        """Activate an actor now (``on_start`` runs and commits) and return its ref.

        Without a key, a fresh unique key is made.
        """
        key = uuid.uuid4().hex if key is None else key
        lane = self._lane()
        t = lane.transport
        lane.wait_pending(t.send(Spawn(t.new_id(), type_name, key), self._timeout(timeout)))
        return Ref(self, type_name, key)

    def close(self) -> None:
        """Close every thread's sockets (idempotent) and end the subscriptions (as closed
        by this client). Call it when no thread is mid-ask."""
        with self._subs_lock:
            subs, self._subs = self._subs, None
        if subs is not None:
            subs.close()
        if self._threads.close():
            self._ctx.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def connect(endpoint: "str | Sequence[str] | None" = None, *,
            config: "str | os.PathLike[str] | None" = None, timeout: float = DEFAULT_TIMEOUT,
            connect_timeout: float = CONNECT_TIMEOUT,
            key: "str | os.PathLike[str] | None" = None,
            server_key: "str | os.PathLike[str] | None" = None, retry: bool = False) -> Client:
    """Connect to the node whose router listens at ``endpoint``, or to a cluster through
    the first of a list of its routers' endpoints that answers (each is given
    ``connect_timeout``; the others are tried later if that one goes away, and
    ``NodeUnavailable`` names them all when none answers).

    ``config="node.toml"`` instead of an endpoint (one of the two; ``TypeError``
    otherwise): the node of that config, found as ``actorsys COMMAND --config
    node.toml`` finds it: the config's ``endpoint``, else the one the running node
    recorded in its data directory (``NodeUnavailable`` at once, saying to run
    ``actorsys run node.toml``, when it is not running), with the config's own key pair
    for a tcp node with CURVE where ``key`` / ``server_key`` are not given. A config
    that cannot be read or is invalid raises ``ConfigError``.

    ``timeout`` is the default deadline of every ask; ``connect_timeout`` bounds the
    wait for the router's shard map (raises :class:`~actorsys.NodeUnavailable`), and
    is how long the node may be unreachable later before the pending asks fail, and
    later asks and tells raise, with ``NodeUnavailable`` (until the node is back).
    For a tcp node with CURVE, ``key`` is this client's ``.key_secret`` file and
    ``server_key`` the node's public ``.key`` file (``actorsys keygen`` makes them;
    the node must list the client's public key in its ``authorized_keys``). A key file
    that cannot be used is a ``ValueError`` naming it; ipc endpoints ignore the keys.
    ``retry``: the default of every ask's ``retry`` (see :meth:`Ref.ask`).
    """
    routers, key, server_key = node_of(endpoint, config, key, server_key)
    return Client(routers, timeout=timeout, connect_timeout=connect_timeout, key=key,
                  server_key=server_key, retry=retry)
