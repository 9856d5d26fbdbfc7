"""Prometheus metrics of a real node (issue 17): ``[node] metrics`` serves one exposition
covering every process (the router gathers them over the node's sockets), parsed here
with prometheus_client's own text parser; a worker killed shows as down and comes back
counted as a restart; the gateway serves the same at ``/metrics``; a real Prometheus
(Debian's, on loopback) scrapes a node under load."""
from __future__ import annotations

import os
import signal
import time
import urllib.request
from typing import Any

import pytest
from helpers import make_config
from prometheus_client.parser import text_string_to_metric_families

import actorsys
from actorsys.testing.nodes import wait_until
from actorsys.testing.prometheus import Prometheus


def scrape(url: str) -> dict[str, list[Any]]:
    """family name -> its samples, from one GET of ``url``."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = resp.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(fams: dict[str, list[Any]], sample: str, **labels: str) -> float:
    """The sum of ``sample``'s values whose labels include ``labels``."""
    family = sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    family = family.removesuffix("_bucket")
    return sum(s.value for s in fams.get(family, [])
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture
def metered(tmp_path):
    cfg = make_config(str(tmp_path / "data"), metrics="127.0.0.1:0", workers=2)
    with actorsys.Node(cfg) as n:
        yield n


def test_one_scrape_covers_every_process_of_the_node(metered):
    c = metered.client()
    for i in range(40):
        c.ref("Counter", f"m{i}").ask("add", 2)
    with pytest.raises(actorsys.RemoteError):
        c.ref("Counter", "m0").ask("add_then_fail", 1)
    with pytest.raises(actorsys.RemoteError):     # a failed turn is timed up to its failure
        c.ref("StoreCounter", "m1").ask("slow_add_then_fail", 1, 0.3)
    fams = scrape(metered.metrics_url)

    # every process answered, each under its role (and slot)
    up = {(s.labels["role"], s.labels.get("slot")): s.value for s in fams["actorsys_up"]}
    assert up == {("router", None): 1.0, ("worker", "0"): 1.0, ("worker", "1"): 1.0}
    # turns by type, method and outcome; never by key
    assert value(fams, "actorsys_turns_total", type="Counter", method="add", outcome="ok") == 40
    assert value(fams, "actorsys_turns_total", type="Counter", method="add_then_fail",
                 outcome="error") == 1
    assert all("key" not in s.labels for f in fams.values() for s in f)
    assert value(fams, "actorsys_turn_duration_seconds_count", type="Counter", method="add") == 40
    assert value(fams, "actorsys_turn_duration_seconds_sum", method="add") > 0
    assert value(fams, "actorsys_turn_duration_seconds_sum", method="slow_add_then_fail") >= 0.3
    # 40 activations spread over both slots; the commits that wrote them, timed
    assert value(fams, "actorsys_activations_total") == 41
    assert {s.labels["slot"] for s in fams["actorsys_activations"]} == {"0", "1"}
    assert value(fams, "actorsys_resident_actors") == 41      # (a crashed one stays, not activated)
    assert value(fams, "actorsys_commit_duration_seconds_count") >= 1
    assert value(fams, "actorsys_commit_batch_size_sum") >= 40     # state + listing per actor
    assert value(fams, "actorsys_mailbox_depth") == 0
    # the library's process metrics, per process
    assert value(fams, "process_resident_memory_bytes", role="router") > 1e6
    assert value(fams, "process_cpu_seconds_total", role="worker", slot="1") > 0
    # METRICS over the wire answers the same families
    assert "actorsys_turns" in {f[0] for f in c.metrics()}


def test_a_killed_worker_shows_down_then_counted_as_restarted(metered):
    c = metered.client()
    ref = c.ref("Counter", "k")
    pid = ref.ask("pid")
    slot = [p["slot"] for p in c.status()["processes"] if p.get("pid") == pid][0]
    os.kill(pid, signal.SIGSTOP)        # alive, not answering: the scrape does not wait for it
    try:
        t0 = time.monotonic()
        fams = scrape(metered.metrics_url)
        assert time.monotonic() - t0 < 8
        assert value(fams, "actorsys_up", role="worker", slot=str(slot)) == 0
        assert value(fams, "actorsys_up", role="router") == 1
    finally:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: ref.ask("pid", retry=True) != pid, "the worker restarted", 30)
    fams = scrape(metered.metrics_url)
    assert value(fams, "actorsys_up", role="worker", slot=str(slot)) == 1
    assert value(fams, "actorsys_process_restarts_total", role="worker", slot=str(slot)) == 1
    assert value(fams, "actorsys_process_restarts_total", role="router") == 0


