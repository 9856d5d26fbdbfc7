"""The mypy plugin that types proxies' handler calls: in the project's mypy config,

```toml
[tool.mypy]
plugins = ["actorsys.mypy"]
```

Python's type system has no way to say "the methods of ``C``, each with another return
type" (no mapped types), so without the plugin ``proxy.add`` is ``Callable[..., Any]``:
the proxy's own API (``client.proxy(cls, key, type_name=...)``, ``with_options``,
``tell``) is checked, the handler calls are not. With it, ``proxy.name`` on a
``Proxy[C]``, ``AsyncProxy[C]``, ``ActorProxy[C]`` or ``TellProxy[C]`` is ``C.name``'s
own signature, ``self`` dropped, returning:

* ``Proxy``: the handler's return type, an ``async def`` handler's (any awaitable's)
  unwrapped: ``client.proxy(Counter, k).add(5)`` is an ``int``;
* ``AsyncProxy``, ``ActorProxy``: ``Awaitable[`` that ``]`` (at run time a future);
* ``TellProxy`` (``proxy.tell``): ``None``.

So argument count, names and types are checked, and the result is typed. A name that is
not a handler is reported (``attr-defined``) as the proxy would refuse it at run time:
one ``C`` lacks, a private one, a lifecycle hook (``on_start`` ...), ``Actor``'s own API
(``stop``, ``ref`` ...), a property, static or class method, or attribute. Overloaded
handlers keep their overloads.

What it cannot check: that the node registers ``C`` under the type name sent (a
configuration matter: ``UnknownActorType`` at run time); that the arguments and result
survive msgpack (a ``set`` argument type-checks and fails when sent); that an
``ActorProxy`` ask is awaited in an ``async def`` handler (a synchronous handler's ask
raises ``TypeError`` at run time); and a ``C`` that is ``Any``, a type variable or a
union leaves the calls unchecked. Other type checkers run no mypy plugins: for them the
calls stay ``Callable[..., Any]``.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from mypy.errorcodes import ATTR_DEFINED
from mypy.maptype import map_instance_to_supertype
from mypy.nodes import Decorator, FuncDef, OverloadedFuncDef
from mypy.plugin import AttributeContext, Plugin
from mypy.subtypes import find_member
from mypy.types import (AnyType, CallableType, Instance, NoneType, Overloaded, ProperType, Type,
                        TypeOfAny, get_proper_type)

from .proxy import reserved_refusal

#: the class that defines the proxies' ``__getattr__``: mypy names attributes by it
_BASE = "actorsys.proxy.ProxyBase"
#: what a call returns, by proxy class
_RESULT, _AWAITABLE, _NONE = "result", "awaitable", "none"
_KINDS = {"actorsys.proxy.Proxy": _RESULT, "actorsys.proxy.AsyncProxy": _AWAITABLE,
          "actorsys.proxy.ActorProxy": _AWAITABLE, "actorsys.proxy.TellProxy": _NONE}


class ProxyPlugin(Plugin):
    """Types ``proxy.name`` on the proxies of :mod:`actorsys.proxy` (the module docstring)."""

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        owner, _, name = fullname.rpartition(".")
        if owner == _BASE and not name.startswith("__"):
            return partial(_handler_type, name)
        return None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return ProxyPlugin


def _handler_type(name: str, ctx: AttributeContext) -> Type:
    """The type of ``proxy.name``: the handler's signature, its result as the proxy's kind
    returns it; an error for a name that is not a handler."""
    proxy = ctx.type
    if not isinstance(proxy, Instance) or not proxy.args:
        return ctx.default_attr_type
    kind = next((_KINDS[i.fullname] for i in proxy.type.mro if i.fullname in _KINDS), None)
    target = get_proper_type(proxy.args[0])
    if kind is None or not isinstance(target, Instance):
        return ctx.default_attr_type          # (Any, a type variable, a union: unchecked)
    why = _refusal(target, name)
    if why is not None:
        ctx.api.fail(why, ctx.context, code=ATTR_DEFINED)
        return AnyType(TypeOfAny.from_error)
    member = get_proper_type(find_member(name, target, target))
    if isinstance(member, CallableType):
        return _returning(member, kind, ctx)
    if isinstance(member, Overloaded):
        return Overloaded([_returning(item, kind, ctx) for item in member.items])
    return ctx.default_attr_type              # (a decorator made it something else)


def _refusal(target: Instance, name: str) -> str | None:
    """Why ``name`` is not a handler of ``target``'s class (None: it is), by the rules of
    :func:`actorsys.proxy.handlers_of`."""
    info = target.type
    what = f'"{name}" of "{info.name}"'
    why = reserved_refusal(what, name)
    if why is not None:
        return why
    sym = info.get(name)
    node = sym.node if sym is not None else None
    if node is None:
        return None if info.fallback_to_any else f'"{info.name}" has no handler "{name}"'
    func = node.func if isinstance(node, Decorator) else node
    if isinstance(func, (FuncDef, OverloadedFuncDef)):
        decorated_property = isinstance(node, Decorator) and node.var.is_property
        if not (func.is_static or func.is_class or func.is_property or decorated_property):
            return None
    return (f"{what} is not a handler (only public methods are, not properties, static or "
            f"class methods, or attributes)")


def _returning(fn: CallableType, kind: str, ctx: AttributeContext) -> CallableType:
    """``fn`` returning what a call of the proxy's kind returns."""
    value = _awaited(get_proper_type(fn.ret_type)) or fn.ret_type
    if kind == _RESULT:
        ret: Type = value
    elif kind == _AWAITABLE:
        ret = ctx.api.named_generic_type("typing.Awaitable", [value])
    else:
        ret = NoneType()
    return fn.copy_modified(ret_type=ret)


def _awaited(ret: ProperType) -> Type | None:
    """What awaiting a value of type ``ret`` gives, if it is awaitable (an ``async def``'s
    coroutine: the worker awaits any awaitable a handler returns)."""
    if not isinstance(ret, Instance):
        return None
    awaitable = next((i for i in ret.type.mro if i.fullname == "typing.Awaitable"), None)
    if awaitable is None:
        return None
    return map_instance_to_supertype(ret, awaitable).args[0]
