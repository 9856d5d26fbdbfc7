"""actorsys: Durable Objects for Python, built the Erlang way.

Every named object is a single-threaded actor with private durable state, living in a
pool of worker processes connected by ZeroMQ; supervisors restart whatever crashes and
the actor comes back from its last committed LevelDB snapshot.

The public surface is this module: :class:`Actor` to subclass, :class:`Node` to run a
node in-process, :func:`connect` / :func:`connect_async` to reach one (and
``client.supervisor(name)`` for a supervision tree's runtime API; ``client.proxy(cls,
key)`` for typed proxies, :class:`Proxy` and its kin), :func:`keygen` for CURVE key
pairs, and the errors. The layers below are listed in the README's "How it is
built"; a client process that imports this module loads neither LevelDB nor aiohttp.
"""
from .actor import Actor
from .client import (AsyncClient, AsyncRef, AsyncSupervisorRef, Client, Ref, SupervisorRef,
                     connect, connect_async)
from .config import NodeConfig, load_config
from .errors import (ActorError, ActorStopped, AlreadyPresent, AlreadyStarted, AskTimeout,
                     BadRequest, ChildNotFound, ChildRunning, ConfigError, Deadlock, LimitExceeded,
                     MessageTooLarge, NodeUnavailable, Overloaded, PartlyRun, RemoteError,
                     ShardUnavailable, StartFailed, StorageError, SupervisorError, SupervisorNotFound,
                     UnknownActorType, UnknownMethod, WorkerLost)
from .net.keys import keygen
from .node import Node
from .proxy import ActorProxy, AsyncProxy, Proxy, TellProxy

__all__ = [
    "Actor", "Node", "NodeConfig", "load_config",
    "connect", "connect_async", "Client", "AsyncClient", "Ref", "AsyncRef",
    "SupervisorRef", "AsyncSupervisorRef", "Proxy", "AsyncProxy", "ActorProxy", "TellProxy", "keygen",
    "ActorError", "RemoteError", "AskTimeout", "WorkerLost", "Overloaded", "UnknownActorType",
    "UnknownMethod", "BadRequest", "MessageTooLarge", "LimitExceeded", "StorageError",
    "NodeUnavailable", "ShardUnavailable",
    "ConfigError", "ActorStopped", "SupervisorError", "SupervisorNotFound", "ChildNotFound",
    "AlreadyStarted", "AlreadyPresent", "ChildRunning", "StartFailed",
    "Deadlock", "PartlyRun",
]
__version__ = "0.1.0"
