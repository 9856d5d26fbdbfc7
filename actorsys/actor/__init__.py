"""Layer: the actor programming model. What a user subclasses and what a handler sees.

May import: ``actorsys.errors``, ``actorsys.protocol``, ``actorsys.config``. The runtime
(``actorsys.runtime``) drives actors through the attributes documented on
:class:`Actor`; nothing here imports storage, the runtime or a socket.

* :mod:`.actor`: :class:`Actor`, its hooks, and :func:`handlers_of`.
* :mod:`.connection`: :class:`Connection`, a WebSocket as the actor sees it.
* :mod:`.classes`: importing the actor classes a config registers.
"""
from .actor import Actor, handlers_of
from .connection import Connection

__all__ = ["Actor", "Connection", "handlers_of"]
