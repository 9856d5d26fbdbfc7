"""scripts/bench --curves --quick (scripts/bench_curves.py) runs end to end with tiny
counts: every point of both curves has both sides, every ask was answered, the numbers
are sane (p99 >= p50 > 0), the actors counted every ask, and the two PNG plots are
written to ``--out`` (or, without matplotlib, skipped with a message and the JSON alone
checked). Speed is never asserted: the machine is shared."""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

CURVES = os.path.join(ROOT, "scripts", "bench_curves.py")

pytestmark = pytest.mark.timeout(120)


def _sane(point: dict, where: str) -> None:
    for side in ("actorsys", "raw"):
        s = point[side]
        assert s["asks"] > 0 and s["answered"] == s["asks"], (where, side, s)
        assert s["per_s"] > 0 and s["seconds"] > 0, (where, side, s)
        assert s["p99_us"] >= s["p50_us"] > 0, (where, side, s)
    assert point["ratio"] == point["actorsys"]["per_s"] / point["raw"]["per_s"], where


def test_quick_curves_measure_both_sides_at_every_point_and_plot_them(tmp_path):
    out, plots, bench_tmp = tmp_path / "curves.json", tmp_path / "plots", tmp_path / "t"
    bench_tmp.mkdir()
    proc = subprocess.run([sys.executable, CURVES, "--quick", "--clients", "1,2", "--actors", "50,300",
                           "--client-actors", "50", "--seconds", "0.3", "--json", str(out),
                           "--out", str(plots), "--tmpdir", str(bench_tmp)],
                          cwd=ROOT, capture_output=True, text=True, timeout=100,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    data = json.loads(out.read_text())
    r, meta = data["results"], data["meta"]

    clients = r["clients"]["points"]
    assert [pt["actorsys"]["clients"] for pt in clients] == [1, 2]
    assert [pt["raw"]["clients"] for pt in clients] == [1, 2]
    for pt in clients:
        _sane(pt, f"{pt['actorsys']['clients']} clients")
    # each of the 50 actors got 1 when made, then every ask the clients had answered
    assert r["clients"]["counted"] == 50 + sum(pt["actorsys"]["asks"] for pt in clients)

    actors = r["actors"]["points"]
    assert [pt["actors"] for pt in actors] == [50, 300] and r["actors"]["skipped"] is None
    for pt in actors:
        _sane(pt, f"{pt['actors']} actors")
        assert pt["resident"] >= pt["actors"], pt
        assert pt["worker_rss_mb"] > 0 and pt["raw_rss_mb"] > 0, pt
    assert actors[0]["activations_per_s"] is None, "the 50 actors were made for the first curve"
    assert actors[1]["activations_per_s"] > 0

    for label in ("client processes", "resident actors", "every ask answered"):
        assert label in proc.stdout, proc.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        want = [str(plots / "clients.png"), str(plots / "actors.png")]
        assert meta["plots"] == want
        for path in want:
            with open(path, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
            assert os.path.getsize(path) > 10_000, path
    else:
        assert meta["plots"] == [] and "matplotlib is not installed" in proc.stdout
        assert not plots.exists()
    assert glob.glob(str(bench_tmp / "*")) == [], "the benchmark removed its directories"
    for d in meta["bench_dirs"]:
        assert not os.path.exists(d), d


def test_without_matplotlib_the_plots_are_skipped_with_a_message(tmp_path):
    """matplotlib made unimportable in a fresh interpreter: no file, an empty list, a
    message naming the extra."""
    code = ("import sys; sys.modules['matplotlib'] = None; sys.path.insert(0, 'scripts')\n"
            "from bench_curves import plots\n"
            f"print(plots({{}}, {{}}, {str(tmp_path / 'p')!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "matplotlib is not installed (pip install 'actorsys[bench]')" in proc.stdout
    assert proc.stdout.strip().endswith("[]") and not (tmp_path / "p").exists()


@pytest.mark.parametrize("bad, says", [
    (["--clients", "4,2"], "ascending"),
    (["--actors", "1k"], "comma-separated list of counts"),
    (["--clients", "1,100"], "at most 64 client processes"),
    (["--seconds", "0"], "--seconds must be in"),
])
def test_bad_counts_are_refused_before_anything_starts(bad, says):
    proc = subprocess.run([sys.executable, CURVES, "--quick", *bad], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
