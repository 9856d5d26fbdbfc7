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
  Heartbeats and turn start times come from memory shared with the workers.
* With a ``[gateway]`` in the config it starts the HTTP/WebSocket gateway
  (``actorsys/gateway.py``) last and stops it first, and restarts it like the router.
* With supervisors in the config it also starts the supervision tree process
  (``tree.py``) after the workers, and stops it first. If the tree exits on purpose
  (a top-level supervisor gave up: status 3; or shut down by ``auto_shutdown``: 0) the
  node stops cleanly with that status; if it crashes, it is restarted like any child.
* Restart intensity: more than ``max_restarts`` restarts within ``max_seconds`` means
  something is wrong beyond a crash; the supervisor then stops the node and exits with
  status 2 (Erlang/OTP's "reached max restart intensity"). With ``backoff`` set, the
  n-th restart within that window waits ``initial * 2**(n-1)`` seconds (capped, with
  jitter) instead of happening at once.
* SIGTERM, SIGINT or SIGHUP stop the node: every child gets SIGTERM and
  ``shutdown_timeout`` seconds to passivate its actors, then SIGKILL.
* No orphans: every child dies with the supervisor (``PR_SET_PDEATHSIG``), and an
  embedded node's supervisor stops when the process that started it is gone.

The state machine is three states: ``starting`` -> ``running`` (restart on every child
exit) -> ``stopping`` (gateway and tree first, then workers, then the router: terminate,
wait, kill, reap).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import random
import shutil
import signal
import sys
import time
import traceback
from collections import deque

import psutil

# imported before forking, so restarts skip the imports
from actorsys.actor.classes import check_actor_classes
from actorsys.config import NodeConfig, NodeLayout
from actorsys.config.layout import FAILURE_FILE
from actorsys.config.supervision import Backoff
from actorsys.errors import ConfigError
from actorsys.net.keys import node_keys
from actorsys.node import router
from actorsys.node.claim import claim_node
from actorsys.runtime import worker
from actorsys.storage.meta import load_or_create_meta
from supervisors import tree

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1


def log(msg: str) -> None:
    print(f"actorsys[supervisor {os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # not Linux: the ppid checks below still apply
        pass


def _check_classes_in_a_child(cfg: NodeConfig) -> None:
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


class NodeSupervisor:
    def __init__(self, cfg: NodeConfig, layout: NodeLayout, watch_parent: int | None = None,
                 report_fd: int | None = None) -> None:
        self.cfg, self.layout = cfg, layout
        self.watch_parent = watch_parent
        self.pid = os.getpid()
        self.children: dict[int, tuple[str, int | None]] = {}   # pid -> (role, slot)
        self.restarts: deque[float] = deque()
        self.state = "starting"
        self.backoff = Backoff(**cfg.backoff) if cfg.backoff else None
        self.due: list[tuple[float, str, int | None]] = []    # restarts waiting out a backoff
        self.terminating: dict[int, float] = {}   # pid -> when to SIGKILL (graceful restarts)
        self.spawned_at: dict[int, float] = {}    # slot -> when its current worker was forked
        self.next_memory_check = 0.0
        self.last_check = time.monotonic()
        self.grace_until = 0.0     # no hung-worker kills before this (after we were stopped)
        # [heartbeat, start of the sync turn in progress or 0] per slot, shared with workers
        self._beats_map = mmap.mmap(-1, 16 * max(cfg.workers, 1))
        self.beats = memoryview(self._beats_map).cast("d")
        # a worker that cannot open its storage writes why here before it exits
        self.reports_r, self.reports_w = os.pipe()
        os.set_blocking(self.reports_r, False)
        #: why the node stopped by itself, written to report_fd (Node reads it)
        self.failure: str | None = None
        self.report_fd = report_fd

    # -- children ---------------------------------------------------------------
    def _spawn(self, role: str, slot: int | None) -> int:
        if role == "worker":
            assert slot is not None
            self.spawned_at[slot] = now = time.monotonic()
            self.beats[2 * slot] = now
            self.beats[2 * slot + 1] = 0.0
        pid = os.fork()
        if pid:
            self.children[pid] = (role, slot)
            return pid
        code = 1
        try:
            for s in _SIGNALS:
                signal.signal(s, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group; only the supervisor acts on it, so
            # children stop in order (tree, workers, router) on its SIGTERM
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            _die_with_parent()
            if os.getppid() != self.pid:
                os._exit(1)
            for fd in self.lock_fds:   # the locks belong to the supervisor alone
                os.close(fd)
            if role == "router":
                router.main(self.cfg, self.layout, self.meta)
                code = 0
            elif role == "gateway":
                from actorsys.gateway import app as gateway
                gateway.main(self.cfg, self.layout)
                code = 0
            elif role == "tree":
                code = tree.main(self.cfg, self.layout, self.meta, restarted=bool(slot),
                                 report_fd=self.reports_w)
            else:
                assert slot is not None
                code = worker.main(self.cfg, self.layout, slot, self.meta, self.beats, self.reports_w)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        return 0  # unreachable

    def _reap(self) -> list[tuple[str, int | None, int]]:
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            who = self.children.pop(pid, None)
            if who is not None:
                dead.append((*who, status))
        return dead

    @staticmethod
    def _describe(status: int) -> str:
        if os.WIFSIGNALED(status):
            return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        return f"exited with status {os.WEXITSTATUS(status)}"

    # -- main loop ----------------------------------------------------------------
    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS | {signal.SIGALRM})
        try:
            # a class the workers cannot import would crash-loop them: check first
            _check_classes_in_a_child(self.cfg)
            self.lock_fds = claim_node(self.cfg, self.layout)
            self.meta = load_or_create_meta(self.cfg.data_dir, self.cfg.shards, self.cfg.workers)
            node_keys(self.cfg)      # the key files still load (each child reads them at start)
        except ConfigError as exc:
            self._fail(f"cannot start: {exc}")
            return 2
        if self.cfg.gateway is not None:
            from actorsys.gateway import app  # noqa: F401  (imported before forking, like the rest)
        if self.cfg.insecure and self.layout.router.startswith("tcp://"):
            log(f"WARNING: insecure = true: the tcp endpoints of this node ({self.layout.router} and "
                f"its workers' ports) are unauthenticated and unencrypted; anyone who can reach "
                f"them can call any actor. Use CURVE keys (curve_secret_key) off a trusted network")
        self._spawn("router", None)
        for i in range(self.cfg.workers):
            self._spawn("worker", i)
        if self.layout.tree is not None:
            self._spawn("tree", 0)
        if self.cfg.gateway is not None:
            self._spawn("gateway", None)
        self.state = "running"
        log(f"node running at {self.layout.router} with {self.cfg.workers} workers")
        code = 0
        # Wake every 0.25 s by SIGALRM, not by a sigtimedwait timeout: when sigtimedwait is
        # interrupted (EINTR, e.g. SIGSTOP/SIGCONT from Ctrl-Z and fg) after its timeout has
        # passed, CPython returns an uninitialised siginfo, read as a random signal (SIGHUP...).
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        while self.state == "running":
            info = signal.sigtimedwait(_SIGNALS | {signal.SIGALRM}, 1e6)
            if info is not None and info.si_signo not in (signal.SIGCHLD, signal.SIGALRM):
                log(f"received {signal.Signals(info.si_signo).name}; stopping")
                break
            for role, slot, status in self._reap():
                c = self._on_child_exit(role, slot, status)
                if c is not None:
                    code = c
                    break
            if self.state != "running":
                break
            self._start_due()
            self._check_workers()
            if self.watch_parent is not None and os.getppid() != self.watch_parent:
                log("the process that started this node is gone; stopping")
                break
        self.state = "stopping"
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._stop_children()
        return code

    def _name(self, role: str, slot: int | None) -> str:
        return {"router": "router", "tree": "supervision tree",
                "gateway": "gateway"}.get(role, f"worker slot {slot}")

    def _on_child_exit(self, role: str, slot: int | None, status: int) -> int | None:
        """Handle one dead child; returns an exit status if the node must stop."""
        name = self._name(role, slot)
        if role == "worker" and os.WIFEXITED(status) and os.WEXITSTATUS(status) == worker.EXIT_STORAGE:
            # its LevelDB is locked, damaged or unreadable: restarting cannot help
            why = self._read_reports() or f"{name} cannot open its storage"
            self._fail(f"{why}; stopping the node")
            return 2
        if role == "tree" and os.WIFEXITED(status) and os.WEXITSTATUS(status) in (
                tree.EXIT_AUTO_SHUTDOWN, tree.EXIT_ROOT_FAILED):
            code = os.WEXITSTATUS(status)
            if code == tree.EXIT_AUTO_SHUTDOWN:
                code = 0
                log("the supervision tree shut down (auto_shutdown); stopping the node")
                self.state = "stopping"
            else:
                why = self._read_reports()     # (the failure file may not be writable)
                if not why:
                    try:
                        with open(os.path.join(self.cfg.data_dir, FAILURE_FILE)) as f:
                            why = f.read()
                    except OSError:
                        why = "see its messages above"
                self._fail(f"the supervision tree failed ({why}); stopping the node")
            return code
        now = time.monotonic()
        self.restarts.append(now)
        while self.restarts and self.restarts[0] < now - self.cfg.max_seconds:
            self.restarts.popleft()
        if len(self.restarts) > self.cfg.max_restarts:
            self._fail(f"{name} {self._describe(status)}; more than {self.cfg.max_restarts} restarts "
                       f"within {self.cfg.max_seconds:g} s: giving up and stopping the node")
            return 2
        delay = self.backoff.delay(len(self.restarts), random.random()) if self.backoff else 0.0
        if role == "tree":
            slot = 1             # the restarted tree keeps the children stopped at run time
        if delay > 0:
            self.due.append((now + delay, role, slot))
            log(f"{name} {self._describe(status)}; restarting in {delay:.3f} s (backoff)")
        else:
            pid = self._spawn(role, slot)
            log(f"{name} {self._describe(status)}; restarted as pid {pid}")
        return None

    def _read_reports(self) -> str:
        try:
            return os.read(self.reports_r, 65536).decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _fail(self, why: str) -> None:
        """Stop the node for ``why``: logged, and reported to the process that started it."""
        log(why)
        self.failure = why
        self.state = "stopping"
        if self.report_fd is not None:
            try:
                os.write(self.report_fd, why.encode("utf-8", "replace")[:65536])
            except OSError:
                pass

    def _start_due(self) -> None:
        now = time.monotonic()
        for item in [d for d in self.due if d[0] <= now]:
            self.due.remove(item)
            pid = self._spawn(item[1], item[2])
            log(f"{self._name(item[1], item[2])} restarted as pid {pid} after its backoff")

    def _check_workers(self) -> None:
        """Kill workers that are hung; stop workers above their memory limit."""
        now = time.monotonic()
        if now - self.last_check > 1.0:
            # We did not run for a while: stopped (Ctrl-Z stops the whole process group,
            # workers included) or starved. Every worker's beat is stale by that gap, so
            # give them time to beat again instead of killing them all.
            self.grace_until = now + 2.0
        self.last_check = now
        hung_checks = now >= self.grace_until
        for pid, deadline in list(self.terminating.items()):
            if pid not in self.children:
                del self.terminating[pid]
            elif now >= deadline:
                log(f"pid {pid} did not stop within shutdown_timeout; killing it")
                self._signal(pid, signal.SIGKILL)
                self.terminating[pid] = float("inf")
        cfg = self.cfg
        check_memory = cfg.max_worker_memory > 0 and now >= self.next_memory_check
        if check_memory:
            self.next_memory_check = now + 0.5
        for pid, (role, slot) in list(self.children.items()):
            if role != "worker" or slot is None or pid in self.terminating:
                continue
            beat, turn = self.beats[2 * slot], self.beats[2 * slot + 1]
            if not hung_checks:
                pass
            elif turn and now - turn > cfg.turn_timeout:
                log(f"worker slot {slot} (pid {pid}): a turn has run for {now - turn:.1f} s, past "
                    f"turn_timeout = {cfg.turn_timeout:g} s; killing it")
                self._signal(pid, signal.SIGKILL)
                self.terminating[pid] = float("inf")
            elif not turn and now - beat > cfg.heartbeat_timeout and (
                    beat > self.spawned_at.get(slot, 0) or now - self.spawned_at.get(slot, 0) > cfg.start_timeout):
                log(f"worker slot {slot} (pid {pid}) missed its heartbeats for {now - beat:.1f} s "
                    f"(heartbeat_timeout = {cfg.heartbeat_timeout:g} s); killing it")
                self._signal(pid, signal.SIGKILL)
                self.terminating[pid] = float("inf")
            elif check_memory:
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
                if rss > cfg.max_worker_memory:
                    log(f"worker slot {slot} (pid {pid}) uses {rss >> 20} MiB, above max_worker_memory "
                        f"({cfg.max_worker_memory >> 20} MiB); restarting it")
                    self._signal(pid, signal.SIGTERM)
                    self.terminating[pid] = now + cfg.shutdown_timeout

    def _stop_children(self) -> None:
        # the gateway (it closes its sockets and hands actors the disconnects) and the
        # tree (it stops supervised children in order) first, then the workers (they
        # passivate actors), then the router
        for first in ("gateway", "tree"):
            for pid, (role, _slot) in list(self.children.items()):
                if role == first:
                    self._signal(pid, signal.SIGTERM)
            self._wait_children(lambda first=first: any(r == first for r, _ in self.children.values()),
                                self.cfg.shutdown_timeout)
            for pid, (role, _slot) in list(self.children.items()):
                if role == first:
                    log(f"the {self._name(role, None)} did not stop within shutdown_timeout; killing it")
                    self._signal(pid, signal.SIGKILL)
        for pid, (role, _slot) in list(self.children.items()):
            if role == "worker":
                self._signal(pid, signal.SIGTERM)
        self._wait_children(lambda: any(r == "worker" for r, _ in self.children.values()),
                            self.cfg.shutdown_timeout)
        for pid in list(self.children):
            self._signal(pid, signal.SIGTERM)
        self._wait_children(lambda: bool(self.children), min(self.cfg.shutdown_timeout, 5.0))
        for pid in list(self.children):
            log(f"pid {pid} did not stop in time; killing it")
            self._signal(pid, signal.SIGKILL)
        self._wait_children(lambda: bool(self.children), 5.0)

    def _wait_children(self, still, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while still() and time.monotonic() < deadline:
            self._reap()
            if still():
                signal.sigtimedwait({signal.SIGCHLD}, 0.05)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supervisors.node")
    p.add_argument("--config-json", required=True, help="the resolved NodeConfig as JSON")
    p.add_argument("--layout-json", required=True, help="the node's NodeLayout as JSON")
    p.add_argument("--watch-parent", type=int, default=None)
    p.add_argument("--report-fd", type=int, default=None,
                   help="a pipe to write why the node stopped by itself")
    a = p.parse_args(argv)
    cfg = NodeConfig.from_dict(json.loads(a.config_json))
    layout = NodeLayout.from_json(a.layout_json)
    try:
        return NodeSupervisor(cfg, layout, watch_parent=a.watch_parent, report_fd=a.report_fd).run()
    finally:
        if layout.run_dir:       # its temporary sockets
            shutil.rmtree(layout.run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
