"""A server process a test starts and stops (etcd, Prometheus): a Debian binary run in a
directory of its own under the test's temp dir, waited for within a deadline, and gone
at the end with its directory. Subclasses say how to run it (:meth:`Server.command`)
and when it is up (:meth:`Server.healthy`).

Every wait is bounded; a server that does not come up raises with the tail of its log.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from types import TracebackType
from typing import TypeVar

from .processes import die_with_parent

S = TypeVar("S", bound="Server")


class Server:
    """One server process (see the module docstring); ``name`` names it in errors."""

    name = "server"

    def __init__(self, binary: str, setup: str, workdir: str, start_timeout: float) -> None:
        if not os.path.exists(binary):
            raise RuntimeError(f"{binary} is missing: run {setup}")
        self.binary, self.start_timeout = binary, start_timeout
        self.dir = os.path.join(str(workdir), f"{self.name}-{os.getpid()}-{time.monotonic_ns()}")
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write what the server reads at start into :attr:`dir` (it exists)."""

    def start(self: S) -> S:
        os.makedirs(self.dir, mode=0o700)
        self.prepare()
        log = open(os.path.join(self.dir, f"{self.name}.log"), "wb")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent)     # a killed test leaves no server behind
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not come up within {self.start_timeout:g} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.dir, f"{self.name}.log"), "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
