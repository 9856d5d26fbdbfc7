"""Layer: the runtime. The worker process: one asyncio loop, many actors, one store.

May import every layer below it (errors, protocol, config, net, client, actor, storage).
Started by the node supervisor; nothing but ``supervisors`` imports it.

* :mod:`.worker`: the process: its sockets, start, heartbeat and shutdown.
* :mod:`.dispatch`: what arrives (requests on the worker's socket, due alarms) routed
  to the collaborator that serves it; admission to mailboxes and its bounds.
* :mod:`.assembly`: :class:`Runtime`, which wires the collaborators below (and runs
  them without sockets in the unit tests).
* :mod:`.catalog`: the resident activations: making, evicting, passivating idle ones.
* :mod:`.turns`: running a mailbox one turn at a time, sync and async, and a turn's end;
  :mod:`.nested` its nested turns (call-chain reentrancy, :mod:`.chains`).
* :mod:`.turn_failure`: failed and discarded turns, the error reply, a child's EXIT.
* :mod:`.turn_records`: exactly-once asks (request ids recorded, retries answered).
* :mod:`.turn_telemetry`: each turn's time (metrics, hot actors: :mod:`.hot`) and span.
* :mod:`.commit`: group commit, the output gate, effects to the gateway, recovery.
* :mod:`.children`: supervised children (SPAWN, STOP, EXIT).
* :mod:`.alarm_turns`: due alarms as turns, their attempts and retries.
* :mod:`.system`: what the worker answers itself (``$history``, ``$rewind``,
  ``$destroy``, LIST, STATUS).
* :mod:`.testing_asks`: what only a node started for testing serves (``$run``,
  ``$fire_alarm``: :mod:`actorsys.testing`'s ``run_in_actor`` and ``fire_alarms``).
* :mod:`.ws_turns`: the ``$ws`` turn that runs a batch of socket events;
  :mod:`.ws_routes` a cluster's WebSocket effects to every member's gateway.
* :mod:`.loud`: failed turns and dropped tells logged, turns blocking the loop watched.
* :mod:`.destroy`: deleting an actor (``self.destroy()``, ``$destroy``) and unlisting
  actors left with no data.
* :mod:`.activation`: :class:`Activation` (one actor address in memory), its typed
  mailbox entries and states.
* :mod:`.host`, :mod:`.refs`: the runtime's side of the actor seam
  (:class:`actorsys.actor.ActorHost`) and ``self.ref(...)`` inside a handler.
* :mod:`.grants`: which shards a cluster worker serves, and the router's SHARDS
  commands; :mod:`.shard_drain` drains revoked shards' actors out of memory,
  :mod:`.shard_moves` moves a shard's data (export, import, drop).
* :mod:`.replication`: replicated shards, the leader's state, flush and output gate
  (:mod:`.repl_gate`, :mod:`.repl_config`, :mod:`.repl_state`); :mod:`.repl_stream`
  its batches sent to the followers, :mod:`.repl_catchup` copies brought up to date,
  :mod:`.repl_links` the links to peers, :mod:`.repl_follower` and
  :mod:`.repl_commands` the follower's commands.
"""
