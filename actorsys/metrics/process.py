"""One process's metrics: plain numbers in memory, made into prometheus_client families
only when the router asks (``METRICS``).

A process makes one :class:`ProcessMetrics` when it takes its role (:func:`start`, from
the node supervisor's fork), and answers the router's ``METRICS`` with
:meth:`ProcessMetrics.families`: one prometheus_client registry whose collector reads
the numbers below (``collect.py``, imported at the first scrape), beside the library's
process collector (CPU, memory, file descriptors from ``/proc``).

Why not prometheus_client's ``Counter`` and ``Histogram`` objects on the hot path:
each update takes a lock per value, and a histogram's walks its buckets in Python; a
turn and a commit cost 9 us that way, 2-3% of an ask and more of a pipelined one
(measured: ``scripts/bench --metrics``). Here a turn is a dict lookup, a bisect and
three adds. The exposition is still the library's (:mod:`.exposition`).

Invariants: only the process's event-loop thread updates these numbers (a scrape reads
them between two callbacks, so a histogram's count, sum and buckets agree); label
values that come from a peer (a method name) reach them only after the worker checked
them against the actor's class, so the series stay bounded.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable

from .catalog import GAUGES, INSTRUMENTS

#: one family as it crosses the node's sockets: [name, type, help, [[sample, labels, value]]]
WireFamily = list[Any]


class Hist:
    """A histogram's numbers: ``counts[i]`` observations at most ``bounds[i]`` and above
    the bound before (the last: above every bound), and their ``sum``."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class TurnNumbers:
    """One (type, method)'s turns: how many ended ok, how many in error, how long."""

    __slots__ = ("ok", "error", "seconds")

    def __init__(self) -> None:
        self.ok = self.error = 0
        self.seconds = Hist(INSTRUMENTS["actorsys_turn_duration_seconds"].buckets)


class ProcessMetrics:
    """The metrics of one node process (``role``: worker, router, tree, gateway)."""

    def __init__(self, role: str, slot: int | None = None, restarts: int = 0) -> None:
        self.role, self.slot = role, slot
        #: times the node supervisor started this role and slot again before this one
        self.restarts = restarts
        #: the process's plain counters (worker.counters, ...), exposed as counters
        self.counters: dict[str, int] | None = None
        #: gauge name (catalog.GAUGES) -> its value, read when collected
        self.gauges: dict[str, Callable[[], float]] = {}
        #: counter name (catalog.INSTRUMENTS) -> (its one label, {label value: count}),
        #: read when collected
        self.counters_by: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {}
        #: (type, method) -> its turns
        self.turns: dict[tuple[str, str], TurnNumbers] = {}
        self.commit_seconds = Hist(INSTRUMENTS["actorsys_commit_duration_seconds"].buckets)
        self.commit_keys = Hist(INSTRUMENTS["actorsys_commit_batch_size"].buckets)
        #: type -> its alarms' lateness
        self.lateness: dict[str, Hist] = {}
        #: the prometheus_client registry reading these numbers, made at the first scrape
        #: (a process never scraped never imports prometheus_client: see collect.py)
        self.registry: Any = None

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
    def turn(self, type_name: str, method: str, ok: bool, seconds: float) -> None:
        """One turn ended (``ok``, or in error) after ``seconds``."""
        t = self.turns.get((type_name, method))
        if t is None:
            t = self.turns[(type_name, method)] = TurnNumbers()
        if ok:
            t.ok += 1
        else:
            t.error += 1
        t.seconds.observe(seconds)

    def commit(self, seconds: float, keys: int) -> None:
        """One group commit wrote ``keys`` keys in ``seconds``."""
        self.commit_seconds.observe(seconds)
        self.commit_keys.observe(keys)

    def alarm_late(self, type_name: str, seconds: float) -> None:
        h = self.lateness.get(type_name)
        if h is None:
            h = self.lateness[type_name] = Hist(INSTRUMENTS["actorsys_alarm_lateness_seconds"].buckets)
        h.observe(max(0.0, seconds))

    # -- collection -----------------------------------------------------------------
    def families(self) -> list[WireFamily]:
        """Every family of this process, as it crosses the node's sockets (the
        ``_created`` samples left out: the text format does not carry them)."""
        if self.registry is None:
            from .collect import registry_of
            self.registry = registry_of(self)
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
