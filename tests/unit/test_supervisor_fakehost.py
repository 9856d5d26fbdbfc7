"""The fake child host the supervisor unit tests run against, and tests of the fake itself.

* :class:`FakeHost` is a :class:`supervisors.host.ChildHost` for the OTP supervisor state
  machine: actor children are entries in a dict, every start and stop is written to a
  journal, starts can be made to fail, stops can be made to hang, and the clock is a mock
  one in milliseconds that moves only when a test calls :meth:`FakeHost.advance`.
  Events posted by supervisors run when a test calls :meth:`FakeHost.settle` (the
  operations of the fake do it for you). No node, no processes, no sockets, no sleeps.
* :func:`in_loop` runs an ``async def`` test in a fresh event loop (no plugin needed).
* The other ``test_supervisor_*.py`` modules import it by module name: this directory has
  no ``conftest.py`` on purpose (a second module named ``conftest`` would shadow
  ``tests/conftest.py`` for the tests that import from it).
"""
from __future__ import annotations

import asyncio
import functools
from collections import deque
from typing import Any, Awaitable, Callable, Iterable

from actorsys.config import supervision as specs
from actorsys.config.supervision import BRUTAL_KILL, ChildSpec, Shutdown, SupervisorSpec
from actorsys.errors import ConfigError, StartFailed, SupervisorError
from supervisors.child import Child
from supervisors.host import Event
from supervisors.supervisor import Boot, ExitWhy, Supervisor

ACTORS = {"W": "workers:W", "V": "workers:V"}   # registered actor types (never imported here)
MAX_EVENTS = 10_000                             # a settle() that runs more is a restart loop


def in_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test to completion in its own event loop (bounded: 10 s)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 10))
    return run


# -- specs, as a config file would declare them ------------------------------------------
def worker(cid: str, restart: str = "permanent", **kw: Any) -> dict[str, Any]:
    """An actor child ``W/<cid>`` with id ``cid``."""
    return {"id": cid, "actor": "W", "key": cid, "restart": restart, **kw}


def nested(cid: str, name: str, **kw: Any) -> dict[str, Any]:
    """A child that is the supervisor ``[supervisors.<name>]``."""
    return {"id": cid, "supervisor": name, **kw}


def table(*children: dict[str, Any], strategy: str = "one_for_one", max_restarts: int = 3,
          max_seconds: float = 3600, **flags: Any) -> dict[str, Any]:
    """A ``[supervisors.NAME]`` table (OTP's test suites use an intensity of a few
    restarts per hour, so only a test about intensity meets it)."""
    return {"strategy": strategy, "max_restarts": max_restarts, "max_seconds": max_seconds,
            "children": list(children), **flags}


def fail(problem: str, key: str) -> ConfigError:
    return ConfigError(problem, key=key)


class MemoryStore:
    """A :class:`supervisors.host.RunTimeStore` in memory."""

    def __init__(self) -> None:
        self.dynamics: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}
        self.stopped: set[tuple[str, str]] = set()
        self.deleted: set[tuple[str, str]] = set()

    def dynamic(self, sup: str) -> list[tuple[int, dict[str, Any]]]:
        return sorted(self.dynamics.get(sup, {}).values(), key=lambda t: t[0])

    def put_dynamic(self, sup: str, seq: int, spec: ChildSpec) -> None:
        self.dynamics.setdefault(sup, {})[spec.id] = (seq, spec.to_dict())

    def drop_dynamic(self, sup: str, cid: str) -> None:
        self.dynamics.get(sup, {}).pop(cid, None)

    def drop_all_dynamic(self, sup: str) -> None:
        self.dynamics.pop(sup, None)

    def set_stopped(self, sup: str, cid: str, stopped: bool) -> None:
        (self.stopped.add if stopped else self.stopped.discard)((sup, cid))

    def is_stopped(self, sup: str, cid: str) -> bool:
        return (sup, cid) in self.stopped

    def set_deleted(self, sup: str, cid: str) -> None:
        self.deleted.add((sup, cid))

    def is_deleted(self, sup: str, cid: str) -> bool:
        return (sup, cid) in self.deleted


