"""The metrics package below a node (issue 17): one process's registry, the wire form
its METRICS answer takes, the checks on a peer's answer, the merge by role and slot,
and the text format (parsed back with prometheus_client's own parser)."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actorsys import metrics
from actorsys.metrics import INSTRUMENTS, ProcessMetrics


def parsed(families: list) -> dict[str, list]:
    text = metrics.render(families).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_a_process_reports_its_instruments_counters_and_gauges():
    pm = ProcessMetrics("worker", 0, restarts=3)
    pm.counters = {"bad_frames": 2, "activations": 5, "not_in_the_catalog": 9}
    depth = [4]
    pm.gauge("actorsys_mailbox_depth", lambda: depth[0])
    pm.turn("Counter", "add", True, 0.0002)
    pm.turn("Counter", "add", True, 0.2)
    pm.turn("Counter", "add", False, 0.001)
    pm.commit(0.0001, 12)
    pm.alarm_late("Counter", -1.0)          # an alarm early by the clock's grain counts as 0
    depth[0] = 7                             # gauges are read when collected
    fams = parsed(metrics.merge([({"role": "worker", "slot": "0"}, pm.families())]))
    one = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f}
    w = (("role", "worker"), ("slot", "0"))
    assert one[("actorsys_bad_frames_total", w)] == 2
    assert one[("actorsys_activations_total", w)] == 5
    assert one[("actorsys_mailbox_depth", w)] == 7
    assert one[("actorsys_process_restarts_total", w)] == 3
    assert one[("actorsys_turns_total", (("method", "add"), ("outcome", "ok"), *w[:1], w[1],
                                         ("type", "Counter")))] == 2
    assert not any("not_in_the_catalog" in name for name, _ in one)
    hist = {s.labels["le"]: s.value for s in fams["actorsys_turn_duration_seconds"]
            if s.name.endswith("_bucket") and s.labels["method"] == "add"}
    assert [hist[le] for le in ("0.0001", "0.00025", "0.001", "0.25", "+Inf")] == [0, 1, 2, 3, 3]
    assert one[("actorsys_commit_batch_size_sum", w)] == 12
    assert one[("actorsys_alarm_lateness_seconds_sum", (*w, ("type", "Counter")))] == 0
    assert "process_cpu_seconds" in fams            # the library's process collector
    assert not any(name.endswith("_created") for f in pm.families() for name, *_ in f[3])


def test_merge_joins_families_of_the_same_name_and_keeps_the_first_type():
    a = [["actorsys_x", "counter", "X", [["actorsys_x_total", {}, 1]]]]
    b = [["actorsys_x", "counter", "X", [["actorsys_x_total", {}, 2]]],
         ["actorsys_y", "gauge", "Y", [["actorsys_y", {"role": "mine"}, 3]]]]
    c = [["actorsys_x", "gauge", "X as a gauge", [["actorsys_x", {}, 99]]]]
    merged = metrics.merge([({"role": "worker", "slot": "0"}, a), ({"role": "worker", "slot": "1"}, b),
                            ({"role": "tree"}, c)])
    by = {f[0]: f for f in merged}
    assert [s[1]["slot"] for s in by["actorsys_x"][3]] == ["0", "1"]
    assert by["actorsys_y"][3][0][1] == {"role": "mine", "slot": "1"}   # its own label wins
    assert len(by["actorsys_x"][3]) == 2                               # the gauge one is left out


@pytest.mark.parametrize("bad, says", [
    ({"x": 1}, "array"),
    ([["bad name!", "counter", "", []]], "[name, type, help, samples]"),
    ([["x", "histogramm", "", []]], "[name, type, help, samples]"),
    ([["x", "gauge", "", [["y", {}, 1]]]], "sample of x"),           # another family's sample
    ([["x", "gauge", "", [["x", {"a-b": "1"}, 1]]]], "sample of x"),  # a bad label name
    ([["x", "gauge", "", [["x", {"a": 1}, 1]]]], "sample of x"),      # a label value not a string
    ([["x", "gauge", "", [["x", {}, "1"]]]], "sample of x"),          # a value not a number
    ([["x", "gauge", "", [["x", {}, True]]]], "sample of x"),
    ([["x", "gauge", "", [["x", {}, 1]] * (metrics.exposition.MAX_SAMPLES + 1)]], "more than"),
])
def test_a_malformed_answer_is_refused_whole_with_what_is_wrong(bad, says):
    with pytest.raises(ValueError) as err:
        metrics.check_families(bad)
    assert says in str(err.value)


def test_catalog_names_follow_the_conventions():
    for name, spec in INSTRUMENTS.items():
        assert name.startswith("actorsys_") and not name.endswith("_total")
        assert "key" not in spec.labels
        if spec.kind == "histogram":
            assert list(spec.buckets) == sorted(spec.buckets)
    with pytest.raises(KeyError):
        ProcessMetrics("x").gauge("actorsys_not_a_gauge", lambda: 0)
    with pytest.raises(KeyError):
        ProcessMetrics("x").counter_by("actorsys_turns", dict)      # three labels, not one


def test_counter_by_reports_one_series_per_label_value():
    pm = ProcessMetrics("tree")
    counts = {"root": 2, "workers": 0}
    pm.counter_by("actorsys_supervisor_restarts", lambda: counts)
    fams = parsed(metrics.merge([({"role": "tree"}, pm.families())]))
    got = {s.labels["supervisor"]: s.value for s in fams["actorsys_supervisor_restarts"]}
    assert got == {"root": 2, "workers": 0}


def test_the_dashboard_shows_what_json_cannot_carry_as_text():
    import json
    import math

    from actorsys.gateway.dashboard import jsonable
    got = jsonable({"nan": math.nan, "inf": -math.inf, 1: b"\x00\xff", "ok": [1.5, "x"]})
    assert got == {"nan": "nan", "inf": "-inf", "1": {"bytes": "AP8=", "text": "b'\\x00\\xff'"},
                   "ok": [1.5, "x"]}
    json.loads(json.dumps(got, allow_nan=False))
