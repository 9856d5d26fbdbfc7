"""Every metric a node exposes, in one place: names, help, labels and buckets.

Names follow Prometheus' conventions: ``actorsys_`` first, base units (seconds, bytes),
``_total`` on counters (prometheus_client adds it: a counter's name here has none).
Labels are a worker's ``slot``, the process's ``role``, the actor ``type`` and
``method``, a ``supervisor``'s name: never an actor's key (one series per key would grow
without bound; the per-key view is the hot-actors table).

Two kinds of source:

* :data:`INSTRUMENTS`: numbers a process updates as things happen (a turn's duration, a
  commit's size), kept as plain counts and histograms (``process.py``) and made into
  prometheus_client families when scraped (``collect.py``).
* :data:`COUNTERS`: counters the processes already keep as plain integers in their
  ``counters`` dict (the numbers of ``actorsys status``); read only when scraped, so they
  cost the hot path nothing more.
"""
from __future__ import annotations

from typing import NamedTuple


class Spec(NamedTuple):
    """One instrument: ``kind`` is ``counter``, ``gauge`` or ``histogram``."""

    kind: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


#: seconds: a turn of a counter is tens of microseconds, a slow one seconds
TURN_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: seconds: one LevelDB batch, without and with fsync
COMMIT_BUCKETS = (0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                  0.05, 0.1, 0.25, 1.0)
#: keys per group commit
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
#: seconds an alarm fired after its due time
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)

INSTRUMENTS: dict[str, Spec] = {
    "actorsys_turns": Spec(
        "counter", "Turns run, by actor type, method ($start, $alarm, $passivate, ... for the "
        "runtime's own) and outcome (ok, error)", ("type", "method", "outcome")),
    "actorsys_turn_duration_seconds": Spec(
        "histogram", "Time from a turn's start to its end (an async turn's awaits included)",
        ("type", "method"), TURN_BUCKETS),
    "actorsys_commit_duration_seconds": Spec(
        "histogram", "Time one group commit (a LevelDB write batch) took", (), COMMIT_BUCKETS),
    "actorsys_commit_batch_size": Spec(
        "histogram", "Keys written by one group commit", (), BATCH_BUCKETS),
    "actorsys_alarm_lateness_seconds": Spec(
        "histogram", "Time from an alarm's due time to its turn", ("type",), LATENESS_BUCKETS),
    "actorsys_process_restarts": Spec(
        "counter", "Times the node supervisor started this process's role and slot again"),
    "actorsys_supervisor_restarts": Spec(
        "counter", "Children a supervisor of the supervision tree restarted", ("supervisor",)),
}

#: counter key in a process's ``counters`` -> (metric name, help)
COUNTERS: dict[str, tuple[str, str]] = {
    "received": ("actorsys_messages_received", "Messages received on the process's sockets"),
    "batches": ("actorsys_batches_received", "Frames that carried several messages coalesced by "
                                             "their sender (each also counts as received)"),
    "bad_frames": ("actorsys_bad_frames", "Malformed, oversized or unknown messages refused"),
    "overloaded": ("actorsys_overloaded", "Messages refused because a mailbox or the worker's "
                                          "queued bytes were full"),
    "activations": ("actorsys_activations", "Actors activated (loaded into memory)"),
    "passivations": ("actorsys_passivations", "Actors passivated (left memory after on_stop)"),
    "evictions": ("actorsys_evictions", "Actors passivated to keep the resident bound"),
    "failures": ("actorsys_turn_failures", "Turns that failed (the handler raised, a timeout, "
                                           "a refused write)"),
    "turn_timeouts": ("actorsys_turn_timeouts", "Turns that ran past turn_timeout"),
    "alarms_fired": ("actorsys_alarms_fired", "Alarms whose turn ran and committed"),
    "alarms_failed": ("actorsys_alarms_failed", "Alarm turns that failed (retried)"),
    "alarms_dropped": ("actorsys_alarms_dropped", "Alarms given up after their retries"),
    "storage_errors": ("actorsys_storage_errors", "Group commits LevelDB refused"),
    "dropped_replies": ("actorsys_dropped_replies", "Replies whose asker was gone"),
    "http_requests": ("actorsys_gateway_http_requests", "HTTP asks the gateway served"),
    "http_errors": ("actorsys_gateway_http_errors", "HTTP asks answered with an error"),
    "ws_opened": ("actorsys_gateway_sockets_opened", "WebSockets opened"),
    "ws_refused": ("actorsys_gateway_sockets_refused", "WebSockets refused (limits, origin, auth)"),
    "subscribers_opened": ("actorsys_gateway_subscribers_opened",
                           "Python subscriptions opened (client.subscribe)"),
    "subscribers_lost": ("actorsys_gateway_subscribers_lost",
                         "Python subscriptions closed because their client went silent or away"),
    "auto_responses": ("actorsys_gateway_auto_responses", "WebSocket frames the gateway answered "
                                                          "itself (auto_response), no turn run"),
    "auth_refused": ("actorsys_auth_refused", "Connections the CURVE guard refused"),
    "forbidden": ("actorsys_forbidden", "Requests refused because the sender's key may not make them"),
    "conn_refused": ("actorsys_gateway_connections_refused",
                     "HTTP connections reset at once: max_connections or "
                     "max_connections_per_address"),
    "conn_refused_fds": ("actorsys_gateway_connections_refused_fds",
                         "HTTP connections reset at once to keep fd_reserve descriptors free"),
    "header_timeouts": ("actorsys_gateway_header_timeouts",
                        "HTTP connections closed with no request headers within header_timeout"),
    "body_timeouts": ("actorsys_gateway_body_timeouts",
                      "HTTP requests answered 408: the body did not come within body_timeout"),
    "too_large": ("actorsys_gateway_too_large",
                  "HTTP requests answered 413 from their Content-Length, the body unread"),
}

#: gauge name -> help (a process registers the ones it has: :meth:`ProcessMetrics.gauge`)
GAUGES: dict[str, str] = {
    "actorsys_resident_actors": "Actors in a worker's memory",
    "actorsys_mailbox_depth": "Messages waiting in a worker's mailboxes",
    "actorsys_queued_bytes": "Bytes of messages waiting in a worker's mailboxes",
    "actorsys_gateway_sockets": "WebSockets and Python subscriptions open at the gateway",
    "actorsys_gateway_subscribers": "Python subscriptions open at the gateway",
    "actorsys_gateway_connections": "TCP connections open at the gateway's HTTP address "
                                    "(HTTP and WebSocket)",
    "actorsys_alarms_in_flight": "Alarm turns a worker has started and not ended",
    "actorsys_cluster_nodes": "Nodes of the cluster, as this node's router sees it",
    "actorsys_cluster_nodes_alive": "Nodes of the cluster this node's router sees alive",
    "actorsys_shards_owned": "Shards this node leads (serves)",
    "actorsys_shards_under_replicated": "Shards with fewer copies than replicas, as this node's "
                                        "router sees the cluster",
    "actorsys_shards_unavailable": "Shards no live node serves, as this node's router sees the "
                                   "cluster",
}
