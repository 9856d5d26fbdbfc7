"""Activation throughput of one checkout, with or without supervisors configured.

For an A/B in one session (these machines are noisy; interleave the runs):

    git worktree add /tmp/base 2883538
    for i in 1 2; do
      .venv/bin/python scripts/bench_activations_ab.py /tmp/base plain
      .venv/bin/python scripts/bench_activations_ab.py . plain
      .venv/bin/python scripts/bench_activations_ab.py . supervised
    done

Each run starts a two-worker node from that checkout, asks 4 rounds of 10,000 new actors
(window 1,000; each activation reads storage, runs on_start and commits) and prints the
best round. ``supervised`` adds a simple_one_for_one supervisor to the config, which
makes workers read each new actor's supervision record.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from typing import Any


def _pipelined(root: str) -> Any:
    """The checkout's actorsys_pipelined: from actorsys.testing, or (a checkout from before
    it) from that checkout's scripts/bench.py, loaded by file path."""
    try:
        from actorsys.testing.bench import actorsys_pipelined
        return actorsys_pipelined
    except ImportError:
        spec = importlib.util.spec_from_file_location("bench", os.path.join(root, "scripts", "bench.py"))
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        return old.actorsys_pipelined


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[2] not in ("plain", "supervised"):
        print(__doc__, file=sys.stderr)
        return 2
    root = os.path.abspath(sys.argv[1])
    sys.path[:0] = [root]       # that checkout's actorsys, not the installed one: the A/B's point
    import actorsys
    actorsys_pipelined = _pipelined(root)
    tmp = tempfile.mkdtemp(prefix="actorsys-ab-")
    cfg = {"node": {"data_dir": os.path.join(tmp, "data"), "workers": 2,
                    "python_path": [os.path.join(root, "scripts"), os.path.join(root, "examples")]},
           "actors": {"Bench": "bench_actors:BenchCounter"}}
    if sys.argv[2] == "supervised":
        cfg["supervisors"] = {"jobs": {"strategy": "simple_one_for_one", "children": [
            {"id": "j", "actor": "Bench", "restart": "temporary"}]}}
    try:
        with actorsys.Node(cfg) as node:
            rates = []
            for r in range(4):
                keys = [f"new-{r}-{i}" for i in range(10_000)]
                rates.append(10_000 / actorsys_pipelined(node.endpoint, keys, 1000,
                                                         method="get", args=()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{root} {sys.argv[2]}: best {max(rates):,.0f} activations/s, "
          f"rounds {[round(x) for x in rates]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
