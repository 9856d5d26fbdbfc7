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
slow_turn = 0.5              # a turn (or step of an async one) blocking this long logs a warning (0: off)
max_worker_memory = "1GB"    # a worker above this resident size is restarted (0: no limit)
backoff = { initial = 0.05, max = 2.0, jitter = 0.2 }   # delay repeated process restarts
max_resident = 100000        # actors in memory per worker; beyond, the least recently used leave
max_value_bytes = "512KiB"   # largest state, storage value or alarm (storage keys: 16 KiB)
leveldb_write_buffer = "1MiB"   # per slot: bounds the log a restarted worker replays
history_window = 0           # seconds of committed versions kept per actor (0: no history)
request_window = 1000        # ask ids (with replies) kept per actor so a retry runs once (0: none)...
request_window_seconds = 600.0   # ...if it comes within this many seconds
alarm_retry = { initial = 1.0, max = 60.0, attempts = 6 }   # on_alarm that raises
testing = false              # true: run_in_actor and fire_alarms work (tests only: runs any function)

[actors]
"Counter" = "examples.counter:Counter"           # type name -> "module:Class"
"Store" = { class = "app:Store", on_error = "stop" }   # with an actor-level policy
"Doc" = { class = "app:Doc", history_window = 86400 }   # keep a day of versions
"Room" = { class = "app:Room", auto_response = { request = "hb", response = "ok" } }   # or false

[supervisors.root]           # supervision trees: see actorsys/config/supervision.py
children = [ { id = "store", actor = "Store", key = "main" } ]

