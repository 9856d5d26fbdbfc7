"""A cluster of real nodes for tests, demos, chaos and benchmarks (issue 15).

    with Cluster(tmp_path, 3, actors=ACTORS, python_path=[ACTORS_DIR]) as c:
        c.wait_ready(0)
        client = actorsys.connect(c.endpoints[0], key=..., server_key=...)
        c.kill_node(1); c.start_node(1); c.cut_node(2); c.heal_node(2)

Semantics:

* One real etcd (:class:`~actorsys.testing.etcd.Etcd`) and ``n`` nodes, each a real
  ``actorsys run CONFIG`` process tree (the node supervisor and the processes it forks)
  in its own process group, with its own data directory and a TOML config: ``[node]
  endpoint = "tcp://ADDR:7100"`` on its host, ``insecure = true`` or (``curve=True``) a
  CURVE key pair of its own, and ``[cluster] etcd, name, node_id = "n1".., lease_ttl``.
  ``extra_config`` (a dict of tables, or ``f(node) -> dict`` of a :class:`ClusterNode`,
  which knows its index, id and host address) is merged into each config table by table.
  ``run_args`` (a list, or ``f(node) -> list``) are more arguments of each node's
  ``actorsys run`` (``["--drain"]``: a plain :meth:`stop_node` then hands its shards off).
* Hosts (``hosts``): ``None`` picks network namespaces (:class:`~.netns.Hosts`) when this
  process may make them, else loopback addresses; ``"netns"`` insists; ``"loopback"``
  uses 127.0.0.11+i. With namespaces the bridge has an address in the root namespace
  (``<subnet>.1``): the test process reaches every node there, and etcd listens there,
  outside every node's host, so cutting one node off (:meth:`cut_node`) leaves etcd to
  the others. (On one of the node hosts, cutting that node would cut everyone off etcd.)
* ``start_node(i)`` starts node ``i`` (again, after a stop or kill: same data, same
  endpoint); ``add_node()`` makes a new node (a new host) and starts it: a joiner.
  Neither waits: :meth:`wait_ready` waits until the node's router answers PING (and
  fails at once, with the node's log, if its process exited).
* ``stop_node(i, drain=False)``: SIGTERM to its supervisor (``drain``: first ask the router to LEAVE,
  handing its shards off, bounded) and wait up to ``stop_timeout``, then kill -9.
  ``kill_node(i)``: kill -9 every process of the node at once. ``pause_node`` /
  ``resume_node``: SIGSTOP / SIGCONT every process of the node. ``cut_node`` /
  ``heal_node``: the node's host link down / up (namespaces only; on loopback hosts
  :class:`~.netns.HostsUnavailable`).
* A node's supervisor is killed by the kernel if the thread that started it ends (a
  killed harness leaves no node; start and use a cluster from one thread), and its
  processes die with it; a new cluster removes the namespaces a killed harness left.
* Exit leaves nothing: every process of every node (each pid ever seen, checked against
  its start time) is killed if a stop did not end it, etcd stops, the namespaces and the
  bridge are removed and the cluster's directory is deleted (kept, and its path
  logged as a warning, when ``ACTORSYS_KEEP_CLUSTER_DIR`` is set: the nodes' whole logs, for a
  failure the printed tails do not explain).

A node's process tree (its start, the signals, the stop, every pid seen) is its
:class:`~.clusternode.ClusterNode`'s (``clusternode.py``); :class:`Cluster` keeps what
the node is to the cluster: its host, its config, etcd, its router's answers.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import zmq

from ..config.keyfiles import load_public, load_secret
from ..config.layout import free_port
from ..log import get_logger
from ..net.keys import CurveKeys, keygen
from ..net.sockets import dealer
from ..protocol import wire
from ..protocol.messages import Control
from .clusternode import ClusterNode as ClusterNode   # (a cluster's nodes: imported from here too)
from .etcd import Etcd
from .netns import Hosts, HostsUnavailable, free_subnet, loopback_hosts, owned_prefix, sweep_stale

log = get_logger("testing")

if TYPE_CHECKING:
    from ..client import Client

ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")
#: the router's port on a namespace host (each namespace has its ports to itself)
ROUTER_PORT = 7100
_seq = itertools.count()


def to_toml(cfg: Mapping[str, Mapping[str, Any]]) -> str:
    """A config dict (tables of keys) as TOML; nested dicts become inline tables."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"no TOML for {type(v).__name__}")
    out = []
    for table, keys in cfg.items():
        out.append(f"[{table}]")
        out.extend(f"{json.dumps(str(k))} = {value(v)}" for k, v in keys.items())
        out.append("")
    return "\n".join(out)


