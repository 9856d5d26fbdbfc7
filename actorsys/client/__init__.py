"""Layer: the client. What any Python process imports to reach a node's actors.

May import: ``actorsys.errors``, ``actorsys.protocol``, ``actorsys.config``,
``actorsys.net``. Never LevelDB (``storage``), the worker (``runtime``) or aiohttp
(``gateway``): a client process loads none of them.

* :mod:`.transport`: :class:`AsyncTransport`, the one data path (shard map, one socket
  per worker slot, pending asks with deadlines, worker-loss monitors, retries).
* :mod:`.aio`: :func:`connect_async`, :class:`AsyncClient`, :class:`AsyncRef`.
* :mod:`.blocking`: :func:`connect`, :class:`Client`, :class:`Ref`.
"""
from .aio import AsyncClient, AsyncRef, AsyncSupervisorRef, connect_async
from .blocking import CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Client, Ref, SupervisorRef, connect

__all__ = ["AsyncClient", "AsyncRef", "AsyncSupervisorRef", "CONNECT_TIMEOUT", "Client",
           "DEFAULT_TIMEOUT", "Ref", "SupervisorRef", "connect", "connect_async"]
