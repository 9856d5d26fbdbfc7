"""Worker CPU time per pipelined ask, of one checkout: an A/B that a loaded machine
disturbs less than wall-clock throughput (other processes take the CPU, not the
worker's CPU time per ask).

For an A/B in one session (interleave the runs):

    git worktree add /tmp/base main
    for i in 1 2; do
      PYTHONPATH=/tmp/base .venv/bin/python scripts/bench_ask_cpu.py
      PYTHONPATH=. .venv/bin/python scripts/bench_ask_cpu.py
    done

Each run starts a one-worker node from the checkout on ``PYTHONPATH`` with a counter
actor, keeps 1,000 asks of ``add`` in flight (``N`` asks, default 30,000) over 1,000
actors and then on one actor, three rounds each, and prints the worker's CPU time
(user + system) per ask of the best round and the best wall-clock rate. A second
argument sets the node's ``request_window`` (exactly-once asks; 0: off).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import psutil

import actorsys
from actorsys.testing.bench import actorsys_pipelined
from actorsys.testing.nodes import node_config, worker_pids

COUNTER = '''import actorsys


class Counter(actorsys.Actor):
    def add(self, by=1):
        self.state["n"] = self.state.get("n", 0) + by
        return self.state["n"]
'''


def main(n: int, request_window: int | None) -> None:
    d = tempfile.mkdtemp(prefix="actorsys-askcpu-")
    try:
        with open(os.path.join(d, "askcpu_counter.py"), "w") as f:
            f.write(COUNTER)
        cfg = node_config(os.path.join(d, "data"), {"Counter": "askcpu_counter:Counter"},
                          python_path=[d], workers=1,
                          **({} if request_window is None else {"request_window": request_window}))
        with actorsys.Node(cfg) as node:
            worker = psutil.Process(worker_pids(node)[0])
            print(f"actorsys from {os.path.dirname(os.path.dirname(actorsys.__file__))}")
            for label, keys in (("1,000 actors", [f"k{i % 1000}" for i in range(n)]),
                                ("one actor", ["solo"] * n)):
                actorsys_pipelined(node.endpoint, keys[:5000], 500, type_name="Counter")
                rounds = []
                for _ in range(3):
                    before = sum(worker.cpu_times()[:2])
                    seconds = actorsys_pipelined(node.endpoint, keys, 1000, type_name="Counter")
                    rounds.append(((sum(worker.cpu_times()[:2]) - before) / n * 1e6, n / seconds))
                print(f"{label}: worker CPU {min(r[0] for r in rounds):.1f} us/ask (best of 3), "
                      f"{max(r[1] for r in rounds):,.0f} asks/s (best)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000,
         int(sys.argv[2]) if len(sys.argv) > 2 else None)
