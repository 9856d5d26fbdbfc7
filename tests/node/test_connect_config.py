"""``actorsys.connect(config=NODE.toml)`` and ``connect_async(config=...)`` against a node
that ``actorsys run NODE.toml`` runs in a subprocess, its config naming no endpoint: the
client finds the endpoint the node recorded in its data directory, as ``actorsys ask -c``
does, and a node that is not running is a ``NodeUnavailable`` at once, naming the
command that starts it."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

import actorsys
from helpers import ACTORS_DIR, actorsys_run

pytestmark = pytest.mark.timeout(120)


def not_running(config: str) -> str:
    """The error ``connect(config=config)`` raises, checked to come at once."""
    started = time.monotonic()
    with pytest.raises(actorsys.NodeUnavailable) as info:
        actorsys.connect(config=config, connect_timeout=30.0)
    assert time.monotonic() - started < 5, "expected the stopped node named at once, not at a timeout"
    with pytest.raises(actorsys.NodeUnavailable, match="is not running"):
        actorsys.connect_async(config=config)
    return str(info.value)


def test_connect_with_a_config_finds_the_node_it_runs(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndata_dir = "data"\nworkers = 1\npython_path = ["{ACTORS_DIR}"]\n'
                      f'shutdown_timeout = 3.0\n\n[actors]\nCounter = "actors:Counter"\n')
    message = not_running(str(config))
    assert "not running: it has recorded no endpoint in" in message and \
        f"'actorsys run {config}'" in message, f"expected the command that starts it: {message}"
    with pytest.raises(TypeError, match="one of them"):
        actorsys.connect("ipc:///x.sock", config=str(config))
    with pytest.raises(TypeError, match="neither"):
        actorsys.connect_async()
    with pytest.raises(actorsys.ConfigError, match="missing.toml: cannot read config file"):
        actorsys.connect(config=str(tmp_path / "missing.toml"))

    log_path = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "ACTORSYS_CONFIG"}
    with actorsys_run(config, log_path, env=env):
        with actorsys.connect(config=config, connect_timeout=30.0) as c:    # a Path works too
            assert c.ref("Counter", "c").ask("add", 2) == 2
            assert c.status()["endpoint"] == (tmp_path / "data" / "endpoint").read_text().strip()

        async def main() -> int:
            async with actorsys.connect_async(config=str(config), connect_timeout=30.0) as ac:
                n: int = await ac.ref("Counter", "c").ask("add", 3)
                return n

        assert asyncio.run(main()) == 5, "expected the asyncio client on the same node"
    message = not_running(str(config))
    assert "is not running (its socket" in message and "is gone" in message, message