def test_the_gateway_serves_the_node_s_metrics(tmp_path):
    cfg = make_config(str(tmp_path / "data"))
    cfg["gateway"] = {"listen": "127.0.0.1:0", "metrics": True}
    with actorsys.Node(cfg) as n:
        n.client().ref("Counter", "g").ask("add", 1)
        fams = scrape(n.gateway_url + "/metrics")
        roles = {s.labels["role"] for s in fams["actorsys_up"] if s.value == 1}
        assert roles == {"router", "worker", "gateway"}
        assert value(fams, "actorsys_gateway_sockets") == 0
        assert value(fams, "actorsys_turns_total", method="add") == 1


def test_metrics_are_off_by_default(node):
    with pytest.raises(actorsys.NodeUnavailable):
        _ = node.metrics_url
    # the turns are not timed; the counters are still there over the wire
    node.client().ref("Counter", "d").ask("add", 1)
    names = {f[0] for f in node.client().metrics()}
    assert "actorsys_turns" not in names and "actorsys_activations" in names


def test_a_real_prometheus_scrapes_a_node_under_load(tmp_path):
    """Debian's Prometheus, on loopback in a temp dir, scraping the node every second
    while a client keeps asking: the rate it computes matches the asks made."""
    cfg = make_config(str(tmp_path / "data"), metrics="127.0.0.1:0")
    with actorsys.Node(cfg) as n, Prometheus(str(tmp_path), [n.metrics_url[7:-8]]) as prom:
        c = n.client()
        refs = [c.ref("Counter", f"p{i}") for i in range(20)]
        asked = 0

        def scraped_asks() -> float:
            nonlocal asked
            for r in refs:                      # load between the polls
                r.ask("add", 1)
            asked += len(refs)
            got = prom.query('sum(actorsys_turns_total{method="add",outcome="ok"})')
            return float(got[0]["value"][1]) if got else 0.0

        wait_until(lambda: scraped_asks() >= 200, "Prometheus to have scraped 200 asks", 60)
        health = prom.targets_health()
        assert [t["health"] for t in health] == ["up"], health
        # what Prometheus stored is what the node counted, never more than was asked
        stored = float(prom.query('sum(actorsys_turns_total{method="add"})')[0]["value"][1])
        assert 200 <= stored <= asked
        ups = prom.query("actorsys_up")
        assert sorted((u["metric"]["role"], u["metric"].get("slot")) for u in ups) == [
            ("router", None), ("worker", "0"), ("worker", "1")]
        assert all(u["value"][1] == "1" for u in ups)
        buckets = prom.query('sum by (le) (actorsys_turn_duration_seconds_bucket{method="add"})')
        assert len(buckets) == 18      # 17 bounds and +Inf


def test_the_tree_reports_each_supervisor_s_restarts(tmp_path):
    cfg = make_config(str(tmp_path / "data"), metrics="127.0.0.1:0")
    cfg["actors"].update({"Journal": "restarts_actors:Journal", "Worker": "restarts_actors:Worker"})
    cfg["supervisors"] = {"root": {"strategy": "one_for_one", "max_restarts": 10, "children": [
        {"id": "w", "actor": "Worker", "key": "w"}]}}
    with actorsys.Node(cfg) as n:
        w = n.client().ref("Worker", "w")
        wait_until(lambda: w.ask("info"), "the child started")
        with pytest.raises(actorsys.RemoteError):
            w.ask("crash")
        wait_until(lambda: value(scrape(n.metrics_url), "actorsys_supervisor_restarts_total",
                                 role="tree", supervisor="root") == 1,
                   "the tree to count root's restart", 15)
        assert value(scrape(n.metrics_url), "actorsys_up", role="tree") == 1
