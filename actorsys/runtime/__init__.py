"""Layer: the runtime. The worker process: one asyncio loop, many actors, one store.

May import every layer below it (errors, protocol, config, net, client, actor, storage).
Started by the node supervisor; nothing but ``supervisors`` imports it.

* :mod:`.worker`: the worker process (sockets, dispatch, turns, commit).
* :mod:`.activation`: :class:`Activation`, one actor address in memory.
* :mod:`.refs`: :class:`InnerRef`, ``self.ref(...)`` inside a handler.
* :mod:`.ws_turns`: the ``$ws`` turn that runs a batch of socket events.
"""
