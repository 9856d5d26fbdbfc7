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
* **Idle passivation.** :meth:`passivate_idle` passivates the actors idle for
  ``idle_timeout`` (a record without an instance just leaves), walking from the least
  recently used end and stopping at the first actor that is not idle that long: a sweep
  costs what it passivates, not the resident count. An actor is moved to the recent end
  when a message for it arrives and its ``last_used`` is set when its turn ends, so an
  idle actor behind one whose last message waited or ran long is passed over until that
  one is idle too: it passivates late by at most that message's wait and turn. Actors
  in use found at that end (running, with mail waiting, supervised children not
  stopped) stay resident and move to the recent end, their idle clock restarted, so
  later sweeps do not wade through them. One call examines at most
  :data:`SWEEP_STEP` actors and says whether it stopped there; the worker runs the next
  step soon, after the loop has served what arrived meanwhile.
* **Queued bytes.** :attr:`Catalog.queued_bytes` counts the wire bytes of the messages
  waiting in mailboxes (added by :meth:`queue`, taken off where a turn decodes them);
  :meth:`recount_queued` recounts it over the activations that were given such a message
  since the last recount, so bytes of mailboxes dropped whole do not stay counted.

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

#: the most activations one step of the idle sweep examines. Passivating one runs its
#: on_stop turn in place: some 4 us for an empty on_stop (1 ms a step of 256, measured
#: on a loaded 2-core machine), tens of microseconds for one that does work, so a step
#: stays within a few milliseconds of blocked loop; 100k actors going idle together take
#: some 400 steps with the loop serving its sockets between them, not one long stall
SWEEP_STEP = 256

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
        #: wire bytes of the Waiting entries in all mailboxes (see :meth:`queue`)
        self.queued_bytes = 0
        #: the activations given a Waiting entry since the last :meth:`recount_queued`
        #: (or still holding one then): the only ones whose bytes it counts
        self.queued_in: set[Activation] = set()
        #: activations the idle sweep has examined, in all (for tests and profiling)
        self.swept = 0
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

    def passivate_idle(self, cutoff: float, now: float, limit: int = SWEEP_STEP) -> bool:
        """Passivate the actors whose last turn ended before ``cutoff`` and that are not
        in use, from the least recently used end, stopping at the first one whose last
        turn ended at or after ``cutoff`` (see the module docstring for the slack) or
        after examining ``limit`` of them. Those in use found on the way move to the
        recent end with ``last_used = now`` (monotonic seconds, as ``cutoff``): they were
        in use now, and a sweep does not examine them again before their idle timeout.
        Returns True if it stopped at ``limit``: more may be idle, call again."""
        acts = self.acts
        victims: list[Activation] = []
        kept: list[Activation] = []
        more = False
        seen = 0
        for act in acts.values():          # least recently used first (see resident)
            seen += 1
            if act.last_used >= cutoff:
                break
            if seen > limit:
                more = True
                break
            if act.held():
                kept.append(act)
            else:
                victims.append(act)
        self.swept += seen
        for act in kept:      # in use: to the recent end, so later sweeps do not wade through
            k = (act.type_name, act.key)
            acts[k] = acts.pop(k)
            act.last_used = now
        for act in victims:   # (a victim's on_stop turn runs here: nothing above iterates)
            if act.instance is None:
                self.forget(act)
            else:
                self.passivate(act)
        return more

    def queue(self, act: Activation, msg: Waiting) -> None:
        """Add a message that has to wait, kept as its wire bytes, to ``act``'s mailbox
        and to :attr:`queued_bytes` (a turn takes them off as it decodes it)."""
        self.queued_bytes += len(msg.raw)
        self.queued_in.add(act)
        act.mail().append(msg)

    def recount_queued(self) -> None:
        """Recount :attr:`queued_bytes` over the resident activations given a waiting
        message since the last recount: the bytes of a mailbox dropped whole (a child
        stopped with its messages answered, a record forgotten) stop counting here. The
        cost is that of the mailboxes holding bytes, not of the resident set."""
        get = self.acts.get
        queued = 0
        gone: list[Activation] = []
        for act in self.queued_in:
            n = 0
            for m in act.mailbox:
                if m.__class__ is Waiting:
                    n += len(m.raw)
            if n and get((act.type_name, act.key)) is act:
                queued += n
            else:               # none left, or no longer resident: not counted again
                gone.append(act)
        self.queued_in.difference_update(gone)
        self.queued_bytes = queued

    def unknown_type(self, type_name: str) -> UnknownActorType:
        return UnknownActorType(f"actor type '{type_name:.200}' is not registered on this node "
                                f"(registered: {', '.join(sorted(self.classes)) or 'none'})")

    def supervised_count(self) -> int:
        return sum(1 for a in self.acts.values() if a.sup is not None)


def _unset(act: Activation) -> None:
    raise RuntimeError("Catalog.passivate was not set")
