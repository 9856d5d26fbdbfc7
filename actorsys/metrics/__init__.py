"""Prometheus metrics of a node (issue 17).

Each process of a node counts in its own in-memory prometheus_client registry
(:mod:`.process`); the router gathers every process's samples over the node's own
sockets (the ``METRICS`` request) and one exposition renders them (:mod:`.exposition`),
served at ``/metrics`` by the node's listener (``[node] metrics = "127.0.0.1:9464"``)
and by the gateway. What is measured, under which names and labels: :mod:`.catalog`.
Why not prometheus_client's multiprocess mode: docs/design-changes.md, "Metrics".

Layer: the bottom, beside ``log``: it imports prometheus_client and nothing of ours
above it; the runtime, the node, the gateway and the supervisors import it.
"""
from .catalog import COUNTERS, GAUGES, INSTRUMENTS, Spec
from .exposition import check_families, content_type, http_response, merge, render
from .process import ProcessMetrics, WireFamily, current, start

__all__ = ["COUNTERS", "content_type", "GAUGES", "INSTRUMENTS", "ProcessMetrics", "Spec",
           "WireFamily", "check_families", "current", "http_response", "merge", "render",
           "start"]
