"""Which node a CLI command talks to, and with which CURVE keys.

Every ``actorsys`` command that talks to a node resolves a :class:`Target`:

* ``--endpoint``/``-e`` wins when given.
* Otherwise the node's config: ``--config NODE.toml``, else ``$ACTORSYS_CONFIG``; its
  endpoint (named, or recorded by the running node) as
  :func:`actorsys.config.target.config_target` finds it, which
  ``actorsys.connect(config=...)`` uses too.
* Neither: an error saying to pass one.

Keys: ``--key`` / ``--server-key`` (or ``$ACTORSYS_KEY`` / ``$ACTORSYS_SERVER_KEY``)
win; one missing is taken from the config's ``curve_secret_key`` (see
:mod:`actorsys.config.target`). The config is read for keys with ``-e`` too, but only
when ``--config`` is given on the command line (``$ACTORSYS_CONFIG`` may name another
node).
"""
from __future__ import annotations

import os

from ..config.target import Target, config_target
from ..errors import ConfigError, NodeUnavailable

__all__ = ["CONFIG_ENV", "Target", "TargetError", "resolve"]

#: the environment variable naming the node's config for every client command
CONFIG_ENV = "ACTORSYS_CONFIG"


class TargetError(Exception):
    """No node to talk to, or its config cannot be used (the CLI prints the message)."""


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
        return config_target(config, endpoint, key, server_key)
    except ConfigError as exc:
        raise TargetError(f"--config: {exc}") from None
    except NodeUnavailable as exc:       # (a ConnectionError: an OSError; caught first)
        raise TargetError(str(exc)) from None
    except OSError as exc:
        raise TargetError(f"--config {config}: {exc.strerror or exc}") from None
