"""A frame of ``actorsys top`` drawn from a sample (no node): user strings are text,
never rich markup; a histogram's quantile as Prometheus reads it."""
from __future__ import annotations

import io

from rich.console import Console

from actorsys.node.top import Sample, frame, quantile


def test_keys_that_look_like_markup_are_shown_as_they_are():
    status = {"endpoint": "ipc:///x", "epoch": 1, "shards": 8, "uptime": 3.0,
              "processes": [{"role": "worker", "slot": 0, "pid": 1, "up": True, "turns": 5}]}
    hot = [{"type": "T", "key": key, "slot": 0, "turns_per_s": 1.0, "busy": 0.1, "errors": 0,
            "mailbox": 0} for key in ("[/]", "a[/b]", "[red]secret")]
    tree = {"[b]sup": [{"id": "[/i]", "actor": "T", "key": "[x]", "status": "running"}]}
    out = io.StringIO()
    Console(file=out, width=160).print(frame(Sample(1.0, status, {}, hot, tree), None))
    text = out.getvalue()
    for shown in ("[/]", "a[/b]", "[red]secret", "[b]sup", "[/i]", "T [x]"):
        assert shown in text, text


def test_quantile_interpolates_within_a_bucket_as_prometheus_does():
    buckets = {0.001: 0.0, 0.002: 10.0, 0.005: 20.0, float("inf"): 20.0}
    assert quantile(0.25, buckets) == 0.0015 and quantile(0.5, buckets) == 0.002
    assert quantile(0.99, buckets) == 0.005 - 0.003 * (20 - 19.8) / 10
    assert quantile(0.5, {float("inf"): 0.0}) is None
