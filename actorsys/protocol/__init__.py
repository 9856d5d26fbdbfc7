"""Layer: the protocol. What crosses a socket, and nothing that opens one.

May import: ``actorsys.errors``. Imported by every layer above.

* :mod:`.wire`: framing, op codes, validation of incoming frames (msgpack, never pickle).
* :mod:`.shardmap`: :func:`shard_of` and the shard -> worker-slot map (no disk).
* :mod:`.ws`: the gateway <-> worker sub-protocol for WebSockets.
* :mod:`.subs`: the client <-> gateway sub-protocol for Python subscribers, and its
  flow control's bookkeeping (:class:`~.subs.Window`).
* :mod:`.board`: what the node's processes share in memory about its worker slots
  (heartbeats, the turn in progress, pids): read by the router's ``status``.
"""
