"""Layer: the client. What any Python process imports to reach a node's actors.

May import: ``actorsys.errors``, ``actorsys.log``, ``actorsys.protocol``,
``actorsys.config``, ``actorsys.net``, ``actorsys.proxy``. Never LevelDB (``storage``), the worker
(``runtime``) or aiohttp (``gateway``): a client process loads none of them.

* :mod:`.transport`: :class:`AsyncTransport`, the one data path (actor requests sent
  straight to the worker slot that owns the actor, their replies, retries and resends),
  used by both clients and by the node's own processes. Its parts: :mod:`.pending` (the
  requests awaiting replies, their deadlines), :mod:`.timeouts` (the map polled after
  asks time out on a cluster), :mod:`.connections` (one socket per worker slot, the
  router's, other endpoints') and :mod:`.monitors` (worker loss, refused handshakes),
  :mod:`.waits` (a blocking caller's wait); its mixins :mod:`.control` (control
  requests) and :mod:`.maps` (fetching and installing the shard map, choosing among a
  cluster's routers); :mod:`.requests`: what it keeps about a request in flight and how
  its errors read; :mod:`.reachability`: the clients' view of whether their node is
  reachable (fail fast with ``NodeUnavailable``), with :mod:`.cluster_refresh` (a
  cluster's map fetched again while a node of it may be down).
* :mod:`.aio`: :func:`connect_async`, :class:`AsyncClient`, :class:`AsyncRef`.
* :mod:`.blocking`: :func:`connect`, :class:`Client`, :class:`Ref`: the transport driven
  from blocking code, on one lane (event loop and sockets) per thread (:mod:`.lanes`:
  a lane, and a client's lanes with the newest map they share);
  :mod:`.supervisor_refs`: :class:`SupervisorRef`, a supervisor's runtime API.
* :mod:`.subscriptions`: ``subscribe``: what an actor sends its connections, received
  here (:class:`Subscription`); :mod:`.sublink`, their connection to the gateway;
  :mod:`.subthread`, the blocking client's subscription thread and its
  :class:`BlockingSubscription`.
* :mod:`.common`: the defaults both clients share.
* :mod:`.proxies`: the channel a client's typed proxy (:mod:`actorsys.proxy`) sends through.
"""
from ..errors import ActorError
from .aio import AsyncClient, AsyncRef, AsyncSupervisorRef, connect_async
from .blocking import Client, Ref, SupervisorRef, connect
from .common import CONNECT_TIMEOUT, DEFAULT_TIMEOUT
from .subscriptions import Subscription
from .subthread import BlockingSubscription

__all__ = ["ActorError", "AsyncClient", "AsyncRef", "AsyncSupervisorRef", "BlockingSubscription",
           "CONNECT_TIMEOUT", "Client", "DEFAULT_TIMEOUT", "Ref", "Subscription", "SupervisorRef",
           "connect", "connect_async"]
