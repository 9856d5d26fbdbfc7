"""What the blocking and the asyncio client share besides the transport: their defaults,
the node a ``connect`` names (an endpoint or a config) and the reading of a history
bookmark."""
from __future__ import annotations

import os
from typing import Any, Sequence, Union

from ..config.target import config_target
from ..protocol import wire

#: seconds an ask (and a supervisor's command, a listing) may take by default
DEFAULT_TIMEOUT = 30.0
#: seconds ``connect`` waits for the router's shard map by default
CONNECT_TIMEOUT = 10.0
#: close() gives messages still queued (a tell just sent) this long to leave, then drops them
CLOSE_LINGER_MS = 500
#: attempts of an ask with ``retry=True`` (the first and its retries), all within its one deadline
ASK_TRIES = 8
#: seconds before the first retry of such an ask; doubled before each next one, at most RETRY_PAUSE_MAX
RETRY_PAUSE = 0.05
RETRY_PAUSE_MAX = 1.0


def check_top(n: Any, by: Any) -> None:
    """``top``'s arguments, checked before anything is sent (ValueError naming them)."""
    if type(n) is not int or not 1 <= n <= wire.MAX_TOP:
        raise ValueError(f"top's n is 1..{wire.MAX_TOP}, got {n!r:.80}")
    if by not in wire.TOP_ORDERS:
        raise ValueError(f"top's by is one of {', '.join(wire.TOP_ORDERS)}, got {by!r:.80}")


def version_of(version: Any) -> Any:
    """A version number, from a number or a bookmark of ``history()``."""
    return version.get("version") if isinstance(version, dict) else version


def router_list(endpoints: "str | Sequence[str]") -> list[str]:
    """The router endpoints a client may ask, in order: one endpoint, or a cluster's
    several (``connect(["tcp://a:7100", "tcp://b:7100"])``)."""
    if isinstance(endpoints, str):
        return [endpoints]
    routers = list(endpoints) if isinstance(endpoints, (list, tuple)) else None
    if not routers or not all(isinstance(e, str) and e for e in routers):
        raise TypeError(f"connect takes a router endpoint or a non-empty list of them, "
                        f"not {endpoints!r:.200}")
    return list(dict.fromkeys(routers))     # each once, in order


#: a key file as ``connect`` takes it (None: none given)
KeyFile = Union[str, "os.PathLike[str]", None]


def node_of(endpoint: str | Sequence[str] | None, config: str | os.PathLike[str] | None,
            key: KeyFile, server_key: KeyFile) -> tuple[str | Sequence[str], KeyFile, KeyFile]:
    """``connect``'s endpoint(s) and key files, given ``endpoint`` or ``config`` (exactly
    one; TypeError otherwise). A config is read as ``actorsys COMMAND --config`` reads it
    (:func:`actorsys.config.target.config_target`): its endpoint, or the one its running
    node recorded (``NodeUnavailable`` at once when it is not running), and its own key
    pair for a tcp node with CURVE where no key is given."""
    if (endpoint is None) == (config is None):
        raise TypeError("connect takes a router endpoint or config=NODE.toml (one of them), "
                        f"got {'both' if config is not None else 'neither'}")
    if config is None:
        assert endpoint is not None
        return endpoint, key, server_key
    t = config_target(config, None, None if key is None else os.fspath(key),
                      None if server_key is None else os.fspath(server_key))
    return t.endpoint, t.key, t.server_key
