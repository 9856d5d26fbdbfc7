"""Layer: net. The ZeroMQ sockets that clients and node processes share, CURVE keys, and
the ZAP guard that checks them.

May import: ``actorsys.errors``, ``actorsys.protocol``, ``actorsys.config``.

* :mod:`.sockets`: :func:`dealer`, :func:`bound_router`, :class:`SocketPump`.
* :mod:`.keys`: CURVE key pairs for clients and nodes, :func:`keygen`.
* :mod:`.guard`: the ZAP handler a node's bound sockets use on tcp.
* :mod:`.listener`: :class:`Listener`, the guarded socket a node process serves on.
"""
