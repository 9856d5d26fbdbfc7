"""One supervisor: Erlang/OTP's ``supervisor`` behaviour, for actors in worker processes.

In the user's words:

* **Start.** Children start one at a time in the order they are declared. If one fails
  to start (its ``on_start`` raises), the ones already started are stopped in reverse
  order and the supervisor itself fails to start.
* **Stop.** Children stop in reverse order, each within its ``shutdown``: milliseconds
  for ``on_stop`` to finish (then it is killed), ``brutal_kill`` (no ``on_stop``), or
  ``infinity`` (capped by the node's ``turn_timeout``; a nested supervisor stops its own
  children). ``simple_one_for_one`` children stop all at once, in no order.
* **A child exits** when its handler raises (a crash), when it calls ``self.stop(reason)``
  (``"normal"`` / ``"shutdown"`` are normal exits, anything else abnormal), or when its
  worker process dies (``killed``). Whether it is restarted depends on its restart type:
  ``permanent`` always, ``transient`` only after an abnormal exit, ``temporary`` never
  (a temporary child's spec is dropped once it exits, as is every
  ``simple_one_for_one`` child that is not restarted).
* **Strategy**, when a child must be restarted: ``one_for_one`` restarts it alone;
  ``one_for_all`` stops all the other children (reverse order) and starts them all again;
  ``rest_for_one`` does the same for the children declared after it;
  ``simple_one_for_one`` is ``one_for_one`` over children made at run time from one
  template. Temporary children stopped as bystanders are not restarted. A restarted
  actor comes back from its last committed LevelDB snapshot.
* **Intensity.** More than ``max_restarts`` restarts within any ``max_seconds`` window
  (a sliding window: a restart older than that no longer counts) and the supervisor
  gives up: it stops all its children and exits with reason ``shutdown``, which its
  parent handles by its own child spec; a root that gives up stops the node. A restart
  that fails to start counts as one more restart and is tried again.
* **Backoff** (beyond OTP, optional): the n-th restart within the window waits
  ``initial * 2**(n-1)`` seconds, capped at ``max``, spread by ``jitter``; the child
  reports ``restarting`` meanwhile.
* **Auto shutdown.** With ``any_significant`` the supervisor shuts down when a
  significant child exits on its own and is not restarted; with ``all_significant``
  when the last one has. ``terminate_child`` never triggers it.

Everything here runs inside one host (``host.py`` states the contract; ``treehost.py``
implements it, in the process of ``tree.py``), one event at a time (an exit, an admin
call, a restart coming due), each handled whole before the next, as in OTP where a
supervisor is one process. A restart waiting out its backoff, or retrying a failed
start, spans events: its group reports ``restarting`` meanwhile. The states of a child
are in ``child.py``; a supervisor is ``STOPPED`` or ``RUNNING``.
"""
from __future__ import annotations

import asyncio
import enum
import logging
import random
import uuid
from collections import deque
from typing import Any

from actorsys.config.supervision import (BRUTAL_KILL, INFINITY, AutoShutdown, ChildSpec, Restart,
                                         Strategy, SupervisorSpec)
from actorsys.config.defaults import LOG_BURST, LOG_WINDOW
from actorsys.errors import (AlreadyPresent, AlreadyStarted, ChildNotFound, ChildRunning,
                             StartFailed, SupervisorError)
from actorsys.lograte import RateLimit

from .child import Child, ChildState, restarts_after
from .host import ChildHost

log = logging.getLogger("supervisors.supervisor")
#: a crash loop's lines (a child's exits, its failed restarts), rate-limited per
#: supervisor/child: the tree sweeps it (tree.py); the intensity may allow thousands a second
child_log = RateLimit(log, "exits and failed restarts", burst=LOG_BURST, window=LOG_WINDOW,
                      label="of child")

RUNNING, DEAD, RESTARTING, STOPPED = (ChildState.RUNNING, ChildState.DEAD, ChildState.RESTARTING,
                                      ChildState.STOPPED)


class SupervisorState(enum.Enum):
    STOPPED = "stopped"
    RUNNING = "running"


class Boot(enum.Enum):
    """How a supervisor starts (the children it starts with)."""

    FRESH = "fresh"                  # from its spec alone: a restart by its parent, as in OTP
    NODE_START = "node_start"        # + the children added at run time, except temporary ones
    HOST_RESTART = "host_restart"    # + all of those, and those stopped at run time stay stopped

    @property
    def restoring(self) -> bool:
        return self is not Boot.FRESH


