"""Hosts for multi-host tests (issue 15): network namespaces joined by a bridge, made and
removed by the test set-up itself; traffic stays inside them.

    with Hosts(3) as hosts:          # hosts[0].address == "10.77.0.11", ...
        hosts[0].popen(["etcd", ...])

Each :class:`Host` is a namespace ``<prefix>-<i>`` with a veth pair whose outer end is on
the bridge ``<prefix>-br`` (in the root namespace, with no address and no route out:
nothing reaches beyond the hosts), an address ``10.77.0.<11 + i>/24`` and loopback up.
Where namespaces cannot be made (not root), :class:`Hosts` raises ``HostsUnavailable``
and tests use distinct loopback addresses (127.0.0.11, ...) instead (:func:`loopback_hosts`).
Everything made is removed at exit, also after a failure half-way.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from types import TracebackType
from typing import Any

SUBNET = "10.77.0"


class HostsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``)."""


@dataclass(frozen=True)
class Host:
    """One test host: a namespace (None: a loopback address of this machine)."""
    name: str
    address: str
    netns: str | None

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host."""
        return argv if self.netns is None else ["ip", "netns", "exec", self.netns, *argv]

    def popen(self, argv: list[str], **kwargs: Any) -> "subprocess.Popen[bytes]":
        return subprocess.Popen(self.command(argv), **kwargs)


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise HostsUnavailable(f"ip {' '.join(args)}: {r.stderr.strip()}")


def loopback_hosts(n: int) -> list[Host]:
    """``n`` hosts as distinct loopback addresses of this machine (127.0.0.11, ...)."""
    return [Host(f"lo-{i}", f"127.0.0.{11 + i}", None) for i in range(n)]


class Hosts:
    """``n`` namespace hosts on one bridge (see the module docstring)."""

    def __init__(self, n: int, prefix: str | None = None) -> None:
        if not 1 <= n <= 100:
            raise ValueError("1 to 100 hosts")
        self.n = n
        self.prefix = prefix or f"as{os.getpid() % 100000}"
        self.bridge = f"{self.prefix}-br"
        self.hosts: list[Host] = []
        self._made: list[tuple[str, str]] = []      # ("netns" | "link", name), to remove

    def __enter__(self) -> list[Host]:
        if os.geteuid() != 0:
            raise HostsUnavailable("network namespaces need root")
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            _ip("link", "set", self.bridge, "up")
            for i in range(self.n):
                ns, outer, inner = f"{self.prefix}-{i}", f"{self.prefix}-v{i}", f"{self.prefix}-h{i}"
                _ip("netns", "add", ns)
                self._made.append(("netns", ns))
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                self._made.append(("link", outer))
                _ip("link", "set", inner, "netns", ns)
                _ip("link", "set", outer, "master", self.bridge)
                _ip("link", "set", outer, "up")
                address = f"{SUBNET}.{11 + i}"
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                self.hosts.append(Host(ns, address, ns))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.hosts

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for kind, name in reversed(self._made):
            args = ["netns", "del", name] if kind == "netns" else ["link", "del", name]
            subprocess.run(["ip", *args], capture_output=True)
        self._made.clear()
