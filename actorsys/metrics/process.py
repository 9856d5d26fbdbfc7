"""One process's metrics: its own prometheus_client registry, in memory.

A process makes one :class:`ProcessMetrics` when it takes its role (:func:`start`, from
the node supervisor's fork), and answers the router's ``METRICS`` with
:meth:`ProcessMetrics.families`. Updating an instrument is a lock and an add in this
process: no file, no socket (the router reads the numbers only when scraped).

Invariant: label values that come from a peer (a method name) reach an instrument only
after the worker checked them against the actor's class, so the series stay bounded.
"""
from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics_core import Metric

from .catalog import COUNTERS, GAUGES, INSTRUMENTS

#: one family as it crosses the node's sockets: [name, type, help, [[sample, labels, value]]]
WireFamily = list[Any]


class _Plain:
    """The process's plain ``counters`` dict and gauge callbacks, as families (a
    prometheus_client custom collector: read when collected, never updated here)."""

    def __init__(self, owner: ProcessMetrics) -> None:
        self.owner = owner

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        counters = self.owner.counters
        if counters:
            for key, (name, doc) in COUNTERS.items():
                value = counters.get(key)
                if value is not None:
                    m = Metric(name, doc, "counter")
                    m.add_sample(name + "_total", {}, float(value))
                    out.append(m)
        for name, read in self.owner.gauges.items():
            m = Metric(name, GAUGES[name], "gauge")
            m.add_sample(name, {}, float(read()))
            out.append(m)
        for name, (label, read_by) in self.owner.counters_by.items():
            m = Metric(name, INSTRUMENTS[name].help, "counter")
            for value_of_label, n in read_by().items():
                m.add_sample(name + "_total", {label: value_of_label}, float(n))
            out.append(m)
        return out


class ProcessMetrics:
    """The metrics of one node process (``role``: worker, router, tree, gateway)."""

    def __init__(self, role: str, slot: int | None = None, restarts: int = 0) -> None:
        self.role, self.slot = role, slot
        self.registry = CollectorRegistry(auto_describe=False)
        #: the process's plain counters (worker.counters, ...), exposed as counters
        self.counters: dict[str, int] | None = None
        #: gauge name (catalog.GAUGES) -> its value, read when collected
        self.gauges: dict[str, Callable[[], float]] = {}
        #: counter name (catalog.INSTRUMENTS) -> (its one label, {label value: count}),
        #: read when collected
        self.counters_by: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {}
        self._made: dict[str, Any] = {}
        #: (type, method, outcome) -> (the turn counter's child, the duration's child)
        self._turns: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.registry.register(_Plain(self))
        ProcessCollector(registry=self.registry)   # process_cpu_seconds_total, ... (from /proc)
        if restarts:
            self.instrument("actorsys_process_restarts").inc(restarts)

    def instrument(self, name: str) -> Any:
        """The catalog's instrument ``name`` in this process (made on first use)."""
        got = self._made.get(name)
        if got is None:
            spec = INSTRUMENTS[name]
            if spec.kind == "histogram":
                got = Histogram(name, spec.help, spec.labels, registry=self.registry,
                                buckets=spec.buckets)
            elif spec.kind == "counter":
                got = Counter(name, spec.help, spec.labels, registry=self.registry)
            else:
                got = Gauge(name, spec.help, spec.labels, registry=self.registry)
            self._made[name] = got
        return got

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Report ``read()`` as the gauge ``name`` (one of catalog.GAUGES) when collected."""
        if name not in GAUGES:
            raise KeyError(f"{name} is not a gauge of the catalog")
        self.gauges[name] = read

    def counter_by(self, name: str, read: Callable[[], dict[str, float]]) -> None:
        """Report ``read()`` (label value -> count) as the counter ``name`` (one of
        catalog.INSTRUMENTS, with one label) when collected."""
        spec = INSTRUMENTS[name]
        if spec.kind != "counter" or len(spec.labels) != 1:
            raise KeyError(f"{name} is not a counter of one label in the catalog")
        self.counters_by[name] = (spec.labels[0], read)

    # -- the hot path ---------------------------------------------------------------
    def turn(self, type_name: str, method: str, outcome: str, seconds: float) -> None:
        """One turn ended (``outcome``: ok or error) after ``seconds``."""
        key = (type_name, method, outcome)
        pair = self._turns.get(key)
        if pair is None:
            pair = self._turns[key] = (
                self.instrument("actorsys_turns").labels(type_name, method, outcome),
                self.instrument("actorsys_turn_duration_seconds").labels(type_name, method))
        pair[0].inc()
        pair[1].observe(seconds)

    def commit(self, seconds: float, keys: int) -> None:
        """One group commit wrote ``keys`` keys in ``seconds``."""
        self.instrument("actorsys_commit_duration_seconds").observe(seconds)
        self.instrument("actorsys_commit_batch_size").observe(keys)

    def alarm_late(self, type_name: str, seconds: float) -> None:
        self.instrument("actorsys_alarm_lateness_seconds").labels(type_name).observe(max(0.0, seconds))

    # -- collection -----------------------------------------------------------------
    def families(self) -> list[WireFamily]:
        """Every family of this process, as it crosses the node's sockets (the
        ``_created`` samples left out: the text format does not carry them)."""
        out: list[WireFamily] = []
        for m in self.registry.collect():
            samples = [[s.name, s.labels, s.value] for s in m.samples
                       if not s.name.endswith("_created")]
            if samples:
                out.append([m.name, m.type, m.documentation, samples])
        return out


_current: ProcessMetrics | None = None


def start(role: str, slot: int | None = None, restarts: int = 0) -> ProcessMetrics:
    """This process's metrics, made afresh (a forked child drops its parent's)."""
    global _current
    _current = ProcessMetrics(role, slot, restarts)
    return _current


def current() -> ProcessMetrics:
    """This process's metrics (made with role ``process`` if :func:`start` was not called:
    a node process started outside the supervisor, as unit tests do)."""
    return _current if _current is not None else start("process")
