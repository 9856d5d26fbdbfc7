"""The ``[gateway]`` table: validated into a plain dict with every key of
:data:`.defaults.GATEWAY` (its defaults filled in, ``static`` made absolute).

``listen`` stays as written: port 0 is resolved when the node starts, in its
:class:`~.layout.NodeLayout`.
"""
from __future__ import annotations

import os
import re
from typing import Any

from ..errors import ConfigError
from .defaults import GATEWAY
from .source import Source
from .values import IMPORT_PATH, parse_size

_LISTEN = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")
_ORIGIN = re.compile(r"^https?://[^/\s]+$")
_HOST = re.compile(r"^[^/\s]+$")


def valid_listen(value: Any) -> bool:
    """Whether ``value`` is a ``HOST:PORT`` an HTTP listener can bind (port 0: any free one)."""
    m = _LISTEN.match(value) if isinstance(value, str) else None
    return m is not None and int(m.group(2)) <= 65535


def parse_gateway(table: Any, src: Source, actors: dict[str, str]) -> dict[str, Any]:
    """Validate the [gateway] table (paths made absolute)."""
    def fail(problem: str, key: str | None) -> ConfigError:
        return src.fail(problem, "gateway" if key else None, key or "gateway")

    if not isinstance(table, dict):
        raise fail("[gateway] must be a table", None)
    for key in table:
        if key not in GATEWAY:
            raise fail(f"unknown key (expected one of: {', '.join(GATEWAY)})", key)
    g = {k: table[k] if k in table else spec.fresh() for k, spec in GATEWAY.items()}
    listen = g["listen"]
    if not valid_listen(listen):
        raise fail(f"must be \"HOST:PORT\" (port 0: any free port), got {listen!r:.80}", "listen")
    if g["static"] is not None:
        if not isinstance(g["static"], str):
            raise fail(f"must be a directory path, got {g['static']!r:.80}", "static")
        g["static"] = src.path(g["static"])
        if not os.path.isdir(g["static"]):
            raise fail(f"no such directory: {g['static']}", "static")
    origins = g["allowed_origins"]
    if not (isinstance(origins, list) and all(isinstance(o, str) for o in origins)):
        raise fail("must be a list of origins such as \"https://example.com\" (or [\"*\"])",
                   "allowed_origins")
    for o in origins:
        if o != "*" and not _ORIGIN.match(o):
            raise fail(f"an origin is SCHEME://HOST[:PORT] with no path, got {o!r:.80}", "allowed_origins")
    hosts = g["allowed_hosts"]
    if not (isinstance(hosts, list) and all(isinstance(h, str) and _HOST.match(h) for h in hosts)):
        raise fail("must be a list of HOST[:PORT] names the gateway answers to (or [\"*\"])",
                   "allowed_hosts")
    try:
        size = g["max_message_bytes"]
        g["max_message_bytes"] = parse_size(size) if type(size) in (int, str) else -1
        if not 1024 <= g["max_message_bytes"] <= 64 << 20:
            raise ValueError
    except ValueError:
        raise fail(f"must be between 1KiB and 64MiB, got {table.get('max_message_bytes')!r:.80}",
                   "max_message_bytes") from None
    for key in ("max_connections_per_actor", "max_connections"):
        if type(g[key]) is not int or g[key] < 1:
            raise fail(f"must be a positive integer, got {g[key]!r:.80}", key)
    if g["expose"] is not None:
        if not (isinstance(g["expose"], list) and all(isinstance(t, str) for t in g["expose"])):
            raise fail("must be a list of actor type names", "expose")
        for t in g["expose"]:
            if t not in actors:
                raise fail(f"{t!r:.80} is not a type in [actors]", "expose")
    if g["auth"] is not None and not (isinstance(g["auth"], str) and IMPORT_PATH.match(g["auth"])):
        raise fail(f"must be \"module:function\", got {g['auth']!r:.80}", "auth")
    beat = g["subscriber_heartbeat"]
    if type(beat) not in (int, float) or not 0.05 <= beat <= 3600:
        raise fail(f"must be a number of seconds from 0.05 to 3600, got {beat!r:.80}",
                   "subscriber_heartbeat")
    g["subscriber_heartbeat"] = float(beat)
    for key, what in (("metrics", "serve the node's /metrics here"),
                      ("dashboard", "serve /dashboard and its actor inspector here")):
        if type(g[key]) is not bool:
            raise fail(f"must be true ({what}) or false, got {g[key]!r:.80}", key)
    return g
