"""A client process loads only the client: ``import actorsys`` plus ``connect(...)`` (and
the asyncio client, and typed proxies) in a fresh interpreter, against a real node, load
neither LevelDB, aiohttp, the worker, the gateway nor mypy (the proxies' plugin is mypy's
alone), and leave the process's logging alone."""
from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("plyvel", "aiohttp", "actorsys.storage", "actorsys.runtime", "actorsys.gateway",
             "supervisors", "mypy", "actorsys.mypy")

CLIENT = """
import asyncio, json, logging, sys
import actorsys

class Counter(actorsys.Actor):      # (for its handlers' names: never run here)
    def add(self, by: int = 1) -> int: ...

with actorsys.connect(sys.argv[1]) as c:
    answers = [c.ref("Counter", "imports").ask("add", 2), c.status()["processes"][0]["role"],
               c.list_actors("Counter")]

async def main():
    async with actorsys.connect_async(sys.argv[1]) as ac:
        await ac.ref("Counter", "imports").ask("add", 1)
        return await ac.proxy(Counter, "imports").add(by=1)

answers.append(asyncio.run(main()))
print(json.dumps({
    "answers": answers,
    "modules": sorted(sys.modules),
    "handlers": {name: len(logging.getLogger(name).handlers) for name in ("", "actorsys")},
    "levels": [logging.getLogger("actorsys").level, logging.getLogger().level],
}))
"""


def test_a_client_process_loads_only_the_client_and_leaves_logging_alone(node):
    r = subprocess.run([sys.executable, "-c", CLIENT, node.endpoint], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"the client process failed:\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["answers"][0] == 2 and out["answers"][1] == "supervisor" and out["answers"][3] == 4, \
        f"expected the blocking and the asyncio client (a ref, a proxy) answered: {out['answers']}"
    loaded = [m for m in out["modules"]
              if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not loaded, f"a client process loaded {loaded}"
    assert "actorsys.client.transport" in out["modules"], "the client runs on the transport"
    assert out["handlers"] == {"": 0, "actorsys": 0}, \
        f"a library adds no logging handler: {out['handlers']}"
    assert out["levels"] == [0, 30], f"nor sets a level: {out['levels']}"
