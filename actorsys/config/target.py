"""Where a client finds a node from its config: the router's endpoint and, for a tcp
node with CURVE, the key files (shared by ``actorsys COMMAND --config NODE.toml`` and
``actorsys.connect(config=NODE.toml)``).

* The config's ``[node] endpoint`` if it names one (a wildcard tcp host, ``*`` or
  ``0.0.0.0``, becomes ``127.0.0.1``); else the endpoint the running node recorded in
  ``data_dir/endpoint`` (:data:`ENDPOINT_FILE`, written by :mod:`actorsys.node.claim`;
  an ipc node in a private temporary directory). No such file, or a recorded ipc socket
  that is gone, means the node is not running: :class:`~actorsys.NodeUnavailable` says
  so at once (naming the file and the command that starts the node) instead of waiting
  for the connect timeout.
* Keys: those given win; one missing is taken from the config's ``curve_secret_key``
  (the node's own key pair, which the node always lets in) when the endpoint is tcp
  without ``insecure = true``.

A config that cannot be read or is invalid raises what :func:`load_config` raises: a
:class:`~actorsys.ConfigError` naming the file (and the line and key).
"""
from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import NodeUnavailable
from .node import load_config

#: in the data directory: the router's endpoint of the node holding the claim (one line)
ENDPOINT_FILE = "endpoint"

_WILDCARD_HOSTS = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1"}


class Target(NamedTuple):
    """Where a client connects: the router's endpoint and its key files (both None, or
    both set)."""

    endpoint: str
    key: str | None
    server_key: str | None


def config_target(config: "str | os.PathLike[str]", endpoint: str | None = None,
                  key: str | None = None, server_key: str | None = None) -> Target:
    """The :class:`Target` of the node of ``config`` (``endpoint``, when given, wins
    over the config's; the keys are still read from it; see the module docstring)."""
    cfg = load_config(config)
    if endpoint is None:
        endpoint = client_endpoint(cfg.endpoint) if cfg.endpoint else recorded_endpoint(
            cfg.data_dir, os.fspath(config))
    if endpoint.startswith("tcp://") and not cfg.insecure and cfg.curve_secret_key:
        key = key or cfg.curve_secret_key
        server_key = server_key or cfg.curve_secret_key
    return Target(endpoint, key, server_key)


def client_endpoint(bound: str) -> str:
    """The endpoint a client on this machine connects to for one a node binds."""
    if bound.startswith("tcp://"):
        host, port = bound[6:].rsplit(":", 1)
        if host in _WILDCARD_HOSTS:
            return f"tcp://{_WILDCARD_HOSTS[host]}:{port}"
    return bound


def recorded_endpoint(data_dir: str, config: str) -> str:
    """The endpoint the node of ``config`` recorded when it started; NodeUnavailable
    when it is not running."""
    path = os.path.join(data_dir, ENDPOINT_FILE)
    try:
        with open(path) as f:
            endpoint = f.read().strip()
    except FileNotFoundError:
        raise NodeUnavailable(f"the node of {config} is not running: it has recorded no "
                              f"endpoint in {path} (its config names none); start it with "
                              f"'actorsys run {config}'") from None
    except OSError as exc:
        raise NodeUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    if endpoint.startswith("ipc://") and not os.path.exists(endpoint[6:]):
        raise NodeUnavailable(f"the node of {config} is not running (its socket {endpoint[6:]}, "
                              f"recorded in {path}, is gone): start it with 'actorsys run {config}'")
    return endpoint
