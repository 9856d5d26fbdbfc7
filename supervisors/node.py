"""The node supervisor: the root process of a node.

In the user's words:

* It starts the router, then worker slots ``0 .. N-1``, each as its own OS process
  (forked, so a restart takes milliseconds, not an interpreter start-up).
* When any of them dies (kill -9, segfault, an uncaught error) it starts a new one
  into the same slot at once. The new worker binds the same endpoint, so clients'
  ZeroMQ sockets reconnect by themselves, and actors come back from their last
  committed LevelDB snapshot on their next message.
* It also restarts a worker that is alive but not well: one whose resident memory is
  above ``max_worker_memory`` (psutil; stopped gracefully, then killed), one whose
  synchronous turn has run past ``turn_timeout``, and one whose event loop missed its
  heartbeats for ``heartbeat_timeout`` (both killed: a blocked loop cannot stop itself).
  Heartbeats and turn start times come from memory shared with the workers
  (``health.py``).
* With a ``[gateway]`` in the config it starts the HTTP/WebSocket gateway
  (``actorsys/gateway``) last and stops it first, and restarts it like the router.
* With supervisors in the config it also starts the supervision tree process
  (``tree.py``) after the workers, and stops it first. If the tree exits on purpose
  (a top-level supervisor gave up: status 3; or shut down by ``auto_shutdown``: 0) the
  node stops cleanly with that status; if it crashes, it is restarted like any child.
* Restart intensity: more than ``max_restarts`` restarts within ``max_seconds`` means
  something is wrong beyond a crash; the supervisor then stops the node and exits with
  status 2 (Erlang/OTP's "reached max restart intensity"). With ``backoff`` set, the
  n-th restart within that window waits ``initial * 2**(n-1)`` seconds (capped, with
  jitter) instead of happening at once.
* A worker that cannot open its storage (exit status ``EXIT_STORAGE``) stops the node
  with status 2: restarting it cannot help.
* SIGTERM, SIGINT or SIGHUP stop the node: every child gets SIGTERM and
  ``shutdown_timeout`` seconds to passivate its actors, then SIGKILL. With ``--drain``
  (``actorsys run --drain``) a cluster node first asks its router to hand its shards off
  to the other nodes (``LEAVE``, :mod:`actorsys.node.drain`), restarting children as
  usual meanwhile, for at most ``--drain-timeout`` seconds or until a second stop
  signal; a single node has nothing to hand off.
* No orphans: every child dies with the supervisor (``PR_SET_PDEATHSIG``), and an
  embedded node's supervisor stops when the process that started it is gone.

The state machine is three states (:class:`NodeState`): ``starting`` -> ``running``
(restart on every child exit) -> ``stopping`` (gateway and tree first, then workers,
then the router: terminate, wait, kill, reap). How each process starts is in
``processes.py``.
"""
from __future__ import annotations

import argparse
import enum
import functools
import json
import logging
import os
import random
import shutil
import signal
import sys
import time
from collections import deque
from typing import Callable, NamedTuple

from actorsys import log as actorsys_log
from actorsys.config import NodeConfig, NodeLayout
from actorsys.config.layout import FAILURE_FILE
from actorsys.config.supervision import Backoff
from actorsys.errors import ActorError, ConfigError
from actorsys.net.keys import node_keys
from actorsys.node import router
from actorsys.node.claim import claim_node
from actorsys.protocol.board import PEERS
from actorsys.runtime import worker
from actorsys.storage.meta import cluster_identity, load_or_create_meta

from . import tree
from .health import WorkerHealth
from .processes import (SIGNALS, Launcher, NodeChild, Role, check_classes_in_a_child, describe,
                        exit_status, send_signal)

log = logging.getLogger("supervisors.node")

EXIT_GAVE_UP = 2           # the node stopped by itself: intensity, storage, or a start failure
TICK = 0.05                # seconds between two wake-ups of the main loop (SIGALRM)
FAILURE_REPORT_MAX = 65536


class NodeState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


class Due(NamedTuple):
    """A restart waiting out its backoff."""

    at: float
    child: NodeChild


