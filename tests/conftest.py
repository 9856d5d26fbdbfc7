"""Shared fixtures: every test owns its node, its data directory and its processes.

Layout: ``unit/`` runs in-process (no node), ``node/`` against real node processes,
``browser/`` in chromium (its own conftest adds the browser fixtures), ``actors/`` holds
the test actor modules (a test node's ``python_path``: ``helpers.ACTORS_DIR``).

pytest imports test modules by their file name (the default "prepend" import mode), so
every file name under ``tests/`` is unique, and shared code is imported from
:mod:`helpers` or :mod:`actorsys.testing`, never from a conftest.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from helpers import make_config

import actorsys
from actorsys.testing.processes import describe, leftover_processes


@pytest.fixture
def config(tmp_path) -> Callable[..., dict[str, Any]]:
    """``config(**node_overrides)``: a config dict whose data dir lives in tmp_path."""
    return lambda **node: make_config(str(tmp_path / "data"), **node)


@pytest.fixture
def node(config) -> Iterator[actorsys.Node]:
    """A running two-worker node, stopped at the end of the test."""
    with actorsys.Node(config()) as n:
        yield n


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every process a test starts must be gone when it ends."""
    yield
    left = leftover_processes(timeout=10)
    assert not left, f"processes left behind by the test: {describe(left)}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report on the test item (``item.rep_setup``, ``rep_call``): a fixture
    can see at teardown whether the test failed and show what the processes logged."""
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
