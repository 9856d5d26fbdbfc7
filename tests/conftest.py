"""Shared fixtures: every test owns its data directory and its processes, and its node,
or, in a module of short tests that need no pristine node, its own actors (keys: the
``own`` fixture) on a node the module shares (:func:`helpers.module_node`; likewise a
module's etcd, ``actorsys run`` node or chromium, each in :data:`helpers.SHARED`): a
node start costs about 0.7 s and as much CPU, a module pays it once. The per-test check
for processes left behind spares what the module shares, and still fails a test that
leaves a process of its own.

Layout: ``unit/`` runs in-process (no node), ``node/`` against real node processes,
``browser/`` in chromium (its own conftest adds the browser fixtures), ``actors/`` holds
the test actor modules (a test node's ``python_path``: ``helpers.ACTORS_DIR``).

``scripts/test`` runs the suite in two passes, to stay within its 15-minute budget on
two cores: every test not marked ``cluster`` on two pytest-xdist workers (``-n 2 --dist
loadgroup``: :func:`pytest_collection_modifyitems` makes each module one group, so its
module fixtures are set up once, on one worker), then the ``cluster`` tests one at a
time. :func:`pytest_collection_modifyitems` marks ``cluster`` every node-test module that
runs clusters (``tests/node/test_cluster_*``, ``test_replicat*``): with 2 s etcd leases, a
cluster beside the first pass's heavy tests on two cores misses lease renewals (measured:
nodes fenced every few seconds, the replicated module's set-up taking 60 s instead of
16), so the clusters never share the machine with them. On two workers of their own the
cluster tests took 219 s instead of 377, but their timing bounds (a majority answering
within a bound of a cut, an ask within a failover) failed in one CI run of three, each
time another test: they run alone. (:data:`CLUSTER_HEAVY`, the modules that load both
cores themselves, are one xdist group, for a run that gives the cluster pass ``-n 2``.) The
single-node chaos runs (``test_chaos.py``) lease nothing: they run in the first pass,
as one group.

Every node is an interpreter start (its supervisor imports the runtime, then forks its
children), and so are the CLI runs and client processes the tests start: thousands in a
run. :func:`pytest_configure` compiles the project's sources to bytecode first, once, so
each of them reads its modules' ``__pycache__`` instead of compiling them again, even where
``PYTHONDONTWRITEBYTECODE`` is set (CI's image sets it): measured, a node's supervisor
imports in 0.4 s instead of 0.8, and the node tests use a third less CPU.

pytest imports test modules by their file name (the default "prepend" import mode), so
every file name under ``tests/`` is unique, and shared code is imported from
:mod:`helpers` or :mod:`actorsys.testing`, never from a conftest.
"""
from __future__ import annotations

import compileall
import os
from typing import Any, Callable, Iterator

import pytest
from helpers import ROOT, make_config, own_key, shared_pids

import actorsys
from actorsys.testing.processes import describe, leftover_processes

#: the users' pytest plugin (``actorsys_node``, docs/concepts/testing.md): its entry
#: point loads it once actorsys is installed; named here too so that a checkout's suite
#: has it either way (the entry point's name is this module's, so the two never clash)
pytest_plugins = ("actorsys.testing.plugin",)


@pytest.fixture
def config(tmp_path) -> Callable[..., dict[str, Any]]:
    """``config(**node_overrides)``: a config dict whose data dir lives in tmp_path."""
    return lambda **node: make_config(str(tmp_path / "data"), **node)


@pytest.fixture
def node(config) -> Iterator[actorsys.Node]:
    """A running two-worker node, stopped at the end of the test."""
    with actorsys.Node(config()) as n:
        yield n


@pytest.fixture
def own(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``own(name)``: a key of this test's own (its name, then ``name``), for the actors
    it uses on a node its module shares (:func:`helpers.module_node`)."""
    return lambda name: own_key(request, ":" + name)


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every process a test starts must be gone when it ends (a module's shared node,
    :func:`helpers.module_node`, runs on between its tests: its processes are spared)."""
    yield
    left = leftover_processes(timeout=10, spare=shared_pids())
    assert not left, f"processes left behind by the test: {describe(left)}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report on the test item (``item.rep_setup``, ``rep_call``): a fixture
    can see at teardown whether the test failed and show what the processes logged."""
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


#: what node processes, CLI runs and client processes import from the checkout
COMPILED = ("actorsys", "supervisors", "tests", "examples")


def pytest_configure(config: pytest.Config) -> None:
    """Compile :data:`COMPILED` to bytecode (see the module docstring), in the main
    process only (before it starts any xdist worker); a source already compiled is skipped
    by its timestamp, so this costs a few seconds once and a fraction of one after."""
    if hasattr(config, "workerinput"):
        return
    for name in COMPILED:
        ok = compileall.compile_dir(os.path.join(ROOT, name), quiet=1, workers=0)
        assert ok, f"compiling {name}/ to bytecode failed (a syntax error?)"


#: node-test modules that start clusters (2 s etcd leases): marked ``cluster``
CLUSTER_MODULES = ("test_cluster_", "test_replicat")
#: cluster modules that load both cores themselves: one xdist group, run one after the other
CLUSTER_HEAVY = ("test_cluster_chaos.py", "test_cluster_handoff.py", "test_replicated_failover.py")


@pytest.hookimpl(tryfirst=True)     # (before ``-m`` selects by marks)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``cluster`` mark and one xdist group per module, :data:`CLUSTER_HEAVY` one
    group together (see the module docstring)."""
    for item in items:
        path = item.nodeid.split("::")[0]
        name = path.rsplit("/", 1)[-1]
        if path.startswith("tests/node/") and name.startswith(CLUSTER_MODULES):
            item.add_marker(pytest.mark.cluster)
        if item.get_closest_marker("xdist_group") is None:
            heavy = path.startswith("tests/node/") and name in CLUSTER_HEAVY
            item.add_marker(pytest.mark.xdist_group("cluster-heavy" if heavy else path))
