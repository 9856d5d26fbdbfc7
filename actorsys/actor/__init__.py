"""Layer: the actor programming model. What a user subclasses and what a handler sees.

May import: ``actorsys.errors``, ``actorsys.protocol``, ``actorsys.config``,
``actorsys.proxy`` (which names of a class are handlers, and typed proxies). Nothing here
imports storage, the runtime or a socket, not even for type checking: an actor reaches
its runtime only through the interfaces of :mod:`.host`, which the runtime
(``actorsys.runtime``) implements.

* :mod:`.actor`: :class:`Actor`, its hooks, :func:`incarnate` (how the runtime makes an
  instance), and :func:`handlers_of` (from :mod:`actorsys.proxy`, where callers read
  the same rule).
* :mod:`.connection`: :class:`Connection`, a WebSocket as the actor sees it.
* :mod:`.host`: :class:`ActorHost`, :class:`StorageAPI`, :class:`ActorRef`: what an actor
  may ask of its runtime.
* :mod:`.classes`: importing the actor classes a config registers.
"""
from .actor import Actor, handlers_of, incarnate
from .connection import Connection
from .host import ActorHost, ActorRef, StorageAPI

__all__ = ["Actor", "ActorHost", "ActorRef", "Connection", "StorageAPI", "handlers_of", "incarnate"]
