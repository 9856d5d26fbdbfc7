"""The ``actorsys`` command line against a node it runs in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

import actorsys
from helpers import ACTORS_DIR

ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([ACTORSYS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def sock_dir():
    """A short private directory for ipc sockets (unix socket paths are limited to ~100 chars)."""
    d = tempfile.mkdtemp(prefix="as-cli-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class RunningNode:
    def __init__(self, proc: subprocess.Popen, endpoint: str, log_path: str) -> None:
        self.proc, self.endpoint, self.log_path = proc, endpoint, log_path

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()


@pytest.fixture
def cli_node(tmp_path, sock_dir):
    """``actorsys run CONFIG`` in a subprocess, ready to serve; killed if a test leaves it running."""
    endpoint = f"ipc://{sock_dir}/node.sock"
    config = tmp_path / "node.toml"
    config.write_text(f"""\
[node]
data_dir = "data"
workers = 2
endpoint = "{endpoint}"
python_path = ["{ACTORS_DIR}"]
shutdown_timeout = 3.0

[actors]
Counter = "actors:Counter"
""")
    log_path = str(tmp_path / "run.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([ACTORSYS, "run", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    node = RunningNode(proc, endpoint, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"actorsys run exited early ({proc.returncode}):\n{node.log()}"
            try:
                with actorsys.connect(endpoint, connect_timeout=1.0) as c:
                    c.ping_workers(timeout=5.0)
                break
            except actorsys.NodeUnavailable:
                assert time.monotonic() < deadline, f"node not ready within 30 s:\n{node.log()}"
        yield node
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def status_json(endpoint: str) -> dict:
    r = cli("status", "--endpoint", endpoint, "--json")
    assert r.returncode == 0, f"expected `actorsys status --json` to succeed: {r.stderr}"
    return json.loads(r.stdout)


def test_status_json_lists_every_process(cli_node):
    st = status_json(cli_node.endpoint)
    roles = sorted((p["role"], p["slot"]) for p in st["processes"])
    assert roles == [("router", None), ("supervisor", None), ("worker", 0), ("worker", 1)], st
    sup = next(p for p in st["processes"] if p["role"] == "supervisor")
    assert sup["pid"] == cli_node.proc.pid, "expected `actorsys run` itself to be the node supervisor"
    assert all(p["up"] for p in st["processes"]), st
    assert st["endpoint"] == cli_node.endpoint and st["workers"] == 2


def test_status_table_is_readable(cli_node):
    r = cli("status", "-e", cli_node.endpoint)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"endpoint {cli_node.endpoint}"), r.stdout
    assert lines[1].split()[:3] == ["ROLE", "SLOT", "PID"], r.stdout
    assert sorted(line.split()[0] for line in lines[2:]) == ["router", "supervisor", "worker", "worker"]


def test_ask_prints_the_result_as_json(cli_node):
    r = cli("ask", "--endpoint", cli_node.endpoint, "Counter", "k", "add", "5")
    assert (r.returncode, r.stdout.strip()) == (0, "5"), f"expected 5 printed: {r}"
    r = cli("ask", "-e", cli_node.endpoint, "Counter", "k", "add", "2")
    assert r.stdout.strip() == "7", f"expected the state kept between asks: {r}"
    r = cli("ask", "-e", cli_node.endpoint, "Counter", "k", "whoami")
    assert json.loads(r.stdout) == ["Counter", "k"]


def test_tell_is_delivered_before_the_command_exits(cli_node):
    for _ in range(4):
        r = cli("tell", "-e", cli_node.endpoint, "Counter", "t", "add", "3")
        assert (r.returncode, r.stdout) == (0, ""), f"expected a silent success: {r}"
    r = cli("ask", "-e", cli_node.endpoint, "Counter", "t", "get")
    assert r.stdout.strip() == "12", f"expected all 4 tells applied (4 x 3), got {r.stdout.strip()}"


@pytest.mark.parametrize("args,fragment", [
    (["Counter", "k", "nope"], "UnknownMethod"),
    (["Ghost", "k", "get"], "UnknownActorType"),
    (["Counter", "k", "add", '"five"'], "TypeError"),
    (["Counter", "k", "add", "five"], "is not JSON"),
])
def test_ask_errors_print_a_clear_message_and_exit_non_zero(cli_node, args, fragment):
    r = cli("ask", "-e", cli_node.endpoint, *args)
    assert r.returncode != 0, f"expected a non-zero exit status: {r}"
    assert fragment in r.stderr, f"expected {fragment!r} in stderr: {r.stderr!r}"
    assert "Traceback" not in r.stderr, f"expected a message, not a traceback: {r.stderr}"
    assert r.stdout == "", f"expected nothing on stdout: {r.stdout!r}"


def test_status_of_an_unreachable_node_fails_with_a_message(sock_dir):
    r = cli("status", "-e", f"ipc://{sock_dir}/nobody.sock", "--timeout", "0.5")
    assert r.returncode == 1, f"expected exit status 1: {r}"
    assert "NodeUnavailable" in r.stderr and "did not answer" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_run_with_a_bad_config_fails_with_a_message(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[node]\nworkers = "two"\n')
    r = cli("run", str(config))
    assert r.returncode != 0, f"expected a non-zero exit status: {r}"
    assert f"{config}, line 2, key 'node.workers'" in r.stderr, f"expected file, line and key: {r.stderr}"
    assert "Traceback" not in r.stderr, f"expected a message, not a traceback: {r.stderr}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_stops_cleanly_on_signal(cli_node, sig):
    assert cli("ask", "-e", cli_node.endpoint, "Counter", "s", "add", "1").stdout.strip() == "1"
    pids = [p["pid"] for p in status_json(cli_node.endpoint)["processes"]]
    assert len(pids) == 4
    t0 = time.monotonic()
    cli_node.proc.send_signal(sig)
    code = cli_node.proc.wait(15)
    took = time.monotonic() - t0
    assert code == 0, f"expected exit status 0 after {sig.name}, got {code}:\n{cli_node.log()}"
    assert took < 8, f"expected a stop within a few seconds, took {took:.1f} s"
    left = [p for p in pids if not gone(p)]
    assert not left, f"processes left after {sig.name}: {left}"
    assert f"received {sig.name}; stopping" in cli_node.log()
    assert "Traceback" not in cli_node.log(), cli_node.log()
