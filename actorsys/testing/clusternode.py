"""One node of a test cluster (:class:`~actorsys.testing.cluster.Cluster`): its process tree.

A :class:`ClusterNode` is a node's identity and files (index, id, host, directory,
router endpoint, CURVE key) and what it takes to run it as the operating system sees
it: its node supervisor's process (in a process group of its own), every process of
it ever seen, and the signals a test sends them (kill -9, SIGSTOP / SIGCONT, SIGTERM and
the wait for the stop). What the node is to the cluster (its config, etcd, its host's
network, its router's answers) is the cluster's.

Invariants: ``proc`` is the node supervisor of the last start (None before the first);
``seen`` only grows, with the (pid, create time) of every process of the node any call
here saw, so :meth:`ClusterNode.kill_seen` can kill each, and no other process that
reused its pid.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

import psutil

from .netns import Host
from .processes import die_with_parent


@dataclass
class ClusterNode:
    """One node of a :class:`~actorsys.testing.cluster.Cluster` (see the module docstring)."""
    index: int
    node_id: str
    host: Host
    dir: str                       #: its directory: config, data, log, keys
    endpoint: str                  #: its router, tcp://ADDR:PORT
    public_key: str | None = None  #: its CURVE public key file (curve clusters)
    proc: "subprocess.Popen[bytes] | None" = None
    #: (pid, create time) of every process of it ever seen, so none outlives the cluster
    seen: set[tuple[int, float]] = field(default_factory=set)

    @property
    def config_path(self) -> str:
        return os.path.join(self.dir, "node.toml")

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "node.log")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, argv: list[str]) -> None:
        """Run ``argv`` (its ``actorsys run``) on its host, in a new session, its output
        appended to its log; the kernel kills it if this thread's process exits."""
        with open(self.log_path, "ab") as log:
            self.proc = self.host.popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=die_with_parent)
        self.note()

    def pids(self) -> list[int]:
        """The pids of its processes now: its supervisor and every descendant."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            top = psutil.Process(self.proc.pid)
            return [top.pid, *(p.pid for p in top.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def note(self) -> list[psutil.Process]:
        """Its processes now, each added to ``seen``."""
        procs = []
        for pid in self.pids():
            try:
                p = psutil.Process(pid)
                self.seen.add((pid, p.create_time()))
                procs.append(p)
            except psutil.NoSuchProcess:
                pass
        return procs

    def signal(self, sig: int) -> list[psutil.Process]:
        """``sig`` to its process group and to each of its processes; those processes."""
        procs = self.note()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        return procs

    def stop(self, timeout: float) -> None:
        """SIGTERM to its supervisor alone and wait up to ``timeout``; kill -9 what is
        left then (and raise RuntimeError with its log's tail)."""
        # to the node's supervisor alone, as `kill PID` does: it stops its processes in
        # order (and a node run with --drain hands its shards off first: a second signal,
        # or the router's own SIGTERM, would cut that short)
        procs = self.note()
        assert self.proc is not None
        try:
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"node {self.node_id} did not stop within {timeout:g} s "
                               f"(killed):\n{self.log_tail()}") from None
        left = psutil.wait_procs(procs, timeout=timeout)[1]
        for p in left:
            p.kill()

    def kill(self) -> None:
        """kill -9 every process of it and wait until they are gone."""
        procs = self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        psutil.wait_procs(procs, timeout=10)

    def pause(self) -> None:
        """SIGSTOP every process of it and wait (up to 5 s) until each is stopped: it
        holds its sockets and does nothing."""
        procs = self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                if all(p.status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE) for p in procs
                       if p.is_running()):
                    return
            except psutil.NoSuchProcess:
                continue
            time.sleep(0.01)

    def resume(self) -> None:
        """SIGCONT every process of it."""
        self.signal(signal.SIGCONT)

    def kill_seen(self) -> None:
        """SIGCONT and kill -9 every process in ``seen`` still running (the same process:
        its create time matches), and wait until they are gone."""
        procs = []
        for pid, created in self.seen:
            try:
                p = psutil.Process(pid)
                if p.create_time() == created:
                    p.send_signal(signal.SIGCONT)
                    p.kill()
                    procs.append(p)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of its log."""
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"
