"""The numbers of a :class:`~.process.ProcessMetrics` as prometheus_client families: its
registry, made at a process's first scrape (so a process never scraped never imports
prometheus_client: the import costs a node's start about 0.3 s here)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from .catalog import COUNTERS, GAUGES, INSTRUMENTS

if TYPE_CHECKING:
    from .process import Hist, ProcessMetrics


def registry_of(owner: ProcessMetrics) -> CollectorRegistry:
    """A registry of ``owner``'s numbers and the library's process collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(owner))
    ProcessCollector(registry=registry)    # process_cpu_seconds_total, ... (from /proc)
    return registry


def add_to(h: Hist, m: Metric, labels: dict[str, str]) -> None:
    """``h``'s samples (cumulative buckets, +Inf, count, sum) into family ``m``."""
    total = 0
    for bound, n in zip((*h.bounds, float("inf")), h.counts):
        total += n
        le: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
        m.add_sample(m.name + "_bucket", {**labels, "le": le}, float(total))
    m.add_sample(m.name + "_count", labels, float(total))
    m.add_sample(m.name + "_sum", labels, h.sum)


class _Collector:
    """The numbers of one :class:`ProcessMetrics` as families (a prometheus_client
    custom collector: read when collected, never updated here)."""

    def __init__(self, owner: ProcessMetrics) -> None:
        self.owner = owner

    def collect(self) -> list[Metric]:
        o = self.owner
        out: list[Metric] = []
        for key, (name, doc) in COUNTERS.items():
            value = o.counters.get(key) if o.counters else None
            if value is not None:
                out.append(_one(name, doc, "counter", float(value)))
        for name, read in o.gauges.items():
            out.append(_one(name, GAUGES[name], "gauge", float(read())))
        for name, (label, read_by) in o.counters_by.items():
            m = Metric(name, INSTRUMENTS[name].help, "counter")
            for value_of_label, n in read_by().items():
                m.add_sample(name + "_total", {label: value_of_label}, float(n))
            out.append(m)
        if o.restarts:
            out.append(_one("actorsys_process_restarts",
                            INSTRUMENTS["actorsys_process_restarts"].help, "counter",
                            float(o.restarts)))
        if o.turns:
            turns = _family("actorsys_turns")
            durations = _family("actorsys_turn_duration_seconds")
            for (type_name, method), t in o.turns.items():
                labels = {"type": type_name, "method": method}
                for outcome, n in (("ok", t.ok), ("error", t.error)):
                    if n:
                        turns.add_sample("actorsys_turns_total", {**labels, "outcome": outcome},
                                         float(n))
                add_to(t.seconds, durations, labels)
            out += [turns, durations]
        if any(o.commit_keys.counts):
            out.append(_hist("actorsys_commit_duration_seconds", o.commit_seconds))
            out.append(_hist("actorsys_commit_batch_size", o.commit_keys))
        if o.lateness:
            m = _family("actorsys_alarm_lateness_seconds")
            for type_name, h in o.lateness.items():
                add_to(h, m, {"type": type_name})
            out.append(m)
        return out


def _family(name: str) -> Metric:
    spec = INSTRUMENTS[name]
    return Metric(name, spec.help, spec.kind)


def _one(name: str, doc: str, kind: str, value: float) -> Metric:
    m = Metric(name, doc, kind)
    m.add_sample(name + "_total" if kind == "counter" else name, {}, value)
    return m


def _hist(name: str, h: Hist) -> Metric:
    m = _family(name)
    add_to(h, m, {})
    return m
