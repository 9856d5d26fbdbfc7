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
  and the supervisor gives up: it stops all its children and exits with reason
  ``shutdown``, which its parent handles by its own child spec; a root that gives up
  stops the node. A restart that fails to start counts as one more restart and is tried
  again.
* **Backoff** (beyond OTP, optional): the n-th restart within the window waits
  ``initial * 2**(n-1)`` seconds, capped at ``max``, spread by ``jitter``; the child
  reports ``restarting`` meanwhile.
* **Auto shutdown.** With ``any_significant`` the supervisor shuts down when a
  significant child exits on its own and is not restarted; with ``all_significant``
  when the last one has. ``terminate_child`` never triggers it.

Everything here runs inside the tree process (``tree.py``), one event at a time (an exit,
an admin call, a restart coming due), each handled whole before the next, as in OTP
where a supervisor is one process. A restart waiting out its backoff, or retrying a
failed start, spans events: its group reports ``restarting`` meanwhile.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from actorsys.errors import (AlreadyPresent, AlreadyStarted, ChildNotFound, ChildRunning,
                             StartFailed, SupervisorError)

from actorsys.config.supervision import ChildSpec, SupervisorSpec

if TYPE_CHECKING:
    from .tree import Tree

NORMAL_EXITS = ("normal", "shutdown")


class Child:
    """A child as its supervisor sees it. ``status``: running | restarting | stopped
    (``dead`` only while its exit is being handled)."""

    __slots__ = ("spec", "key", "status", "inc", "sub", "dynamic", "seq")

    def __init__(self, spec: ChildSpec, key: str | None, sub: "Supervisor | None" = None,
                 dynamic: bool = False, seq: int = 0) -> None:
        self.spec, self.key, self.sub, self.dynamic, self.seq = spec, key, sub, dynamic, seq
        self.status = "stopped"
        self.inc = 0

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def addr(self) -> tuple[str, str]:
        return (self.spec.actor or "", self.key or "")

    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.spec.id, "status": "restarting" if self.status == "dead"
                             else self.status, "restart": self.spec.restart,
                             "shutdown": self.spec.shutdown, "significant": self.spec.significant}
        if self.sub is not None:
            d.update(type="supervisor", supervisor=self.spec.supervisor)
        else:
            d.update(type="worker", actor=self.spec.actor, key=self.key)
        return d


