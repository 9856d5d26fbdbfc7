"""A real etcd server for tests of a cluster (issue 15): Debian's ``etcd-server``
(``/usr/bin/etcd``, installed by ``scripts/setup-etcd``), started on loopback (or a
test host's address) with a data directory of its own, and gone at the end.

    with Etcd(tmp_path) as etcd:
        cfg["cluster"] = {"etcd": [etcd.url], "name": "test", "node_id": "n1"}

Every wait is bounded; a server that does not come up raises with the tail of its log.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from types import TracebackType

from ..config.layout import free_port
from .processes import die_with_parent

ETCD = os.environ.get("ACTORSYS_ETCD", "/usr/bin/etcd")


class Etcd:
    """One single-member etcd cluster (see the module docstring)."""

    def __init__(self, workdir: str, host: str = "127.0.0.1", start_timeout: float = 15.0) -> None:
        if not os.path.exists(ETCD):
            raise RuntimeError(f"{ETCD} is missing: run scripts/setup-etcd (Debian's etcd-server)")
        self.host, self.start_timeout = host, start_timeout
        self.dir = os.path.join(str(workdir), f"etcd-{os.getpid()}-{time.monotonic_ns()}")
        client = free_port(host)
        peer = free_port(host, {str(client)})
        #: the client URL a node's [cluster] etcd names
        self.url = f"http://{host}:{client}"
        self.peer_url = f"http://{host}:{peer}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Etcd":
        os.makedirs(self.dir, mode=0o700)
        log = open(os.path.join(self.dir, "etcd.log"), "wb")
        try:
            self.proc = subprocess.Popen(
                [ETCD, "--name", "test", "--data-dir", os.path.join(self.dir, "data"),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                 "--initial-cluster", f"test={self.peer_url}", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent)     # a killed test leaves no etcd
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not come up at {self.url} within {self.start_timeout:g} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1.0) as r:
                return b'"true"' in r.read()
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.dir, "etcd.log"), "rb") as f:
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

    def __enter__(self) -> "Etcd":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
