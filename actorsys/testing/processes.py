"""The processes a test or a harness starts, and making sure they are gone.

Every test owns the processes it starts: :func:`leftover_processes` is what the test
suite's autouse check calls when a test ends. The harnesses (chaos, fuzz, bench) start
nodes and helper processes the same way and use the rest: :func:`gone` to see a killed
pid is really dead, :func:`die_with_parent` for helper processes that must not outlive
the harness, :func:`start_logged` to keep a node's output out of a report.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterable

import psutil

from actorsys.node import Node

PR_SET_PDEATHSIG = 1


def descendants() -> list[psutil.Process]:
    """Every live (not zombie) process below this one."""
    try:
        return [p for p in psutil.Process().children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        return []


def leftover_processes(timeout: float = 10.0, spare: Iterable[int] = ()) -> list[psutil.Process]:
    """The descendants still running ``timeout`` seconds from now, killed (SIGKILL).

    Empty when everything this process started has exited: a test that leaves one
    behind fails, and the kill keeps it from spoiling the next test. ``spare``: pids
    whose processes, and every process below them, are neither awaited nor killed (the
    node a test module shares between its tests).
    """
    procs = descendants()
    spared: set[int] = set()
    for pid in spare:       # (after descendants(): a child forked meanwhile is in both)
        try:
            spared.update([pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))])
        except psutil.Error:
            pass
    procs = [p for p in procs if p.pid not in spared]
    # A zombie counts as gone: it holds nothing, and one whose parent is not this
    # process (an orphaned chromium helper) waits on its parent or init to reap it.
    left = [p for p in psutil.wait_procs(procs, timeout=timeout)[1] if _alive(p)]
    for p in left:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return left


def _alive(p: psutil.Process) -> bool:
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def describe(procs: Iterable[psutil.Process]) -> list[tuple[int, list[str] | str]]:
    """(pid, command line) of each process, for an assertion message."""
    out: list[tuple[int, list[str] | str]] = []
    for p in procs:
        try:
            out.append((p.pid, p.cmdline()))
        except psutil.Error as exc:
            out.append((p.pid, f"<{type(exc).__name__}>"))
    return out


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie counts: it runs nothing and holds nothing)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def kill(pid: int) -> None:
    """SIGKILL ``pid``; nothing if it is already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent exits (Linux; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def start_logged(node: Node, log_path: str, fds: tuple[int, ...] = (1, 2)) -> None:
    """Start ``node`` with its processes' ``fds`` (stdout and stderr by default) going to
    ``log_path``, appended. They inherit the file at start; this process keeps its own
    output, restored before this returns."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    try:
        with open(log_path, "ab") as log:
            for fd in fds:
                os.dup2(log.fileno(), fd)
        node.start()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)
