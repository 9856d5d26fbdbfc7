"""Chaos across nodes under load (scripts/chaos --cluster 3 --join-leave), short: no
acknowledged write is lost, every actor single-activated, every alarm fired once and every
WebSocket message applied once while workers, routers and whole nodes are killed, a node
paused (and, on namespace hosts, cut off) past its lease and a fourth node joins and leaves.

A cluster test (2 s etcd leases): the second pass runs it beside other cluster tests only,
never beside the handoff tests (one xdist group: tests/conftest.py). The single-node chaos
runs and the audit's own tests are in test_chaos.py.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import ROOT, SCRIPTS_DIR
from test_chaos import assert_alarms_once, assert_websockets_once

from actorsys.testing.processes import gone


@pytest.mark.timeout(170)
def test_cluster_chaos_run_loses_no_acknowledged_write(tmp_path):
    """scripts/chaos --cluster 3 --join-leave, short: a worker, a router and a whole node
    killed, a node paused and (namespace hosts) cut off past its lease, a fourth node
    joining then leaving, under load; the last line says no acknowledged write was lost,
    and the audit found every actor single-activated (also while shards moved between
    nodes), every node healthy and every shard owned once."""
    out = tmp_path / "chaos.json"
    scratch = tmp_path / "t"
    scratch.mkdir()
    actors = 300
    proc = subprocess.run([os.path.join(SCRIPTS_DIR, "chaos"), "--cluster", "3", "--join-leave",
                           "--workers", "1",
                           "--duration", "15", "--fault-every", "1", "--lease-ttl", "2",
                           "--actors", str(actors), "--clients", "2", "--in-flight", "16",
                           "--json", str(out), "--tmpdir", str(scratch)],
                          cwd=ROOT, capture_output=True, text=True, timeout=160,
                          stdin=subprocess.DEVNULL)
    report = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, f"cluster chaos run failed (status {proc.returncode})\n{report}"
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1] == "acknowledged writes lost: 0", report

    r = json.loads(out.read_text())
    assert r["lost"] == 0 and r["violations"] == [] and r["healthy"], r["violations"]
    kinds = r["kinds"]
    can_cut = "cut" in kinds
    assert set(kinds) == {"worker", "router", "node", "pause", "move"} | ({"cut"} if can_cut else set())
    if not can_cut:
        assert "network cut: not available on loopback hosts" in proc.stdout, report
    for kind in kinds:
        assert r["faults"]["by_kind"][kind] >= 1, f"no {kind} fault injected: {r['faults']}\n{report}"
        assert r["recovery_ms"][kind]["n"] == r["faults"]["by_kind"][kind], \
            f"a {kind} fault without a measured recovery: {r['faults']['events']}"
    assert r["faults"]["by_kind"]["move"] >= 2, "a node joined, then left"
    assert r["activations"]["actors_checked"] == actors, "the single-activation check read every actor"
    assert "4096 shards owned once" in r["health"], r["health"]
    assert_alarms_once(r, proc.stdout)
    assert_websockets_once(r, proc.stdout)
    load = r["load"]
    assert load["acknowledged"] > 0 and load["acknowledged"] <= load["final_total"] <= load["attempted"], load
    assert load["client_errors"].get("ShardUnavailable", 0) > 0, \
        f"a killed node's shards were unavailable for a moment: {load['client_errors']}"
    alive = [pid for pid in r["pids"] if not gone(pid)]
    assert alive == [], f"processes of the cluster chaos run still running: {alive}"
    assert list(scratch.iterdir()) == [], "the harness removed its cluster's directory"
