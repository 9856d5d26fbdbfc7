"""``scripts/bench --peers --quick``, actorsys' side alone: every Savina workload runs on a
real node and its result is right.

The peers (Pykka, Thespian, Ray) are left out even where the ``bench`` extra is
installed, so this needs none of them. Speed is never asserted (the machine is shared);
what each workload's actors computed is, against numbers worked out here from the
parameters the run used, not by the benchmark's own check.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

BENCH = os.path.join(ROOT, "scripts", "bench_peers.py")
WORKLOADS = ("pingpong", "count", "fjthrput", "fjcreate", "threadring", "chameneos", "big",
             "banking")


def expected(name: str, p: dict) -> dict:
    """What the Sink must have summed (and the balances), from the run's parameters."""
    if name in ("pingpong", "count", "fjcreate", "banking"):
        total = p["N"]                      # pongs counted, increments, actors run, transfers
    elif name == "fjthrput":
        total = p["A"] * p["N"]             # messages processed by all the workers
    elif name == "threadring":
        total = p["R"] + 1                  # receptions of the token
    elif name == "chameneos":
        total = 2 * p["M"]                  # each meeting counted by both chameneos
    else:
        total = p["W"] * p["N"]             # Big: pings answered
    out = {"total": total, "bad": 0}
    if name == "banking":
        out["balance_sum"] = p["A"] * 1_000_000   # no money made or lost
    return out


@pytest.mark.timeout(120)
def test_quick_peers_bench_runs_every_workload_right_on_actorsys(tmp_path):
    out = tmp_path / "peers.json"
    bench_tmp = tmp_path / "t"
    bench_tmp.mkdir()
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--runtimes", "actorsys",
                           "--json", str(out), "--tmpdir", str(bench_tmp)],
                          cwd=ROOT, capture_output=True, text=True, timeout=100,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    data = json.loads(out.read_text())

    assert set(data["results"]) == {"actorsys"}, "only actorsys ran"
    got = data["results"]["actorsys"]["workloads"]
    assert tuple(got) == WORKLOADS
    for name in WORKLOADS:
        w = got[name]
        assert w["problem"] is None, (name, w["problem"])
        assert w["facts"] == expected(name, w["params"]), (name, w["params"], w["facts"])
        assert w["per_s"] > 0 and w["seconds"] > 0, (name, w)
    assert got["count"]["params"]["N"] >= 100 and got["banking"]["params"]["A"] >= 10

    # the report states the scaling (published beside used) and names every workload
    for text in ("N=1,000,000", "Counting Actor", "Bank Transaction", "Chameneos", "Thread Ring"):
        assert text in proc.stdout, proc.stdout
    # everything it made is gone (its processes are checked by the autouse fixture)
    assert os.listdir(bench_tmp) == [], "the benchmark left its temporary directory behind"
    for d in data["meta"]["bench_dirs"]:
        assert not os.path.exists(d), d


def test_the_process_per_actor_peers_get_capped_actors_and_a_tenth_of_the_work():
    """(The scaling rules themselves: pure functions, no processes.)"""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        from savina import workloads as w
    finally:
        sys.path.remove(os.path.join(ROOT, "scripts"))
    for name in WORKLOADS:
        full = w.params(name, "full", "actorsys")
        assert full == w.TABLE[name].full
        for runtime, cap in w.PROCESS_CAPS.items():
            p = w.params(name, "full", runtime)
            actors = w.TABLE[name].actors
            if actors is not None:
                assert p[actors] <= cap, (name, runtime, p)
            if name != "fjcreate":      # a tenth of the units (rounded up to whole actors)
                units = w.units(name, p)
                assert w.units(name, full) // 10 <= units < w.units(name, full) // 10 + cap
    assert w.params("fjcreate", "full", "ray") == {"N": w.PROCESS_CAPS["ray"]}
    assert w.params("big", "full", "thespian") == {"W": 32, "N": 75}   # 120 * 200 / 10 / 32