class FakeHost:
    """A supervision tree in memory (see the module docstring).

    ``journal``: ``("start", sup, id)``, ``("start_failed", sup, id)``,
    ``("stop", sup, id, shutdown)``, ``("release", id)`` in the order they happened.
    ``fail_starts[id] = n``: the next ``n`` starts of that child fail.
    ``hang_stops[id]``: a stop of that child (but a brutal kill) waits for the event."""

    def __init__(self, store: MemoryStore | None = None, **tables: dict[str, Any]) -> None:
        """``FakeHost(root=table(...), sub=table(...))``: supervisors for those tables,
        validated as a config file's are."""
        self.specs = specs.parse_supervisors(tables, actors=ACTORS, fail=fail)
        self.store = store or MemoryStore()
        self.now_ms = 0.0
        self.queue: deque[tuple[Event, tuple[Any, ...]]] = deque()
        self.timers: list[tuple[float, int, Event, tuple[Any, ...]]] = []
        self.timer_seq = 0
        self.stopping = False
        self.journal: list[tuple[Any, ...]] = []
        self.noted = asyncio.Event()     # set whenever the journal grows
        self.fail_starts: dict[str, float] = {}
        self.hang_stops: dict[str, asyncio.Event] = {}
        self.running: dict[tuple[str, str], int] = {}     # actor address -> incarnation
        self.index: dict[tuple[str, str], tuple[Supervisor, Child]] = {}
        self.sups: dict[str, Supervisor] = {}
        self.root_exits: list[tuple[str, ExitWhy]] = []
        self.incarnation = 0
        self.roots: list[Supervisor] = []

    def _note(self, entry: tuple[Any, ...]) -> None:
        self.journal.append(entry)
        self.noted.set()

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait (without sleeping) until the journal says ``done()``."""
        while not done():
            self.noted.clear()
            await self.noted.wait()

    # -- ChildHost: the clock and events
    def now(self) -> float:
        return self.now_ms / 1000

    def post(self, fn: Event, *args: Any) -> None:
        self.queue.append((fn, args))

    def later(self, delay: float, fn: Event, *args: Any) -> None:
        self.timer_seq += 1
        self.timers.append((self.now_ms + delay * 1000, self.timer_seq, fn, args))

    # -- ChildHost: actor children
    def next_incarnation(self) -> int:
        self.incarnation += 1
        return self.incarnation

    async def start_actor(self, sup: str, ch: Child) -> None:
        if self.fail_starts.get(ch.id, 0) > 0:
            self.fail_starts[ch.id] -= 1
            self._note(("start_failed", sup, ch.id))
            raise StartFailed(f"W/{ch.key}: on_start raised RuntimeError: no")
        self._note(("start", sup, ch.id))
        self.running[ch.addr] = ch.inc

    async def stop_actor(self, sup: str, ch: Child, shutdown: Shutdown) -> None:
        self._note(("stop", sup, ch.id, shutdown))
        hang = self.hang_stops.get(ch.id)
        if hang is not None and shutdown != BRUTAL_KILL:
            await hang.wait()
        self.running.pop(ch.addr, None)

    async def release_actor(self, ch: Child) -> None:
        self._note(("release", ch.id))

    # -- ChildHost: the registry
    def supervisor_spec(self, name: str) -> SupervisorSpec:
        return self.specs[name]

    def parse_child(self, sup: SupervisorSpec, d: Any, where: str) -> ChildSpec:
        return specs.parse_child(d, actors=ACTORS, sup=sup, fail=fail, where=where)

    def check_unsupervised(self, spec: ChildSpec) -> None:
        held = self.index.get(spec.addr)
        if held is not None:
            raise SupervisorError(f"actor {spec.actor}/{spec.key} is already child '{held[1].id}' "
                                  f"of supervisor '{held[0].name}'")

    def supervisor_added(self, sup: Supervisor) -> None:
        self.sups[sup.name] = sup

    def supervisor_dropped(self, sup: Supervisor) -> None:
        if self.sups.get(sup.name) is sup:
            del self.sups[sup.name]

    def child_added(self, sup: Supervisor, ch: Child) -> None:
        self.index[ch.addr] = (sup, ch)

    def child_dropped(self, ch: Child, release: bool) -> None:
        if self.index.get(ch.addr, (None, None))[1] is ch:
            del self.index[ch.addr]

    # -- ChildHost: escalation
    async def root_exited(self, sup: Supervisor, why: ExitWhy) -> None:
        self.root_exits.append((sup.name, why))

    # -- driving it from a test
    async def boot(self, boot: Boot = Boot.NODE_START) -> Supervisor:
        """Start the top-level supervisors in declared order, as the tree does; the first."""
        for name in specs.roots(self.specs):
            sup = Supervisor(self.specs[name], self)
            self.roots.append(sup)
            await sup.start(boot)
        await self.settle()
        return self.roots[0]

    async def settle(self) -> None:
        """Run the queued events (and those they queue) until none is left."""
        for _ in range(MAX_EVENTS):
            if not self.queue:
                return
            fn, args = self.queue.popleft()
            await fn(*args)
        raise AssertionError(f"more than {MAX_EVENTS} events: a restart loop")

    async def advance(self, ms: float) -> None:
        """Move the mock clock ``ms`` on, running each timer as it comes due."""
        target = self.now_ms + ms
        while True:
            due = sorted(t for t in self.timers if t[0] <= target)
            if not due:
                break
            at, seq, fn, args = due[0]
            self.timers = [t for t in self.timers if t[1] != seq]
            self.now_ms = max(self.now_ms, at)
            self.post(fn, *args)
            await self.settle()
        self.now_ms = target

    def sup(self, name: str) -> Supervisor:
        return self.sups[name]

    def child(self, sup: str, cid: str) -> Child:
        return self.sups[sup].by_id[cid]

    async def exit(self, sup: str, cid: str, reason: str = "crash") -> None:
        """Child ``cid`` of ``sup`` exits for ``reason`` (its current incarnation), as
        its worker reports it; then the events that follow run."""
        ch = self.child(sup, cid)
        await self.sups[sup].on_exit(ch, reason, ch.inc)
        await self.settle()

    async def stop_tree(self) -> None:
        """A node stop: every top-level supervisor stops, last started first."""
        self.stopping = True
        for sup in reversed(self.roots):
            if sup.running:
                await sup.terminate()

    def clear(self) -> None:
        self.journal.clear()

    def started(self) -> list[str]:
        return [e[2] for e in self.journal if e[0] == "start"]

    def stopped(self) -> list[str]:
        return [e[2] for e in self.journal if e[0] == "stop"]

    def statuses(self, sup: str) -> dict[str, str]:
        return {c["id"]: c["status"] for c in self.sups[sup].which_children()}

    def counts(self, sup: str) -> list[int]:
        """OTP's ``get_child_counts``: [specs, active, supervisors, workers]."""
        c = self.sups[sup].count_children()
        return [c["specs"], c["active"], c["supervisors"], c["workers"]]


