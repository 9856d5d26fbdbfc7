"""The node's one exposition: every process's families, merged, in Prometheus' text
format (prometheus_client writes it: :func:`render`).

The router gathers each process's :meth:`~.process.ProcessMetrics.families` over the
node's sockets and calls :func:`merge` with the labels that say whose they are
(``role``, and ``slot`` for a worker); families of the same name from several processes
become one family with all their samples. A process's answer is checked
(:func:`check_families`) before it is merged: a malformed one is refused whole, named,
and counted, never half-merged.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .process import WireFamily

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["check_families", "content_type", "http_response", "merge", "render"]

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = frozenset({"counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"})
#: families and samples one process may report (a bound on what a scrape merges)
MAX_FAMILIES, MAX_SAMPLES = 1000, 100_000


def check_families(raw: Any) -> list[WireFamily]:
    """A process's METRICS answer, checked: ValueError naming what is wrong."""
    if not isinstance(raw, list) or len(raw) > MAX_FAMILIES:
        raise ValueError(f"metrics must be an array of at most {MAX_FAMILIES} families")
    count = 0
    for fam in raw:
        if not (isinstance(fam, list) and len(fam) == 4 and isinstance(fam[0], str)
                and _NAME.match(fam[0]) and fam[1] in TYPES and isinstance(fam[2], str)
                and isinstance(fam[3], list)):
            raise ValueError("a metrics family must be [name, type, help, samples]")
        count += len(fam[3])
        if count > MAX_SAMPLES:
            raise ValueError(f"more than {MAX_SAMPLES} samples")
        for s in fam[3]:
            if not (isinstance(s, list) and len(s) == 3 and isinstance(s[0], str)
                    and _NAME.match(s[0]) and s[0].startswith(fam[0]) and isinstance(s[1], dict)
                    and all(isinstance(k, str) and _LABEL.match(k) and isinstance(v, str)
                            for k, v in s[1].items())
                    and isinstance(s[2], (int, float)) and not isinstance(s[2], bool)):
                raise ValueError(f"a sample of {fam[0]} must be [name, {{label: value}}, number]")
    return raw


def merge(parts: Iterable[tuple[dict[str, str], list[WireFamily]]]) -> list[WireFamily]:
    """One family per name over every ``(labels, families)`` part, each sample given
    the part's labels (a sample's own label of the same name wins)."""
    out: dict[str, WireFamily] = {}
    for labels, families in parts:
        for name, typ, doc, samples in families:
            fam = out.get(name)
            if fam is None:
                fam = out[name] = [name, typ, doc, []]
            elif fam[1] != typ:
                continue        # (two processes disagree on a type: the first one's stands)
            fam[3].extend([sample, {**labels, **own}, value] for sample, own, value in samples)
    return list(out.values())


def render(families: list[WireFamily]) -> bytes:
    """``families`` in Prometheus' text format (:func:`content_type`), written by
    prometheus_client (imported here: only a process that serves ``/metrics`` loads it)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest
    from prometheus_client.metrics_core import Metric

    metrics = []
    for name, typ, doc, samples in families:
        m = Metric(name, doc, typ)
        for sample, labels, value in samples:
            m.add_sample(sample, labels, float(value))
        metrics.append(m)

    class Fixed:
        def collect(self) -> list[Metric]:
            return metrics
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    return generate_latest(registry)


def content_type() -> str:
    """The Content-Type of :func:`render`'s text (prometheus_client's latest)."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    ct: str = CONTENT_TYPE_LATEST
    return ct


def http_response(families: list[WireFamily]) -> web.Response:
    """An aiohttp response of ``families`` in the text format (aiohttp is imported here:
    a process that serves no HTTP never loads it)."""
    from aiohttp import web
    return web.Response(body=render(families), headers={"Content-Type": content_type()})