class Supervisor:
    """The state machine of one supervisor: ``stopped`` -> ``running`` -> ``stopped``."""

    def __init__(self, spec: SupervisorSpec, tree: "Tree", parent: "Supervisor | None" = None) -> None:
        self.spec, self.tree, self.parent = spec, tree, parent
        self.name = spec.name
        self.children: list[Child] = []
        self.by_id: dict[str, Child] = {}
        self.restarts: deque[float] = deque()
        self.running = False
        self.seq = 0

    @property
    def simple(self) -> bool:
        return self.spec.strategy == "simple_one_for_one"

    # -- building ---------------------------------------------------------------
    def _add(self, ch: Child) -> None:
        self.children.append(ch)
        self.by_id[ch.id] = ch
        self.seq = max(self.seq, ch.seq + 1)
        if ch.sub is None:
            self.tree.index_child(self, ch)

    def _remove(self, ch: Child) -> None:
        if self.by_id.get(ch.id) is not ch:
            return
        self.children.remove(ch)
        del self.by_id[ch.id]
        if ch.sub is None:
            # its actor stays stopped (ActorStopped) until a supervisor starts it again;
            # only delete_child and a removal from the config release the address
            self.tree.unindex_child(ch, release=True)
        if ch.dynamic:
            self.tree.store.drop_dynamic(self.name, ch.id)
        self.tree.store.set_stopped(self.name, ch.id, False)

    def _unindex_all(self, fresh: bool) -> None:
        """Drop this subtree's children from the tree's index (``fresh``: it is being
        rebuilt from its spec, so its run-time children are gone for good)."""
        for ch in self.children:
            if ch.sub is not None:
                ch.sub._unindex_all(fresh)
            else:
                self.tree.unindex_child(ch, release=ch.dynamic and fresh)

    def _build(self, with_dynamic: bool) -> None:
        """Fresh children from the spec (and, at node start, the dynamic ones persisted)."""
        self._unindex_all(fresh=not with_dynamic)
        self.children, self.by_id, self.seq = [], {}, 0
        if not self.simple:
            for cs in self.spec.children:
                if with_dynamic and self.tree.store.is_deleted(self.name, cs.id):
                    continue        # deleted at run time: stays deleted until the node restarts
                sub = self.tree.make_supervisor(cs.supervisor, self) if cs.supervisor else None
                self._add(Child(cs, cs.key, sub))
        if with_dynamic:
            for seq, d in self.tree.store.dynamic(self.name):
                cs = ChildSpec(**d)
                if cs.restart == "temporary" and not self.tree.restarted:
                    self.tree.store.drop_dynamic(self.name, cs.id)   # a node start: never restarted
                    continue
                self._add(Child(cs, cs.key, dynamic=True, seq=seq))
        else:
            self.tree.store.drop_all_dynamic(self.name)

    # -- start and stop ---------------------------------------------------------
    async def start(self, *, restoring: bool = False) -> None:
        """Start every child in order (OTP ``init``); StartFailed if one cannot start.

        ``restoring``: at node start or after a tree restart, with the children added at
        run time (and, after a tree restart, keeping the ones stopped at run time stopped).
        A restart by the parent starts fresh from the spec, as in OTP."""
        self._build(with_dynamic=restoring)
        self.restarts.clear()
        self.running = True
        self.tree.supervisor_started(self)
        started: list[Child] = []
        for ch in list(self.children):
            if restoring and self.tree.store.is_stopped(self.name, ch.id):
                if ch.sub is not None:
                    ch.sub.build_stopped()   # so it reports, and delete_child can release it
                continue
            try:
                await self._start_child(ch, restoring)
            except StartFailed as exc:
                await self._stop(ch)       # answers what waited for it; marks it stopped
                if ch.dynamic:      # a persisted dynamic child that cannot come back is dropped
                    self.tree.log(f"supervisor '{self.name}': could not restore child '{ch.id}': {exc}")
                    self._remove(ch)
                    continue
                for s in reversed(started):
                    await self._stop(s)
                self.running = False
                raise StartFailed(f"supervisor '{self.name}' failed to start child '{ch.id}': "
                                  f"{exc}") from None
            started.append(ch)

    def build_stopped(self) -> None:
        """Restore a supervisor that was stopped at run time: its children, not started."""
        self._build(with_dynamic=True)
        self.running = False
        self.tree.supervisor_started(self)
        for ch in self.children:
            if ch.sub is not None:
                ch.sub.build_stopped()

    async def terminate(self, brutal: bool = False) -> None:
        """Stop every child (reverse order; ``simple_one_for_one``: all at once);
        ``brutal``: kill them (what is left after this supervisor's own shutdown ran out)."""
        self.running = False
        if self.simple:
            await asyncio.gather(*(self._stop(ch, brutal) for ch in self.children))
            if self.tree.state != "stopping":     # gone, as in OTP (a node stop keeps them
                for ch in list(self.children):    # for the next start)
                    self._remove(ch)
        else:
            for ch in reversed(self.children):
                await self._stop(ch, brutal)

    async def release(self) -> None:
        """This supervisor is deleted: its actors' addresses become plain actors again."""
        for ch in list(self.children):
            await self._release_child(ch)
        self.tree.supervisor_deleted(self)

    async def _release_child(self, ch: Child) -> None:
        """Remove a stopped child; its actor (or its subtree's actors) become plain actors."""
        if ch.sub is not None:
            await ch.sub.release()
        else:
            await self.tree.forget_actor(ch)
        self._remove(ch)

    async def _start_child(self, ch: Child, restoring: bool = False) -> None:
        try:
            if ch.sub is not None:
                await ch.sub.start(restoring=restoring)
            else:
                ch.inc = self.tree.next_inc()
                await self.tree.start_actor(self, ch)
        except StartFailed as exc:
            ch.status = "dead"
            exc.child = ch  # type: ignore[attr-defined]
            raise
        ch.status = "running"
        self.tree.store.set_stopped(self.name, ch.id, False)

    async def _stop(self, ch: Child, brutal: bool = False) -> None:
        """Stop one child within its shutdown (a dead one is only marked stopped).

        A nested supervisor gets its own ``shutdown`` for its whole subtree: past it, or
        with ``brutal_kill``, what is left of the subtree is killed."""
        if ch.status == "stopped":
            return
        if ch.sub is not None:
            if ch.sub.running:
                sd = "brutal_kill" if brutal else ch.spec.shutdown
                if sd == "brutal_kill":
                    await ch.sub.terminate(brutal=True)
                elif sd == "infinity":
                    await ch.sub.terminate()
                else:
                    try:
                        await asyncio.wait_for(ch.sub.terminate(), int(sd) / 1000)
                    except asyncio.TimeoutError:
                        self.tree.log(f"supervisor '{self.name}': child supervisor '{ch.id}' did "
                                      f"not stop within {sd} ms; killing the rest of its subtree")
                        await ch.sub.terminate(brutal=True)
        else:
            await self.tree.stop_actor(self, ch, "brutal_kill" if brutal else None)
        ch.status = "stopped"

    # -- exits ------------------------------------------------------------------
    async def on_exit(self, ch: Child, reason: str, inc: int | None = None) -> None:
        """A child exited (crash, self.stop, worker lost, or a sub-supervisor gave up)."""
        if not self.running or self.by_id.get(ch.id) is not ch or ch.status != "running":
            return
        if inc is not None and inc != ch.inc:
            return                      # a stale notice about an earlier incarnation
        ch.status = "dead"
        self.tree.log(f"supervisor '{self.name}': child '{ch.id}' exited ({reason})")
        restart = ch.spec.restart == "permanent" or (
            ch.spec.restart == "transient" and reason not in NORMAL_EXITS)
        if not restart:
            await self._stop(ch)        # fails what waited for it; marks it stopped
            self._keep_stopped(ch)
            if ch.spec.significant:
                await self._auto_shutdown()
            return
        await self._restart(ch)

    def _keep_stopped(self, ch: Child) -> None:
        """A child that ended and is not restarted: temporary and simple_one_for_one
        children are removed, the others stay as stopped specs (also across a tree restart)."""
        if ch.spec.restart == "temporary" or self.simple:
            self._remove(ch)
        else:
            self.tree.store.set_stopped(self.name, ch.id, True)

    def _group(self, ch: Child) -> list[Child]:
        """The children a restart of ``ch`` starts (in order), by strategy."""
        strategy = self.spec.strategy
        if strategy in ("one_for_one", "simple_one_for_one"):
            return [ch]
        return self.children[self.children.index(ch) if strategy == "rest_for_one" else 0:]

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
            if other is not ch and other.status != "stopped":
                await self._stop(other)
                other.status = "restarting"     # stopped for this restart: started with it
        for other in [o for o in group if o is not ch and o.spec.restart == "temporary"]:
            self._remove(other)         # temporary bystanders are not restarted
        backoff = self.spec.backoff
        delay = backoff.delay(len(self.restarts), random.random()) if backoff else 0.0
        if delay > 0:
            ch.status = "restarting"
            self.tree.later(delay, self._restart_now, ch)
        elif retry:
            self.tree.post(self._restart_now, ch)
        else:
            await self._restart_now(ch)

    async def _restart_now(self, ch: Child) -> None:
        if not self.running or self.by_id.get(ch.id) is not ch:
            return    # stopped or removed meanwhile
        try:
            # ch itself unless it was terminated meanwhile, and the members of its group
            # stopped for this restart; children terminated by hand stay stopped
            for other in self._group(ch):
                if other.status in ("dead", "restarting"):
                    await self._start_child(other)
        except StartFailed as exc:
            failed: Child = getattr(exc, "child", ch)
            self.tree.log(f"supervisor '{self.name}': restarting child '{failed.id}' failed: {exc}")
            failed.status = "dead"
            await self._restart(failed, retry=True)   # counts as one more restart

    def _add_restart(self) -> bool:
        now = time.monotonic()
        self.restarts.append(now)
        period = self.spec.max_seconds
        while self.restarts and self.restarts[0] < now - period:
            self.restarts.popleft()
        return len(self.restarts) <= self.spec.max_restarts

    async def _give_up(self) -> None:
        self.tree.log(f"supervisor '{self.name}': reached max restart intensity "
                      f"({self.spec.max_restarts} restarts within {self.spec.max_seconds:g} s); "
                      f"stopping its children and exiting (shutdown)")
        await self.terminate()
        await self._exited("shutdown", "reached_max_restart_intensity")

    async def _auto_shutdown(self) -> None:
        auto = self.spec.auto_shutdown
        if auto == "never":
            return
        if auto == "all_significant" and any(c.spec.significant and c.status != "stopped"
                                             for c in self.children):
            return
        self.tree.log(f"supervisor '{self.name}': significant children have exited "
                      f"(auto_shutdown = {auto}); shutting down")
        await self.terminate()
        await self._exited("shutdown", "auto_shutdown")

    async def _exited(self, reason: str, why: str) -> None:
        if self.parent is not None:
            me = next(c for c in self.parent.children if c.sub is self)
            await self.parent.on_exit(me, reason)
        else:
            await self.tree.root_exited(self, why)

    # -- runtime API (OTP's which_children, count_children, start_child, ...) ----------
    def which_children(self) -> list[dict[str, Any]]:
        return [ch.info() for ch in self.children]

    def count_children(self) -> dict[str, int]:
        sups = sum(1 for c in self.children if c.sub is not None)
        return {"specs": 1 if self.simple else len(self.children),
                "active": sum(1 for c in self.children if c.status == "running"),
                "supervisors": sups, "workers": len(self.children) - sups}

    async def start_child(self, arg: Any) -> Any:
        if self.simple:
            if arg is None:
                arg = {}
            if not isinstance(arg, dict) or set(arg) - {"key", "args", "kwargs"}:
                raise SupervisorError("start_child of a simple_one_for_one supervisor takes "
                                      "{key, args, kwargs}: the key and extra start arguments")
            key = arg.get("key") or self.tree.new_key()
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
            spec = self.tree.parse_child(self, d, "start_child")
        else:
            spec = self.tree.parse_child(self, arg, "start_child")
        old = self.by_id.get(spec.id)
        if old is not None:
            if old.status in ("running", "restarting", "dead"):
                raise AlreadyStarted(f"child '{spec.id}' of supervisor '{self.name}' is already started")
            raise AlreadyPresent(f"child '{spec.id}' of supervisor '{self.name}' is already present "
                                 f"(stopped); use restart_child or delete_child")
        if spec.supervisor is not None:
            raise SupervisorError("start_child starts actor children; declare nested supervisors "
                                  "in the config file")
        self.tree.check_unsupervised(spec)
        ch = Child(spec, spec.key, dynamic=True, seq=self.seq)
        self._add(ch)
        try:
            await self._start_child(ch)
        except StartFailed:
            await self._stop(ch)
            self._remove(ch)
            raise
        self.tree.store.put_dynamic(self.name, ch.seq, spec)
        return spec.key if self.simple else ch.info()

    async def terminate_child(self, cid: Any) -> None:
        ch = self._find(cid)
        await self._stop(ch)            # a pending restart then finds it stopped: not started
        self._keep_stopped(ch)

    async def restart_child(self, cid: Any) -> dict[str, Any]:
        if self.simple:
            raise SupervisorError("restart_child is not supported by simple_one_for_one supervisors")
        ch = self._find(cid)
        if ch.status != "stopped":
            raise ChildRunning(f"child '{ch.id}' of supervisor '{self.name}' is {ch.info()['status']}")
        await self._start_child(ch)
        return ch.info()

    async def delete_child(self, cid: Any) -> None:
        if self.simple:
            raise SupervisorError("delete_child is not supported by simple_one_for_one supervisors")
        ch = self._find(cid)
        if ch.status != "stopped":
            raise ChildRunning(f"child '{ch.id}' of supervisor '{self.name}' is {ch.info()['status']}; "
                               f"terminate it first")
        await self._release_child(ch)
        if not ch.dynamic:
            self.tree.store.set_deleted(self.name, ch.id)

    def _find(self, cid: Any) -> Child:
        ch = self.by_id.get(cid) if isinstance(cid, str) else None
        if ch is None:
            raise ChildNotFound(f"supervisor '{self.name}' has no child '{cid!s:.200}'")
        return ch
