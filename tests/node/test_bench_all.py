"""``scripts/bench --all --quick`` with the peers left out: one run of the core bench and
the Savina workloads on actorsys, printed as one Markdown table.

The peers (Pykka, Thespian, Ray) are not run (``--runtimes actorsys``), so this needs none
of them. Speed is never asserted (the machine is shared); that every row is there with
its actorsys and raw echo cells filled from the run's own results is, and that the facts
above the table (command, date, machine, versions) are printed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import ROOT

BENCH = os.path.join(ROOT, "scripts", "bench_all.py")
CORE_ROWS = ("ask latency p50", "pipelined asks", "tells, then one ask", "actor creations")
SAVINA_ROWS = ("Ping Pong", "Counting Actor", "Fork-Join throughput", "Fork-Join creation",
               "Thread Ring", "Chameneos", "Big", "Bank Transaction")
NUMBER = r"[\d,]+(\.\d)?( us|/s)"


@pytest.mark.timeout(150)
def test_quick_all_prints_one_table_with_every_row_and_the_actorsys_and_raw_columns(tmp_path):
    out = tmp_path / "all.json"
    bench_tmp = tmp_path / "t"
    bench_tmp.mkdir()
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--runtimes", "actorsys",
                           "--json", str(out), "--tmpdir", str(bench_tmp)],
                          cwd=ROOT, capture_output=True, text=True, timeout=130,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-5000:]}"
    text = proc.stdout
    for fact in ("Command: `scripts/bench --all --quick --runtimes actorsys", "Date: ",
                 "Machine: ", "CPUs", "load average", "Versions: ", "actorsys ", "pyzmq "):
        assert fact in text, (fact, text)

    rows = [r for r in text.splitlines() if r.startswith("| ")]
    assert rows[0] == "| workload | actorsys | raw echo | durable floor | Pykka | Thespian | Ray |"
    body = [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]
    assert len(body) == len(CORE_ROWS) + len(SAVINA_ROWS), rows
    for row, name in zip(body, CORE_ROWS + SAVINA_ROWS):
        assert name in row[0], (name, row)
        assert len(row) == 7, row
        assert re.fullmatch(NUMBER, row[1]), ("actorsys cell", row)
        if name in CORE_ROWS:
            assert re.match(NUMBER + r".* \(\d+\.\d\dx\)$", row[2]), ("raw cell", row)
        else:
            assert row[2] == "-", ("the raw echo has no Savina workload", row)
        if name in CORE_ROWS and "creations" not in name:
            assert re.match(NUMBER + r".* \(\d+\.\d\dx\)$", row[3]), ("floor cell", row)
        else:
            assert row[3] == "-", ("the durable floor makes no actor", row)
        assert row[4:] == ["not run"] * 3, ("the peers were left out", row)

    data = json.loads(out.read_text())
    assert data["failed"] == [] and set(data["steps"]) == {"core", "peers"}, data["steps"]
    assert all(s["rc"] == 0 for s in data["steps"].values()), data["steps"]
    # the cells are the steps' own figures: the latency ratio is the core bench's
    lat = data["core"]["results"]["ask_latency"]
    assert body[0][1] == f"{lat['actorsys']['p50_us']:,.1f} us"
    assert body[0][2].endswith(f"({lat['ratio_p50']:.2f}x)"), (body[0], lat)
    bank = data["peers"]["results"]["actorsys"]["workloads"]["banking"]
    assert bank["problem"] is None and body[-1][1] == f"{bank['per_s']:,.0f}/s"
    # everything each step made is gone
    assert os.listdir(bench_tmp) == [], "a step left its temporary directory behind"
    for step in ("core", "peers"):
        for d in data[step]["meta"]["bench_dirs"]:
            assert not os.path.exists(d), d


def test_all_refuses_an_unknown_runtime():
    proc = subprocess.run([sys.executable, BENCH, "--runtimes", "actorsys,akka"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "akka" in proc.stderr, proc.stderr
