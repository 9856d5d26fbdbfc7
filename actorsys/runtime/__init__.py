"""Layer: the runtime. The worker process: one asyncio loop, many actors, one store.

May import every layer below it (errors, protocol, config, net, client, actor, storage).
Started by the node supervisor; nothing but ``supervisors`` imports it.

* :mod:`.worker`: the process: its sockets, the dispatch of incoming requests, start,
  heartbeat and shutdown.
* :mod:`.assembly`: :class:`Runtime`, which wires the collaborators below (and runs
  them without sockets in the unit tests).
* :mod:`.catalog`: the resident activations: making, evicting, passivating idle ones.
* :mod:`.turns`: running a mailbox one turn at a time, sync and async, and failure.
* :mod:`.commit`: group commit, the output gate, effects to the gateway, recovery.
* :mod:`.children`: supervised children (SPAWN, STOP, EXIT).
* :mod:`.alarm_turns`: due alarms as turns, their attempts and retries.
* :mod:`.system`: what the worker answers itself (``$history``, ``$rewind``,
  ``$destroy``, LIST, STATUS).
* :mod:`.ws_turns`: the ``$ws`` turn that runs a batch of socket events.
* :mod:`.destroy`: deleting an actor (``self.destroy()``, ``$destroy``) and unlisting
  actors left with no data.
* :mod:`.activation`: :class:`Activation` (one actor address in memory), its typed
  mailbox entries and states.
* :mod:`.host`, :mod:`.refs`: the runtime's side of the actor seam
  (:class:`actorsys.actor.ActorHost`) and ``self.ref(...)`` inside a handler.
"""
