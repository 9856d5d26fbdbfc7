"""Every key of a node's config file, with what its value must be and its default: the one
table of defaults (the node's keys, an actor type's options, ``alarm_retry``, the
gateway's keys).

Keys are dotted as the errors name them (``node.workers``, ``gateway.listen``;
``actors.*.on_error`` is an option of any actor type). :class:`~.node.NodeConfig`'s field
defaults, the loader's checks and the gateway's table all read this one table, so a
default changes here and nowhere else. The supervision trees' keys are described in
:mod:`.supervision`.
"""
from __future__ import annotations

import copy
from enum import Enum
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple


class Kind(Enum):
    """What a value must be. The ``[node]`` keys are checked by kind with one message
    each (:func:`.values.kind_problem`); the gateway's and actors' keys have checks of
    their own and name their kind here for the reader."""

    INT = "an integer"
    NUMBER = "a number"                 # int or float, never a bool
    STR = "a string"
    BOOL = "true or false"
    STRINGS = "a list of strings"
    SIZE = "a size"                     # bytes: an int, or a string such as "512MiB"
    TABLE = "a table"


class Key(NamedTuple):
    """One key: its kind and its default (None: not set)."""

    kind: Kind
    default: Any

    def fresh(self) -> Any:
        """The default, as a new object when it is a list or a dict (each config owns its own)."""
        return copy.copy(self.default) if isinstance(self.default, (list, dict)) else self.default


#: ``durability``: "process" survives kill -9, "fsync" survives power loss
DURABILITY = ("process", "fsync")
#: an actor type's policy on a handler exception
ON_ERROR = ("restart", "stop")

#: the failure log's rate limit (``actorsys/lograte.py``): per actor type, at most this many
#: failed turns (and, separately, dropped tells) are logged in full in each window of
#: LOG_WINDOW seconds; the rest are counted and summed up in one line when the window rolls
LOG_BURST = 10
LOG_WINDOW = 60.0
#: distinct actor types the failure log tracks at once (more are counted together as "*")
LOG_MAX_TYPES = 1000
#: the largest reply kept in an actor's request-id window for a retry (exactly-once
#: asks; a larger one is recorded as "ran once already"): bounds the window's bytes on
#: disk to ``request_window`` times this per actor
REQUEST_REPLY_BYTES = 64 * 1024
#: ``actorsys run --drain``: seconds a stopping cluster node waits for its shards to be
#: handed off to the others before it stops anyway (``--drain-timeout``)
DRAIN_TIMEOUT = 120.0

