"""Typed proxies: an actor's handlers called as methods, ``client.proxy(Counter, "visits").add(5)``.

Layer 0: imports nothing of ours. Both sides build on it: the clients
(``Client.proxy``, ``AsyncClient.proxy``) and the actor model (``Actor.proxy``), each with
its own :class:`Channel` (what sends), so one set of rules serves all three.

**What an actor class exposes** is decided here, once, for the worker's dispatch and for
proxies alike (:func:`handlers_of`): its public methods, plain functions of the class or
of a base (mixins included), less the names of :class:`~actorsys.Actor`'s own API
(:data:`HOOKS`, the lifecycle hooks the runtime calls, and :data:`BASE_API`).

**A proxy** is an address, ``(type_name, key)``, seen through a class:

* The class gives names and signatures only. It is never instantiated and none of its
  code runs (its signatures are read, annotations left unevaluated), so a client imports
  the actor's module for its type alone; any class with the same methods will do, a
  ``Protocol`` describing the actor included.
* The type name sent is ``type_name=`` if given, else ``cls.__name__``: it must be the
  name the node's ``[actors]`` table registers the class under (``Counter = "app:Counter"``).
* ``proxy.name`` for a name that is not a handler (private, ``$`` system methods, a
  lifecycle hook, ``Actor``'s own API, a property or static method, a name the class
  lacks) raises ``AttributeError`` saying which, before anything is sent; a call whose
  arguments do not bind to the handler's signature raises ``TypeError`` (as the worker's
  would), also before sending. The node still has the last word (``UnknownMethod`` if
  its class differs).
* Every keyword goes to the handler: the deadline and retries are options of the proxy,
  ``proxy.with_options(timeout=2, retry=True)`` (a new proxy; the old one is unchanged).
* ``proxy.tell.name(...)`` sends one way and returns ``None``.
* The proxy's own names, ``tell`` and ``with_options``, hide handlers so named: reach
  those through a ref (``client.ref(type, key).ask("tell")``).

The three kinds differ only in what a call returns: :class:`Proxy` (blocking client) the
handler's result; :class:`AsyncProxy` (asyncio client) and :class:`ActorProxy` (inside a
handler) a future, sent at the call, to await. Type checkers see ``proxy.name`` as
``Callable[..., Any]``; with the mypy plugin :mod:`actorsys.mypy` they see the handler's
own signature (see there for what it checks).
"""
from __future__ import annotations

import inspect
import math
from functools import lru_cache
from typing import Any, Callable, Generic, Protocol, TypeVar

#: the hooks the runtime calls on an actor (never a caller)
HOOKS = frozenset({"on_start", "on_stop", "on_alarm", "on_connect", "on_message", "on_disconnect"})
#: the rest of ``Actor``'s own API: what a handler calls on ``self``, not a handler
BASE_API = frozenset({"stop", "destroy", "set_alarm", "alarms", "cancel_alarm", "broadcast",
                      "connections", "ref", "proxy", "self_ref", "reentrant", "state", "storage"})
#: names that are never handlers: ``Actor``'s every public name (a unit test holds them equal)
RESERVED = HOOKS | BASE_API

C = TypeVar("C")


def handlers_of(cls: type) -> dict[str, Callable[..., Any]]:
    """The handlers of an actor class by name: its public functions and its bases'
    (mixins' included), a subclass's definition winning; none of :data:`RESERVED`; a
    name a subclass rebinds to something else (an attribute, a property) is none."""
    out: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in RESERVED:
                continue                  # (all of Actor's own names are one or the other)
            if isinstance(value, (staticmethod, classmethod, property)):
                continue
            if inspect.isfunction(value):
                out[name] = value
            else:
                out.pop(name, None)
    return out


def reserved_refusal(what: str, name: str) -> str | None:
    """Why ``name`` (``what``, for the message) is never a handler whatever the class
    defines: private, a lifecycle hook, or Actor's own API; None otherwise. The run-time
    proxies and the mypy plugin (:mod:`actorsys.mypy`) both refuse by it."""
    if name.startswith("_"):
        return f"{what} is private: a proxy calls public handlers only"
    if name in HOOKS:
        return f"{what} is a lifecycle hook: the runtime calls it, a caller cannot"
    if name in BASE_API:
        return f"{what} is part of Actor's own API, not a handler"
    return None