def ids(children: Iterable[dict[str, Any]]) -> list[str]:
    return [c["id"] for c in children]


# -- the fake itself ------------------------------------------------------------------------
def test_the_fake_host_has_every_member_of_the_child_host_protocol() -> None:
    """Not an OTP case: the fake stands for treehost.TreeHost only if it is a whole ChildHost."""
    from supervisors.host import ChildHost
    from supervisors.treehost import TreeHost
    members = {n for n in vars(ChildHost) if not n.startswith("_")}
    assert members, "expected the Protocol to declare members"
    fake = FakeHost(root=table(worker("a")))
    assert not {n for n in members if not hasattr(fake, n)}, "the fake is not a ChildHost"
    # the tree process sets the host's store when it runs: every other member is on the class
    missing = {n for n in members - {"store"} if not hasattr(TreeHost, n)}
    assert not missing, f"TreeHost lacks {sorted(missing)}"


@in_loop
async def test_the_mock_clock_runs_timers_in_due_order_and_only_when_advanced() -> None:
    """Not an OTP case: ``later`` events run when the mock clock reaches them, in order."""
    host = FakeHost(root=table(worker("a")))
    ran: list[tuple[str, float]] = []

    async def note(what: str) -> None:
        ran.append((what, host.now_ms))

    host.later(0.200, note, "second")
    host.later(0.100, note, "first")
    host.later(1.0, note, "later")
    await host.settle()
    assert ran == [], "a timer ran before the clock moved"
    await host.advance(250)
    assert ran == [("first", 100), ("second", 200)] and host.now_ms == 250
    await host.advance(750)
    assert ran[-1] == ("later", 1000)
