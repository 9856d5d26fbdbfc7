"""Which node a CLI command talks to, and with which CURVE keys.

Every ``actorsys`` command that talks to a node resolves a :class:`Target`:

* ``--endpoint``/``-e`` wins when given.
* Otherwise the node's config: ``--config NODE.toml``, else ``$ACTORSYS_CONFIG``. Its
  ``[node] endpoint`` if it names one (a wildcard tcp host, ``*`` or ``0.0.0.0``,
  becomes ``127.0.0.1``); else the endpoint the running node recorded in
  ``data_dir/endpoint`` (:data:`~actorsys.node.claim.ENDPOINT_FILE`; an ipc node in a
  private temporary directory). A recorded ipc socket that is gone means the node has
  stopped: an error says so at once instead of waiting for the connect timeout.
* Neither: an error saying to pass one.

Keys: ``--key`` / ``--server-key`` (or ``$ACTORSYS_KEY`` / ``$ACTORSYS_SERVER_KEY``)
win; one missing is taken from the config's ``curve_secret_key`` (the node's own key
pair, which the node always lets in) when the endpoint is tcp without
``insecure = true``. The config is read for keys with ``-e`` too, but only when
``--config`` is given on the command line (``$ACTORSYS_CONFIG`` may name another node).
"""
from __future__ import annotations

import os
from typing import NamedTuple

from ..config import load_config
from ..errors import ConfigError
from .claim import ENDPOINT_FILE

#: the environment variable naming the node's config for every client command
CONFIG_ENV = "ACTORSYS_CONFIG"

_WILDCARD_HOSTS = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1"}


class TargetError(Exception):
    """No node to talk to, or its config cannot be used (the CLI prints the message)."""


class Target(NamedTuple):
    """Where a command connects: the router's endpoint and this client's key files
    (both None, or both set)."""

    endpoint: str
    key: str | None
    server_key: str | None


def resolve(endpoint: str | None, config: str | None, key: str | None,
            server_key: str | None) -> Target:
    """The :class:`Target` of a command given ``-e``, ``--config`` (None: not given on
    the command line) and the key options (see the module docstring)."""
    if config is None and endpoint is None:
        config = os.environ.get(CONFIG_ENV) or None
    if endpoint is None and config is None:
        raise TargetError("which node? pass --endpoint ENDPOINT (as 'actorsys run' printed it) "
                          f"or --config NODE.toml (or set ${CONFIG_ENV})")
    if config is None:
        assert endpoint is not None
        return Target(endpoint, key, server_key)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise TargetError(f"--config: {exc}") from None
    except OSError as exc:
        raise TargetError(f"--config {config}: {exc.strerror or exc}") from None
    if endpoint is None:
        endpoint = _client_endpoint(cfg.endpoint) if cfg.endpoint else _recorded(cfg.data_dir, config)
    if endpoint.startswith("tcp://") and not cfg.insecure and cfg.curve_secret_key:
        key = key or cfg.curve_secret_key
        server_key = server_key or cfg.curve_secret_key
    return Target(endpoint, key, server_key)


def _client_endpoint(bound: str) -> str:
    """The endpoint a client on this machine connects to for one a node binds."""
    if bound.startswith("tcp://"):
        host, port = bound[6:].rsplit(":", 1)
        if host in _WILDCARD_HOSTS:
            return f"tcp://{_WILDCARD_HOSTS[host]}:{port}"
    return bound


def _recorded(data_dir: str, config: str) -> str:
    """The endpoint the node of ``config`` recorded when it started."""
    path = os.path.join(data_dir, ENDPOINT_FILE)
    try:
        with open(path) as f:
            endpoint = f.read().strip()
    except FileNotFoundError:
        raise TargetError(f"the node of {config} is not running: it has recorded no endpoint "
                          f"in {path} (its config names none); start it with "
                          f"'actorsys run {config}'") from None
    except OSError as exc:
        raise TargetError(f"cannot read {path}: {exc.strerror or exc}") from None
    if endpoint.startswith("ipc://") and not os.path.exists(endpoint[6:]):
        raise TargetError(f"the node of {config} is not running (its socket {endpoint[6:]}, "
                          f"recorded in {path}, is gone): start it with 'actorsys run {config}'")
    return endpoint
