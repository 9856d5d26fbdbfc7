"""Layer: storage. One LevelDB database per worker slot, and everything kept in it.

May import: ``actorsys.errors``, ``actorsys.log``, ``actorsys.protocol``,
``actorsys.config``. Imported by the runtime and the node supervisor; never by a client
or an actor class (an actor reaches its storage through ``self.storage``, which the
runtime hands it).

* :mod:`.keys`: the whole key layout, in one place (the on-disk format).
* :mod:`.overlay`: writes not yet in LevelDB laid over range reads.
* :mod:`.slot`: :class:`SlotStore`: reads, the staged overlay, group commit, faults.
* :mod:`.view`: :class:`Storage`, an actor's ``self.storage``.
* :mod:`.alarms`, :mod:`.history`: alarms and version history, kept with the actor;
  :mod:`.schedule`: recurring alarms' cron and interval schedules (croniter).
* :mod:`.meta`, :mod:`.rebalance`: ``node.meta`` and moving shards between slots.
"""
