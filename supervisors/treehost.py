"""The real host of a node's supervisors: :class:`TreeHost`, the ``ChildHost`` of ``host.py``.

The supervision tree process (``tree.py``) runs the supervisors; this is what they see
of it, the whole :class:`~supervisors.host.ChildHost` contract and nothing else:

* **the clock and events**, and **escalation**: the process's (:class:`TreeProcess`):
  its one event queue, its ``stopping`` and what a top-level supervisor's exit does to
  it;
* **actor children**: SPAWN and STOP control messages to the workers, through the
  process's transport; an incarnation number per start, growing across restarts of the
  process too (blocks of them reserved in the store);
* **the registry**: the supervisor specs of the config, the supervisors by name (for
  the runtime API) and the index of supervised actor addresses (for the exits, and a
  worker's loss: every running child on that slot is ``killed``);
* **the run-time record**: the store (``store.py``, or a cluster's ``etcdstore.py``),
  where every supervised address is marked, so an address the config no longer
  declares is released to be a plain actor (:meth:`TreeHost.release_unsupervised`).

Invariants: ``index`` holds the address of every child of a live supervisor that is
supervised now, each under the supervisor and child record that hold it; ``sups`` every
supervisor made and not dropped, running or not. ``store`` and ``transport`` are set by
the process when it runs, before the first event (the supervisors start in an event).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from actorsys.client.transport import AsyncTransport
from actorsys.config import NodeConfig
from actorsys.config import supervision as specs
from actorsys.config.supervision import BRUTAL_KILL, INFINITY, Shutdown
from actorsys.errors import ActorError, ConfigError, StartFailed, SupervisorError
from actorsys.protocol import wire
from actorsys.protocol.shardmap import ShardMap

from .child import Child, ChildState
from .host import Event
from .store import INCARNATION_BLOCK, TreeStore
from .supervisor import ExitWhy, Supervisor

if TYPE_CHECKING:
    from .etcdstore import EtcdTreeStore

#: the tree process's one logger, ``tree.log`` (its lines say ``supervisors.tree``)
log = logging.getLogger("supervisors.tree")

STOP_GRACE = 5.0           # seconds beyond a child's shutdown for its worker to answer the STOP


class Held(NamedTuple):
    """Who supervises an actor address."""

    sup: Supervisor
    child: Child


class TreeProcess(Protocol):
    """What the host needs of the process it runs in (``tree.Tree``)."""

    def post(self, fn: Event, *args: Any) -> None:
        """Queue an event; events run one at a time, in order."""

    def later(self, delay: float, fn: Event, *args: Any) -> None:
        """Post an event after ``delay`` seconds."""

    @property
    def stopping(self) -> bool:
        """The whole tree is going down."""

    async def root_exited(self, sup: Supervisor, why: ExitWhy) -> None:
        """A top-level supervisor gave up or shut down: the process stops the others."""


class TreeHost:
    """The ``ChildHost`` of a node's supervisors (see the module docstring)."""

    store: TreeStore | EtcdTreeStore       # (set by the process when it runs)
    transport: AsyncTransport              # (set by the process when it runs)
    _inc_limit: int                        # (set by resume_incarnations)

    def __init__(self, cfg: NodeConfig, shard_map: ShardMap, counters: dict[str, int],
                 process: TreeProcess) -> None:
        self.cfg, self.process = cfg, process
        self.map = shard_map              # the slots' map until the transport has its own
        self.counters = counters          # the process's (its status and metrics report them)
        self.specs: dict[str, specs.SupervisorSpec] = specs.parse_supervisors(
            cfg.supervisors, actors=cfg.actors, fail=lambda p, k: ConfigError(p, key=k))
        self.sups: dict[str, Supervisor] = {}      # supervisors by name (running or not)
        self.index: dict[tuple[str, str], Held] = {}
        self._inc = int(time.time() * 1000) << 8    # incarnations only grow, across restarts too

    # -- the clock, events and escalation: the process's -------------------------------
    def now(self) -> float:
        return time.monotonic()

    def post(self, fn: Event, *args: Any) -> None:
        self.process.post(fn, *args)

    def later(self, delay: float, fn: Event, *args: Any) -> None:
        self.process.later(delay, fn, *args)

    @property
    def stopping(self) -> bool:
        return self.process.stopping

    async def root_exited(self, sup: Supervisor, why: ExitWhy) -> None:
        await self.process.root_exited(sup, why)

    # -- the registry ------------------------------------------------------------------
    def supervisor_spec(self, name: str) -> specs.SupervisorSpec:
        return self.specs[name]

    def supervisor_added(self, sup: Supervisor) -> None:
        self.sups[sup.name] = sup

    def supervisor_dropped(self, sup: Supervisor) -> None:
        if self.sups.get(sup.name) is sup:
            del self.sups[sup.name]

    def child_added(self, sup: Supervisor, ch: Child) -> None:
        self.index[ch.addr] = Held(sup, ch)
        self.store.set_address(ch.addr, True)

    def child_dropped(self, ch: Child, release: bool) -> None:
        """Forget a child's address; ``release``: it is no longer supervised at all."""
        held = self.index.get(ch.addr)
        if held is not None and held.child is ch:
            del self.index[ch.addr]
            if release:
                self.store.set_address(ch.addr, False)

    def check_unsupervised(self, spec: specs.ChildSpec) -> None:
        held = self.index.get(spec.addr)
        if held is not None:
            raise SupervisorError(f"actor {spec.actor}/{spec.key} is already child '{held.child.id}' of "
                                  f"supervisor '{held.sup.name}'")

    def parse_child(self, sup: specs.SupervisorSpec, d: Any, where: str) -> specs.ChildSpec:
        return specs.parse_child(d, actors=self.cfg.actors, sup=sup,
                                 fail=lambda p, k: ConfigError(p, key=k), where=where)

    def release_unsupervised(self) -> None:
        """Addresses supervised before but declared by no supervisor now (the config
        changed) become plain actors. Children of a supervisor that is stopped are still
        declared: they stay stopped."""
        known = set(self.index)
        for name, s in self.specs.items():
            known.update(c.addr for c in s.children if c.key is not None)
            known.update((d["actor"] or "", d["key"]) for _seq, d in self.store.dynamic(name))
        for addr in self.store.addresses() - known:
            self.post(self._forget_addr, addr)

    async def _forget_addr(self, addr: tuple[str, str]) -> None:
        if addr in self.index or addr[0] not in self.cfg.actors:
            self.store.set_address(addr, addr in self.index)
            return
        try:
            await self.transport.control_actor(wire.STOP, addr[0], addr[1], {"forget": True},
                                               self.cfg.ask_timeout)
        except ActorError as exc:
            log.warning("could not release %s/%s: %s", addr[0], addr[1], exc)
            return
        self.store.set_address(addr, False)

    # -- actor children ----------------------------------------------------------------
    @property
    def incarnation(self) -> int:
        """The last incarnation given (or the floor the next one is above)."""
        return self._inc

    def resume_incarnations(self, floor: int) -> None:
        """Incarnations go on above ``floor``, which the store reserved a block from."""
        self._inc = self._inc_limit = floor

    def next_incarnation(self) -> int:
        self._inc += 1
        if self._inc >= self._inc_limit + INCARNATION_BLOCK:
            self._inc_limit = self.store.incarnation_floor(self._inc)
        return self._inc

    async def start_actor(self, sup: str, ch: Child) -> None:
        s = ch.spec
        opts = {"sup": sup, "child": s.id, "args": s.args, "kwargs": s.kwargs, "inc": ch.inc}
        try:
            r = await self.transport.control_actor(wire.SPAWN, *ch.addr, opts, self.cfg.ask_timeout)
        except ActorError as exc:
            raise StartFailed(f"{exc}") from None
        self.counters["adopted" if r == "adopted" else "restarts"] += 1

    async def stop_actor(self, sup: str, ch: Child, shutdown: Shutdown) -> None:
        wait = (self.cfg.turn_timeout if shutdown == INFINITY else 0 if shutdown == BRUTAL_KILL
                else int(shutdown) / 1000) + STOP_GRACE
        opts = {"shutdown": shutdown, "inc": ch.inc}
        try:
            await self.transport.control_actor(wire.STOP, *ch.addr, opts, wait)
        except ActorError as exc:   # its worker is gone or hung: the node supervisor handles that
            log.warning("stopping child '%s' of '%s': %s", ch.id, sup, exc)

    async def release_actor(self, ch: Child) -> None:
        await self.transport.control_actor(wire.STOP, *ch.addr, {"forget": True}, self.cfg.ask_timeout)
        self.store.set_address(ch.addr, False)

    def slot_lost(self, slot: int) -> None:
        """The transport lost worker slot ``slot``: every child running there is ``killed``."""
        m = self.transport.map or self.map      # (a cluster's map is the router's, refreshed)
        dead = [(held, held.child.inc) for held in self.index.values()
                if held.child.state is ChildState.RUNNING and m.slot_of(*held.child.addr) == slot]
        if dead:
            log.warning("worker slot %d died: %d supervised children with it", slot, len(dead))
        for held, inc in dead:
            self.post(held.sup.on_exit, held.child, "killed", inc)