class ExitWhy(enum.StrEnum):
    """Why a supervisor exited on its own (with reason ``shutdown``)."""

    INTENSITY = "reached_max_restart_intensity"
    AUTO_SHUTDOWN = "auto_shutdown"


class Supervisor:
    """The state machine of one supervisor: ``STOPPED`` -> ``RUNNING`` -> ``STOPPED``.

    ``children`` in start order, ``by_id`` the same children by id; ``restarts`` the
    times of the restarts within the current window (oldest first); ``seq`` above the
    ``seq`` of every child."""

    def __init__(self, spec: SupervisorSpec, host: ChildHost, parent: Supervisor | None = None) -> None:
        self.spec, self.host, self.parent = spec, host, parent
        self.name = spec.name
        self.children: list[Child] = []
        self.by_id: dict[str, Child] = {}
        self.restarts: deque[float] = deque()
        #: restarts counted since this record was made (never reset: the metrics' total)
        self.restarted = 0
        self.state = SupervisorState.STOPPED
        self.seq = 0

    @property
    def running(self) -> bool:
        return self.state is SupervisorState.RUNNING

    @property
    def simple(self) -> bool:
        return self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE

    # -- building ---------------------------------------------------------------
    def _add(self, ch: Child) -> None:
        self.children.append(ch)
        self.by_id[ch.id] = ch
        self.seq = max(self.seq, ch.seq + 1)
        if ch.sub is None:
            self.host.child_added(self, ch)

    def _remove(self, ch: Child) -> None:
        if self.by_id.get(ch.id) is not ch:
            return
        self.children.remove(ch)
        del self.by_id[ch.id]
        if ch.sub is None:
            # its actor stays stopped (ActorStopped) until a supervisor starts it again;
            # only delete_child and a removal from the config release the address
            self.host.child_dropped(ch, release=True)
        if ch.dynamic:
            self.host.store.drop_dynamic(self.name, ch.id)
        self.host.store.set_stopped(self.name, ch.id, False)

    def drop_index(self, fresh: bool) -> None:
        """Drop this subtree's children from the host's index (``fresh``: it is being
        rebuilt from its spec, so its run-time children are gone for good)."""
        for ch in self.children:
            if ch.sub is not None:
                ch.sub.drop_index(fresh)
            else:
                self.host.child_dropped(ch, release=ch.dynamic and fresh)

    def _build(self, boot: Boot) -> None:
        """Fresh children from the spec (and, when restoring, the dynamic ones persisted)."""
        store = self.host.store
        self.drop_index(fresh=not boot.restoring)
        self.children, self.by_id, self.seq = [], {}, 0
        if not self.simple:
            for cs in self.spec.children:
                if boot.restoring and store.is_deleted(self.name, cs.id):
                    continue        # deleted at run time: stays deleted until the node restarts
                sub = (Supervisor(self.host.supervisor_spec(cs.supervisor), self.host, self)
                       if cs.supervisor else None)
                self._add(Child(cs, sub))
        if boot.restoring:
            for seq, d in store.dynamic(self.name):
                cs = ChildSpec(**d)
                if cs.restart is Restart.TEMPORARY and boot is Boot.NODE_START:
                    store.drop_dynamic(self.name, cs.id)   # a node start: never restarted
                    continue
                self._add(Child(cs, dynamic=True, seq=seq))
        else:
            store.drop_all_dynamic(self.name)

    # -- start and stop ---------------------------------------------------------
    async def start(self, boot: Boot = Boot.FRESH) -> None:
        """Start every child in order (OTP ``init``); StartFailed if one cannot start.

        ``boot``: at node start or after a restart of the host process, with the children
        added at run time (and, after a host restart, keeping the ones stopped at run time
        stopped). A restart by the parent starts fresh from the spec, as in OTP."""
        self._build(boot)
        self.restarts.clear()
        self.state = SupervisorState.RUNNING
        self.host.supervisor_added(self)
        started: list[Child] = []
        for ch in list(self.children):
            if boot.restoring and self.host.store.is_stopped(self.name, ch.id):
                if ch.sub is not None:
                    ch.sub.build_stopped(boot)   # so it reports, and delete_child can release it
                continue
            try:
                await self._start_child(ch, boot)
            except StartFailed as exc:
                await self._stop(ch)       # answers what waited for it; marks it stopped
                if ch.dynamic:      # a persisted dynamic child that cannot come back is dropped
                    log.warning("supervisor '%s': could not restore child '%s': %s", self.name, ch.id, exc)
                    self._remove(ch)
                    continue
                for s in reversed(started):
                    await self._stop(s)
                self.state = SupervisorState.STOPPED
                raise StartFailed(f"supervisor '{self.name}' failed to start child '{ch.id}': "
                                  f"{exc}") from None
            started.append(ch)

    def build_stopped(self, boot: Boot) -> None:
        """Restore a supervisor that was stopped at run time: its children, not started."""
        self._build(boot)
        self.state = SupervisorState.STOPPED
        self.host.supervisor_added(self)
        for ch in self.children:
            if ch.sub is not None:
                ch.sub.build_stopped(boot)

    async def terminate(self, brutal: bool = False) -> None:
        """Stop every child (reverse order; ``simple_one_for_one``: all at once);
        ``brutal``: kill them (what is left after this supervisor's own shutdown ran out)."""
        self.state = SupervisorState.STOPPED
        if self.simple:
            await asyncio.gather(*(self._stop(ch, brutal) for ch in self.children))
            if not self.host.stopping:            # gone, as in OTP (a node stop keeps them
                for ch in list(self.children):    # for the next start)
                    self._remove(ch)
        else:
            for ch in reversed(self.children):
                await self._stop(ch, brutal)

    async def release(self) -> None:
        """This supervisor is deleted: its actors' addresses become plain actors again."""
        for ch in list(self.children):
            await self._release_child(ch)
        self.host.supervisor_dropped(self)

    async def _release_child(self, ch: Child) -> None:
        """Remove a stopped child; its actor (or its subtree's actors) become plain actors."""
        if ch.sub is not None:
            await ch.sub.release()
        else:
            await self.host.release_actor(ch)
        self._remove(ch)

    async def _start_child(self, ch: Child, boot: Boot = Boot.FRESH) -> None:
        try:
            if ch.sub is not None:
                await ch.sub.start(boot)
            else:
                ch.inc = self.host.next_incarnation()
                await self.host.start_actor(self.name, ch)
        except StartFailed:
            ch.state = DEAD
            raise
        ch.state = RUNNING
        self.host.store.set_stopped(self.name, ch.id, False)

    async def _stop(self, ch: Child, brutal: bool = False) -> None:
        """Stop one child within its shutdown. A dead actor child is stopped too: its
        worker then fails what waited for it.

        A nested supervisor gets its own ``shutdown`` for its whole subtree: past it, or
        with ``brutal_kill``, what is left of the subtree is killed."""
        if ch.state is STOPPED:
            return
        if ch.sub is not None:
            if ch.sub.running:
                sd = BRUTAL_KILL if brutal else ch.spec.shutdown
                if sd == BRUTAL_KILL:
                    await ch.sub.terminate(brutal=True)
                elif sd == INFINITY:
                    await ch.sub.terminate()
                else:
                    try:
                        await asyncio.wait_for(ch.sub.terminate(), int(sd) / 1000)
                    except asyncio.TimeoutError:
                        log.warning("supervisor '%s': child supervisor '%s' did not stop within %s ms; "
                                    "killing the rest of its subtree", self.name, ch.id, sd)
                        await ch.sub.terminate(brutal=True)
        else:
            await self.host.stop_actor(self.name, ch, BRUTAL_KILL if brutal else ch.spec.shutdown)
        ch.state = STOPPED

    # -- exits ------------------------------------------------------------------
    async def on_exit(self, ch: Child, reason: str, inc: int | None = None) -> None:
        """A child exited (crash, self.stop, worker lost, or a sub-supervisor gave up)."""
        if not self.running or self.by_id.get(ch.id) is not ch or ch.state is not RUNNING:
            return
        if inc is not None and inc != ch.inc:
            return                      # a stale notice about an earlier incarnation
        ch.state = DEAD
        restart = restarts_after(ch.spec.restart, reason)
        if child_log.allow(f"{self.name}/{ch.id}"):
            (log.warning if restart else log.info)(
                "supervisor '%s': child '%s' exited (%s)", self.name, ch.id, reason)
        if not restart:
            await self._stop(ch)        # fails what waited for it; marks it stopped
            self._keep_stopped(ch)
            if ch.significant:
                await self._auto_shutdown()
            return
        await self._restart(ch)

    def _keep_stopped(self, ch: Child) -> None:
        """A child that ended and is not restarted: temporary and simple_one_for_one
        children are removed, the others stay as stopped specs (also across a host restart)."""
        if ch.spec.restart is Restart.TEMPORARY or self.simple:
            self._remove(ch)
        else:
            self.host.store.set_stopped(self.name, ch.id, True)

    def _group(self, ch: Child) -> list[Child]:
        """The children a restart of ``ch`` starts (in order), by strategy."""
        strategy = self.spec.strategy
        if strategy in (Strategy.ONE_FOR_ONE, Strategy.SIMPLE_ONE_FOR_ONE):
            return [ch]
        return self.children[self.children.index(ch) if strategy is Strategy.REST_FOR_ONE else 0:]

    async def _restart(self, ch: Child, *, retry: bool = False) -> None:
        """Count a restart of ``ch`` (giving up past the intensity), stop the rest of its
        group now (reverse order: dependants never run without it, even during a backoff),
        then start the group, at once or after the backoff delay. A retry after a failed
        start goes through the event queue (OTP's ``try_again_restart``), never recursion."""
        if not self._add_restart():
            await self._give_up()
            return
        group = self._group(ch)
        for other in reversed(group):
            if other is not ch and other.state is not STOPPED:
                await self._stop(other)
                other.state = RESTARTING     # stopped for this restart: started with it
        for other in [o for o in group if o is not ch and o.spec.restart is Restart.TEMPORARY]:
            self._remove(other)         # temporary bystanders are not restarted
        backoff = self.spec.backoff
        delay = backoff.delay(len(self.restarts), random.random()) if backoff else 0.0
        if delay > 0:
            ch.state = RESTARTING
            self.host.later(delay, self._restart_now, ch)
        elif retry:
            self.host.post(self._restart_now, ch)
        else:
            await self._restart_now(ch)

    async def _restart_now(self, ch: Child) -> None:
        if not self.running or self.by_id.get(ch.id) is not ch:
            return    # stopped or removed meanwhile
        # ch itself unless it was terminated meanwhile, and the members of its group
        # stopped for this restart; children terminated by hand stay stopped
        for other in self._group(ch):
            if other.state not in (DEAD, RESTARTING):
                continue
            try:
                await self._start_child(other)
            except StartFailed as exc:
                if child_log.allow(f"{self.name}/{other.id}"):
                    log.warning("supervisor '%s': restarting child '%s' failed: %s", self.name,
                                other.id, exc)
                await self._restart(other, retry=True)   # counts as one more restart
                return

    def _add_restart(self) -> bool:
        """Count one restart now; False if that is more than the intensity allows."""
        now = self.host.now()
        self.restarts.append(now)
        self.restarted += 1
        while self.restarts and self.restarts[0] < now - self.spec.max_seconds:
            self.restarts.popleft()
        return len(self.restarts) <= self.spec.max_restarts

    async def _give_up(self) -> None:
        child_log.flush()       # (how many lines the loop suppressed, before it ends)
        log.error("supervisor '%s': reached max restart intensity (%d restarts within %g s); "
                  "stopping its children and exiting (shutdown)",
                  self.name, self.spec.max_restarts, self.spec.max_seconds)
        await self.terminate()
        await self._exited(ExitWhy.INTENSITY)

    async def _auto_shutdown(self) -> None:
        auto = self.spec.auto_shutdown
        if auto is AutoShutdown.NEVER:
            return
        if auto is AutoShutdown.ALL_SIGNIFICANT and any(c.significant and c.state is not STOPPED
                                                        for c in self.children):
            return
        log.info("supervisor '%s': significant children have exited (auto_shutdown = %s); "
                 "shutting down", self.name, auto.value)
        await self.terminate()
        await self._exited(ExitWhy.AUTO_SHUTDOWN)

    async def _exited(self, why: ExitWhy) -> None:
        """Exit with reason ``shutdown``: to the parent as a child's exit, or to the host."""
        if self.parent is not None:
            await self.parent.on_exit(self.parent.child_of(self), "shutdown")
        else:
            await self.host.root_exited(self, why)

    def child_of(self, sub: Supervisor) -> Child:
        """The child record of a nested supervisor of this one."""
        return next(c for c in self.children if c.sub is sub)

    # -- runtime API (OTP's which_children, count_children, start_child, ...) ----------
    def which_children(self) -> list[dict[str, Any]]:
        return [ch.info() for ch in self.children]

    def count_children(self) -> dict[str, int]:
        sups = sum(1 for c in self.children if c.sub is not None)
        return {"specs": 1 if self.simple else len(self.children),
                "active": sum(1 for c in self.children if c.state is RUNNING),
                "supervisors": sups, "workers": len(self.children) - sups}

    def _simple_spec(self, arg: Any) -> ChildSpec:
        """A simple_one_for_one child from the template and ``{key, args, kwargs}``."""
        if arg is None:
            arg = {}
        if not isinstance(arg, dict) or set(arg) - {"key", "args", "kwargs"}:
            raise SupervisorError("start_child of a simple_one_for_one supervisor takes "
                                  "{key, args, kwargs}: the key and extra start arguments")
        key = arg.get("key") or uuid.uuid4().hex
        extra_args, extra_kwargs = arg.get("args", []), arg.get("kwargs", {})
        if not isinstance(key, str):
            raise SupervisorError(f"start_child: key must be a string, got {key!r:.80}")
        if not isinstance(extra_args, list):
            raise SupervisorError(f"start_child: args must be a list, got {extra_args!r:.80}")
        if not isinstance(extra_kwargs, dict) or any(not isinstance(k, str) for k in extra_kwargs):
            raise SupervisorError("start_child: kwargs must be a map with string keys")
        template = self.spec.children[0]
        d = template.to_dict()
        d.update(id=key, key=key, args=[*template.args, *extra_args],
                 kwargs={**template.kwargs, **extra_kwargs})
        return self.host.parse_child(self.spec, d, "start_child")

    async def start_child(self, arg: Any) -> Any:
        """Add a child and start it: the key (simple_one_for_one) or its info."""
        spec = self._simple_spec(arg) if self.simple else self.host.parse_child(self.spec, arg,
                                                                                 "start_child")
        old = self.by_id.get(spec.id)
        if old is not None:
            if old.state is not STOPPED:
                raise AlreadyStarted(f"child '{spec.id}' of supervisor '{self.name}' is already started")
            raise AlreadyPresent(f"child '{spec.id}' of supervisor '{self.name}' is already present "
                                 f"(stopped); use restart_child or delete_child")
        if spec.supervisor is not None:
            raise SupervisorError("start_child starts actor children; declare nested supervisors "
                                  "in the config file")
        self.host.check_unsupervised(spec)
        ch = Child(spec, dynamic=True, seq=self.seq)
        self._add(ch)
        try:
            await self._start_child(ch)
        except StartFailed:
            await self._stop(ch)
            self._remove(ch)
            raise
        self.host.store.put_dynamic(self.name, ch.seq, spec)
        return spec.key if self.simple else ch.info()

    async def terminate_child(self, cid: Any) -> None:
        ch = self._find(cid)
        await self._stop(ch)            # a pending restart then finds it stopped: not started
        self._keep_stopped(ch)

    async def restart_child(self, cid: Any) -> dict[str, Any]:
        if self.simple:
            raise SupervisorError("restart_child is not supported by simple_one_for_one supervisors")
        ch = self._find(cid)
        if ch.state is not STOPPED:
            raise ChildRunning(f"child '{ch.id}' of supervisor '{self.name}' is {ch.state.reported}")
        try:
            await self._start_child(ch)
        except StartFailed:
            # OTP: the error is the answer and the child stays a stopped spec (what its
            # failed start left on a worker is stopped), not one waiting for a restart
            await self._stop(ch)
            raise
        return ch.info()

    async def delete_child(self, cid: Any) -> None:
        if self.simple:
            raise SupervisorError("delete_child is not supported by simple_one_for_one supervisors")
        ch = self._find(cid)
        if ch.state is not STOPPED:
            raise ChildRunning(f"child '{ch.id}' of supervisor '{self.name}' is {ch.state.reported}; "
                               f"terminate it first")
        await self._release_child(ch)
        if not ch.dynamic:
            self.host.store.set_deleted(self.name, ch.id)

    def _find(self, cid: Any) -> Child:
        ch = self.by_id.get(cid) if isinstance(cid, str) else None
        if ch is None:
            raise ChildNotFound(f"supervisor '{self.name}' has no child '{cid!s:.200}'")
        return ch
