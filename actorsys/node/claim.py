"""Claiming a node's data directory and endpoints before anything binds: a second node
on the same data directory or endpoint stops at once with an error naming what is in
use, instead of stealing the first node's sockets.

The node that holds the claim records its router's endpoint in ``data_dir/endpoint``
(:data:`~actorsys.config.target.ENDPOINT_FILE`, one line), so ``actorsys COMMAND --config
NODE.toml`` and ``actorsys.connect(config=NODE.toml)`` find a node whose config names no
endpoint (ipc in a private temporary directory). The file is left behind when the node
stops; its reader checks that the socket is still there."""
from __future__ import annotations

import fcntl
import os
import socket

from ..config import NodeConfig, NodeLayout
from ..config.target import ENDPOINT_FILE
from ..errors import ConfigError
from ..log import get_logger

log = get_logger("node")


def _endpoint_in_use(endpoint: str) -> bool:
    """Whether something already accepts connections at ``endpoint``."""
    if endpoint.startswith("ipc://"):
        path = endpoint[6:]
        if not os.path.exists(path):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(path)
                return True
            except OSError:
                return False           # a stale socket file from a node that died
    host, port = endpoint[6:].rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: a port in TIME-WAIT after our own node stopped is free for ZeroMQ
        # too; a live listener still refuses the bind
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
            return False
        except OSError:
            return True


def _lock(path: str, what: str, key: str) -> int:
    """An exclusive flock on ``path`` holding our pid; ConfigError if another node has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise ConfigError(f"{what} is in use by another running node "
                          f"(supervisor pid {holder or '?'})", key=key) from None
    try:      # the holder's pid, for the error above (a full disk may refuse it)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:
        pass
    return fd


def claim_node(cfg: NodeConfig, layout: NodeLayout) -> list[int]:
    """Take the node's locks and check its endpoints are free.

    Locks ``data_dir/LOCK`` and, for an ipc endpoint, a ``.lock`` file beside its socket
    (flock is atomic, so two nodes starting at once cannot both win), then checks that
    nothing else serves the endpoints of ``layout``. Returns the locks' descriptors, held
    for the node's life; raises ConfigError naming what is in use, so a second node stops
    before it binds anything instead of stealing the first node's sockets.
    """
    os.makedirs(cfg.data_dir, mode=0o700, exist_ok=True)
    fds = [_lock(os.path.join(cfg.data_dir, "LOCK"), f"data directory {cfg.data_dir}",
                 "node.data_dir")]
    try:
        if layout.router.startswith("ipc://"):
            path = layout.router[6:]
            fds.append(_lock(path + ".lock", f"endpoint {layout.router}", "node.endpoint"))
        for ep in layout.endpoints():
            if _endpoint_in_use(ep):
                raise ConfigError(f"endpoint {ep} is already in use by another process",
                                  key="node.endpoint")
        if layout.gateway_listen is not None and _endpoint_in_use("tcp://" + layout.gateway_listen):
            raise ConfigError(f"the gateway's address {layout.gateway_listen} is already in use",
                              file=cfg.source, key="gateway.listen")
        if layout.metrics_listen is not None and _endpoint_in_use("tcp://" + layout.metrics_listen):
            raise ConfigError(f"the metrics address {layout.metrics_listen} is already in use",
                              file=cfg.source, key="node.metrics")
        record_endpoint(cfg.data_dir, layout.router)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def record_endpoint(data_dir: str, endpoint: str) -> None:
    """Write ``data_dir/endpoint`` (atomically: a reader never sees half a line). Best
    effort: a full disk does not stop the node (it logs a warning; the CLI then needs
    ``--endpoint``)."""
    path = os.path.join(data_dir, ENDPOINT_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, endpoint.encode() + b"\n")
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not record the endpoint in %s (%s): commands need --endpoint %s",
                    path, exc, endpoint)
        try:
            os.unlink(tmp)
        except OSError:
            pass
