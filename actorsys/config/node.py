"""Node configuration: one TOML file (or the same content as a dict).

```toml
[node]
data_dir = "data"            # relative paths are relative to the config file
workers = 2                  # worker processes (slots)
endpoint = "ipc:///run/me/actorsys/router.sock"   # optional; default: a private temp dir
# endpoint = "tcp://0.0.0.0:7000"                  # tcp needs CURVE keys (or insecure = true)
curve_secret_key = "keys/node.key_secret"          # the node's key pair (actorsys keygen)
authorized_keys = "keys/clients"                   # directory of clients' public .key files
insecure = false             # true: plain tcp, unauthenticated and unencrypted
durability = "process"       # "process": survives kill -9; "fsync": survives power loss
shards = 4096                # fixed when the data directory is created
max_message_bytes = 1048576
mailbox_limit = 10000        # queued messages per actor before Overloaded
max_queued_bytes = "64MiB"   # queued message bytes per worker (all mailboxes) before Overloaded
max_pending_asks = 100000    # asks a client (or a worker) awaits at once before Overloaded
idle_timeout = 300.0         # seconds before an idle actor is passivated
ask_timeout = 30.0           # default deadline of an ask
shutdown_timeout = 10.0      # graceful stop of one process before SIGKILL
max_restarts = 20            # process restarts allowed within max_seconds, then the node stops
max_seconds = 10.0
turn_timeout = 60.0          # a turn running longer is a crash (async) or kills its worker (sync)
heartbeat_timeout = 10.0     # a worker whose event loop is silent this long is killed
max_worker_memory = "1GB"    # a worker above this resident size is restarted (0: no limit)
backoff = { initial = 0.05, max = 2.0, jitter = 0.2 }   # delay repeated process restarts
max_resident = 100000        # actors in memory per worker; beyond, the least recently used leave
max_value_bytes = "512KiB"   # largest state, storage value or alarm (storage keys: 16 KiB)
history_window = 0           # seconds of committed versions kept per actor (0: no history)
alarm_retry = { initial = 1.0, max = 60.0, attempts = 6 }   # on_alarm that raises

[actors]
"Counter" = "examples.counter:Counter"           # type name -> "module:Class"
"Store" = { class = "app:Store", on_error = "stop" }   # with an actor-level policy
"Doc" = { class = "app:Doc", history_window = 86400 }   # keep a day of versions

[supervisors.root]           # supervision trees: see supervisors/spec.py
children = [ { id = "store", actor = "Store", key = "main" } ]

[gateway]                    # HTTP and WebSockets: see actorsys/gateway.py
listen = "127.0.0.1:8080"    # HOST:PORT (port 0: a free port, see Node.gateway_url)
static = "static"            # a directory served at / (optional)
allowed_origins = []         # browser origins allowed in; [] = the page's own origin only
allowed_hosts = []           # Host names it answers besides listen (["*"]: any)
max_message_bytes = "64KiB"  # largest WebSocket message or HTTP body
max_connections_per_actor = 1000
max_connections = 10000
expose = ["Room"]            # actor types reachable from HTTP and WebSockets (default: all)
auth = "app:check"           # optional hook: f(request) -> falsy refuses; a value is conn.user
```

Every error is a :class:`~actorsys.errors.ConfigError` naming the file, the line and
the key.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import tomllib
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from . import supervision
from .keyfiles import load_authorized, load_secret

DURABILITY = ("process", "fsync")
ON_ERROR = ("restart", "stop")
ALARM_RETRY = {"initial": 1.0, "max": 60.0, "attempts": 6}

# key -> (type, default, check, what the check wants)
_NODE_KEYS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "data_dir": (str, "data"),
    "workers": (int, 2),
    "endpoint": (str, None),
    "durability": (str, "process"),
    "shards": (int, 4096),
    "max_message_bytes": (int, 1 << 20),
    "mailbox_limit": (int, 10_000),
    "max_queued_bytes": ((int, str), 64 << 20),
    "max_pending_asks": (int, 100_000),
    "idle_timeout": ((int, float), 300.0),
    "ask_timeout": ((int, float), 30.0),
    "shutdown_timeout": ((int, float), 10.0),
    "start_timeout": ((int, float), 60.0),
    "max_restarts": (int, 20),
    "max_seconds": ((int, float), 10.0),
    "turn_timeout": ((int, float), 60.0),
    "heartbeat_timeout": ((int, float), 10.0),
    "max_worker_memory": ((int, str), 0),
    "backoff": (dict, None),
    "max_resident": (int, 100_000),
    "max_value_bytes": ((int, str), 512 * 1024),
    "history_window": ((int, float), 0),
    "alarm_retry": (dict, None),
    "insecure": (bool, False),
    "curve_secret_key": (str, None),
    "authorized_keys": (str, None),
    "python_path": (list, []),
}
_TOP_LEVEL = ("node", "actors", "supervisors", "gateway")
_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,199}$")
_CLASS_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass
class NodeConfig:
    """A validated node configuration (see the module docstring for the keys)."""

    data_dir: str
    workers: int = 2
    endpoint: str | None = None
    durability: str = "process"
    shards: int = 4096
    max_message_bytes: int = 1 << 20
    mailbox_limit: int = 10_000
    max_queued_bytes: int = 64 << 20
    max_pending_asks: int = 100_000
    idle_timeout: float = 300.0
    ask_timeout: float = 30.0
    shutdown_timeout: float = 10.0
    start_timeout: float = 60.0
    max_restarts: int = 20
    max_seconds: float = 10.0
    turn_timeout: float = 60.0
    heartbeat_timeout: float = 10.0
    max_worker_memory: int = 0
    backoff: dict[str, float] | None = None
    max_resident: int = 100_000
    max_value_bytes: int = 512 * 1024
    history_window: float = 0
    alarm_retry: dict[str, float] = field(default_factory=lambda: dict(ALARM_RETRY))
    insecure: bool = False
    #: absolute path of the node's CURVE key pair file (tcp endpoints)
    curve_secret_key: str | None = None
    #: absolute path of the directory of the public keys allowed in (tcp endpoints)
    authorized_keys: str | None = None
    python_path: list[str] = field(default_factory=list)
    actors: dict[str, str] = field(default_factory=dict)
    #: type name -> actor-level policy on a handler exception ("restart" or "stop")
    on_error: dict[str, str] = field(default_factory=dict)
    #: type name -> seconds of history kept (overrides the node's history_window)
    history: dict[str, float] = field(default_factory=dict)
    #: validated [supervisors.NAME] tables as plain data (see supervisors/spec.py)
    supervisors: dict[str, Any] = field(default_factory=dict)
    #: the validated [gateway] table (see GATEWAY_KEYS), or None: no gateway process
    gateway: dict[str, Any] | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NodeConfig":
        return cls(**d)


def line_of(text: str | None, table: str | None, key: str | None) -> int | None:
    """Best-effort line number of ``key`` inside ``[table]`` in a TOML text."""
    if text is None:
        return None
    lines = text.splitlines()
    if table is None:
        if key is None:
            return None
        # a top-level name: a [name] / [name.x] / [[name]] header, or a root-level name = ...
        header = re.compile(r'^\s*\[+\s*["\']?' + re.escape(key) + r'["\']?\s*[\].]')
        plain = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*[=.]')
        in_root = True
        for i, line in enumerate(lines):
            if re.match(r"^\s*\[", line):
                in_root = False
                if header.match(line):
                    return i + 1
            elif in_root and plain.match(line):
                return i + 1
        return None
    header = re.compile(r"^\s*\[\s*" + re.escape(table) + r"\s*\]")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return None
    if key is None:
        return start + 1
    pat = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*=')
    for i in range(start, len(lines)):
        if i > start and re.match(r"^\s*\[", lines[i]):
            break
        if pat.match(lines[i]):
            return i + 1
    return None


def _dotted_line(text: str | None, dotted: str) -> int | None:
    """Best-effort line of a dotted key: the key itself, else the nearest enclosing key or
    table written in the file (``node.backoff.max`` -> the ``backoff = {...}`` line)."""
    d = dotted
    while d:
        table, _, key = d.rpartition(".")
        line = line_of(text, table or None, key)
        if line is None and table:
            line = line_of(text, None, d)       # a [table.sub] header
        if line is not None:
            return line
        d = table
    return None


def load_config(config: "str | os.PathLike[str] | dict[str, Any] | NodeConfig") -> NodeConfig:
    """Load and validate a node config from a TOML path or a dict."""
    if isinstance(config, NodeConfig):
        return config
    text: str | None = None
    source: str | None = None
    if isinstance(config, dict):
        raw = config
        base = os.getcwd()
    else:
        source = os.path.abspath(os.fspath(config))
        try:
            with open(source, "rb") as f:
                text = f.read().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file ({exc.strerror})", file=source) from None
        except UnicodeDecodeError:
            raise ConfigError("config file is not UTF-8 text", file=source) from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise ConfigError(f"invalid TOML: {exc}", file=source,
                              line=int(m.group(1)) if m else None) from None
        base = os.path.dirname(source)

    def fail(problem: str, table: str | None = None, key: str | None = None) -> ConfigError:
        dotted = ".".join(p for p in (table, key) if p)
        return ConfigError(problem, file=source, line=_dotted_line(text, dotted), key=dotted or None)

    if not isinstance(raw, dict):
        raise fail("config must be a table/dict")
    for name in raw:
        if name not in _TOP_LEVEL:
            raise fail(f"unknown section '{name}' (expected one of: {', '.join(_TOP_LEVEL)})",
                       None, name)
    node = raw.get("node", {})
    if not isinstance(node, dict):
        raise fail("[node] must be a table", None, "node")
    values: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _NODE_KEYS:
            raise fail(f"unknown key (expected one of: {', '.join(_NODE_KEYS)})", "node", key)
        want, _default = _NODE_KEYS[key]
        if want is int and (type(value) is not int):
            raise fail(f"must be an integer, got {value!r}", "node", key)
        if want == (int, float) and (type(value) not in (int, float)):
            raise fail(f"must be a number, got {value!r}", "node", key)
        if want is str and not isinstance(value, str):
            raise fail(f"must be a string, got {value!r}", "node", key)
        if want is bool and not isinstance(value, bool):
            raise fail(f"must be true or false, got {value!r}", "node", key)
        if want is list and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise fail("must be a list of strings", "node", key)
        if want == (int, str) and type(value) not in (int, str):
            raise fail(f"must be a size in bytes or a string such as \"512MB\", got {value!r}", "node", key)
        if want is dict and not isinstance(value, dict):
            raise fail("must be a table { initial = SECONDS, max = SECONDS, "
                       + ("jitter = FRACTION }" if key == "backoff" else "attempts = N }"),
                       "node", key)
        values[key] = value
    for key, (_want, default) in _NODE_KEYS.items():
        values.setdefault(key, default)

    if not 1 <= values["workers"] <= 255:
        raise fail("must be between 1 and 255", "node", "workers")
    if not 1 <= values["shards"] <= 65536:
        raise fail("must be between 1 and 65536", "node", "shards")
    if values["shards"] < values["workers"]:
        raise fail("must be at least the number of workers", "node", "shards")
    if values["durability"] not in DURABILITY:
        raise fail(f"must be one of {DURABILITY}, got {values['durability']!r}", "node", "durability")
    for key in ("max_message_bytes", "mailbox_limit", "max_pending_asks", "max_restarts",
                "max_resident"):
        if values[key] < 1:
            raise fail("must be positive", "node", key)
    try:
        values["max_worker_memory"] = parse_size(values["max_worker_memory"])
    except ValueError as exc:
        raise fail(str(exc), "node", "max_worker_memory") from None
    try:
        values["max_value_bytes"] = parse_size(values["max_value_bytes"])
        if not 1024 <= values["max_value_bytes"] <= 1 << 30:
            raise ValueError
    except ValueError:
        raise fail(f"must be between 1KiB and 1GiB (a number of bytes or a size such as "
                   f"\"512KiB\"), got {node.get('max_value_bytes')!r:.80}", "node",
                   "max_value_bytes") from None
    try:
        values["max_queued_bytes"] = parse_size(values["max_queued_bytes"])
        if values["max_queued_bytes"] < values["max_message_bytes"]:
            raise ValueError
    except ValueError:
        raise fail(f"must be at least max_message_bytes ({values['max_message_bytes']}; a number "
                   f"of bytes or a size such as \"64MiB\"), got {node.get('max_queued_bytes')!r:.80}",
                   "node", "max_queued_bytes") from None
    if not 0 <= values["history_window"] < float("inf"):
        raise fail("must be 0 (no history) or a positive number of seconds", "node", "history_window")
    values["alarm_retry"] = _alarm_retry(values["alarm_retry"], lambda p, k: fail(p, "node", k))
    if values["backoff"] is not None:
        b = supervision.parse_backoff(values["backoff"], lambda p, k: fail(p, "node", k.split(".", 1)[1]),
                          "node.backoff")
        values["backoff"] = {"initial": b.initial, "max": b.max, "jitter": b.jitter}
    for key in ("idle_timeout", "ask_timeout", "shutdown_timeout", "start_timeout", "max_seconds",
                "turn_timeout", "heartbeat_timeout"):
        if values[key] <= 0:
            raise fail("must be a positive number of seconds", "node", key)
    _check_keys(values, base, fail)
    ep = values["endpoint"]
    if ep is not None:
        if ep.startswith("ipc://"):
            if len(ep) - 6 > 90:
                raise fail("ipc socket path is too long (max 90 characters; worker sockets sit beside it)",
                           "node", "endpoint")
            values["endpoint"] = "ipc://" + os.path.join(base, ep[6:])
        elif ep.startswith("tcp://"):
            if values["insecure"] and values["curve_secret_key"] is not None:
                raise fail("insecure = true turns CURVE off, but curve_secret_key is set: "
                           "remove one of them", "node", "insecure")
            if not values["insecure"] and values["curve_secret_key"] is None:
                raise fail("tcp endpoints require CURVE: set curve_secret_key = \"keys/node.key_secret\" "
                           "(make the pair with 'actorsys keygen keys --name node'), or set "
                           "insecure = true to accept unauthenticated, unencrypted tcp on a trusted "
                           "network", "node", "endpoint")
            if not re.match(r"^tcp://[^:]+:\d+$", ep):
                raise fail("tcp endpoint must look like tcp://HOST:PORT", "node", "endpoint")
        else:
            raise fail("endpoint must start with ipc:// or tcp://", "node", "endpoint")
    values["data_dir"] = os.path.join(base, values["data_dir"])
    values["python_path"] = [os.path.join(base, p) for p in values["python_path"]]
    if source is not None:
        values["python_path"].insert(0, base)

    actors_raw = raw.get("actors", {})
    if not isinstance(actors_raw, dict):
        raise fail("[actors] must be a table mapping type names to \"module:Class\"", None, "actors")
    actors: dict[str, str] = {}
    on_error: dict[str, str] = {}
    history: dict[str, float] = {}
    for name, spec in actors_raw.items():
        if isinstance(spec, dict):
            unknown = set(spec) - {"class", "on_error", "history_window"}
            if unknown:
                raise fail(f"unknown actor option(s) {sorted(unknown)} "
                           f"(expected: class, on_error, history_window)", "actors", name)
            if "history_window" in spec:
                hw = spec["history_window"]
                if type(hw) not in (int, float) or not 0 <= hw < float("inf"):
                    raise fail(f"history_window must be 0 or a positive number of seconds, "
                               f"got {hw!r:.80}", "actors", f"{name}.history_window")
                history[name] = float(hw)
            if "on_error" in spec:
                if spec["on_error"] not in ON_ERROR:
                    raise fail(f"on_error must be one of {ON_ERROR}, got {spec['on_error']!r:.80}",
                               "actors", name)
                on_error[name] = spec["on_error"]
            spec = spec.get("class")
        if not _TYPE_NAME.match(name):
            raise fail("actor type names use letters, digits, '_', '.', '-' (max 200)", "actors", name)
        if not isinstance(spec, str) or not _CLASS_PATH.match(spec):
            raise fail(f"must be \"module:Class\", got {spec!r}", "actors", name)
        actors[name] = spec

    def fail_dotted(problem: str, dotted: str) -> ConfigError:
        m = re.match(r"^supervisors\.([^.\[]+)\.children\[(\d+)\](?:\.(\w+))?$", dotted)
        if m:
            line = supervision.child_line(text, m.group(1), int(m.group(2)), m.group(3))
            if line is None:
                line = _dotted_line(text, f"supervisors.{m.group(1)}.children")
        else:
            line = _dotted_line(text, dotted)
        return ConfigError(problem, file=source, line=line, key=dotted)

    sups = supervision.parse_supervisors(raw.get("supervisors", {}), actors=actors, fail=fail_dotted)
    gateway = _gateway(raw["gateway"], base, actors, fail) if "gateway" in raw else None
    if gateway is not None and gateway["max_message_bytes"] > values["max_message_bytes"] // 2:
        raise fail(f"must be at most half of [node] max_message_bytes ({values['max_message_bytes']}): "
                   f"socket events travel to actors inside node messages", "gateway", "max_message_bytes")
    extra = {k: v for k, v in raw.items() if k not in _TOP_LEVEL}
    return NodeConfig(actors=actors, on_error=on_error, history=history,
                      supervisors=supervision.to_config(sups), gateway=gateway,
                      source=source, extra=extra, **values)


#: [gateway] key -> default (see the module docstring)
GATEWAY_KEYS: dict[str, Any] = {
    "listen": "127.0.0.1:8080",
    "static": None,
    "allowed_origins": [],
    "allowed_hosts": [],
    "max_message_bytes": 64 * 1024,
    "max_connections_per_actor": 1000,
    "max_connections": 10_000,
    "expose": None,
    "auth": None,
}
_FUNCTION_PATH = _CLASS_PATH


def _gateway(table: Any, base: str, actors: dict[str, str], fail: Any) -> dict[str, Any]:
    """Validate the [gateway] table (paths made absolute)."""
    if not isinstance(table, dict):
        raise fail("[gateway] must be a table", None, "gateway")
    for key in table:
        if key not in GATEWAY_KEYS:
            raise fail(f"unknown key (expected one of: {', '.join(GATEWAY_KEYS)})", "gateway", key)
    g = {**GATEWAY_KEYS, **table}
    listen = g["listen"]
    m = re.match(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$", listen) if isinstance(listen, str) else None
    if m is None or int(m.group(2)) > 65535:
        raise fail(f"must be \"HOST:PORT\" (port 0: any free port), got {listen!r:.80}", "gateway", "listen")
    if g["static"] is not None:
        if not isinstance(g["static"], str):
            raise fail(f"must be a directory path, got {g['static']!r:.80}", "gateway", "static")
        g["static"] = os.path.join(base, g["static"])
        if not os.path.isdir(g["static"]):
            raise fail(f"no such directory: {g['static']}", "gateway", "static")
    origins = g["allowed_origins"]
    if not (isinstance(origins, list) and all(isinstance(o, str) for o in origins)):
        raise fail("must be a list of origins such as \"https://example.com\" (or [\"*\"])",
                   "gateway", "allowed_origins")
    for o in origins:
        if o != "*" and not re.match(r"^https?://[^/\s]+$", o):
            raise fail(f"an origin is SCHEME://HOST[:PORT] with no path, got {o!r:.80}",
                       "gateway", "allowed_origins")
    hosts = g["allowed_hosts"]
    if not (isinstance(hosts, list) and all(isinstance(h, str) and re.match(r"^[^/\s]+$", h)
                                            for h in hosts)):
        raise fail("must be a list of HOST[:PORT] names the gateway answers to (or [\"*\"])",
                   "gateway", "allowed_hosts")
    try:
        g["max_message_bytes"] = parse_size(g["max_message_bytes"]) if type(g["max_message_bytes"]) in (
            int, str) else -1
        if not 1024 <= g["max_message_bytes"] <= 64 << 20:
            raise ValueError
    except ValueError:
        raise fail(f"must be between 1KiB and 64MiB, got {table.get('max_message_bytes')!r:.80}",
                   "gateway", "max_message_bytes") from None
    for key in ("max_connections_per_actor", "max_connections"):
        if type(g[key]) is not int or g[key] < 1:
            raise fail(f"must be a positive integer, got {g[key]!r:.80}", "gateway", key)
    if g["expose"] is not None:
        if not (isinstance(g["expose"], list) and all(isinstance(t, str) for t in g["expose"])):
            raise fail("must be a list of actor type names", "gateway", "expose")
        for t in g["expose"]:
            if t not in actors:
                raise fail(f"{t!r:.80} is not a type in [actors]", "gateway", "expose")
    if g["auth"] is not None and not (isinstance(g["auth"], str) and _FUNCTION_PATH.match(g["auth"])):
        raise fail(f"must be \"module:function\", got {g['auth']!r:.80}", "gateway", "auth")
    return g


def _check_keys(values: dict[str, Any], base: str, fail: Any) -> None:
    """Resolve the CURVE key paths and check the files now (a clear error, not a node
    whose processes cannot start)."""
    for key in ("curve_secret_key", "authorized_keys"):
        if values[key] is not None:
            if not values[key]:
                raise fail("must be a path, got an empty string", "node", key)
            values[key] = os.path.join(base, values[key])
    if values["authorized_keys"] is not None and values["curve_secret_key"] is None:
        raise fail("authorized_keys needs curve_secret_key (the node's own key pair)",
                   "node", "authorized_keys")
    if values["curve_secret_key"] is not None:
        try:
            load_secret(values["curve_secret_key"])
        except ValueError as exc:
            raise fail(str(exc), "node", "curve_secret_key") from None
    if values["authorized_keys"] is not None:
        try:
            load_authorized(values["authorized_keys"])
        except ValueError as exc:
            raise fail(str(exc), "node", "authorized_keys") from None


def _alarm_retry(value: dict[str, Any] | None, fail: Any) -> dict[str, float]:
    """Validate ``alarm_retry = { initial, max, attempts }`` (missing keys: defaults)."""
    out = dict(ALARM_RETRY)
    for k, v in (value or {}).items():
        if k not in out:
            raise fail(f"unknown key '{k}' (expected: initial, max, attempts)", f"alarm_retry.{k}")
        if k == "attempts":
            if type(v) is not int or v < 1:
                raise fail("must be an integer of at least 1", f"alarm_retry.{k}")
        elif type(v) not in (int, float) or v <= 0:
            raise fail("must be a positive number of seconds", f"alarm_retry.{k}")
        out[k] = v
    if out["max"] < out["initial"]:
        raise fail("max must be at least initial", "alarm_retry.max")
    return out


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_size(value: "int | str") -> int:
    """Bytes from an int or a string such as ``"512MB"`` / ``"2GiB"``; 0 means no limit."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be 0 (no limit) or a positive number of bytes")
        return value
    m = _SIZE.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"must be a size such as \"512MB\" or \"2GiB\", got {value!r:.80}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def import_object(spec: str, python_path: list[str] | None = None) -> Any:
    """Import ``"module:name"`` (``python_path`` first on ``sys.path``)."""
    for p in reversed(python_path or []):
        if p not in sys.path:
            sys.path.insert(0, p)
    module_name, _, qual = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def import_function(spec: str, python_path: list[str] | None = None) -> Any:
    """Import ``"module:function"`` and check that it is callable."""
    obj = import_object(spec, python_path)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj
