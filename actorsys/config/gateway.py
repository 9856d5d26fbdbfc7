"""The ``[gateway]`` table: validated into a plain dict with every key of
:data:`.defaults.GATEWAY` (its defaults filled in, ``static`` made absolute).

``listen`` stays as written: port 0 is resolved when the node starts, in its
:class:`~.layout.NodeLayout`.

``auto_response = { request = "ping", response = "pong" }``: a text frame equal to
``request`` is answered with ``response`` by the gateway, without a turn of the actor
(``actorsys/gateway/sockets.py``). ``[gateway]``'s applies to every type; an actor
type's own (``"Room" = { class = "app:Room", auto_response = {...} }``, or ``false``
for none) replaces it for that type's sockets: :func:`auto_responses` resolves the two.
Both strings are non-empty and at most ``max_message_bytes`` (UTF-8); a type's needs a
``[gateway]`` table that exposes the type.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping

from ..errors import ConfigError
from .defaults import AUTO_RESPONSE_KEYS, GATEWAY
from .source import Source
from .values import IMPORT_PATH, TABLE_SHAPES, parse_size

#: (problem, dotted key) -> the error naming it
Fail = Callable[[str, str], ConfigError]

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
    for key in ("max_connections_per_actor", "max_connections", "max_connections_per_address"):
        if type(g[key]) is not int or g[key] < 1:
            raise fail(f"must be a positive integer, got {g[key]!r:.80}", key)
    if type(g["fd_reserve"]) is not int or not 0 <= g["fd_reserve"] <= 100_000:
        raise fail(f"must be a number of file descriptors from 0 to 100000, got {g['fd_reserve']!r:.80}",
                   "fd_reserve")
    for key in ("header_timeout", "body_timeout"):
        if type(g[key]) not in (int, float) or not 0.1 <= g[key] <= 3600:
            raise fail(f"must be a number of seconds from 0.1 to 3600, got {g[key]!r:.80}", key)
        g[key] = float(g[key])
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
    if g["auto_response"] is not None:
        g["auto_response"] = parse_auto_response(g["auto_response"], fail, "auto_response")
        _frame_sizes(g["auto_response"], g["max_message_bytes"], fail, "auto_response")
    return g


def parse_auto_response(value: Any, fail: Fail, key: str, *, off: bool = False) -> dict[str, str] | None:
    """``{ request = TEXT, response = TEXT }`` checked (``off``: ``false`` is allowed, and
    means none); the errors name ``key`` or ``key.request`` / ``key.response``."""
    shape = TABLE_SHAPES["auto_response"]
    if off and value is False:
        return None
    if not isinstance(value, dict):
        raise fail(f"must be a table {shape}{' or false (none for this type)' if off else ''}, "
                   f"got {value!r:.80}", key)
    for k in value:
        if k not in AUTO_RESPONSE_KEYS:
            raise fail(f"unknown key '{k}' (expected: {', '.join(AUTO_RESPONSE_KEYS)})", f"{key}.{k}")
    for k in AUTO_RESPONSE_KEYS:
        if k not in value:
            raise fail(f"{k} is missing: auto_response is {shape}", key)
        if not isinstance(value[k], str) or not value[k]:
            raise fail(f"must be a non-empty string (a text frame), got {value[k]!r:.80}", f"{key}.{k}")
    return {k: value[k] for k in AUTO_RESPONSE_KEYS}


def _frame_sizes(pair: dict[str, str], max_frame: int, fail: Fail, key: str) -> None:
    for k, text in pair.items():
        if len(text.encode()) > max_frame:
            raise fail(f"is {len(text.encode())} bytes; a WebSocket message is at most [gateway] "
                       f"max_message_bytes ({max_frame})", f"{key}.{k}")


def check_type_auto_responses(per_type: Mapping[str, dict[str, str] | None],
                              gateway: dict[str, Any] | None, src: Source) -> None:
    """The actor types' ``auto_response`` against the ``[gateway]`` table: there is
    one, it exposes the type, and the strings fit in its messages."""
    for name, pair in per_type.items():
        def fail(problem: str, key: str, name: str = name) -> ConfigError:
            return src.fail(problem, "actors", f"{name}.{key}")
        if gateway is None:
            raise fail("needs a [gateway] table (the gateway answers the frames)", "auto_response")
        if gateway["expose"] is not None and name not in gateway["expose"]:
            raise fail(f"{name!r:.80} is not in [gateway] expose: its sockets never open",
                       "auto_response")
        if pair is not None:
            _frame_sizes(pair, gateway["max_message_bytes"], fail, "auto_response")


def auto_responses(gateway: dict[str, Any], per_type: Mapping[str, dict[str, str] | None],
                   actors: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Type name -> ``(request, response)`` its sockets' frames are answered with: the
    type's own, else ``[gateway]``'s; a type with none is not in it."""
    out: dict[str, tuple[str, str]] = {}
    for name in actors:
        pair = per_type[name] if name in per_type else gateway["auto_response"]
        if pair is not None:
            out[name] = (pair["request"], pair["response"])
    return out