[gateway]                    # HTTP and WebSockets: see actorsys/gateway/
listen = "127.0.0.1:8080"    # HOST:PORT (port 0: a free port, see Node.gateway_url)
static = "static"            # a directory served at / (optional)
allowed_origins = []         # browser origins allowed in; [] = the page's own origin only
allowed_hosts = []           # Host names it answers besides listen (["*"]: any)
max_message_bytes = "64KiB"  # largest WebSocket message or HTTP body
max_connections_per_actor = 1000
max_connections = 10000
expose = ["Room"]            # actor types reachable from HTTP and WebSockets (default: all)
auth = "app:check"           # optional hook: f(request) -> falsy refuses; a value is conn.user
subscriber_heartbeat = 5.0   # seconds between Python subscribers' heartbeats (client.subscribe)
auto_response = { request = "ping", response = "pong" }   # answered here, the actor not woken
```

Every error is a :class:`~actorsys.errors.ConfigError` naming the file, the line and
the key. The defaults of every key are in one table, :mod:`.defaults`. A
:class:`NodeConfig` is what the user wrote, checked, with its defaults and its paths made
absolute; where the node's processes listen is computed when it starts
(:class:`~.layout.NodeLayout`).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping

from .. import tracing
from ..errors import ConfigError
from . import supervision
from .defaults import (ACTOR_OPTIONS, ALARM_RETRY, ALARM_RETRY_KEYS, DURABILITY, NODE, ON_ERROR,
                       Kind, default)
from .cluster import parse_cluster
from .gateway import check_type_auto_responses, parse_auto_response, parse_gateway, valid_listen
from .keyfiles import load_authorized_entries, load_secret
from .source import Source
from .values import IMPORT_PATH, kind_problem, parse_size

#: (problem, key inside [node]) -> the error naming it
NodeFail = Callable[[str, str], ConfigError]
#: the sections a config may have
SECTIONS = ("node", "actors", "supervisors", "gateway", "cluster")
_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,199}$")


def _node(key: str) -> Any:
    """A field's default, from the one table (a fresh list or dict each time)."""
    if isinstance(NODE[key].default, (list, dict)):
        return field(default_factory=lambda: default(f"node.{key}"))
    return NODE[key].default


@dataclass
class NodeConfig:
    """A validated node configuration (see the module docstring for the keys; the
    defaults are :data:`.defaults.DEFAULTS`)."""

    data_dir: str
    workers: int = _node("workers")
    #: as written (ipc paths made absolute); None: the node picks a private ipc directory
    endpoint: str | None = _node("endpoint")
    durability: str = _node("durability")
    shards: int = _node("shards")
    max_message_bytes: int = _node("max_message_bytes")
    mailbox_limit: int = _node("mailbox_limit")
    max_queued_bytes: int = _node("max_queued_bytes")
    max_pending_asks: int = _node("max_pending_asks")
    idle_timeout: float = _node("idle_timeout")
    ask_timeout: float = _node("ask_timeout")
    shutdown_timeout: float = _node("shutdown_timeout")
    start_timeout: float = _node("start_timeout")
    max_restarts: int = _node("max_restarts")
    max_seconds: float = _node("max_seconds")
    turn_timeout: float = _node("turn_timeout")
    heartbeat_timeout: float = _node("heartbeat_timeout")
    #: seconds a turn (or one step of an async turn) may block its worker before a
    #: warning is logged (0: never)
    slow_turn: float = _node("slow_turn")
    max_worker_memory: int = _node("max_worker_memory")
    backoff: dict[str, float] | None = _node("backoff")
    max_resident: int = _node("max_resident")
    max_value_bytes: int = _node("max_value_bytes")
    #: LevelDB's write buffer (memtable) per slot, bytes: bounds the log replayed on a restart
    leveldb_write_buffer: int = _node("leveldb_write_buffer")
    history_window: float = _node("history_window")
    request_window: int = _node("request_window")
    request_window_seconds: float = _node("request_window_seconds")
    alarm_retry: dict[str, float] = field(default_factory=lambda: dict(ALARM_RETRY))
    insecure: bool = _node("insecure")
    #: absolute path of the node's CURVE key pair file (tcp endpoints)
    curve_secret_key: str | None = _node("curve_secret_key")
    #: absolute path of the directory of the public keys allowed in (tcp endpoints)
    authorized_keys: str | None = _node("authorized_keys")
    python_path: list[str] = _node("python_path")
    #: the node's Prometheus listener, ``HOST:PORT`` (None: none; see actorsys/metrics)
    metrics: str | None = _node("metrics")
    #: a span per turn, exported over OTLP/HTTP (actorsys/tracing.py)
    tracing: bool = _node("tracing")
    #: a node for tests: its workers serve ``$run`` and ``$fire_alarm`` (what
    #: :mod:`actorsys.testing`'s run_in_actor and fire_alarms send), which run any
    #: importable function a client names and fire alarms before their time; refused
    #: (``NotTesting``) when False (actorsys/runtime/testing_asks.py)
    testing: bool = _node("testing")
    actors: dict[str, str] = field(default_factory=dict)
    #: type name -> actor-level policy on a handler exception ("restart" or "stop")
    on_error: dict[str, str] = field(default_factory=dict)
    #: type name -> seconds of history kept (overrides the node's history_window)
    history: dict[str, float] = field(default_factory=dict)
    #: type name -> ``{request, response}`` the gateway answers its sockets' text frames
    #: with (None: none), overriding [gateway] auto_response (config/gateway.py)
    auto_response: dict[str, dict[str, str] | None] = field(default_factory=dict)
    #: validated [supervisors.NAME] tables as plain data (see .supervision)
    supervisors: dict[str, Any] = field(default_factory=dict)
    #: the validated [gateway] table (every key of .defaults.GATEWAY), or None: no gateway
    gateway: dict[str, Any] | None = None
    #: the validated [cluster] table (``.cluster.ClusterConfig`` as a dict), or None: a
    #: single node, no etcd
    cluster: dict[str, Any] | None = None
    #: the config file (absolute), or None for a dict
    source: str | None = None

    @property
    def metrics_on(self) -> bool:
        """Whether the node serves Prometheus metrics (its listener, or the gateway's
        ``/metrics``): its processes then time turns and commits."""
        return self.metrics is not None or bool(self.gateway and self.gateway.get("metrics"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NodeConfig":
        return cls(**d)


def load_config(config: "str | os.PathLike[str] | dict[str, Any] | NodeConfig",
                overrides: Mapping[str, Mapping[str, Any]] | None = None) -> NodeConfig:
    """Load and validate a node config from a TOML path or a dict.

    ``overrides``: tables whose keys replace the config's own, key by key, before it is
    checked (``{"node": {"data_dir": ..., "testing": True}}``: what the test plugin's
    node factory sets); a key given None is removed (its default applies). Relative
    paths among them are relative to the config file, as the file's own are. The config
    (a dict) is not changed."""
    if isinstance(config, NodeConfig):
        if overrides:
            raise TypeError("overrides apply to a config file or dict, not to a NodeConfig")
        return config
    src = Source.of_dict(config) if isinstance(config, dict) else Source.read(config)
    raw = src.raw
    if not isinstance(raw, dict):
        raise src.fail("config must be a table/dict")
    if overrides:
        raw = dict(raw)
        for table, keys in overrides.items():
            mine = raw.get(table)
            merged = {**(mine if isinstance(mine, dict) else {}), **keys}
            raw[table] = {k: v for k, v in merged.items() if v is not None}
        src = replace(src, raw=raw)
    for name in raw:
        if name not in SECTIONS:
            raise src.fail(f"unknown section '{name}' (expected one of: {', '.join(SECTIONS)})",
                           None, name)
    values = _node_section(raw.get("node", {}), src)
    actors, on_error, history, auto_response = _actors_section(raw.get("actors", {}), src)
    _check_key_types(values["authorized_keys"], actors, src)
    sups = supervision.parse_supervisors(raw.get("supervisors", {}), actors=actors,
                                         fail=src.fail_dotted)
    gateway = parse_gateway(raw["gateway"], src, actors) if "gateway" in raw else None
    if gateway is not None and gateway["max_message_bytes"] > values["max_message_bytes"] // 2:
        raise src.fail(f"must be at most half of [node] max_message_bytes ({values['max_message_bytes']}): "
                       f"socket events travel to actors inside node messages", "gateway", "max_message_bytes")
    check_type_auto_responses(auto_response, gateway, src)
    cluster = (parse_cluster(raw["cluster"], src, values["endpoint"])._asdict()
               if "cluster" in raw else None)
    return NodeConfig(actors=actors, on_error=on_error, history=history, auto_response=auto_response,
                      supervisors=supervision.to_config(sups), gateway=gateway, cluster=cluster,
                      source=src.file, **values)


def _node_section(node: Any, src: Source) -> dict[str, Any]:
    """The [node] keys, checked, with their defaults; sizes in bytes, paths absolute."""
    def fail(problem: str, key: str) -> ConfigError:
        return src.fail(problem, "node", key)

    if not isinstance(node, dict):
        raise src.fail("[node] must be a table", None, "node")
    values: dict[str, Any] = {}
    for key, value in node.items():
        if key not in NODE:
            raise fail(f"unknown key (expected one of: {', '.join(NODE)})", key)
        problem = kind_problem(NODE[key].kind, key, value)
        if problem is not None:
            raise fail(problem, key)
        values[key] = value
    for key, spec in NODE.items():
        if key not in values:
            values[key] = spec.fresh()

    if not 1 <= values["workers"] <= 255:
        raise fail("must be between 1 and 255", "workers")
    if not 1 <= values["shards"] <= 65536:
        raise fail("must be between 1 and 65536", "shards")
    if values["shards"] < values["workers"]:
        raise fail("must be at least the number of workers", "shards")
    if values["durability"] not in DURABILITY:
        raise fail(f"must be one of {DURABILITY}, got {values['durability']!r}", "durability")
    for key in ("max_message_bytes", "mailbox_limit", "max_pending_asks", "max_restarts",
                "max_resident"):
        if values[key] < 1:
            raise fail("must be positive", key)
    _sizes(values, node, fail)
    if values["request_window"] < 0:
        raise fail("must be 0 (no exactly-once asks) or a positive number of asks", "request_window")
    if not 0 <= values["history_window"] < float("inf"):
        raise fail("must be 0 (no history) or a positive number of seconds", "history_window")
    if not 0 <= values["slow_turn"] < float("inf"):
        raise fail("must be 0 (no slow-turn warnings) or a positive number of seconds", "slow_turn")
    values["alarm_retry"] = _alarm_retry(values["alarm_retry"], fail)
    if values["backoff"] is not None:
        b = supervision.parse_backoff(values["backoff"], lambda p, k: fail(p, k.split(".", 1)[1]),
                                      "node.backoff")
        values["backoff"] = {"initial": b.initial, "max": b.max, "jitter": b.jitter}
    for key in ("idle_timeout", "ask_timeout", "shutdown_timeout", "start_timeout", "max_seconds",
                "turn_timeout", "heartbeat_timeout", "request_window_seconds"):
        if values[key] <= 0:
            raise fail("must be a positive number of seconds", key)
    if values["metrics"] is not None and not valid_listen(values["metrics"]):
        raise fail(f"must be \"HOST:PORT\" (port 0: any free port), got {values['metrics']!r:.80}",
                   "metrics")
    if values["tracing"] and (missing := tracing.sdk_missing()) is not None:
        raise fail(missing, "tracing")
    _check_keys(values, src, fail)
    _check_endpoint(values, src, fail)
    values["data_dir"] = src.path(values["data_dir"])
    values["python_path"] = [src.path(p) for p in values["python_path"]]
    if src.file is not None:
        values["python_path"].insert(0, src.base)
    return values


def _sizes(values: dict[str, Any], node: dict[str, Any], fail: NodeFail) -> None:
    """The size keys in bytes (a number of bytes, or a string such as "512MiB")."""
    try:
        values["max_worker_memory"] = parse_size(values["max_worker_memory"])
    except ValueError as exc:
        raise fail(str(exc), "max_worker_memory") from None
    try:
        values["max_value_bytes"] = parse_size(values["max_value_bytes"])
        if not 1024 <= values["max_value_bytes"] <= 1 << 30:
            raise ValueError
    except ValueError:
        raise fail(f"must be between 1KiB and 1GiB (a number of bytes or a size such as "
                   f"\"512KiB\"), got {node.get('max_value_bytes')!r:.80}", "max_value_bytes") from None
    try:
        values["leveldb_write_buffer"] = parse_size(values["leveldb_write_buffer"])
        if not 64 * 1024 <= values["leveldb_write_buffer"] <= 1 << 30:
            raise ValueError
    except ValueError:
        raise fail(f"must be between 64KiB and 1GiB, LevelDB's limits (a number of bytes or a "
                   f"size such as \"1MiB\"), got {node.get('leveldb_write_buffer')!r:.80}",
                   "leveldb_write_buffer") from None
    try:
        values["max_queued_bytes"] = parse_size(values["max_queued_bytes"])
        if values["max_queued_bytes"] < values["max_message_bytes"]:
            raise ValueError
    except ValueError:
        raise fail(f"must be at least max_message_bytes ({values['max_message_bytes']}; a number "
                   f"of bytes or a size such as \"64MiB\"), got {node.get('max_queued_bytes')!r:.80}",
                   "max_queued_bytes") from None


def _alarm_retry(value: dict[str, Any] | None, fail: NodeFail) -> dict[str, float]:
    """Validate ``alarm_retry = { initial, max, attempts }`` (missing keys: defaults)."""
    out = dict(ALARM_RETRY)
    for k, v in (value or {}).items():
        if k not in ALARM_RETRY_KEYS:
            raise fail(f"unknown key '{k}' (expected: {', '.join(ALARM_RETRY_KEYS)})", f"alarm_retry.{k}")
        if ALARM_RETRY_KEYS[k].kind is Kind.INT:
            if type(v) is not int or v < 1:
                raise fail("must be an integer of at least 1", f"alarm_retry.{k}")
        elif type(v) not in (int, float) or v <= 0:
            raise fail("must be a positive number of seconds", f"alarm_retry.{k}")
        out[k] = v
    if out["max"] < out["initial"]:
        raise fail("max must be at least initial", "alarm_retry.max")
    return out


def _check_keys(values: dict[str, Any], src: Source, fail: NodeFail) -> None:
    """Resolve the CURVE key paths and check the files now (a clear error, not a node
    whose processes cannot start)."""
    for key in ("curve_secret_key", "authorized_keys"):
        if values[key] is not None:
            if not values[key]:
                raise fail("must be a path, got an empty string", key)
            values[key] = src.path(values[key])
    if values["authorized_keys"] is not None and values["curve_secret_key"] is None:
        raise fail("authorized_keys needs curve_secret_key (the node's own key pair)", "authorized_keys")
    if values["curve_secret_key"] is not None:
        try:
            load_secret(values["curve_secret_key"])
        except ValueError as exc:
            raise fail(str(exc), "curve_secret_key") from None
    if values["authorized_keys"] is not None:
        try:
            load_authorized_entries(values["authorized_keys"])
        except ValueError as exc:
            raise fail(str(exc), "authorized_keys") from None


def _check_key_types(directory: str | None, actors: dict[str, str], src: Source) -> None:
    """A key file's ``types`` must name actor types of ``[actors]``: a misspelt one would
    otherwise match nothing, and the key's every request be refused at run time only."""
    if directory is None or not actors:
        return
    for name, _public, _role, types in load_authorized_entries(directory):
        unknown = sorted((types or frozenset()) - actors.keys())
        if unknown:
            raise src.fail(f"key file {name}.key: types names {', '.join(map(repr, unknown))}, not "
                           f"an actor type of [actors] ({', '.join(sorted(actors))})",
                           "node", "authorized_keys")


def _check_endpoint(values: dict[str, Any], src: Source, fail: NodeFail) -> None:
    """An ipc endpoint made absolute; a tcp endpoint with CURVE keys, or insecure."""
    ep = values["endpoint"]
    if ep is None:
        return
    if ep.startswith("ipc://"):
        if len(ep) - 6 > 90:
            raise fail("ipc socket path is too long (max 90 characters; worker sockets sit beside it)",
                       "endpoint")
        values["endpoint"] = "ipc://" + src.path(ep[6:])
    elif ep.startswith("tcp://"):
        if values["insecure"] and values["curve_secret_key"] is not None:
            raise fail("insecure = true turns CURVE off, but curve_secret_key is set: "
                       "remove one of them", "insecure")
        if not values["insecure"] and values["curve_secret_key"] is None:
            raise fail("tcp endpoints require CURVE: set curve_secret_key = \"keys/node.key_secret\" "
                       "(make the pair with 'actorsys keygen keys --name node'), or set "
                       "insecure = true to accept unauthenticated, unencrypted tcp on a trusted "
                       "network", "endpoint")
        if not re.match(r"^tcp://[^:]+:\d+$", ep):
            raise fail("tcp endpoint must look like tcp://HOST:PORT", "endpoint")
    else:
        raise fail("endpoint must start with ipc:// or tcp://", "endpoint")


def _actors_section(table: Any, src: Source) -> tuple[dict[str, str], dict[str, str], dict[str, float],
                                                     dict[str, dict[str, str] | None]]:
    """``[actors]``: type name -> "module:Class", and the types' on_error,
    history_window and auto_response options."""
    if not isinstance(table, dict):
        raise src.fail("[actors] must be a table mapping type names to \"module:Class\"", None, "actors")
    actors: dict[str, str] = {}
    on_error: dict[str, str] = {}
    history: dict[str, float] = {}
    auto_response: dict[str, dict[str, str] | None] = {}
    for name, spec in table.items():
        if isinstance(spec, dict):
            unknown = set(spec) - set(ACTOR_OPTIONS)
            if unknown:
                raise src.fail(f"unknown actor option(s) {sorted(unknown)} "
                               f"(expected: {', '.join(ACTOR_OPTIONS)})"
                               + ("; reentrant = False is a class attribute of the actor, "
                                  "not a config option" if "reentrant" in unknown else ""),
                               "actors", name)
            if "history_window" in spec:
                hw = spec["history_window"]
                if type(hw) not in (int, float) or not 0 <= hw < float("inf"):
                    raise src.fail(f"history_window must be 0 or a positive number of seconds, "
                                   f"got {hw!r:.80}", "actors", f"{name}.history_window")
                history[name] = float(hw)
            if "on_error" in spec:
                if spec["on_error"] not in ON_ERROR:
                    raise src.fail(f"on_error must be one of {ON_ERROR}, got {spec['on_error']!r:.80}",
                                   "actors", name)
                on_error[name] = spec["on_error"]
            if "auto_response" in spec:
                def fail(problem: str, key: str, name: str = name) -> ConfigError:
                    return src.fail(problem, "actors", f"{name}.{key}")
                auto_response[name] = parse_auto_response(spec["auto_response"], fail, "auto_response",
                                                          off=True)
            spec = spec.get("class")
        if not _TYPE_NAME.match(name):
            raise src.fail("actor type names use letters, digits, '_', '.', '-' (max 200)", "actors", name)
        if not isinstance(spec, str) or not IMPORT_PATH.match(spec):
            raise src.fail(f"must be \"module:Class\", got {spec!r}", "actors", name)
        actors[name] = spec
    return actors, on_error, history, auto_response


def import_object(spec: str, python_path: list[str] | None = None) -> Any:
    """Import ``"module:name"`` (``python_path`` first on ``sys.path``): the one place
    that imports by name (actor classes, the gateway's auth hook)."""
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
