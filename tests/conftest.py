"""Shared fixtures: every test owns its node, its data directory and its processes."""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator

import psutil
import pytest

import actorsys
from browser import browser, browser_context  # noqa: F401  (real-browser fixtures)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ACTORS = {
    "Misbehaving": "actors:Misbehaving",
    "Shelf": "actors:Shelf",
    "Counter": "actors:Counter",
    "Napper": "actors:Napper",
    "Log": "actors:Log",
    "Recorder": "actors:Recorder",
    "Relay": "actors:Relay",
    "Gate": "actors:Gate",
    "StoreCounter": "actors:StoreCounter",
    "RelayPlus": "actors:RelayPlus",
    "AsyncLog": "actors:AsyncLog",
    "Sink": "actors:Sink",
}


def make_config(data_dir: str, **node: Any) -> dict[str, Any]:
    """A node config dict for the test actors; ``node`` overrides ``[node]`` keys."""
    settings = {"data_dir": data_dir, "workers": 2, "python_path": [TESTS_DIR],
                "shutdown_timeout": 5.0, "start_timeout": 30.0}
    settings.update(node)
    return {"node": settings, "actors": dict(ACTORS)}


@pytest.fixture
def config(tmp_path) -> Callable[..., dict[str, Any]]:
    """``config(**node_overrides)``: a config dict whose data dir lives in tmp_path."""
    return lambda **node: make_config(str(tmp_path / "data"), **node)


@pytest.fixture
def node(config) -> Iterator[actorsys.Node]:
    """A running two-worker node, stopped at the end of the test."""
    with actorsys.Node(config()) as n:
        yield n


def _descendants() -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process().children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        return []


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every process a test starts must be gone when it ends."""
    yield
    left = psutil.wait_procs(_descendants(), timeout=10)[1]
    for p in left:
        p.kill()
    assert not left, f"processes left behind by the test: {[(p.pid, p.cmdline()) for p in left]}"


def worker_pids(node: actorsys.Node) -> dict[int, int]:
    """slot -> pid of every live worker."""
    return {p["slot"]: p["pid"] for p in node.status()["processes"] if p["role"] == "worker" and p["up"]}


def role_pid(node: actorsys.Node, role: str) -> int:
    return next(p["pid"] for p in node.status()["processes"] if p["role"] == role)


sys.path.insert(0, TESTS_DIR)
