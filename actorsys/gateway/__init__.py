"""Layer: the gateway. The HTTP/WebSocket process (aiohttp) in front of a node's actors.

May import every layer below the runtime (errors, protocol, config, net, client); it
reaches actors only over the node's sockets. Started by the node supervisor.

* :mod:`.server`: the aiohttp application, the sockets it holds and their batches.
"""
