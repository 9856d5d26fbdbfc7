"""The processes of a node as its supervisor sees them, and how each one is started.

* A node's children are the router, worker slots ``0 .. N-1``, the supervision tree
  (when the config declares supervisors) and the gateway (when it has a ``[gateway]``):
  :class:`Role`, and one :class:`NodeChild` record per process to run.
* :meth:`Launcher.spawn` forks one. In the child, right after the fork: default signal
  handlers (SIGINT ignored: Ctrl-C reaches the whole process group, and only the
  supervisor acts on it, so children stop in order on its SIGTERM), death with the
  parent (``PR_SET_PDEATHSIG``; a child whose parent is already gone exits), the node's
  lock files closed (they belong to the supervisor), logging set up for its role
  (``actorsys.log.setup``), then the role's entry point. Its exit status is what that
  returns; an uncaught error is logged with its traceback and exits 1.
* Forking rather than starting an interpreter makes a restart take milliseconds: the
  supervisor imports every module a child needs before it forks.
"""
from __future__ import annotations

import ctypes
import enum
import gc
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from actorsys import log as actorsys_log
from actorsys import metrics
from actorsys.actor.classes import check_actor_classes
from actorsys.config import NodeConfig, NodeLayout
from actorsys.errors import ConfigError
from actorsys.node import router
from actorsys.runtime import worker
from actorsys.protocol.board import SlotBoard

from . import tree

log = logging.getLogger("supervisors.node")

#: the signals the node supervisor waits for (blocked, read with sigtimedwait)
SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1


class Role(enum.Enum):
    ROUTER = "router"
    WORKER = "worker"
    TREE = "tree"
    GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class NodeChild:
    """One process to run: its role, its slot (workers only, else None) and, for the
    tree, whether it is a restart (it then keeps the children stopped at run time);
    ``restarts``: how many times this role and slot were started again before (the
    process reports it: ``actorsys_process_restarts_total``)."""

    role: Role
    slot: int | None = None
    restarted: bool = False
    restarts: int = 0

    @property
    def name(self) -> str:
        """How messages name it: ``router``, ``worker slot 3``, ``supervision tree``, ``gateway``."""
        if self.role is Role.WORKER:
            return f"worker slot {self.slot}"
        return "supervision tree" if self.role is Role.TREE else self.role.value

    def again(self) -> NodeChild:
        """The same process, started again (a restarted tree restores its state)."""
        return NodeChild(self.role, self.slot, restarted=self.role is Role.TREE,
                         restarts=self.restarts + 1)


def describe(status: int) -> str:
    """A wait status in words: ``killed by SIGKILL``, ``exited with status 1``."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def exit_status(status: int) -> int | None:
    """The exit status of a process that exited (None if a signal killed it)."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else None


def send_signal(pid: int, sig: int) -> None:
    """Signal a process that may be gone already."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # not Linux: the ppid checks still apply
        pass


def check_classes_in_a_child(cfg: NodeConfig) -> None:
    """Import every actor class in a forked child, as a worker will; raise ConfigError
    naming the class if one fails. Not here: workers fork from this process, and must
    import the actor modules from disk themselves (a restarted worker runs the code on
    disk now, not the code this process would have cached)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # the child: import, report, exit
        os.close(r)
        code = 0
        try:
            check_actor_classes(cfg)
        except BaseException as exc:
            os.write(w, str(exc).encode("utf-8", "replace")[:8000])
            code = 2
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        problem = f.read().decode("utf-8", "replace")
    _pid, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise ConfigError(problem or f"importing the actor classes failed (status {status})")


#: the supervisor has collected its garbage before a first fork (see Launcher.spawn)
_collected = False


@dataclass(slots=True)
class Launcher:
    """Forks the node's processes; holds what every one of them is started with.

    ``board``: the memory shared with the router and the workers (see ``health.py``); ``reports_w``: the
    pipe a worker or the tree writes why it failed to; ``lock_fds``: the node's locks,
    which only the supervisor (``parent``) keeps."""

    cfg: NodeConfig
    layout: NodeLayout
    meta: dict[str, Any]
    board: SlotBoard
    reports_w: int
    lock_fds: list[int]
    parent: int

    def spawn(self, child: NodeChild) -> int:
        """Fork ``child``; returns its pid (in the parent: the child never returns).

        The child starts with everything the supervisor had frozen (``gc.freeze``): no
        collection of the child walks the modules and classes it was forked with (nor
        writes to their pages, which stay shared). The supervisor collects once, before
        its first fork (a full collection of what the imports made takes some 10 ms:
        not on a restart's path), and unfreezes its own objects after each fork."""
        global _collected
        if not _collected:
            gc.collect()
            _collected = True
        gc.freeze()
        pid = os.fork()
        if pid:
            gc.unfreeze()
            return pid
        code = 1
        try:
            self._become(child)
            code = self._run(child)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("the %s failed", child.name)
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _become(self, child: NodeChild) -> None:
        """The start-up of a forked child, before its role runs."""
        for s in SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _die_with_parent()
        if os.getppid() != self.parent:
            os._exit(1)
        for fd in self.lock_fds:   # the locks belong to the supervisor alone
            os.close(fd)
        actorsys_log.setup(child.role.value, child.slot)
        metrics.start(child.role.value, child.slot, child.restarts)

    def _run(self, child: NodeChild) -> int:
        """Run the role's entry point; returns the exit status."""
        cfg, layout = self.cfg, self.layout
        if child.role is Role.ROUTER:
            return router.main(cfg, layout, self.meta, self.reports_w, board=self.board)
        if child.role is Role.GATEWAY:
            from actorsys.gateway import app as gateway
            gateway.main(cfg, layout)
            return 0
        if child.role is Role.TREE:
            return tree.main(cfg, layout, self.meta, restarted=child.restarted, report_fd=self.reports_w)
        assert child.slot is not None
        return worker.main(cfg, layout, child.slot, self.meta, self.board.beats, self.reports_w,
                           board=self.board)