def ping(endpoint: str, keys: CurveKeys | None = None, timeout: float = 1.0) -> bool:
    """Whether the router at ``endpoint`` answers PING within ``timeout`` seconds."""
    return request(endpoint, wire.PING, keys, timeout) == (wire.OK, "pong")


def request(endpoint: str, op: int, keys: CurveKeys | None, timeout: float) -> tuple[int, Any] | None:
    """``[op, 1]`` to ``endpoint``: ``(OK|ERR, body)``, None without an answer in time."""
    s = dealer(zmq.Context.instance(), endpoint, keys)
    try:
        s.send(Control(op, 1).encode())
        if not s.poll(int(timeout * 1000)):
            return None
        reply = wire.unpack(s.recv())
        return int(reply[0]), reply[2]
    finally:
        s.close(0)


class Cluster:
    """Real etcd and real nodes on (namespace) hosts (see the module docstring)."""

    def __init__(self, workdir: "str | os.PathLike[str]", n: int, hosts: "str | None" = None, *,
                 actors: Mapping[str, Any] | None = None, python_path: Iterable[str] = (),
                 curve: bool = False, lease_ttl: float = 2.0, name: str = "test",
                 workers: int = 2, extra_config: Any = None, stop_timeout: float = 15.0,
                 log_level: str = "info", run_args: Any = ()) -> None:
        if hosts not in (None, "netns", "loopback"):
            raise ValueError(f"hosts: None, 'netns' or 'loopback', not {hosts!r}")
        self.workdir, self.n, self.hosts_kind = os.fspath(workdir), n, hosts
        self.actors, self.python_path = dict(actors or {}), list(python_path)
        self.curve, self.lease_ttl, self.name, self.workers = curve, lease_ttl, name, workers
        self.extra_config, self.stop_timeout, self.log_level = extra_config, stop_timeout, log_level
        #: more arguments of each node's ``actorsys run`` (a list, or f(node) -> list)
        self.run_args = run_args
        self.nodes: list[ClusterNode] = []
        self.etcd: Etcd | None = None
        self.netns: Hosts | None = None
        self.dir = ""
        #: the test client's key pair files (curve clusters): every node admits it
        self.client_key: str | None = None
        self.client_public: str | None = None

    # -- set-up and tear-down --------------------------------------------------------
    def __enter__(self) -> "Cluster":
        self.dir = tempfile.mkdtemp(dir=self.workdir, prefix="cluster-")
        try:
            etcd_host = "127.0.0.1"
            if self.hosts_kind != "loopback":
                try:
                    if os.geteuid() != 0:
                        raise HostsUnavailable("network namespaces need root")
                    seq = next(_seq)
                    sweep_stale("ac")        # what a killed harness left
                    netns = Hosts(0, prefix=owned_prefix("ac", seq),
                                  subnet=free_subnet(1 + (os.getpid() + seq) % 254), reachable=True)
                    netns.__enter__()
                    self.netns = netns
                    etcd_host = netns.gateway or etcd_host
                except (HostsUnavailable, FileNotFoundError):     # not root; no `ip` command
                    self.netns = None
                    if self.hosts_kind == "netns":
                        raise
            if self.curve:
                public, secret = keygen(os.path.join(self.dir, "keys"), "client")
                self.client_public, self.client_key = public, secret
            self.etcd = Etcd(self.dir, etcd_host).start()
            for _ in range(self.n):
                self._new_node()
            for i in range(self.n):
                self.start_node(i)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop every node (kill -9 what does not stop), etcd, the hosts; delete the files."""
        try:
            for i, node in enumerate(self.nodes):
                if node.running:
                    try:
                        self.stop_node(i)
                    except Exception:
                        self.kill_node(i)
                node.kill_seen()
        finally:
            try:
                if self.etcd is not None:
                    self.etcd.stop()
            finally:
                if self.netns is not None:
                    self.netns.__exit__(None, None, None)
                if self.dir and os.environ.get("ACTORSYS_KEEP_CLUSTER_DIR"):
                    log.warning("cluster directory kept (ACTORSYS_KEEP_CLUSTER_DIR): %s", self.dir)
                elif self.dir:
                    shutil.rmtree(self.dir, ignore_errors=True)

    # -- nodes ----------------------------------------------------------------------
    @property
    def endpoints(self) -> list[str]:
        """Every node's router endpoint, by index."""
        return [node.endpoint for node in self.nodes]

    @property
    def can_cut(self) -> bool:
        """Whether :meth:`cut_node` works here (namespace hosts)."""
        return self.netns is not None

    def _new_node(self) -> ClusterNode:
        i = len(self.nodes)
        if self.netns is not None:
            host = self.netns.add()
            port = ROUTER_PORT
        else:
            host = loopback_hosts(i + 1)[i]
            port = free_port(host.address)
        node = ClusterNode(i, f"n{i + 1}", host, os.path.join(self.dir, f"n{i + 1}"),
                           f"tcp://{host.address}:{port}")
        os.makedirs(node.dir, mode=0o700)
        settings: dict[str, Any] = {
            "data_dir": os.path.join(node.dir, "data"), "workers": self.workers,
            "endpoint": node.endpoint, "shutdown_timeout": 5.0, "start_timeout": 30.0}
        if self.python_path:
            settings["python_path"] = self.python_path
        if self.curve:
            assert self.client_public is not None
            public, secret = keygen(os.path.join(node.dir, "keys"), "node")
            node.public_key = public
            clients = os.path.join(node.dir, "keys", "clients")
            os.makedirs(clients, mode=0o700)
            shutil.copy(self.client_public, os.path.join(clients, "client.key"))
            settings.update(curve_secret_key=secret, authorized_keys=clients)
        else:
            settings["insecure"] = True
        assert self.etcd is not None
        cfg: dict[str, dict[str, Any]] = {
            "node": settings, "actors": dict(self.actors),
            "cluster": {"etcd": [self.etcd.url], "name": self.name, "node_id": node.node_id,
                        "lease_ttl": self.lease_ttl,
                        # the n nodes started together form the cluster: no shard moves
                        # at start (a joiner added later finds it formed)
                        "bootstrap_expect": self.n, "bootstrap_timeout": 30.0}}
        extra = self.extra_config(node) if callable(self.extra_config) else self.extra_config
        for table, keys in (extra or {}).items():
            cfg.setdefault(table, {}).update(keys)
        with open(node.config_path, "w") as f:
            f.write(to_toml(cfg))
        self.nodes.append(node)
        return node

    def add_node(self) -> int:
        """A new node (on a new host), started: a joiner. Returns its index."""
        node = self._new_node()
        self.start_node(node.index)
        return node.index

    def start_node(self, i: int) -> None:
        """Start node ``i`` (not running); does not wait (:meth:`wait_ready`)."""
        node = self.nodes[i]
        if node.running:
            raise RuntimeError(f"node {node.node_id} is running")
        argv = [ACTORSYS, "run", node.config_path]
        if self.log_level:
            argv[2:2] = ["--log-level", self.log_level]
        argv[2:2] = self.run_args(node) if callable(self.run_args) else list(self.run_args)
        node.start(argv)

    def client_keys(self, i: int) -> CurveKeys | None:
        """The test client's CURVE keys for node ``i`` (None: an insecure cluster)."""
        if not self.curve:
            return None
        server = self.nodes[i].public_key
        assert self.client_key is not None and server is not None
        public, secret = load_secret(self.client_key, private=False)
        return CurveKeys(public, secret, load_public(server))

    def wait_ready(self, i: int, timeout: float = 30.0) -> None:
        """Wait until node ``i``'s router answers PING; raise (with the node's log) at the
        deadline or at once if its process exited."""
        node, keys = self.nodes[i], self.client_keys(i)
        deadline = time.monotonic() + timeout
        while not ping(node.endpoint, keys, 0.5):
            if not node.running or time.monotonic() > deadline:
                why = "exited" if not node.running else f"did not answer PING within {timeout:g} s"
                raise RuntimeError(f"node {node.node_id} at {node.endpoint} {why}:\n{self.log_tail(i)}")
        node.note()

    def view(self, i: int, timeout: float = 5.0) -> Any:
        """Node ``i``'s router's view of the cluster (the CLUSTER op); raises if it does
        not answer in time or refuses."""
        reply = request(self.nodes[i].endpoint, wire.CLUSTER, self.client_keys(i), timeout)
        if reply is None:
            raise RuntimeError(f"node {self.nodes[i].node_id} did not answer CLUSTER within {timeout:g} s")
        if reply[0] != wire.OK:
            raise RuntimeError(f"node {self.nodes[i].node_id} refused CLUSTER: {reply[1]}")
        return reply[1]

    def wait_view(self, i: int, predicate: Callable[[Any], Any], what: str,
                  timeout: float = 30.0) -> Any:
        """Poll node ``i``'s :meth:`view` until ``predicate(view)`` is truthy (a router
        that refuses or does not answer yet counts as not yet); the view. Raises naming
        ``what`` and the last view at the deadline."""
        deadline, last = time.monotonic() + timeout, None
        while True:
            try:
                last = self.view(i, timeout=min(2.0, timeout))
                if predicate(last):
                    return last
            except RuntimeError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                     f"{self.nodes[i].node_id}'s last view: {last}")
            time.sleep(0.05)

    def connect(self, i: int, **options: Any) -> Client:
        """A blocking client of node ``i`` (with the test's CURVE keys in a curve cluster);
        ``options`` go to :func:`actorsys.connect`."""
        from ..client import connect

        if self.curve:
            options.setdefault("key", self.client_key)
            options.setdefault("server_key", self.nodes[i].public_key)
        return connect(self.nodes[i].endpoint, **options)

    def pids(self, i: int) -> list[int]:
        """The pids of node ``i``'s processes now: its supervisor and every descendant."""
        return self.nodes[i].pids()

    def stop_node(self, i: int, drain: bool = False, drain_timeout: float = 60.0) -> Any:
        """SIGTERM node ``i``'s supervisor and wait up to ``stop_timeout``; kill -9 what is left then
        (and raise). ``drain``: first ask its router to LEAVE (hand its shards off) and
        wait up to ``drain_timeout`` for the answer, which is returned: ``(OK|ERR,
        body)``, None without one (the node is stopped anyway)."""
        node = self.nodes[i]
        if not node.running:
            return None
        self.resume_node(i)
        left_reply = request(node.endpoint, wire.LEAVE, self.client_keys(i), drain_timeout) if drain else None
        node.stop(self.stop_timeout)
        return left_reply

    def kill_node(self, i: int) -> None:
        """kill -9 every process of node ``i`` and wait until they are gone."""
        self.nodes[i].kill()

    def pause_node(self, i: int) -> None:
        """SIGSTOP every process of node ``i`` and wait (up to 5 s) until each is stopped:
        it holds its sockets and does nothing."""
        self.nodes[i].pause()

    def resume_node(self, i: int) -> None:
        """SIGCONT every process of node ``i``."""
        self.nodes[i].resume()

    def cut_node(self, i: int) -> None:
        """Cut node ``i``'s host off the network: it reaches neither etcd nor the other
        nodes (nor they it); its processes run on. Namespace hosts only."""
        if self.netns is None:
            raise HostsUnavailable("cutting a node off needs network namespaces")
        self.netns.cut(self.nodes[i].host)

    def heal_node(self, i: int) -> None:
        """Undo :meth:`cut_node`."""
        if self.netns is None:
            raise HostsUnavailable("cutting a node off needs network namespaces")
        self.netns.cut(self.nodes[i].host, cut=False)

    def log_tail(self, i: int, lines: int = 30) -> str:
        """The last ``lines`` lines of node ``i``'s log."""
        return self.nodes[i].log_tail(lines)