def refusal(cls: type, name: str) -> str:
    """Why ``name`` is not a handler of ``cls`` that a caller may call (for a name that
    :func:`handlers_of` does not list)."""
    what = f"{cls.__name__}.{name}"
    if name.startswith("$"):
        return (f"{name} is a system method, not a handler: use the ref's "
                f"history(), inspect(), rewind(), destroy()")
    why = reserved_refusal(what, name)
    if why is not None:
        return why
    if hasattr(cls, name):
        return f"{what} is not a handler (only public methods are, not properties, " \
               f"static or class methods, or attributes)"
    known = ", ".join(sorted(handlers_of(cls))) or "none"
    return f"{cls.__name__} has no handler {name!r} (its handlers: {known})"


def _interface(cls: type) -> dict[str, inspect.Signature | None]:
    """Each handler of ``cls`` with its signature as a caller sees it: ``self`` dropped,
    no return annotation (what a call returns depends on the proxy); None: it has none
    Python can read, and any arguments are sent. Read once per class."""
    return _read(cls)


@lru_cache(maxsize=1024)
def _read(cls: type) -> dict[str, inspect.Signature | None]:
    out: dict[str, inspect.Signature | None] = {}
    for name, fn in handlers_of(cls).items():
        try:
            sig = inspect.signature(fn, follow_wrapped=False)   # (a wrapper's own, as called)
        except (TypeError, ValueError):
            out[name] = None
            continue
        params = list(sig.parameters.values())
        if params and params[0].kind in (inspect.Parameter.POSITIONAL_ONLY,
                                         inspect.Parameter.POSITIONAL_OR_KEYWORD):
            params = params[1:]                                  # self
        out[name] = sig.replace(parameters=params, return_annotation=inspect.Signature.empty)
    return out


def address(cls: Any, key: Any, type_name: Any = None) -> tuple[str, str]:
    """The address a proxy of ``cls`` for ``key`` sends to, ``(type_name, key)``, checked:
    ``type_name`` if given, else the class's ``__name__`` (``TypeError`` for a non-class,
    a key or type name that is not a string)."""
    if not isinstance(cls, type):
        raise TypeError(f"a proxy is made from an actor class, not {cls!r:.100}")
    if type_name is None:
        type_name = cls.__name__
    if type(type_name) is not str or not type_name:
        raise TypeError(f"type_name is a non-empty string, got {type_name!r:.100}")
    if type(key) is not str:
        raise TypeError(f"an actor key is a string, got {type(key).__name__}")
    return type_name, key


def address_of(target: Any) -> tuple[str, str]:
    """The actor address ``target`` names: a proxy's, a ref's (any object with string
    ``type_name`` and ``key``), or a ``(type_name, key)`` pair; ``TypeError`` otherwise."""
    if isinstance(target, ProxyBase):
        ch = target._channel      # noqa: SLF001 (this module's own class)
        return ch.type_name, ch.key
    if isinstance(target, tuple) and len(target) == 2:
        type_name, key = target
    else:
        type_name, key = getattr(target, "type_name", None), getattr(target, "key", None)
    if type(type_name) is not str or not type_name or type(key) is not str:
        raise TypeError(f"an actor is named by a ref, a proxy or a (type_name, key) pair of "
                        f"strings, not {target!r:.100}")
    return type_name, key