#: dotted key -> Key, in the order the errors list them ("expected one of: ...")
DEFAULTS: Mapping[str, Key] = MappingProxyType({
    "node.data_dir": Key(Kind.STR, "data"),
    "node.workers": Key(Kind.INT, 2),
    "node.endpoint": Key(Kind.STR, None),          # None: ipc in a private temporary directory
    "node.durability": Key(Kind.STR, "process"),
    "node.shards": Key(Kind.INT, 4096),
    "node.max_message_bytes": Key(Kind.INT, 1 << 20),
    "node.mailbox_limit": Key(Kind.INT, 10_000),
    "node.max_queued_bytes": Key(Kind.SIZE, 64 << 20),
    "node.max_pending_asks": Key(Kind.INT, 100_000),
    "node.idle_timeout": Key(Kind.NUMBER, 300.0),
    "node.ask_timeout": Key(Kind.NUMBER, 30.0),
    "node.shutdown_timeout": Key(Kind.NUMBER, 10.0),
    "node.start_timeout": Key(Kind.NUMBER, 60.0),
    "node.max_restarts": Key(Kind.INT, 20),
    "node.max_seconds": Key(Kind.NUMBER, 10.0),
    "node.turn_timeout": Key(Kind.NUMBER, 60.0),
    "node.heartbeat_timeout": Key(Kind.NUMBER, 10.0),
    "node.slow_turn": Key(Kind.NUMBER, 0.5),         # seconds; 0: no slow-turn warnings
    "node.max_worker_memory": Key(Kind.SIZE, 0),    # 0: no limit
    "node.backoff": Key(Kind.TABLE, None),           # None: restart at once (keys: see supervision)
    "node.max_resident": Key(Kind.INT, 100_000),
    "node.max_value_bytes": Key(Kind.SIZE, 512 * 1024),
    # LevelDB's write buffer (memtable) per slot, bytes: it bounds LevelDB's log, which a
    # worker restarted after a kill -9 replays before it serves (issue 19). 1 MiB, not
    # LevelDB's 4 MiB: in interleaved runs (scripts/bench_recovery_ab.py, 2 workers on 2
    # loaded cores, kills under a 1 KiB-per-actor write load) the log at a kill was at most
    # 0.9 MiB instead of 3.3, the open took at most 17-20 ms instead of 43, and recovery
    # p50/p99 went from 46/59-69 ms to 28-34/38-48 ms. The price: more, smaller tables to
    # write and compact: sustained 1 KiB writes ran 4-23% slower and bursts of new actors
    # that fit in 4 MiB up to a fifth slower; pipelined asks to resident actors unchanged.
    # 512 KiB and 256 KiB did not recover faster (what remains is not the log) and cost
    # those bursts half their rate.
    "node.leveldb_write_buffer": Key(Kind.SIZE, 1 << 20),
    "node.history_window": Key(Kind.NUMBER, 0),       # seconds; 0: no history
    # exactly-once asks: request ids (and replies) kept per actor, the newest this many
    # (0: none recorded, a retried ask may run twice)...
    "node.request_window": Key(Kind.INT, 1000),
    # ...committed within this many seconds (storage/requests.py)
    "node.request_window_seconds": Key(Kind.NUMBER, 600.0),
    "node.alarm_retry": Key(Kind.TABLE, None),       # None: every key below at its default
    "node.insecure": Key(Kind.BOOL, False),
    "node.curve_secret_key": Key(Kind.STR, None),
    "node.authorized_keys": Key(Kind.STR, None),
    "node.python_path": Key(Kind.STRINGS, []),
    # "HOST:PORT" (port 0: a free one): the node's Prometheus listener, /metrics (None: off)
    "node.metrics": Key(Kind.STR, None),
    # a span per turn, exported over OTLP/HTTP (OTEL_* environment; actorsys[tracing])
    "node.tracing": Key(Kind.BOOL, False),
    # a node for tests: serves actorsys.testing's run_in_actor and fire_alarms (remote
    # code execution for anyone who can connect: never in production)
    "node.testing": Key(Kind.BOOL, False),

    "node.alarm_retry.initial": Key(Kind.NUMBER, 1.0),
    "node.alarm_retry.max": Key(Kind.NUMBER, 60.0),
    "node.alarm_retry.attempts": Key(Kind.INT, 6),

    "actors.*.class": Key(Kind.STR, None),          # required: "module:Class"
    "actors.*.on_error": Key(Kind.STR, "stop"),     # read for supervised children
    "actors.*.history_window": Key(Kind.NUMBER, None),  # None: the node's history_window
    # the gateway's answer to a text frame, for this type's sockets (None: [gateway]'s;
    # false: none): { request, response } as below
    "actors.*.auto_response": Key(Kind.TABLE, None),

    "gateway.listen": Key(Kind.STR, "127.0.0.1:8080"),
    "gateway.static": Key(Kind.STR, None),
    "gateway.allowed_origins": Key(Kind.STRINGS, []),
    "gateway.allowed_hosts": Key(Kind.STRINGS, []),
    "gateway.max_message_bytes": Key(Kind.SIZE, 64 * 1024),
    "gateway.max_connections_per_actor": Key(Kind.INT, 1000),
    # connections (HTTP and WebSocket together) the gateway holds at once, in all and
    # from one client address (actorsys/gateway/doors.py)
    "gateway.max_connections": Key(Kind.INT, 10_000),
    "gateway.max_connections_per_address": Key(Kind.INT, 256),
    # seconds a connection may take to send a request's headers (and to stay idle
    # between requests), and a request's body (then 408 and closed)
    "gateway.header_timeout": Key(Kind.NUMBER, 10.0),
    "gateway.body_timeout": Key(Kind.NUMBER, 30.0),
    # file descriptors kept free for the node's own sockets and files: past that, new
    # connections are closed at once
    "gateway.fd_reserve": Key(Kind.INT, 64),
    "gateway.expose": Key(Kind.STRINGS, None),          # None: every registered type
    "gateway.auth": Key(Kind.STR, None),
    "gateway.metrics": Key(Kind.BOOL, False),          # /metrics on the gateway (the whole node's)
    "gateway.dashboard": Key(Kind.BOOL, False),        # /dashboard and its actor inspector
    # seconds between the heartbeats of Python subscribers' connections (each way); one
    # silent for three of them is gone (actorsys/protocol/subs.py)
    "gateway.subscriber_heartbeat": Key(Kind.NUMBER, 5.0),
    # a text frame equal to request is answered with response by the gateway, the actor
    # not woken (Durable Objects' setWebSocketAutoResponse); None: none
    "gateway.auto_response": Key(Kind.TABLE, None),

    "gateway.auto_response.request": Key(Kind.STR, None),    # required: a non-empty text frame
    "gateway.auto_response.response": Key(Kind.STR, None),   # required: a non-empty text frame

    # a cluster of nodes (config/cluster.py); no [cluster] table: a single node, no etcd
    "cluster.etcd": Key(Kind.STRINGS, None),        # required: etcd client URLs (http://HOST:PORT)
    "cluster.name": Key(Kind.STR, None),            # required: nodes of other clusters never mix
    "cluster.node_id": Key(Kind.STR, None),         # required: unique, stable (the data dir keeps it)
    "cluster.lease_ttl": Key(Kind.NUMBER, 5.0),     # seconds without renewal before a node loses its shards
    "cluster.replicas": Key(Kind.INT, 1),           # copies of each shard (1..7; 1: no replication)
    "cluster.ack": Key(Kind.STR, "majority"),       # replicas a write waits for: "majority" | "all"
    "cluster.bootstrap_expect": Key(Kind.INT, 1),   # a new cluster's first claim waits for this many nodes
    "cluster.bootstrap_timeout": Key(Kind.NUMBER, 60.0),  # ... at most this long, then claims for those up
})


def section(prefix: str) -> Mapping[str, Key]:
    """The keys directly inside ``prefix`` (``"node"`` -> ``{"workers": Key, ...}``), in order."""
    start = prefix + "."
    return MappingProxyType({k[len(start):]: v for k, v in DEFAULTS.items()
                             if k.startswith(start) and "." not in k[len(start):]})


def default(dotted: str) -> Any:
    """The default of one key (a fresh list or dict)."""
    return DEFAULTS[dotted].fresh()


NODE = section("node")
ALARM_RETRY_KEYS = section("node.alarm_retry")
ACTOR_OPTIONS = section("actors.*")
GATEWAY = section("gateway")
AUTO_RESPONSE_KEYS = section("gateway.auto_response")
CLUSTER = section("cluster")
#: the ``alarm_retry`` a node gets when its config sets none
ALARM_RETRY: Mapping[str, float] = MappingProxyType({k: v.default for k, v in ALARM_RETRY_KEYS.items()})
