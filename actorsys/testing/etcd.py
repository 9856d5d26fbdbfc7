"""A real etcd server for tests of a cluster (issue 15): Debian's ``etcd-server``
(``/usr/bin/etcd``, installed by ``scripts/setup-etcd``), started on loopback (or a
test host's address) with a data directory of its own, and gone at the end.

    with Etcd(tmp_path) as etcd:
        cfg["cluster"] = {"etcd": [etcd.url], "name": "test", "node_id": "n1"}

Every wait is bounded; a server that does not come up raises with the tail of its log.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request

from ..config.layout import free_port
from .servers import Server

ETCD = os.environ.get("ACTORSYS_ETCD", "/usr/bin/etcd")


class Etcd(Server):
    """One single-member etcd cluster (see the module docstring)."""

    name = "etcd"

    def __init__(self, workdir: str, host: str = "127.0.0.1", start_timeout: float = 15.0) -> None:
        super().__init__(ETCD, "scripts/setup-etcd (Debian's etcd-server)", workdir, start_timeout)
        self.host = host
        client = free_port(host)
        peer = free_port(host, {str(client)})
        #: the client URL a node's [cluster] etcd names
        self.url = f"http://{host}:{client}"
        self.peer_url = f"http://{host}:{peer}"

    def command(self) -> list[str]:
        return [ETCD, "--name", "test", "--data-dir", os.path.join(self.dir, "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", f"test={self.peer_url}", "--log-level", "warn"]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1.0) as r:
                return b'"true"' in r.read()
        except (urllib.error.URLError, OSError):
            return False