class Channel(Protocol):
    """What a proxy sends through: one actor address, with its arguments passed whole (so
    a handler's own ``timeout`` keyword is the handler's). The clients' adapters and the
    runtime's ``self.ref`` implement it."""

    @property
    def type_name(self) -> str: ...

    @property
    def key(self) -> str: ...

    def send_ask(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 timeout: float | None = None, retry: bool | None = None) -> Any:
        """Ask ``method``: the result (blocking) or a future (asyncio, inside a handler).
        ``timeout``/``retry`` None: the sender's defaults."""

    def send_tell(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Send ``method`` one way."""


def _check_options(timeout: Any, retry: Any) -> None:
    if timeout is not None and (type(timeout) not in (int, float) or not timeout > 0
                                or math.isinf(timeout)):
        raise ValueError(f"timeout is a positive number of seconds, got {timeout!r:.100}")
    if retry is not None and type(retry) is not bool:
        raise TypeError(f"retry is True or False, got {retry!r:.100}")


class ProxyBase(Generic[C]):
    """An actor address seen through class ``C`` (see the module docstring): its handlers
    are attributes. Subclasses say what a call does (:meth:`_send`)."""

    __slots__ = ("_cls", "_channel", "_timeout", "_retry")

    def __init__(self, cls: type[C], channel: Channel, *, timeout: float | None = None,
                 retry: bool | None = None) -> None:
        if not isinstance(cls, type):
            raise TypeError(f"a proxy is made from an actor class, not {cls!r:.100}")
        _check_options(timeout, retry)
        self._cls, self._channel, self._timeout, self._retry = cls, channel, timeout, retry

    def _send(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._channel.send_ask(method, args, kwargs, self._timeout, self._retry)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):     # (what Python and tools probe for: copy, pickle, IPython)
            raise AttributeError(name)
        # (not self._cls: before __init__ has run, as in copy, that would come back here)
        cls = object.__getattribute__(self, "_cls")
        interface = _interface(cls)
        if name not in interface:
            raise AttributeError(refusal(cls, name))
        sig, send = interface[name], self._send

        def call(*args: Any, **kwargs: Any) -> Any:
            if sig is not None:
                try:
                    sig.bind(*args, **kwargs)
                except TypeError as exc:
                    raise TypeError(f"{cls.__name__}.{name}(): {exc}") from None
            return send(name, args, kwargs)

        call.__name__, call.__qualname__ = name, f"{cls.__name__}.{name}"
        call.__doc__ = getattr(cls, name).__doc__
        if sig is not None:
            call.__signature__ = sig    # type: ignore[attr-defined]
        return call

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *_interface(self._cls)})

    def __repr__(self) -> str:
        ch = self._channel
        return f"<{type(self).__name__} {self._cls.__name__} {ch.type_name}/{ch.key}>"


class _Asking(ProxyBase[C]):
    """The proxies whose calls ask: ``tell`` gives the one-way view of the same address."""

    __slots__ = ()

    @property
    def tell(self) -> TellProxy[C]:
        """The same address, one way: ``proxy.tell.add(5)`` sends and returns None (tells
        from a handler leave when its turn commits)."""
        return TellProxy(self._cls, self._channel)


class Proxy(_Asking[C]):
    """From a blocking client (``client.proxy(Counter, key)``): ``proxy.add(5)`` waits for
    the result (or raises the error) within the client's default deadline."""

    __slots__ = ()

    def with_options(self, *, timeout: float | None = None, retry: bool | None = None) -> Proxy[C]:
        """The same address with other options (None: keep this proxy's): ``timeout``, the
        deadline of each call, ``retry``, resend after ``WorkerLost`` (see ``Ref.ask``)."""
        return Proxy(self._cls, self._channel, timeout=self._timeout if timeout is None else timeout,
                     retry=self._retry if retry is None else retry)


class AsyncProxy(_Asking[C]):
    """From an asyncio client (``aclient.proxy(Counter, key)``): ``proxy.add(5)`` sends at
    the call and returns a future; ``await`` it for the result."""

    __slots__ = ()

    def with_options(self, *, timeout: float | None = None,
                     retry: bool | None = None) -> AsyncProxy[C]:
        """See :meth:`Proxy.with_options`."""
        return AsyncProxy(self._cls, self._channel,
                          timeout=self._timeout if timeout is None else timeout,
                          retry=self._retry if retry is None else retry)


class ActorProxy(_Asking[C]):
    """Inside a handler (``self.proxy(Other, key)``): calls are ``self.ref(...).ask``, so
    ``await self.proxy(Other, k).add(5)`` in an ``async def`` handler; in a synchronous one
    a call raises ``TypeError`` (use ``proxy.tell.add(5)``, which leaves when the turn
    commits)."""

    __slots__ = ()

    def with_options(self, *, timeout: float | None = None) -> ActorProxy[C]:
        """The same address with another deadline per call (None: keep this proxy's). No
        ``retry``: an ask from a handler is sent once (see docs/concepts/clients.md,
        "Deadlines")."""
        return ActorProxy(self._cls, self._channel,
                          timeout=self._timeout if timeout is None else timeout)


class TellProxy(ProxyBase[C]):
    """``proxy.tell``: every call sends one way and returns None."""

    __slots__ = ()

    def _send(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._channel.send_tell(method, args, kwargs)
