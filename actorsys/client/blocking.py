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
is restarting wait in the client's queue and are answered once it is back.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
import weakref
from typing import Any, Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..errors import (ActorError, AskTimeout, MessageTooLarge, NodeUnavailable, Overloaded,
                      SupervisorNotFound, WorkerLost, WrongShard, error_from_wire)
from ..net.keys import CLIENT_HANDSHAKE_EVENTS, CurveKeys, client_keys, handshake_problem, uses_curve
from ..net.sockets import dealer
from ..protocol import wire
from ..protocol.shardmap import ShardMap

DEFAULT_TIMEOUT = 30.0
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
CONNECT_TIMEOUT = 10.0
# close() gives messages still queued (a tell just sent) this long to leave, then drops them
CLOSE_LINGER_MS = 500


# ---------------------------------------------------------------------------------------
# blocking client


class Ref:
    """A handle on one actor address, from a blocking :class:`Client`."""

    __slots__ = ("client", "type_name", "key")

    def __init__(self, client: "Client", type_name: str, key: str) -> None:
        self.client, self.type_name, self.key = client, type_name, key

    def ask(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Call ``method`` and wait for its result (or its error) until ``timeout``."""
        return self.client.ask(self.type_name, self.key, method, *args, timeout=timeout, **kwargs)

    def tell(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send ``method`` one-way and return at once (at-most-once delivery)."""
        self.client.tell(self.type_name, self.key, method, *args, **kwargs)

    def history(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """The actor's retained versions, oldest first: ``[{"version", "time"}]``; ``[]``
        if its type keeps no history (see ``history_window`` and ``actorsys/history.py``)."""
        return self.ask("$history", timeout=timeout)

    def rewind(self, version: "int | dict[str, Any] | None" = None, *, time: float | None = None,
               timeout: float | None = None) -> dict[str, int]:
        """Restore the actor to a version, or to its last version at or before ``time``
        (epoch seconds). Version 0 (or a time before the first version) is the actor
        before its first commit: rewinding there empties it. The rewind is a new version
        (rewind again to undo it); returns ``{"version": new version, "restored": the
        version restored}``. Only listed versions (and 0 while version 1 is kept) can be
        restored; anything else is ``BadRequest``. ``version`` may be a bookmark from
        :meth:`history`."""
        return self.ask("$rewind", version=_version_of(version), time=time, timeout=timeout)

    def destroy(self, *, timeout: float | None = None) -> dict[str, int]:
        """Delete the actor's state, storage, alarms and history (``{"deleted": keys}``);
        its next message starts it from nothing."""
        return self.ask("$destroy", timeout=timeout)

    def __repr__(self) -> str:
        return f"<Ref {self.type_name}/{self.key}>"


class _SlotConn:
    __slots__ = ("sock", "monitor", "poller")

    def __init__(self, ctx: zmq.Context, endpoint: str, keys: CurveKeys | None) -> None:
        self.sock = dealer(ctx, endpoint, keys)
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)

    def drain_monitor(self) -> bool:
        """Read pending monitor events; True if the connection dropped."""
        dropped = False
        mon = self.monitor
        while mon.getsockopt(_EVENTS) & _POLLIN:
            frames = mon.recv_multipart(zmq.NOBLOCK)
            try:
                dropped |= parse_monitor_message(frames)["event"] == zmq.EVENT_DISCONNECTED
            except Exception:
                pass
        return dropped

    def close(self, linger_ms: int = 0) -> None:
        try:
            self.sock.disable_monitor()
        except Exception:
            pass
        self.monitor.close(0)
        self.sock.close(linger_ms)


class _ThreadSockets:
    """One thread's sockets: ZeroMQ sockets must not be shared between threads.

    Held only by the thread's ``threading.local``, so they are closed when the thread
    ends (a thread-per-request server would otherwise leak six descriptors a thread).
    """

    __slots__ = ("router", "router_monitor", "tree", "slots", "endpoints", "closed", "__weakref__")

    def __init__(self, ctx: zmq.Context, endpoint: str, keys: CurveKeys | None) -> None:
        self.router = dealer(ctx, endpoint, keys)
        # failed handshakes with the router (tcp): a refused key is reported at once
        self.router_monitor = (self.router.get_monitor_socket(CLIENT_HANDSHAKE_EVENTS)
                               if uses_curve(endpoint) else None)
        self.tree: zmq.Socket | None = None
        self.slots: dict[int, _SlotConn] = {}
        self.endpoints: list[str] | None = None
        self.closed = False

    def close(self, linger_ms: int = 0) -> None:
        if self.closed:
            return
        self.closed = True
        for c in self.slots.values():
            c.close(linger_ms)
        self.slots.clear()
        if self.router_monitor is not None:
            try:
                self.router.disable_monitor()
            except zmq.ZMQError:
                pass
            self.router_monitor.close(0)
        self.router.close(0)
        if self.tree is not None:
            self.tree.close(0)

    def __del__(self) -> None:
        try:
            self.close(CLOSE_LINGER_MS)
        except Exception:
            pass


def _version_of(version: Any) -> Any:
    """A version number, from a number or a bookmark of ``history()``."""
    return version.get("version") if isinstance(version, dict) else version


def _check_list(type_name: str, start_after: str | None, limit: int) -> None:
    if not isinstance(type_name, str) or not (start_after is None or isinstance(start_after, str)):
        raise TypeError("list_actors takes a type name and start_after as strings")
    if type(limit) is not int or not 0 <= limit <= wire.MAX_LIST_LIMIT:
        raise ValueError(f"list_actors' limit is 0..{wire.MAX_LIST_LIMIT}, got {limit!r}")


def _first_keys(keys: list[str], limit: int) -> list[str]:
    """The first ``limit`` keys, in the byte order of their UTF-8 (LevelDB's order)."""
    keys.sort(key=lambda k: k.encode("utf-8"))
    return keys[:limit]


def _reply_to(sock: zmq.Socket, rid: int, until: float, monitor: zmq.Socket | None = None,
              on_event: Callable[[int], None] | None = None) -> list | None:
    """The reply with id ``rid`` on a control socket, or None at ``until`` (others are
    late replies to earlier requests, dropped). Events read from ``monitor`` (a socket
    monitor of ``sock``) are passed to ``on_event``, which may raise."""
    poller = None
    if monitor is not None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
    while True:
        remaining = until - time.monotonic()
        if remaining <= 0:
            return None
        if poller is None:
            if not sock.poll(remaining * 1000):
                return None
        else:
            ready = dict(poller.poll(remaining * 1000))
            if monitor in ready:
                assert monitor is not None and on_event is not None
                while monitor.getsockopt(_EVENTS) & _POLLIN:
                    try:
                        on_event(parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"])
                    except (ValueError, KeyError, IndexError):
                        continue
            if sock not in ready:
                continue
        try:
            msg = wire.unpack(sock.recv_multipart()[-1])
        except ActorError:
            continue
        if isinstance(msg, list) and len(msg) >= 3 and msg[1] == rid:
            return msg


class Client:
    """A blocking connection to a node; a context manager.

    Thread-safe: each thread gets its own sockets (closed when the thread ends), so
    threads ask concurrently. Call :meth:`close` when no thread is in the middle of an ask.
    ``key`` / ``server_key``: CURVE key files for a tcp node (see :func:`connect`).
    """

    def __init__(self, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 key: "str | os.PathLike[str] | None" = None,
                 server_key: "str | os.PathLike[str] | None" = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._keys = client_keys(key, server_key)
        self._ctx = zmq.Context()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all: weakref.WeakSet[_ThreadSockets] = weakref.WeakSet()
        self._ids = itertools.count(1)      # next() on itertools.count is atomic under the GIL
        self.max_message_bytes = 1 << 20
        self.tree_endpoint: str | None = None
        self.closed = False
        try:
            self.map = self._fetch_map(connect_timeout)
        except BaseException:
            self.close()
            raise

    def _sockets(self) -> _ThreadSockets:
        ts = getattr(self._local, "sockets", None)
        if ts is None:
            if self.closed:
                raise NodeUnavailable("client is closed")
            ts = _ThreadSockets(self._ctx, self.endpoint, self._keys)
            with self._lock:
                self._all.add(ts)
            self._local.sockets = ts
        return ts

    # -- control ------------------------------------------------------------------
    def _router_call(self, op: int, timeout: float, resend_every: float = 1.0) -> Any:
        ts = self._sockets()
        router = ts.router
        deadline = time.monotonic() + timeout
        problem: str | None = None

        def on_event(event: int) -> None:
            nonlocal problem
            final, problem = handshake_problem(event, self.endpoint, self._keys)
            if final:    # a refused key: ZeroMQ does not retry, so the client does not wait
                raise NodeUnavailable(problem)

        while True:
            rid = next(self._ids)
            try:
                router.send(wire.pack([op, rid]), zmq.NOBLOCK)
            except zmq.Again:
                pass    # no connection yet (a failed handshake drops it): wait, then resend
            msg = _reply_to(router, rid, min(deadline, time.monotonic() + resend_every),
                            ts.router_monitor, on_event)
            if msg is not None:
                if msg[0] == wire.OK:
                    return msg[2]
                raise error_from_wire(msg[2])
            if time.monotonic() >= deadline:
                why = f" ({problem})" if problem else ""
                raise NodeUnavailable(f"router at {self.endpoint} did not answer within "
                                      f"{timeout:g} s{why}")

    def _fetch_map(self, timeout: float) -> ShardMap:
        d = self._router_call(wire.MAP, timeout)
        m = ShardMap.from_wire(d)
        self.max_message_bytes = int(d.get("max_message_bytes", self.max_message_bytes))
        self.tree_endpoint = d.get("tree")
        return m

    def refresh_map(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Fetch the shard map from the router again."""
        self.map = self._fetch_map(timeout)

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """The node's status: ``{"processes": [{"role", "pid", "slot", ...}], ...}``."""
        return self._router_call(wire.STATUS, timeout, resend_every=timeout)

    def supervisor(self, name: str) -> "SupervisorRef":
        """A handle on the running supervisor ``name`` (OTP's runtime API)."""
        return SupervisorRef(self, name)

    def _tree_call(self, op: int, body: list[Any], timeout: float | None) -> Any:
        """One request to the supervision tree; not resent (start_child is not idempotent)."""
        if self.closed:
            raise NodeUnavailable("client is closed")
        if self.tree_endpoint is None:
            raise SupervisorNotFound("this node's config declares no supervisors")
        ts = self._sockets()
        if ts.tree is None:
            ts.tree = dealer(self._ctx, self.tree_endpoint, self._keys)
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        rid = next(self._ids)
        ts.tree.send(self._payload(wire.pack([op, rid, *body])), zmq.NOBLOCK)
        msg = _reply_to(ts.tree, rid, deadline)
        if msg is None:
            raise AskTimeout(f"the supervision tree did not answer within {timeout:g} s")
        if msg[0] == wire.OK:
            return msg[2]
        raise error_from_wire(msg[2])

    def ping_workers(self, timeout: float = 10.0) -> None:
        """Wait until every worker slot answers (raises NodeUnavailable at the deadline)."""
        deadline = time.monotonic() + timeout
        for slot in range(len(self.map.endpoints)):
            conn = self._slot(slot)
            while True:
                rid = next(self._ids)
                try:
                    conn.sock.send(wire.pack([wire.PING, rid]), zmq.NOBLOCK)
                    self._wait(conn, slot, rid, min(deadline, time.monotonic() + 0.5), "ping")
                    break
                except zmq.Again:     # no connection to the slot (a failed handshake drops it)
                    time.sleep(0.05)
                    if time.monotonic() >= deadline:
                        raise NodeUnavailable(
                            f"worker slot {slot} did not answer within {timeout:g} s") from None
                except (AskTimeout, WorkerLost):
                    if time.monotonic() >= deadline:
                        raise NodeUnavailable(
                            f"worker slot {slot} did not answer within {timeout:g} s") from None

    # -- data path -----------------------------------------------------------------
    def _slot(self, i: int) -> _SlotConn:
        ts = self._sockets()
        endpoints = self.map.endpoints
        if ts.endpoints is not endpoints:
            if ts.endpoints is not None and ts.endpoints != endpoints:
                for c in ts.slots.values():
                    c.close()
                ts.slots.clear()
            ts.endpoints = endpoints
        c = ts.slots.get(i)
        if c is None:
            c = ts.slots[i] = _SlotConn(self._ctx, endpoints[i], self._keys)
        return c

    def _wait(self, conn: _SlotConn, slot: int, rid: int, deadline: float, what: str) -> list:
        sock = conn.sock
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AskTimeout(f"{what}: no reply before the deadline")
            events = dict(conn.poller.poll(max(remaining * 1000, 1)))
            if sock in events:
                while sock.getsockopt(_EVENTS) & _POLLIN:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                    try:
                        msg = wire.unpack(frames[-1])
                        if msg[1] == rid:
                            return msg
                    except Exception:
                        continue
            if conn.monitor in events and conn.drain_monitor():
                raise WorkerLost(f"{what}: worker slot {slot} went away while the request was in "
                                 f"flight; it may or may not have been processed")

    def _payload(self, payload: bytes) -> bytes:
        if len(payload) > self.max_message_bytes:
            raise MessageTooLarge(f"message is {len(payload)} bytes; the node's max_message_bytes "
                                  f"is {self.max_message_bytes}")
        return payload

    def _request(self, op: int, type_name: str, key: str, method: str, args: tuple,
                 kwargs: dict, timeout: float | None) -> Any:
        if self.closed:
            raise NodeUnavailable("client is closed")
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        what = f"ask {type_name}/{key}.{method}" if op == wire.ASK else f"spawn {type_name}/{key}"
        exc: ActorError | None = None
        for _attempt in range(4):
            slot = self.map.slot_of(type_name, key)
            conn = self._slot(slot)
            conn.drain_monitor()  # drops seen before this send do not concern it
            rid = next(self._ids)
            if op == wire.ASK:
                payload = wire.pack([op, rid, type_name, key, method, list(args), kwargs])
            else:
                payload = wire.pack([op, rid, type_name, key])
            try:
                conn.sock.send(self._payload(payload), zmq.NOBLOCK)
            except zmq.Again:
                raise Overloaded(f"send queue to worker slot {slot} is full") from None
            msg = self._wait(conn, slot, rid, deadline, what)
            if msg[0] == wire.OK:
                return msg[2]
            exc = error_from_wire(msg[2])
            if not isinstance(exc, WrongShard):
                raise exc
            self.refresh_map(max(deadline - time.monotonic(), 0.1))
        assert exc is not None
        raise exc

    def ask(self, type_name: str, key: str, method: str, *args: Any, timeout: float | None = None,
            **kwargs: Any) -> Any:
        """Ask actor ``(type_name, key)`` to run ``method``; wait for the result."""
        return self._request(wire.ASK, type_name, key, method, args, kwargs, timeout)

    def tell(self, type_name: str, key: str, method: str, *args: Any, **kwargs: Any) -> None:
        """Send ``method`` one-way (at-most-once); returns at once."""
        if self.closed:
            raise NodeUnavailable("client is closed")
        slot = self.map.slot_of(type_name, key)
        payload = wire.pack([wire.TELL, 0, type_name, key, method, list(args), kwargs])
        try:
            self._slot(slot).sock.send(self._payload(payload), zmq.NOBLOCK)
        except zmq.Again:
            raise Overloaded(f"send queue to worker slot {slot} is full") from None

    def ref(self, type_name: str, key: str) -> Ref:
        """A reference to actor ``(type_name, key)``; it exists from its first message."""
        return Ref(self, type_name, key)

    def list_actors(self, type_name: str, start_after: str | None = None, limit: int = 1000, *,
                    timeout: float | None = None) -> list[str]:
        """Keys of the actors of ``type_name`` that have persisted data, in key order,
        after ``start_after``, at most ``limit`` (up to 10,000): pass the last key of one
        page as ``start_after`` of the next. Asks every worker slot. An unregistered type
        is ``UnknownActorType``."""
        _check_list(type_name, start_after, limit)
        if self.closed:
            raise NodeUnavailable("client is closed")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        keys: list[str] = []
        for slot in range(len(self.map.endpoints)):
            conn = self._slot(slot)
            conn.drain_monitor()
            rid = next(self._ids)
            conn.sock.send(wire.pack([wire.LIST, rid, type_name, start_after, limit]), zmq.NOBLOCK)
            msg = self._wait(conn, slot, rid, deadline, f"list {type_name}")
            if msg[0] != wire.OK:
                raise error_from_wire(msg[2])
            keys.extend(msg[2])
        return _first_keys(keys, limit)

    def spawn(self, type_name: str, key: str | None = None, *, timeout: float | None = None) -> Ref:
        """Activate an actor now (``on_start`` runs and commits) and return its ref.

        Without a key, a fresh unique key is made.
        """
        key = uuid.uuid4().hex if key is None else key
        self._request(wire.SPAWN, type_name, key, "", (), {}, timeout)
        return Ref(self, type_name, key)

    def close(self) -> None:
        """Close every thread's sockets (idempotent). Call it when no thread is mid-ask."""
        if self.closed:
            return
        self.closed = True
        with self._lock:
            for ts in list(self._all):
                ts.close(CLOSE_LINGER_MS)
            self._all.clear()
        self._ctx.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def connect(endpoint: str, *, timeout: float = DEFAULT_TIMEOUT,
            connect_timeout: float = CONNECT_TIMEOUT,
            key: "str | os.PathLike[str] | None" = None,
            server_key: "str | os.PathLike[str] | None" = None) -> Client:
    """Connect to the node whose router listens at ``endpoint``.

    ``timeout`` is the default deadline of every ask; ``connect_timeout`` bounds the
    wait for the router's shard map (raises :class:`~actorsys.NodeUnavailable`).
    For a tcp node with CURVE, ``key`` is this client's ``.key_secret`` file and
    ``server_key`` the node's public ``.key`` file (``actorsys keygen`` makes them;
    the node must list the client's public key in its ``authorized_keys``). A key file
    that cannot be used is a ``ValueError`` naming it; ipc endpoints ignore the keys.
    """
    return Client(endpoint, timeout=timeout, connect_timeout=connect_timeout, key=key,
                  server_key=server_key)


class SupervisorRef:
    """A running supervisor, from a blocking client: ``client.supervisor("root")``.

    The methods are OTP's; its ``{error, Reason}`` results are raised as exceptions:
    :class:`~actorsys.ChildNotFound`, :class:`~actorsys.AlreadyStarted`,
    :class:`~actorsys.AlreadyPresent`, :class:`~actorsys.ChildRunning`,
    :class:`~actorsys.StartFailed`, :class:`~actorsys.SupervisorNotFound`, and
    :class:`~actorsys.SupervisorError` for the rest.
    """

    __slots__ = ("client", "name")

    def __init__(self, client: Client, name: str) -> None:
        self.client, self.name = client, name

    def _call(self, command: str, arg: Any = None, timeout: float | None = None) -> Any:
        t = self.client.timeout if timeout is None else timeout
        return self.client._tree_call(wire.SUP, [self.name, command, arg, time.time() + t], t)

    def which_children(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """Every child in start order: ``{"id", "type", "status", "actor", "key", ...}``;
        ``status`` is ``running``, ``restarting`` or ``stopped``."""
        return self._call("which_children", timeout=timeout)

    def count_children(self, *, timeout: float | None = None) -> dict[str, int]:
        """``{"specs", "active", "supervisors", "workers"}`` as in OTP."""
        return self._call("count_children", timeout=timeout)

    def start_child(self, spec: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Add and start a child. ``spec`` is a child spec (``{"id", "actor", "key", ...}``),
        or for ``simple_one_for_one`` ``{"key", "args", "kwargs"}`` (extra start arguments
        after the template's; a fresh key if none). Returns the child's info, or for
        ``simple_one_for_one`` its key."""
        return self._call("start_child", spec, timeout)

    def terminate_child(self, child_id: str, *, timeout: float | None = None) -> None:
        """Stop a child within its shutdown; it stays as a stopped spec (a temporary or
        ``simple_one_for_one`` child, whose id is its key, is removed)."""
        self._call("terminate_child", child_id, timeout)

    def restart_child(self, child_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Start a stopped child again (ChildRunning if it runs)."""
        return self._call("restart_child", child_id, timeout)

    def delete_child(self, child_id: str, *, timeout: float | None = None) -> None:
        """Remove a stopped child's spec; its actor becomes an unsupervised actor."""
        self._call("delete_child", child_id, timeout)

    def __repr__(self) -> str:
        return f"<SupervisorRef {self.name}>"
