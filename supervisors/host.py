"""What a supervisor asks of the process that hosts it: the whole contract, as Protocols.

A :class:`~supervisors.supervisor.Supervisor` is a state machine; it touches nothing
outside itself (and its own nested supervisors) but through a :class:`ChildHost`:

* **the clock and events**: ``now()``; ``post(fn, *args)`` queues an event after the
  ones already queued; ``later(delay, fn, *args)`` posts one after ``delay`` seconds.
  Events run one at a time, each to completion, as the messages of an OTP supervisor
  process do. ``stopping`` is true once the whole tree is going down (a node stop).
* **actor children**: ``start_actor`` (raises StartFailed), ``stop_actor`` within a
  shutdown (milliseconds, ``brutal_kill`` or ``infinity``; it always returns, an actor
  that cannot be reached counts as stopped), ``release_actor`` (the address is no
  longer supervised); ``next_incarnation()`` numbers each start.
* **the registry**: the specs of nested supervisors by name, validation of a child spec
  given at run time, and notices as children and supervisors come and go (the host
  indexes actor addresses to route exit notices, and supervisors by name to serve the
  runtime API).
* **the run-time record** (:class:`RunTimeStore`): what config files cannot say and a
  restart of the host process must not lose.
* **escalation**: a top-level supervisor that gives up or shuts down reports it with
  ``root_exited``; a nested one reports to its parent supervisor directly.

``supervisors.treehost.TreeHost`` is the real host, in the supervision tree process
(``tree.py``: actors in worker processes, LevelDB); ``tests/unit`` drives supervisors
through a fake one with a mock clock.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from actorsys.config.supervision import ChildSpec, Shutdown, SupervisorSpec

if TYPE_CHECKING:
    from .child import Child
    from .supervisor import ExitWhy, Supervisor

#: an event: a coroutine function run later by the host, with the arguments given
Event = Callable[..., Awaitable[None]]


class RunTimeStore(Protocol):
    """Per supervisor (by name) and child id: children added at run time (``dynamic``,
    in ``seq`` order), children stopped at run time, declared children deleted at run time."""

    def dynamic(self, sup: str) -> list[tuple[int, dict[str, Any]]]: ...
    def put_dynamic(self, sup: str, seq: int, spec: ChildSpec) -> None: ...
    def drop_dynamic(self, sup: str, cid: str) -> None: ...
    def drop_all_dynamic(self, sup: str) -> None: ...
    def set_stopped(self, sup: str, cid: str, stopped: bool) -> None: ...
    def is_stopped(self, sup: str, cid: str) -> bool: ...
    def set_deleted(self, sup: str, cid: str) -> None: ...
    def is_deleted(self, sup: str, cid: str) -> bool: ...


class ChildHost(Protocol):
    """The host of a supervision tree (see the module's docstring)."""

    # -- the clock and events
    def now(self) -> float: ...
    def post(self, fn: Event, *args: Any) -> None: ...
    def later(self, delay: float, fn: Event, *args: Any) -> None: ...
    @property
    def stopping(self) -> bool: ...

    # -- actor children
    def next_incarnation(self) -> int: ...
    async def start_actor(self, sup: str, ch: Child) -> None: ...
    async def stop_actor(self, sup: str, ch: Child, shutdown: Shutdown) -> None: ...
    async def release_actor(self, ch: Child) -> None: ...

    # -- the registry
    def supervisor_spec(self, name: str) -> SupervisorSpec: ...
    def parse_child(self, sup: SupervisorSpec, d: Any, where: str) -> ChildSpec: ...
    def check_unsupervised(self, spec: ChildSpec) -> None: ...
    def supervisor_added(self, sup: Supervisor) -> None: ...
    def supervisor_dropped(self, sup: Supervisor) -> None: ...
    def child_added(self, sup: Supervisor, ch: Child) -> None: ...
    def child_dropped(self, ch: Child, release: bool) -> None: ...

    # -- the run-time record
    @property
    def store(self) -> RunTimeStore: ...

    # -- escalation
    async def root_exited(self, sup: Supervisor, why: ExitWhy) -> None: ...
