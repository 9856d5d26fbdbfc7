"""``actorsys sup`` and ``actorsys run`` with the shipped supervision example."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

import actorsys
from helpers import ROOT, SHARED
from test_cli import ACTORSYS, cli, gone, sock_dir  # noqa: F401  (sock_dir is a fixture)

EXAMPLE = os.path.join(ROOT, "examples", "supervision")


@contextmanager
def running_example(where: Path, sockets: str) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """``actorsys run`` of examples/supervision/node.toml (copied into ``where``, with a
    private endpoint in the directory ``sockets``), in its own process group, as a terminal would start
    it; killed if still running at the end."""
    for name in ("node.toml", "app.py"):
        shutil.copy(os.path.join(EXAMPLE, name), where)
    config = where / "node.toml"
    endpoint = f"ipc://{sockets}/node.sock"
    config.write_text(config.read_text().replace(
        "[node]\n", f'[node]\nendpoint = "{endpoint}"\n', 1))
    log_path = where / "run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([ACTORSYS, "run", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"actorsys run exited early:\n{log_path.read_text()}"
            r = cli("sup", "-e", endpoint, "root", "count_children", "--connect-timeout", "1")
            if r.returncode == 0 and json.loads(r.stdout)["active"] == 3:
                break
            assert time.monotonic() < deadline, f"tree not ready within 30 s:\n{log_path.read_text()}"
            time.sleep(0.05)
        yield proc, endpoint, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def example_node(tmp_path, sock_dir):  # noqa: F811
    """The example's node for a test of its own (it changes the tree or stops the node)."""
    with running_example(tmp_path, sock_dir) as running:
        yield running


@pytest.fixture(scope="module")
def shared_example_node(tmp_path_factory: pytest.TempPathFactory):
    """The example's node for the module's tests that change nothing (refused commands);
    the per-test check spares its processes."""
    sockets = tempfile.mkdtemp(prefix="as-cli-")
    try:
        with running_example(tmp_path_factory.mktemp("sup"), sockets) as running:
            SHARED.append(running[0])
            try:
                yield running
            finally:
                SHARED.remove(running[0])
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def test_sup_commands_drive_the_runtime_api(example_node):
    _proc, ep, _log = example_node
    r = cli("sup", "-e", ep, "root", "which_children")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert [(row[0], row[-2]) for row in rows] == [("db", "running"), ("cache", "running"),
                                                   ("jobs", "running")], r.stdout
    r = cli("sup", "-e", ep, "jobs", "start_child", '{"key": "job-1", "args": [2]}')
    assert (r.returncode, r.stdout.strip()) == (0, '"job-1"'), r
    r = cli("sup", "-e", ep, "root", "terminate_child", "cache")
    assert r.returncode == 0, r.stderr
    children = json.loads(cli("sup", "-e", ep, "root", "which_children", "--json").stdout)
    assert {c["id"]: c["status"] for c in children}["cache"] == "stopped", children
    r = cli("ask", "-e", ep, "Cache", "main", "size")
    assert r.returncode == 1 and "ActorStopped" in r.stderr, f"expected ActorStopped: {r}"
    assert cli("sup", "-e", ep, "root", "restart_child", "cache").returncode == 0
    assert cli("ask", "-e", ep, "Cache", "main", "size").stdout.strip() == "0"


@pytest.mark.parametrize("args,fragment", [
    (["root", "terminate_child", "nope"], "ChildNotFound"),
    (["root", "restart_child", "db"], "ChildRunning"),
    (["ghost", "which_children"], "SupervisorNotFound"),
    (["jobs", "restart_child", "x"], "SupervisorError"),
    (["root", "start_child", '{"id": "x", "actor": "Nope", "key": "k"}'], "unknown actor type"),
    (["root", "start_child"], "needs an argument"),
])
def test_sup_errors_print_a_message_and_exit_non_zero(shared_example_node, args, fragment):
    _proc, ep, _log = shared_example_node
    r = cli("sup", "-e", ep, *args)
    assert r.returncode != 0, f"expected a non-zero exit status: {r}"
    assert fragment in r.stderr, f"expected {fragment!r} in stderr: {r.stderr!r}"
    assert "Traceback" not in r.stderr


def test_ctrl_c_stops_the_tree_before_the_workers(example_node):
    """Ctrl-C signals the whole process group; only the supervisor may act on it, so the
    tree still stops its children in order before the workers go."""
    proc, ep, log_path = example_node
    with actorsys.connect(ep) as c:
        pids = [p["pid"] for p in c.status()["processes"]]
    assert len(pids) == 5, "expected supervisor, router, two workers and the tree"
    os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(20)
    log = log_path.read_text()
    assert code == 0, f"expected exit status 0, got {code}:\n{log}"
    assert "received SIGINT; stopping" in log, log
    assert "supervision tree stopped its children in order" in log, \
        f"expected the tree to stop its children itself (not be killed by SIGINT):\n{log}"
    assert "died" not in log and "went away" not in log, \
        f"expected the tree to stop its children before any worker stopped:\n{log}"
    assert all(gone(p) for p in pids), "expected every process of the node to be gone"
