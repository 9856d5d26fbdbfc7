"""Where a node's processes listen: the layout derived from the node endpoint.

Every process of a node computes its peers' endpoints from the resolved config with
these functions, so the layout is decided in one place. An ipc node keeps its sockets
beside the router's (``<stem>-worker-<i>.sock``, ``<stem>-tree.sock``,
``<stem>-gateway.sock``); a tcp node gets free ports chosen once, at start, by
:func:`resolve_endpoints`.
"""
from __future__ import annotations

import os
import socket
import stat
import tempfile
from dataclasses import replace
from typing import Any

from ..errors import ConfigError
from .node import NodeConfig

#: in the data directory: why the supervision tree stopped the node (read by the embedder)
FAILURE_FILE = "supervision.failure"


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


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def resolve_endpoints(cfg: NodeConfig) -> tuple[NodeConfig, str | None]:
    """Fix the node's endpoints; returns the config and a temp dir to remove at stop (if any)."""
    run_dir = None
    if cfg.endpoint is None:
        run_dir = tempfile.mkdtemp(prefix="actorsys-")   # mode 0700
        cfg = replace(cfg, endpoint=f"ipc://{run_dir}/router.sock")
    elif cfg.endpoint.startswith("ipc://"):
        _private_dir(os.path.dirname(cfg.endpoint[6:]))
    else:
        host = cfg.endpoint[6:].rsplit(":", 1)[0]
        extra = dict(cfg.extra)
        extra["_worker_ports"] = [free_port(host) for _ in range(cfg.workers)]
        extra["_tree_port"] = free_port(host)
        cfg = replace(cfg, extra=extra)
    if cfg.gateway is not None:
        cfg = replace(cfg, gateway=_resolve_gateway(cfg))
    return cfg, run_dir


def _resolve_gateway(cfg: NodeConfig) -> dict[str, Any]:
    """Fix the gateway's listen port (0: a free one) and its endpoint inside the node,
    where workers send it their actors' WebSocket effects."""
    g = dict(cfg.gateway or {})
    host, port = g["listen"].rsplit(":", 1)
    if port == "0":
        g["listen"] = f"{host}:{free_port(host.strip('[]'))}"
    ep = cfg.endpoint
    assert ep is not None
    if ep.startswith("ipc://"):
        stem = _ipc_stem(ep)
        g["_internal"] = f"ipc://{stem}-gateway.sock"
    else:
        node_host = ep[6:].rsplit(":", 1)[0]
        g["_internal"] = f"tcp://{node_host}:{free_port(node_host)}"
    return g


def worker_endpoints(cfg: NodeConfig) -> list[str]:
    """Each slot's fixed endpoint, derived from the node endpoint (kept across restarts)."""
    ep = cfg.endpoint
    assert ep is not None
    if ep.startswith("ipc://"):
        stem = _ipc_stem(ep)
        return [f"ipc://{stem}-worker-{i}.sock" for i in range(cfg.workers)]
    ports = cfg.extra.get("_worker_ports")
    host = ep[6:].rsplit(":", 1)[0]
    assert ports, "tcp worker ports are chosen by resolve_endpoints()"
    return [f"tcp://{host}:{p}" for p in ports]


def tree_endpoint(cfg: NodeConfig) -> str | None:
    """The supervision tree's endpoint (None when the config declares no supervisors)."""
    if not cfg.supervisors:
        return None
    ep = cfg.endpoint
    assert ep is not None
    if ep.startswith("ipc://"):
        stem = _ipc_stem(ep)
        return f"ipc://{stem}-tree.sock"
    port = cfg.extra.get("_tree_port")
    assert port, "the tcp tree port is chosen by resolve_endpoints()"
    return f"tcp://{ep[6:].rsplit(':', 1)[0]}:{port}"
