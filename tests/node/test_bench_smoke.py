"""scripts/bench.py --quick runs end to end and reports every measurement.

Speed is never asserted here (the machine running the tests is shared and noisy); this
only checks that each measurement and its raw baseline ran and produced positive numbers,
and that the benchmark left nothing behind.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from typing import Any

from helpers import ROOT

from actorsys.testing.nodes import wait_until

BENCH = os.path.join(ROOT, "scripts", "bench.py")

# measurement -> the numbers that must be there and positive, as paths into its dict
EXPECTED = {
    "ask_latency": [("actorsys", "p50_us"), ("actorsys", "p99_us"), ("raw", "p50_us"),
                    ("raw", "p99_us"), ("ratio_p50",), ("ratio_p99",), ("floor", "p50_us"),
                    ("ratio_p50_floor",), ("floor_over_raw_p50",)],
    "pipelined_asks": [("actorsys", "per_s"), ("raw", "per_s"), ("ratio",), ("floor", "per_s"),
                       ("ratio_floor",)],
    "pipelined_asks_one_actor": [("actorsys", "per_s"), ("raw", "per_s"), ("ratio",),
                                 ("floor", "per_s"), ("ratio_floor",)],
    "tells": [("actorsys", "per_s"), ("raw", "per_s"), ("ratio",), ("floor", "per_s"),
              ("ratio_floor",)],
    "activations": [("actorsys", "per_s"), ("raw", "per_s"), ("ratio",)],
    "recovery": [("actorsys", "median_ms"), ("actorsys", "max_ms"), ("raw", "median_ms"),
                 ("raw", "max_ms"), ("ratio_median",)],
    "supervised_restart": [("actorsys", "p50_us"), ("actorsys", "max_us"), ("raw", "p50_us"),
                           ("ratio",)],
    "children": [("linearity",), ("raw_per_s",)],
}


def _get(d: dict, path: tuple):
    for k in path:
        d = d[k]
    return d


def test_quick_bench_reports_every_measurement_beside_its_baseline(tmp_path):
    out = tmp_path / "bench.json"
    bench_tmp = tmp_path / "t"
    bench_tmp.mkdir()
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--json", str(out),
                           "--tmpdir", str(bench_tmp)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    data = json.loads(out.read_text())
    results = data["results"]
    assert set(EXPECTED) <= set(results), sorted(results)
    for name, paths in EXPECTED.items():
        for path in paths:
            value = _get(results[name], path)
            assert isinstance(value, (int, float)) and value > 0, (name, path, value)
        assert isinstance(results[name].get("meets_target"), (bool, type(None))), name
    rec = results["recovery"]["actorsys"]
    assert len(rec["samples_ms"]) == data["meta"]["params"]["recovery_n"]
    assert data["meta"]["mode"] == "quick"

    # the printed table names every measurement
    for label in ("ask latency p50", "pipelined asks", "tells", "activations", "crash recovery",
                  "durable floor",
                  "supervised crash+restart", "start_child", "terminate_child"):
        assert label in proc.stdout, proc.stdout
    # everything it made is gone (its processes are checked by the autouse fixture)
    assert glob.glob(str(bench_tmp / "*")) == []
    for d in data["meta"]["bench_dirs"]:
        assert not os.path.exists(d), d
    node_ipc = data["meta"]["node_endpoint"]
    assert node_ipc.startswith("ipc://")
    assert not os.path.exists(os.path.dirname(node_ipc[len("ipc://"):])), node_ipc


def test_scale_bench_runs_small_and_reports_every_figure(tmp_path):
    """scripts/bench --scale at a few thousand actors: every figure is there and sane."""
    out = tmp_path / "scale.json"
    bench_tmp = tmp_path / "t"
    bench_tmp.mkdir()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_scale.py"),
                           "--actors", "6000", "--reactivate", "2500", "--bounded", "3000",
                           "--max-resident", "1500", "--alarms", "10", "--json", str(out),
                           "--tmpdir", str(bench_tmp)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    r = json.loads(out.read_text())
    assert r["listing"]["keys"] == 6000, "list_actors pages through every actor created"
    for path in (("creation", "per_s"), ("reactivation", "per_s"), ("memory", "per_resident_actor_bytes"),
                 ("alarms", "max_ms"), ("raw_pipelined_per_s",)):
        value = _get(r, path)
        assert isinstance(value, (int, float)) and value > 0, (path, value)
    assert r["bounded"]["bounded"], f"resident per worker exceeded max_resident: {r['bounded']}"
    assert r["creation"]["evictions"] > 0, "6,000 actors over a bound of 1,500 per worker evict"
    for label in ("reactivation from disk", "RSS per resident actor", "alarm lateness"):
        assert label in proc.stdout, proc.stdout
    assert glob.glob(str(bench_tmp / "*")) == [], "the benchmark removed its directories"


GATEWAY_EXPECTED = {
    "ws_rtt": [("actorsys", "p50_us"), ("raw", "p50_us"), ("ratio_p50",), ("ratio_p99",)],
    "ws_pipelined": [("actorsys", "per_s"), ("raw", "per_s"), ("ratio",)],
    "broadcast": [("actorsys", "per_s"), ("raw", "per_s"), ("ratio",)],
    "http_latency": [("actorsys", "p50_us"), ("raw", "p50_us"), ("ratio_p50",)],
    "many_rooms": [("actorsys", "per_s"), ("raw", "per_s"), ("ratio",)],
}


def quick_run(tmp_path: Any, script: str) -> tuple[dict[str, Any], Any]:
    """``scripts/<script> --quick`` with a temp dir of its own: its JSON results, and that
    dir (to check that it left nothing)."""
    out = tmp_path / "bench.json"
    bench_tmp = tmp_path / "t"
    bench_tmp.mkdir()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script),
                           "--quick", "--json", str(out), "--tmpdir", str(bench_tmp)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(out.read_text())["results"], bench_tmp


def test_quick_gateway_bench_reports_every_measurement_beside_its_baseline(tmp_path):
    results, bench_tmp = quick_run(tmp_path, "bench_gateway.py")
    for name, paths in GATEWAY_EXPECTED.items():
        for path in paths:
            value = _get(results[name], path)
            assert isinstance(value, (int, float)) and value > 0, (name, path, value)
    pipelined = results["ws_pipelined"]["batching"]
    assert pipelined["events"] >= results["ws_pipelined"]["n"], \
        f"the gateway counted every pipelined frame as an event: {pipelined}"
    assert not glob.glob(str(bench_tmp / "*")), "the benchmark left files in its temp dir"


def test_the_metrics_bench_measures_on_beside_off_with_real_scrapes(tmp_path):
    results, bench_tmp = quick_run(tmp_path, "bench_metrics.py")
    for side in ("off", "on"):
        assert results["ask_latency"][side]["p50_us"] > 0 and results["ask_latency"][side]["n"] == 500
        assert results["pipelined_asks"][side]["per_s"] > 0
    assert results["ask_latency"]["ratio_p50"] > 0 and results["pipelined_asks"]["ratio"] > 0
    assert results["scrapes"]["failures"] == 0
    assert not glob.glob(str(bench_tmp / "*")), "the benchmark left files in its temp dir"


def test_the_raw_chain_floor_measures_both_paths_and_leaves_no_process(tmp_path):
    """scripts/bench --cluster 3 --replicas R's raw floor: asks through a relay and a
    follower (real processes, tcp) come back from the follower, beside the one-hop echo."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        from bench_cluster_replicated import raw_floor

        from actorsys.testing.bench import Resources
    finally:
        sys.path.pop(0)
    res = Resources(str(tmp_path))
    try:
        floor = raw_floor(res, 200)
        procs = list(res.procs)
        assert len(procs) == 3 and all(p.poll() is None for p in procs)
    finally:
        res.close()
    assert floor["r1_p50_us"] > 0 and floor["chain_p50_us"] > 0, floor
    assert floor["ratio_p50"] == floor["chain_p50_us"] / floor["r1_p50_us"]
    assert all(p.poll() is not None for p in procs), "a raw server outlived the benchmark"


