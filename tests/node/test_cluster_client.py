"""The client and CLI side of a cluster against a real single node: the CLUSTER view (a
single node is a cluster of one), LEAVE refused with a clear error, several router
endpoints (a dead one skipped, none answering named), ``actorsys cluster``/``leave`` and
``run --drain`` (a no-op with a note on a single node)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from helpers import ACTORS_DIR, actorsys_run

import actorsys
from actorsys import BadRequest, NodeUnavailable

ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")


def cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ACTORSYS_CONFIG"}
    return subprocess.run([ACTORSYS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


def dead(tmp_path, name: str) -> str:
    return f"ipc://{tmp_path}/{name}.sock"       # nothing listens there


def test_a_single_node_is_a_cluster_of_one(node):
    with actorsys.connect(node.endpoint) as c:
        view = c.cluster()
        assert view == {"name": None, "epoch": c.map.epoch,
                        "nodes": [{"id": None, "endpoint": node.endpoint, "alive": True,
                                   "shards": c.map.shards}]}

    async def main() -> dict:
        async with actorsys.connect_async(node.endpoint) as ac:
            return await ac.cluster()
    assert asyncio.run(main()) == view


def test_leave_is_refused_by_a_single_node_with_a_clear_error(node):
    with actorsys.connect(node.endpoint) as c:
        with pytest.raises(BadRequest, match="^this node is not in a cluster$"):
            c.leave(timeout=10)
        assert c.ask("Counter", "after", "add", 1) == 1, "the node serves on"

    async def main() -> None:
        async with actorsys.connect_async(node.endpoint) as ac:
            with pytest.raises(BadRequest, match="not in a cluster"):
                await ac.leave(timeout=10)
    asyncio.run(main())


def test_a_dead_router_first_in_the_list_is_skipped(node, tmp_path):
    eps = [dead(tmp_path, "gone"), node.endpoint]
    with actorsys.connect(eps, connect_timeout=0.5) as c:
        assert c.endpoint == node.endpoint
        assert c.ask("Counter", "k", "add", 2) == 2
        assert c.cluster()["nodes"][0]["endpoint"] == node.endpoint

    async def main() -> int:
        async with actorsys.connect_async(eps, connect_timeout=0.5) as ac:
            return await ac.ask("Counter", "k", "add", 3)
    assert asyncio.run(main()) == 5


def test_no_router_answering_fails_fast_naming_both(tmp_path):
    eps = [dead(tmp_path, "a"), dead(tmp_path, "b")]
    start = time.monotonic()
    with pytest.raises(NodeUnavailable) as e:
        actorsys.connect(eps, connect_timeout=0.4)
    assert time.monotonic() - start < 4.0
    assert all(f"router at {ep} did not answer within 0.4 s" in str(e.value) for ep in eps), e.value


def test_cli_cluster_prints_a_single_node(node, tmp_path):
    with actorsys.connect(node.endpoint) as c:
        epoch, shards = c.map.epoch, c.map.shards
    r = cli("cluster", "-e", node.endpoint)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"a single node, not in a cluster  epoch {epoch}", r.stdout
    assert lines[1].split() == ["NODE", "ENDPOINT", "ALIVE", "SHARDS", "TO", "MOVE"], r.stdout
    assert lines[2].split() == ["-", node.endpoint, "yes", str(shards), "0"], r.stdout
    r = cli("cluster", "-e", f"{dead(tmp_path, 'x')},{node.endpoint}", "--connect-timeout", "0.5")
    assert r.returncode == 0 and node.endpoint in r.stdout, r
    r = cli("cluster", "--json", "-e", node.endpoint)
    assert r.returncode == 0 and '"name": null' in r.stdout, r


def test_cli_leave_of_a_single_node_says_why_it_cannot(node):
    r = cli("leave", "-e", node.endpoint)
    assert r.returncode == 1, r
    assert r.stderr.strip() == "actorsys: BadRequest: this node is not in a cluster", r.stderr
    r = cli("leave", "-e", f"{node.endpoint},{node.endpoint}")
    assert r.returncode != 0 and "leave asks one node" in r.stderr, r


def test_run_drain_on_a_single_node_is_a_no_op_with_a_note(tmp_path):
    config = tmp_path / "node.toml"
    endpoint = f"ipc://{tmp_path}/n.sock"
    config.write_text(f"""\
[node]
data_dir = "data"
workers = 1
endpoint = "{endpoint}"
python_path = ["{ACTORS_DIR}"]
shutdown_timeout = 3.0

[actors]
Counter = "actors:Counter"
""")
    log_path = tmp_path / "run.log"
    with actorsys_run(config, log_path, "--drain"):
        with actorsys.connect(endpoint, connect_timeout=30) as c:
            assert c.ask("Counter", "d", "add", 1) == 1
    text = log_path.read_text()
    assert "--drain: this node is not in a cluster, it has no shards to hand off (no-op)" in text
    assert "draining" not in text and "Traceback" not in text, text
