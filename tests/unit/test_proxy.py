"""Typed proxies' pure logic (``actorsys/proxy.py``): which names are handlers, what is
refused before sending and how, the arguments and options a call hands its channel, the
type name rule. A recording channel stands in for the senders here; tests/node/test_proxies.py
sends through the real ones."""
from __future__ import annotations

import copy
import inspect
from typing import Any, Protocol

import pytest

import actorsys
from actorsys.actor import handlers_of
from actorsys.proxy import (BASE_API, HOOKS, RESERVED, ActorProxy, AsyncProxy, Proxy, TellProxy,
                            address)


class Recording:
    """A channel that records what a proxy hands it and answers asks with ``"sent"``."""

    def __init__(self, type_name: str = "Counter", key: str = "k") -> None:
        self.type_name, self.key = type_name, key
        self.sent: list[tuple[Any, ...]] = []

    def send_ask(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 timeout: float | None = None, retry: bool | None = None) -> Any:
        self.sent.append(("ask", method, args, kwargs, timeout, retry))
        return "sent"

    def send_tell(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.sent.append(("tell", method, args, kwargs))


class Mixin:
    def mixed(self) -> str:
        return "mixed"


class Counter(Mixin, actorsys.Actor):
    """Never instantiated here: ``__init__`` and ``__init_subclass__`` would say so."""

    def __init__(self) -> None:
        raise AssertionError("a proxy made an instance of its class")

    def add(self, by: int = 1) -> int:
        """Add ``by``."""
        return by

    async def later(self, by: "NotDefinedAnywhere") -> int:    # noqa: F821 (never evaluated)
        return 0

    def wait(self, timeout: float, retry: bool = False) -> None:
        pass

    def _private(self) -> None:
        pass

    def on_start(self) -> None:
        pass

    @property
    def prop(self) -> int:
        return 1

    @staticmethod
    def static() -> None:
        pass

    level = 3


def test_reserved_names_are_exactly_the_actor_base_classs_public_names():
    public = {n for n in dir(actorsys.Actor) if not n.startswith("_")} | {"state", "storage"}
    assert RESERVED == public, \
        f"proxy.RESERVED must list Actor's API: missing {public - RESERVED}, extra {RESERVED - public}"
    assert HOOKS <= RESERVED and BASE_API <= RESERVED and not HOOKS & BASE_API


def test_handlers_of_keeps_the_workers_rule():
    class Sub(Counter):
        level = 4

        def add(self, by: int = 2) -> int:       # an override wins
            return by

        prop = 5                                  # (a subclass rebinding a name: not a handler)

    assert sorted(handlers_of(Counter)) == ["add", "later", "mixed", "wait"]
    assert handlers_of(Sub)["add"] is Sub.__dict__["add"]
    assert handlers_of(actorsys.Actor) == {}, "none of Actor's own methods is a handler"


@pytest.mark.parametrize("name, why", [
    ("nope", "Counter has no handler 'nope' (its handlers: add, later, mixed, wait)"),
    ("on_start", "Counter.on_start is a lifecycle hook"),
    ("on_alarm", "Counter.on_alarm is a lifecycle hook"),
    ("on_connect", "Counter.on_connect is a lifecycle hook"),
    ("stop", "Counter.stop is part of Actor's own API"),
    ("ref", "Counter.ref is part of Actor's own API"),
    ("state", "Counter.state is part of Actor's own API"),
    ("_private", "Counter._private is private"),
    ("$history", "$history is a system method"),
    ("prop", "Counter.prop is not a handler"),
    ("static", "Counter.static is not a handler"),
    ("level", "Counter.level is not a handler"),
])
def test_a_name_that_is_not_a_handler_is_refused_before_sending(name, why):
    ch = Recording()
    proxy = Proxy(Counter, ch)
    with pytest.raises(AttributeError) as err:
        getattr(proxy, name)
    assert str(err.value).startswith(why), f"expected {why!r}..., got {err.value}"
    with pytest.raises(AttributeError):
        getattr(proxy.tell, name)
    assert not hasattr(proxy, name)
    assert ch.sent == [], "nothing may be sent for a refused name"


def test_a_call_hands_the_channel_its_arguments_whole_and_every_keyword_is_the_handlers():
    ch = Recording()
    proxy = Proxy(Counter, ch)
    assert proxy.add(5) == "sent" and proxy.add(by=6) == "sent" and proxy.mixed() == "sent"
    assert proxy.wait(timeout=2.5, retry=True) == "sent"
    assert ch.sent == [("ask", "add", (5,), {}, None, None), ("ask", "add", (), {"by": 6}, None, None),
                       ("ask", "mixed", (), {}, None, None),
                       ("ask", "wait", (), {"timeout": 2.5, "retry": True}, None, None)], \
        "a handler's own timeout/retry keywords go to the handler, not the ask"


def test_arguments_that_do_not_fit_the_signature_are_refused_before_sending():
    ch = Recording()
    proxy = Proxy(Counter, ch)
    with pytest.raises(TypeError, match=r"Counter\.add\(\): too many positional arguments"):
        proxy.add(1, 2)
    with pytest.raises(TypeError, match=r"Counter\.add\(\): got an unexpected keyword argument 'bye'"):
        proxy.add(bye=1)
    with pytest.raises(TypeError, match=r"Counter\.wait\(\): missing a required argument: 'timeout'"):
        proxy.tell.wait()
    assert ch.sent == []


def test_tell_sends_one_way_and_returns_none():
    ch = Recording()
    proxy = Proxy(Counter, ch).with_options(timeout=3)
    assert proxy.tell.add(2) is None
    assert isinstance(proxy.tell, TellProxy)
    assert ch.sent == [("tell", "add", (2,), {})]


def test_with_options_makes_a_new_proxy_and_checks_the_options():
    ch = Recording()
    plain = Proxy(Counter, ch)
    fast = plain.with_options(timeout=2)
    both = fast.with_options(retry=True)
    plain.add(), fast.add(), both.add()
    assert [s[4:] for s in ch.sent] == [(None, None), (2, None), (2, True)], \
        "each proxy keeps its own options; a later with_options keeps the ones not given"
    assert type(both) is Proxy and type(AsyncProxy(Counter, ch).with_options(timeout=1)) is AsyncProxy
    assert type(ActorProxy(Counter, ch).with_options(timeout=1)) is ActorProxy
    for bad in (0, -1, float("inf"), float("nan"), "2", True):
        with pytest.raises((TypeError, ValueError), match="timeout"):
            plain.with_options(timeout=bad)
    with pytest.raises(TypeError, match="retry"):
        plain.with_options(retry=1)   # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ActorProxy(Counter, ch).with_options(retry=True)   # type: ignore[call-arg]


def test_the_type_name_is_the_given_one_else_the_class_name():
    assert address(Counter, "k") == ("Counter", "k")
    assert address(Counter, "k", "app.Tally") == ("app.Tally", "k")
    with pytest.raises(TypeError, match="actor class"):
        address("Counter", "k")
    with pytest.raises(TypeError, match="key is a string"):
        address(Counter, 7)
    with pytest.raises(TypeError, match="type_name"):
        address(Counter, "k", "")


def test_the_class_gives_names_and_signatures_only():
    """No instance, no annotation evaluated (``later``'s names a type that exists nowhere);
    a Protocol that describes the actor serves as well as the class."""
    ch = Recording()
    proxy = Proxy(Counter, ch)
    assert proxy.later(1) == "sent"
    assert str(inspect.signature(proxy.add)) == "(by: 'int' = 1)"
    assert proxy.add.__doc__ == "Add ``by``." and proxy.add.__qualname__ == "Counter.add"
    assert {"add", "later", "mixed", "wait", "tell", "with_options"} <= set(dir(proxy)), \
        "dir() (a REPL's completion) lists the handlers"
    assert repr(proxy) == "<Proxy Counter Counter/k>"

    class CounterAPI(Protocol):
        def add(self, by: int = 1) -> int: ...

    described = Proxy(CounterAPI, Recording("Counter", "k2"))
    assert described.add(by=2) == "sent"
    with pytest.raises(AttributeError, match="CounterAPI has no handler 'get'"):
        described.get()


def test_a_proxy_copies_and_tools_probing_it_get_attribute_errors():
    proxy = Proxy(Counter, Recording())
    twin = copy.copy(proxy)
    assert twin.add(1) == "sent"
    assert not hasattr(proxy, "__array__") and not hasattr(proxy, "_ipython_display_")
