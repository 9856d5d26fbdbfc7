"""Layer: storage. One LevelDB database per worker slot, and everything kept in it.

May import: ``actorsys.errors``, ``actorsys.protocol``, ``actorsys.config``. Imported by
the runtime and the node supervisor; never by a client or an actor class.

* :mod:`.keys`: the whole key layout, in one place.
* :mod:`.slot`: :class:`SlotStore`: reads, the staged overlay, group commit, faults.
* :mod:`.view`: :class:`Storage`, an actor's ``self.storage``.
* :mod:`.alarms`, :mod:`.history`: alarms and version history, kept with the actor.
* :mod:`.meta`, :mod:`.rebalance`: ``node.meta`` and moving shards between slots.
"""
