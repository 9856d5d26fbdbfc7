"""actorsys: Durable Objects for Python, built the Erlang way.

Every named object is a single-threaded actor with private durable state, living in a
pool of worker processes connected by ZeroMQ; supervisors restart whatever crashes and
the actor comes back from its last committed LevelDB snapshot.

The public surface is this module: :class:`Actor` to subclass (:class:`Connection`: a
WebSocket or a Python subscription, as its handlers see it), :class:`Node` to run a node
in-process, :func:`connect` / :func:`connect_async` to reach one (and
``client.supervisor(name)`` for a supervision tree's runtime API; ``client.proxy(cls,
key)`` for typed proxies, :class:`Proxy` and its kin; ``client.subscribe(ref)`` for what
an actor sends its connections), :func:`keygen` for CURVE key pairs, and the errors. The
layers below are listed in docs/architecture.md ("How it is built"); a client process
that imports this module loads neither LevelDB nor aiohttp.

Its names are loaded at first use (PEP 562): ``import actorsys`` itself imports nothing,
so what lives inside the package and is loaded on its own stays light: the pytest plugin
:mod:`actorsys.testing.plugin`, which pytest loads into every run once actorsys is
installed, costs that run no client, node or ZeroMQ import until a test asks for a node.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .actor import Actor, Connection
    from .client import (AsyncClient, AsyncRef, AsyncSupervisorRef, BlockingSubscription, Client,
                         Ref, Subscription, SupervisorRef, connect, connect_async)
    from .config import NodeConfig, load_config
    from .errors import (ActorError, ActorStopped, AlreadyPresent, AlreadyStarted, AskTimeout,
                         BadArguments, BadRequest, ChildNotFound, ChildRunning, ConfigError, Deadlock,
                         Forbidden, LimitExceeded, MessageTooLarge, NodeUnavailable, NotTesting,
                         Overloaded, PartlyRun,
                         RemoteError, ShardUnavailable, StartFailed, StorageError, SubscriptionClosed,
                         SupervisorError, SupervisorNotFound, UnknownActorType, UnknownMethod,
                         WorkerLost, WrongShard)
    from .net.keys import keygen
    from .node import Node
    from .proxy import ActorProxy, AsyncProxy, Proxy, TellProxy

__all__ = [
    "Actor", "Connection", "Node", "NodeConfig", "load_config",
    "connect", "connect_async", "Client", "AsyncClient", "Ref", "AsyncRef",
    "SupervisorRef", "AsyncSupervisorRef", "Proxy", "AsyncProxy", "ActorProxy", "TellProxy", "keygen",
    "Subscription", "BlockingSubscription",
    "ActorError", "RemoteError", "AskTimeout", "WorkerLost", "Overloaded", "UnknownActorType",
    "UnknownMethod", "BadRequest", "BadArguments", "NotTesting", "Forbidden", "MessageTooLarge",
    "LimitExceeded",
    "StorageError", "NodeUnavailable", "ShardUnavailable",
    "ConfigError", "ActorStopped", "SupervisorError", "SupervisorNotFound", "ChildNotFound",
    "AlreadyStarted", "AlreadyPresent", "ChildRunning", "StartFailed",
    "Deadlock", "PartlyRun", "SubscriptionClosed", "WrongShard",
]
__version__ = "0.1.0"

#: where each public name lives (the errors: :mod:`actorsys.errors`)
_HOMES = {"Actor": ".actor", "Connection": ".actor", "Node": ".node", "NodeConfig": ".config",
          "load_config": ".config", "keygen": ".net.keys",
          **{name: ".proxy" for name in ("Proxy", "AsyncProxy", "ActorProxy", "TellProxy")},
          **{name: ".client" for name in ("connect", "connect_async", "Client", "AsyncClient",
                                          "Ref", "AsyncRef", "SupervisorRef", "AsyncSupervisorRef",
                                          "Subscription", "BlockingSubscription")}}

if not TYPE_CHECKING:     # (mypy reads the imports above: exact types, no Any fallback)
    def __getattr__(name: str) -> Any:
        """A public name, imported at its first use and kept; a submodule
        (``actorsys.errors``) likewise."""
        if name in __all__:
            value = getattr(importlib.import_module(_HOMES.get(name, ".errors"), __name__), name)
        elif not name.startswith("__"):
            try:
                value = importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
                raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
