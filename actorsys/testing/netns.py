"""Hosts for multi-host tests (issue 15): network namespaces joined by a bridge, made and
removed by the test set-up itself; traffic stays inside them.

    with Hosts(3) as hosts:          # hosts[0].address == "10.77.0.11", ...
        hosts[0].popen(["etcd", ...])

Each :class:`Host` is a namespace ``<prefix>-<i>`` with a veth pair whose outer end
(:attr:`Host.link`) is on the bridge ``<prefix>-br`` in the root namespace, an address
``<subnet>.<11 + i>/24`` (subnet ``10.77.0`` by default) and loopback up. The bridge has
no address and no route out (nothing reaches beyond the hosts) unless ``reachable``: then
the bridge gets ``<subnet>.1/24`` so the root namespace (the test process, an etcd run
there) reaches the hosts, still with no route beyond the subnet (:func:`free_subnet`
picks a subnet no other bridge of this machine routes). :meth:`Hosts.add` makes one
more host on a running bridge (a node joining later); setting a host's ``link`` down
(:meth:`Hosts.cut`) cuts it off from every other host and from the root namespace.
Where namespaces cannot be made (not root), :class:`Hosts` raises ``HostsUnavailable``
and tests use distinct loopback addresses (127.0.0.11, ...) instead (:func:`loopback_hosts`).
Everything made is removed at exit, also after a failure half-way; what a killed test
process left (its prefix ``<letters><pid>_<n>``, base 36, names a dead pid) is removed by
:func:`sweep_stale`.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable

SUBNET = "10.77.0"


class HostsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``)."""


@dataclass(frozen=True)
class Host:
    """One test host: a namespace (None: a loopback address of this machine)."""
    name: str
    address: str
    netns: str | None
    #: the outer end of its veth pair, on the bridge (None: a loopback host, no link)
    link: str | None = None

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host."""
        return argv if self.netns is None else ["ip", "netns", "exec", self.netns, *argv]

    def popen(self, argv: list[str], **kwargs: Any) -> "subprocess.Popen[bytes]":
        return subprocess.Popen(self.command(argv), **kwargs)


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise HostsUnavailable(f"ip {' '.join(args)}: {r.stderr.strip()}")


def free_subnet(first: int = 1) -> str:
    """A ``10.77.<k>`` subnet (``k`` from ``first`` on, wrapping; never 0, the default
    one) that no route or address of this machine names yet: for a ``reachable``
    bridge, whose subnet route must not clash with another's."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    addrs = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for j in range(254):
        k = 1 + (first - 1 + j) % 254
        if f"10.77.{k}." not in routes and f"10.77.{k}." not in addrs:
            return f"10.77.{k}"
    raise HostsUnavailable("no free 10.77.<k>.0/24 subnet")


def _b36(n: int) -> str:
    digits = ""
    while True:
        n, d = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + digits
        if n == 0:
            return digits


def owned_prefix(letters: str, seq: int) -> str:
    """A prefix naming this process, ``<letters><pid>_<seq>`` in base 36 (at most 10
    characters for two letters): :func:`sweep_stale` removes its namespaces and links
    once this process is dead."""
    return f"{letters}{_b36(os.getpid())}_{_b36(seq % 1296)}"


def sweep_stale(letters: str) -> list[str]:
    """Remove the namespaces and links of prefix ``<letters><pid>_<n>`` whose pid is no
    longer alive (left by a killed test process); the names removed. A namespace that
    still holds a process is kept (its owner may live in another pid namespace), and so
    are the links of a prefix with a namespace left."""
    owned = re.compile(rf"^{re.escape(letters)}([0-9a-z]+)_[0-9a-z]+-(br|v\d+|\d+)$")

    def dead(name: str) -> bool:
        m = owned.match(name)
        if m is None:
            return False
        try:
            os.kill(int(m.group(1), 36), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def names(argv: list[str], pick: Callable[[str], str]) -> list[str]:
        out = subprocess.run(argv, capture_output=True, text=True).stdout
        return [pick(line) for line in out.splitlines() if line.strip()]

    gone, kept = [], set()
    for ns in names(["ip", "netns", "list"], lambda line: line.split()[0]):
        if not dead(ns):
            continue
        busy = names(["ip", "netns", "pids", ns], str.strip)
        if not busy and subprocess.run(["ip", "netns", "del", ns], capture_output=True).returncode == 0:
            gone.append(ns)
        else:
            kept.add(ns.rsplit("-", 1)[0])
    for link in names(["ip", "-o", "link"], lambda line: line.split(":")[1].strip().split("@")[0]):
        if dead(link) and link.rsplit("-", 1)[0] not in kept \
                and subprocess.run(["ip", "link", "del", link], capture_output=True).returncode == 0:
            gone.append(link)
    return gone


def loopback_hosts(n: int) -> list[Host]:
    """``n`` hosts as distinct loopback addresses of this machine (127.0.0.11, ...)."""
    return [Host(f"lo-{i}", f"127.0.0.{11 + i}", None) for i in range(n)]


class Hosts:
    """``n`` namespace hosts on one bridge (see the module docstring)."""

    def __init__(self, n: int, prefix: str | None = None, subnet: str = SUBNET,
                 reachable: bool = False) -> None:
        if not 0 <= n <= 100:
            raise ValueError("0 to 100 hosts")
        self.n, self.subnet, self.reachable = n, subnet, reachable
        self.prefix = prefix or f"as{os.getpid() % 100000}"
        if len(self.prefix) > 10:
            raise ValueError(f"prefix {self.prefix!r}: at most 10 characters (interface names)")
        self.bridge = f"{self.prefix}-br"
        #: the root namespace's address on the bridge (None unless ``reachable``)
        self.gateway = f"{subnet}.1" if reachable else None
        self.hosts: list[Host] = []
        self._made: list[tuple[str, str]] = []      # ("netns" | "link", name), to remove

    def __enter__(self) -> list[Host]:
        if os.geteuid() != 0:
            raise HostsUnavailable("network namespaces need root")
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            _ip("link", "set", self.bridge, "up")
            if self.gateway is not None:
                _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            for _ in range(self.n):
                self.add()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.hosts

    def add(self) -> Host:
        """One more host on the bridge (inside the ``with``)."""
        i = len(self.hosts)
        if i >= 100:
            raise ValueError("at most 100 hosts")
        ns, outer, inner = f"{self.prefix}-{i}", f"{self.prefix}-v{i}", f"{self.prefix}-h{i}"
        _ip("netns", "add", ns)
        self._made.append(("netns", ns))
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        self._made.append(("link", outer))
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        address = f"{self.subnet}.{11 + i}"
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        host = Host(ns, address, ns, outer)
        self.hosts.append(host)
        return host

    @staticmethod
    def cut(host: Host, cut: bool = True) -> None:
        """Set ``host``'s link down (``cut``) or up again: cut off, it reaches no other
        host and not the root namespace, and none reaches it; its processes run on."""
        if host.link is None:
            raise HostsUnavailable(f"{host.name} is a loopback host: it cannot be cut off")
        _ip("link", "set", host.link, "down" if cut else "up")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for kind, name in reversed(self._made):
            args = ["netns", "del", name] if kind == "netns" else ["link", "del", name]
            subprocess.run(["ip", *args], capture_output=True)
        self._made.clear()
