"""The catalog: a worker's resident activations, and the rules that make and drop them.

* **One activation per address.** :meth:`Catalog.resident` finds the record of
  ``(type, key)`` or makes one, after checking the type is registered, the key is valid
  and this slot owns its shard; a supervised child's record (persisted beside its state)
  is read then.
* **LRU order.** The resident set is a dict in least-recently-used order: each use moves
  an address to the recent end.
* **Bounded.** Past ``max_resident``, :meth:`evict` passivates the least recently used
  idle actors, 1% of the bound at a time. An actor in use (running, with mail waiting, a
  supervised child that is not stopped) is never a victim.
* **Idle passivation.** :meth:`passivate_idle` passivates every actor idle for
  ``idle_timeout`` (a record without an instance just leaves). Running supervised
  children stay resident.

Passivating means queueing a PASSIVATE (``on_stop`` runs in the actor's turn order):
the catalog is given that as ``passivate`` (``Turns.passivate``). Nothing here needs a
socket or a clock of its own: times are passed in.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..errors import BadRequest, UnknownActorType, WrongShard
from ..protocol import wire
from ..protocol.shardmap import shard_of
from ..storage.keys import actor_prefix, supervision_key
from .activation import DEAD, STOPPED, Activation, SupRecord, Waiting

if TYPE_CHECKING:
    from ..actor import Actor
    from ..protocol.shardmap import ShardMap
    from ..storage.slot import SlotStore
    from .grants import Grants

class Catalog:
    """The resident activations of one worker slot (see the module docstring)."""

    def __init__(self, slot: int, shard_map: ShardMap, classes: dict[str, type[Actor]],
                 handlers: dict[str, dict[str, Any]], store: SlotStore, supervised: bool,
                 max_resident: int, counters: dict[str, int]) -> None:
        self.slot, self.map, self.store = slot, shard_map, store
        self.classes, self.handlers = classes, handlers
        #: a supervision tree runs: addresses may have supervision records to read
        self.supervised = supervised
        self.max_resident = max_resident
        self.counters = counters
        #: (type, key) -> its activation, least recently used first
        self.acts: dict[tuple[str, str], Activation] = {}
        #: wire bytes of the Waiting entries in all mailboxes (recounted by passivate_idle)
        self.queued_bytes = 0
        #: queue a PASSIVATE for an activation (set by the worker: Turns.passivate)
        self.passivate: Callable[[Activation], None] = _unset
        #: what a cluster worker may serve (grants.py; set by the worker): an address is
        #: made only if its shard is granted
        self.grants: Grants | None = None

    def resident(self, type_name: str, key: str) -> Activation:
        """The record of an address, made if needed, moved to the recent end of the LRU
        order. Raises UnknownActorType, BadRequest (a bad key), WrongShard or (a cluster
        worker past its fencing deadline) ShardUnavailable."""
        acts = self.acts
        k = (type_name, key)
        act = acts.pop(k, None)
        if act is None:
            return self._make(type_name, key)
        acts[k] = act
        return act

    def _make(self, type_name: str, key: str) -> Activation:
        cls = self.classes.get(type_name)
        if cls is None:
            self.counters["bad_frames"] += 1
            raise self.unknown_type(type_name)
        try:
            wire.check_key(key)
        except BadRequest:
            self.counters["bad_frames"] += 1
            raise
        shard = shard_of(type_name, key, self.map.shards)
        if self.map.owner[shard] != self.slot:
            raise WrongShard(f"shard {shard} is not owned by slot {self.slot}")
        grants = self.grants
        if grants is not None and grants.active and (refused := grants.refuse(shard)) is not None:
            raise refused
        act = Activation(type_name, key, actor_prefix(shard, type_name, key), cls,
                         self.handlers[type_name])
        if self.supervised:
            raw = self.store.get(supervision_key(act.prefix))
            if raw:
                act.sup = SupRecord.from_stored(wire.unpack_stored(raw))
                # "running" in a record this process did not load before: the worker
                # process it ran in died with it. It is not running until the tree
                # restarts (SPAWN) or stops (STOP) it; its messages wait meanwhile.
                act.status = DEAD if act.sup.running else STOPPED
        if len(self.acts) >= self.max_resident:
            self.evict()          # before adding: the new record is never its own victim
        self.acts[(type_name, key)] = act
        return act

    def forget(self, act: Activation) -> None:
        """The activation leaves memory (its next message makes a new record)."""
        self.acts.pop((act.type_name, act.key), None)

    def evict(self) -> None:
        """Over ``max_resident``: passivate the least recently used idle actors (1% of
        the bound at a time). Busy actors and running supervised children stay."""
        acts = self.acts
        want = len(acts) + 1 - self.max_resident + max(self.max_resident // 100, 1)
        victims: list[Activation] = []
        kept: list[Activation] = []
        for act in acts.values():          # least recently used first (see resident)
            if len(victims) >= want:
                break
            if act.held():
                kept.append(act)
            else:
                victims.append(act)
        for act in kept:      # in use: to the recent end, so later scans do not wade through
            k = (act.type_name, act.key)
            acts[k] = acts.pop(k)
        for act in victims:
            self.counters["evictions"] += 1
            if act.instance is None:
                del acts[(act.type_name, act.key)]
            else:
                self.passivate(act)

    def passivate_idle(self, cutoff: float) -> None:
        """Passivate every actor whose last turn ended before ``cutoff`` (monotonic
        seconds) and that is not in use; recount the bytes waiting in mailboxes."""
        queued = 0
        for act in list(self.acts.values()):
            if act.mailbox:
                queued += sum(len(m.raw) for m in act.mailbox if isinstance(m, Waiting))
            if not act.held() and act.last_used < cutoff:
                if act.instance is None:
                    self.forget(act)
                else:
                    self.passivate(act)
        self.queued_bytes = queued    # (mailboxes dropped without a pump: no drift lasts)

    def unknown_type(self, type_name: str) -> UnknownActorType:
        return UnknownActorType(f"actor type '{type_name:.200}' is not registered on this node "
                                f"(registered: {', '.join(sorted(self.classes)) or 'none'})")

    def supervised_count(self) -> int:
        return sum(1 for a in self.acts.values() if a.sup is not None)


def _unset(act: Activation) -> None:
    raise RuntimeError("Catalog.passivate was not set")
