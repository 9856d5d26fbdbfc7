"""Where a started node's processes listen: its :class:`NodeLayout`, computed once.

:func:`plan_layout` decides every endpoint from the config when the node starts (the
embedded :class:`~actorsys.Node` or ``actorsys run``); the result goes to the node
supervisor on its command line, next to the config, and from it to each process's
``main``. Nothing recomputes it, so every process agrees:

* an ipc node keeps its sockets beside the router's: ``<stem>.sock`` (router),
  ``<stem>-worker-<i>.sock``, ``<stem>-tree.sock``, ``<stem>-gateway.sock``,
  ``<stem>-subscribers.sock``; with no endpoint in the config, in a new private
  temporary directory (``router.sock``);
* a tcp node's workers, tree and gateway (its two endpoints) get free ports on the
  router's host, chosen here (a worker slot keeps its port across restarts);
* the gateway's ``listen`` port 0 becomes a free port.

The config itself stays what the user wrote.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Callable, Collection

from ..errors import ConfigError
from .node import NodeConfig

#: in the data directory: why the supervision tree stopped the node (read by the embedder)
FAILURE_FILE = "supervision.failure"


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """The endpoints of one run of a node (see the module docstring)."""

    #: the router's endpoint: the node's address, for clients
    router: str
    #: ``workers[i]`` is slot i's endpoint, the same across its restarts
    workers: tuple[str, ...]
    #: the supervision tree's endpoint; None when the config declares no supervisors
    tree: str | None = None
    #: the gateway's endpoint inside the node (workers send it their actors' socket
    #: effects); None when the config has no [gateway]
    gateway: str | None = None
    #: the gateway's HTTP address, ``HOST:PORT`` with its port fixed; None without a gateway
    gateway_listen: str | None = None
    #: the node's Prometheus listener, ``HOST:PORT`` with its port fixed; None without
    #: ``[node] metrics``
    metrics_listen: str | None = None
    #: a temporary directory holding the ipc sockets, removed when the node stops; None
    #: when the endpoints are the config's own
    run_dir: str | None = None
    #: the gateway's endpoint for Python subscribers (``client.subscribe``: its clients
    #: connect there, the router's MAP reply names it); None without a gateway
    subscribers: str | None = None

    def endpoints(self) -> list[str]:
        """Every endpoint the node's processes bind, the router's first."""
        return [self.router, *self.workers,
                *(ep for ep in (self.tree, self.gateway, self.subscribers) if ep)]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "NodeLayout":
        d: dict[str, Any] = json.loads(text)
        return cls(**{**d, "workers": tuple(d["workers"])})


def plan_layout(cfg: NodeConfig, previous: NodeLayout | None = None) -> NodeLayout:
    """Fix every endpoint of a node about to start (creating its temporary socket
    directory if the config names no endpoint). ConfigError if an ipc socket directory
    is open to other users.

    ``previous``, the layout of this node's last run (an embedded Node started again),
    keeps the ports that were chosen for it: the gateway's HTTP port when the config
    asks for any free one (``:0``; the address pages and users were given), and on a
    tcp node the workers', the tree's and the gateway's internal ports."""
    run_dir = None
    if cfg.endpoint is None:
        run_dir = tempfile.mkdtemp(prefix="actorsys-")   # mode 0700
        router = f"ipc://{run_dir}/router.sock"
    else:
        router = cfg.endpoint
    taken: set[str] = set()    # tcp ports chosen for this node (see place)
    try:
        place: Callable[[str], str]
        if router.startswith("ipc://"):
            if run_dir is None:
                _private_dir(os.path.dirname(router[6:]))
            stem = _ipc_stem(router)

            def place(name: str) -> str:
                return f"ipc://{stem}-{name}.sock"
        else:
            host, router_port = router[6:].rsplit(":", 1)
            kept = _tcp_ports(previous, router) if previous is not None else {}
            # a port just released (the router's, before the router binds it; one chosen
            # for another process of this node) may be handed out again: never reuse one
            taken.update((router_port, *(ep.rsplit(":", 1)[1] for ep in kept.values())))

            def place(name: str) -> str:
                ep = kept.get(name)
                if ep is None:
                    ep = f"tcp://{host}:{free_port(host, taken)}"
                    taken.add(ep.rsplit(":", 1)[1])
                return ep
        workers = tuple(place(f"worker-{i}") for i in range(cfg.workers))
        tree = place("tree") if cfg.supervisors else None
        gateway = listen = subscribers = None
        if cfg.gateway is not None:
            gateway = place("gateway")
            subscribers = place("subscribers")
            listen = _fixed(cfg.gateway["listen"], previous.gateway_listen if previous else None,
                            taken)
        metrics = None
        if cfg.metrics is not None:
            metrics = _fixed(cfg.metrics, previous.metrics_listen if previous else None, taken)
    except BaseException:
        if run_dir is not None:
            os.rmdir(run_dir)
        raise
    return NodeLayout(router=router, workers=workers, tree=tree, gateway=gateway,
                      subscribers=subscribers, gateway_listen=listen, metrics_listen=metrics, run_dir=run_dir)


def _fixed(listen: str, previous: str | None, taken: set[str]) -> str:
    """An HTTP ``HOST:PORT`` with its port fixed: as written, else (port 0) the last run's,
    else a free one (added to ``taken``)."""
    host, port = listen.rsplit(":", 1)
    if port != "0":
        return listen
    if previous is not None:
        return previous
    fixed = str(free_port(host.strip("[]"), taken))
    taken.add(fixed)
    return f"{host}:{fixed}"


def _tcp_ports(previous: NodeLayout, router: str) -> dict[str, str]:
    """The tcp endpoints of ``previous`` by name (``worker-0``, ``tree``, ``gateway``,
    ``subscribers``), if it was the same node (the same router endpoint)."""
    if previous.router != router:
        return {}
    named = {f"worker-{i}": ep for i, ep in enumerate(previous.workers)}
    named.update({k: v for k, v in (("tree", previous.tree), ("gateway", previous.gateway),
                                    ("subscribers", previous.subscribers)) if v})
    return named


def free_port(host: str, taken: Collection[str] = ()) -> int:
    """A tcp port nothing listens on at ``host`` now, and not in ``taken`` (ports as
    strings: ones this node will bind though nothing listens on them yet)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if str(port) not in taken:
            return port
    raise OSError(f"no free tcp port on {host} outside {len(taken)} taken ones after 100 tries")


def _ipc_stem(endpoint: str) -> str:
    """``ipc:///run/x/router.sock`` -> ``/run/x/router``: other sockets go beside it."""
    path = endpoint[6:]
    return path[:-5] if path.endswith(".sock") else path


def _private_dir(path: str) -> None:
    """Make sure ``path`` exists and only its owner can open it (for ipc sockets)."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700)
        return
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ConfigError(f"ipc socket directory {path} is open to other users (mode {mode:o}); "
                          f"use a directory only the owner can open (chmod 700)", key="node.endpoint")