class NodeSupervisor:
    """The root process of a node (see the module docstring)."""

    def __init__(self, cfg: NodeConfig, layout: NodeLayout, watch_parent: int | None = None,
                 report_fd: int | None = None, drain: float | None = None) -> None:
        self.cfg, self.layout = cfg, layout
        #: --drain: seconds a clean stop waits for the shards' handoff (None: no drain)
        self.drain = drain if cfg.cluster is not None else None
        #: the signal that stopped the node (None: it stopped by itself)
        self.stop_signal: int | None = None
        self.watch_parent = watch_parent
        self.pid = os.getpid()
        self.children: dict[int, NodeChild] = {}   # pid -> what runs there
        self.restarts: deque[float] = deque()      # restart times within the window, oldest first
        self.state = NodeState.STARTING
        self.backoff = Backoff(**cfg.backoff) if cfg.backoff else None
        self.due: list[Due] = []
        self.health = WorkerHealth(cfg, time.monotonic())
        # a worker that cannot open its storage writes why here before it exits
        self.reports_r, self.reports_w = os.pipe()
        os.set_blocking(self.reports_r, False)
        #: why the node stopped by itself, written to report_fd (Node reads it)
        self.failure: str | None = None
        self.report_fd = report_fd

    # -- children ---------------------------------------------------------------
    def _spawn(self, child: NodeChild) -> int:
        now = time.monotonic()
        if child.role is Role.WORKER:
            assert child.slot is not None
            self.health.worker_forked(child.slot, now)
        pid = self.launcher.spawn(child)
        self.children[pid] = child
        if child.role is Role.WORKER:
            assert child.slot is not None
            self.health.worker_running(child.slot, pid, now)
        elif child.role.value in PEERS:
            self.health.board.peer_forked(child.role.value, pid, now)
        return pid

    def _reap(self) -> list[tuple[NodeChild, int]]:
        """The children that exited, with their wait status."""
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = self.children.pop(pid, None)
            if child is not None:
                if child.role is Role.WORKER and child.slot is not None:
                    self.health.worker_gone(child.slot)
                elif child.role.value in PEERS:
                    self.health.board.peer_gone(child.role.value)
                dead.append((child, status))
        return dead

    # -- main loop ----------------------------------------------------------------
    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS | {signal.SIGALRM})
        try:
            # a class the workers cannot import would crash-loop them: check first
            check_classes_in_a_child(self.cfg)
            lock_fds = claim_node(self.cfg, self.layout)
            meta = load_or_create_meta(self.cfg.data_dir, self.cfg.shards, self.cfg.workers)
            if self.cfg.cluster is not None:
                meta = cluster_identity(self.cfg.data_dir, meta, self.cfg.cluster)
            node_keys(self.cfg)      # the key files still load (each child reads them at start)
        except ConfigError as exc:
            self._fail(f"cannot start: {exc}")
            return EXIT_GAVE_UP
        self.launcher = Launcher(self.cfg, self.layout, meta, self.health.board, self.reports_w, lock_fds,
                                 self.pid)
        if self.cfg.gateway is not None:
            from actorsys.gateway import app  # noqa: F401  (imported before forking, like the rest)
        if self.cfg.insecure and self.layout.router.startswith("tcp://"):
            log.warning("insecure = true: the tcp endpoints of this node (%s and its workers' ports) "
                        "are unauthenticated and unencrypted; anyone who can reach them can call "
                        "any actor. Use CURVE keys (curve_secret_key) off a trusted network",
                        self.layout.router)
        self._spawn(NodeChild(Role.ROUTER))
        for i in range(self.cfg.workers):
            self._spawn(NodeChild(Role.WORKER, i))
        # a worker restarted later finds its slot directory made by this run: missing
        # then, it was lost (actorsys/storage/lost.py), not new
        self.launcher.meta = {k: v for k, v in meta.items() if k != "created_now"}
        if self.layout.tree is not None:
            self._spawn(NodeChild(Role.TREE))
        if self.cfg.gateway is not None:
            self._spawn(NodeChild(Role.GATEWAY))
        self.state = NodeState.RUNNING
        log.info("node running at %s with %d workers", self.layout.router, self.cfg.workers)
        code = self._loop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        if self.drain is not None and self.stop_signal is not None and self.state is NodeState.RUNNING:
            code = self._drain(self.drain) or code
        self.state = NodeState.STOPPING
        self._stop_children()
        return code

    def _loop(self) -> int:
        """Restart children until the node must stop; returns its exit status."""
        code = 0
        # Wake every TICK by SIGALRM, not by a sigtimedwait timeout: when sigtimedwait is
        # interrupted (EINTR, e.g. SIGSTOP/SIGCONT from Ctrl-Z and fg) after its timeout has
        # passed, CPython returns an uninitialised siginfo, read as a random signal (SIGHUP...).
        signal.setitimer(signal.ITIMER_REAL, TICK, TICK)
        while self.state is NodeState.RUNNING:
            info = signal.sigtimedwait(SIGNALS | {signal.SIGALRM}, 1e6)
            if info is not None and info.si_signo not in (signal.SIGCHLD, signal.SIGALRM):
                log.info("received %s; stopping", signal.Signals(info.si_signo).name)
                self.stop_signal = info.si_signo
                break
            for child, status in self._reap():
                c = self._on_child_exit(child, status)
                if c is not None:
                    code = c
                    break
            if self.state is not NodeState.RUNNING:
                break
            self._start_due()
            self.health.check(self.children, time.monotonic())
            if self.watch_parent is not None and os.getppid() != self.watch_parent:
                log.info("the process that started this node is gone; stopping")
                break
        return code

    def _on_child_exit(self, child: NodeChild, status: int) -> int | None:
        """Handle one dead child; returns an exit status if the node must stop."""
        name, code = child.name, exit_status(status)
        if child.role is Role.WORKER and code == worker.EXIT_STORAGE:
            # its LevelDB is locked, damaged or unreadable: restarting cannot help
            why = self._read_reports() or f"{name} cannot open its storage"
            self._fail(f"{why}; stopping the node")
            return EXIT_GAVE_UP
        if child.role is Role.ROUTER and code == router.EXIT_CLUSTER:
            # etcd unreachable, a duplicate node_id: restarting at once cannot help
            why = self._read_reports() or "the router could not join the cluster"
            self._fail(f"{why}; stopping the node")
            return EXIT_GAVE_UP
        if child.role is Role.ROUTER and code == router.EXIT_LEFT:
            log.info("the node left its cluster; stopping")
            self.state = NodeState.STOPPING
            return 0
        if child.role is Role.TREE and code in (tree.EXIT_AUTO_SHUTDOWN, tree.EXIT_ROOT_FAILED):
            return self._tree_stopped_the_node(code)
        now = time.monotonic()
        self.restarts.append(now)
        while self.restarts and self.restarts[0] < now - self.cfg.max_seconds:
            self.restarts.popleft()
        if len(self.restarts) > self.cfg.max_restarts:
            self._fail(f"{name} {describe(status)}; more than {self.cfg.max_restarts} restarts "
                       f"within {self.cfg.max_seconds:g} s: giving up and stopping the node")
            return EXIT_GAVE_UP
        delay = self.backoff.delay(len(self.restarts), random.random()) if self.backoff else 0.0
        child = child.again()
        if delay > 0:
            self.due.append(Due(now + delay, child))
            log.info("%s %s; restarting in %.3f s (backoff)", name, describe(status), delay)
        else:
            pid = self._spawn(child)
            log.info("%s %s; restarted as pid %d", name, describe(status), pid)
        return None

    def _tree_stopped_the_node(self, code: int) -> int:
        """The tree exited on purpose: the node stops (0 after an auto-shutdown)."""
        if code == tree.EXIT_AUTO_SHUTDOWN:
            log.info("the supervision tree shut down (auto_shutdown); stopping the node")
            self.state = NodeState.STOPPING
            return 0
        why = self._read_reports()     # (the failure file may not be writable)
        if not why:
            try:
                with open(os.path.join(self.cfg.data_dir, FAILURE_FILE)) as f:
                    why = f.read()
            except OSError:
                why = "see its messages above"
        self._fail(f"the supervision tree failed ({why}); stopping the node")
        return code

    def _read_reports(self) -> str:
        try:
            return os.read(self.reports_r, FAILURE_REPORT_MAX).decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _fail(self, why: str) -> None:
        """Stop the node for ``why``: logged, and reported to the process that started it."""
        log.error("%s", why)
        self.failure = why
        self.state = NodeState.STOPPING
        if self.report_fd is not None:
            try:
                os.write(self.report_fd, why.encode("utf-8", "replace")[:FAILURE_REPORT_MAX])
            except OSError:
                pass

    def _start_due(self) -> None:
        now = time.monotonic()
        for item in [d for d in self.due if d.at <= now]:
            self.due.remove(item)
            pid = self._spawn(item.child)
            log.info("%s restarted as pid %d after its backoff", item.child.name, pid)

    # -- stopping -------------------------------------------------------------------
    def _drain(self, timeout: float) -> int | None:
        """--drain: ask the router to hand this node's shards off (LEAVE) and wait for its
        answer, at most ``timeout`` s or until another stop signal, restarting children
        as in the main loop (the handoff needs them); an exit status if the node must
        stop by itself meanwhile (restart intensity)."""
        from actorsys.node.drain import LeaveRequest

        log.info("draining: handing this node's shards off to the other nodes (at most %g s)",
                 timeout)
        deadline = time.monotonic() + timeout
        stops = SIGNALS - {signal.SIGCHLD}
        request = LeaveRequest(self.cfg, self.layout)
        try:
            while True:
                answer = request.poll(TICK)
                if answer.done:
                    log.info("drained: %s", answer.result)
                    return None
                if signal.sigpending() & stops:
                    log.warning("stop signal while draining: stopping without waiting for the handoff")
                    return None
                if time.monotonic() >= deadline:
                    log.warning("the handoff did not finish within %g s (--drain-timeout); "
                                "stopping anyway: the shards not yet moved stay this node's", timeout)
                    return None
                for child, status in self._reap():
                    code = self._on_child_exit(child, status)
                    if code is not None:
                        return code
                self._start_due()
        except ActorError as exc:
            log.warning("draining failed (%s: %s); stopping anyway", type(exc).__name__, exc)
            return None
        finally:
            request.close()

    def _stop_children(self) -> None:
        # the gateway (it closes its sockets and hands actors the disconnects) and the
        # tree (it stops supervised children in order) first, then the workers (they
        # passivate actors), then the router
        for first in (Role.GATEWAY, Role.TREE):
            self._signal_role(first, signal.SIGTERM)
            self._wait_children(functools.partial(self._any, first), self.cfg.shutdown_timeout)
            for pid, child in list(self.children.items()):
                if child.role is first:
                    log.warning("the %s did not stop within shutdown_timeout; killing it", child.name)
                    send_signal(pid, signal.SIGKILL)
        self._signal_role(Role.WORKER, signal.SIGTERM)
        self._wait_children(lambda: self._any(Role.WORKER), self.cfg.shutdown_timeout)
        for pid in list(self.children):
            send_signal(pid, signal.SIGTERM)
        self._wait_children(lambda: bool(self.children), min(self.cfg.shutdown_timeout, 5.0))
        for pid in list(self.children):
            log.warning("pid %d did not stop in time; killing it", pid)
            send_signal(pid, signal.SIGKILL)
        self._wait_children(lambda: bool(self.children), 5.0)

    def _any(self, role: Role) -> bool:
        return any(c.role is role for c in self.children.values())

    def _signal_role(self, role: Role, sig: int) -> None:
        for pid, child in list(self.children.items()):
            if child.role is role:
                send_signal(pid, sig)

    def _wait_children(self, still: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while still() and time.monotonic() < deadline:
            self._reap()
            if still():
                signal.sigtimedwait({signal.SIGCHLD}, 0.05)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supervisors.node")
    p.add_argument("--config-json", required=True, help="the resolved NodeConfig as JSON")
    p.add_argument("--layout-json", required=True, help="the node's NodeLayout as JSON")
    p.add_argument("--watch-parent", type=int, default=None)
    p.add_argument("--report-fd", type=int, default=None,
                   help="a pipe to write why the node stopped by itself")
    p.add_argument("--drain", type=float, default=None, metavar="SECONDS",
                   help="a cluster node hands its shards off (at most SECONDS) before it stops")
    a = p.parse_args(argv)
    actorsys_log.setup("supervisor")
    cfg = NodeConfig.from_dict(json.loads(a.config_json))
    layout = NodeLayout.from_json(a.layout_json)
    try:
        return NodeSupervisor(cfg, layout, watch_parent=a.watch_parent, report_fd=a.report_fd,
                              drain=a.drain).run()
    finally:
        if layout.run_dir:       # its temporary sockets
            shutil.rmtree(layout.run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