def test_cpu_per_write_counts_each_role_of_real_processes_and_the_client_thread():
    """The replicated benchmark's CPU accounting: a busy process's CPU seconds grow
    (psutil, all its threads); per write, summed by role, the client thread's beside."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        from bench_cluster_replicated import cpu_per_write, cpu_seconds
    finally:
        sys.path.pop(0)
    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.3: pass\ntime.sleep(30)"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        roles = {busy.pid: "worker", idle.pid: "router", 999_999_999: "etcd"}
        before = cpu_seconds(roles)
        assert set(before) == {busy.pid, idle.pid}, "a pid that does not exist has no CPU"
        wait_until(lambda: cpu_seconds([busy.pid])[busy.pid] - before[busy.pid] >= 0.25,
                   "the busy process to spend its CPU", timeout=20)
        after = cpu_seconds(roles)
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()
    got = cpu_per_write(roles, before, after, 1000, client_s=0.05)
    assert set(got) == {"router", "worker", "client thread", "total"}, got
    assert got["worker"] >= 250 and got["router"] < 50, got     # (us per write, of 1000)
    assert got["client thread"] == 50.0
    assert got["total"] == got["worker"] + got["router"] + got["client thread"]


def test_the_recurring_alarm_bench_counts_every_due_firing(tmp_path):
    """``scripts/bench --recurring``, small: every firing due by the end ran (none missed),
    and the drain rate and lateness are reported beside the raw echo."""
    out = tmp_path / "bench.json"
    bench_tmp = tmp_path / "t"
    bench_tmp.mkdir()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_recurring.py"),
                           "--actors", "5", "--per-actor", "20", "--every", "1", "--duration", "3",
                           "--json", str(out), "--tmpdir", str(bench_tmp)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    r = json.loads(out.read_text())
    assert r["alarms"] == 100 and r["due_by_end"] >= 100 and r["missed"] == 0, r
    assert r["drain_per_s"] > 0 and r["raw_pipelined_per_s"] > 0 and r["late_ms"]["kept"] >= 100, r
    assert os.listdir(bench_tmp) == [], "the benchmark left its temporary directory behind"


def test_the_fsync_bench_reports_both_durabilities(tmp_path):
    """``scripts/bench --fsync``, small: a row for each durability and their ratios."""
    out = tmp_path / "bench.json"
    bench_tmp = tmp_path / "t"
    bench_tmp.mkdir()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_fsync.py"),
                           "--rounds", "1", "--seq", "50", "--pipe", "500", "--window", "100",
                           "--json", str(out), "--tmpdir", str(bench_tmp)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    r = json.loads(out.read_text())
    for mode in ("process", "fsync"):
        assert r[mode]["p50_us"] > 0 and r[mode]["pipelined_per_s"] > 0, r
    assert r["throughput_ratio"] > 0 and r["p50_ratio"] > 0, r
    assert "| fsync |" in proc.stdout
    assert os.listdir(bench_tmp) == [], "the benchmark left its temporary directory behind"
