"""Layer: the gateway. The HTTP/WebSocket process (aiohttp) in front of a node's actors,
which also holds Python programs' subscriptions.

May import every layer below the runtime (errors, log, protocol, config, net, client); it
reaches actors only over the node's sockets. Started by the node supervisor
(:func:`.app.main`); nothing imports it but ``supervisors``.

* :mod:`.app`: the process: its aiohttp application and routes, start and stop, status.
* :mod:`.admission`: hosts, origins, exposed types and keys; :mod:`.auth`: the ``auth``
  hook and :class:`GatewayRequest`, what it sees.
* :mod:`.http`: ``POST /actors/...`` asks, and the error -> HTTP status table.
* :mod:`.sockets`: the sockets: opening, reading, the writers, slow clients.
* :mod:`.peers`: what a socket's writer sends to: a WebSocket, or (:mod:`.subscribers`)
  a Python client's subscription over the gateway's ZeroMQ endpoint for subscribers.
* :mod:`.rooms`: the records: a :class:`~.rooms.Socket`, an actor's :class:`~.rooms.Room`.
* :mod:`.batches`: socket events to actors in batches, redelivered until applied once.
* :mod:`.effects`: what actors' turns send to their sockets, applied once; the gateway's
  endpoint inside the node.
"""
from .auth import GatewayRequest

__all__ = ["GatewayRequest"]
