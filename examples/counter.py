"""A counter actor, asked from two separate processes.

Run it with ``scripts/demo``. It starts an embedded node (router and two workers as
real processes), then two client processes each add 1 to the same counter 500 times.
The counter ends at exactly 1000: one activation, turns never overlap, nothing lost.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import actorsys


class Counter(actorsys.Actor):
    """A durable counter."""

    def on_start(self) -> None:
        self.state.setdefault("n", 0)

    def add(self, by: int = 1) -> int:
        n: int = self.state["n"] + by      # (self.state holds Any: say what it is)
        self.state["n"] = n
        return n

    def get(self) -> int:
        n: int = self.state["n"]
        return n

    async def add_to_other(self, key: str) -> int:
        """Add 1 to the counter ``key``: an actor asking another."""
        n: int = await self.ref("Counter", key).ask("add", 1)
        return n


def client_process(endpoint: str, times: int) -> None:
    with actorsys.connect(endpoint) as client:
        counter = client.proxy(Counter, "demo")    # typed: add(by: int = 1) -> int
        for _ in range(times):
            counter.add(1)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="actorsys-demo-") as tmp:
        config = {
            "node": {"data_dir": os.path.join(tmp, "data"), "workers": 2, "python_path": [here]},
            "actors": {"Counter": "counter:Counter"},
        }
        with actorsys.Node(config) as node:
            print(f"node up at {node.endpoint}: "
                  f"{[(p['role'], p['pid']) for p in node.status()['processes']]}")
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, *sys.path]))
            procs = [subprocess.Popen([sys.executable, __file__, "--client", node.endpoint, "500"], env=env)
                     for _ in range(2)]
            for p in procs:
                if p.wait(120) != 0:
                    raise SystemExit("a client process failed")
            total = node.client().proxy(Counter, "demo").get()
            print(f"two processes each added 1 five hundred times: counter = {total}")
            assert total == 1000, total


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        client_process(sys.argv[2], int(sys.argv[3]))
    else:
        main()
