"""The ``actorsys`` command line against a node it runs in a subprocess."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil
import pytest

import actorsys
from helpers import ACTORS_DIR, SHARED, actorsys_run

ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def cli(*args: str, timeout: float = 30.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """``actorsys ARGS`` with this environment (minus ACTORSYS_CONFIG) and ``env`` added."""
    environ = {k: v for k, v in os.environ.items() if k != "ACTORSYS_CONFIG"}
    return subprocess.run([ACTORSYS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**environ, **(env or {})})


@pytest.fixture
def sock_dir():
    """A short private directory for ipc sockets (unix socket paths are limited to ~100 chars)."""
    d = tempfile.mkdtemp(prefix="as-cli-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class RunningNode:
    def __init__(self, proc: subprocess.Popen, endpoint: str, log_path: str) -> None:
        self.proc, self.endpoint, self.log_path = proc, endpoint, log_path

    @property
    def pid(self) -> int:
        """The node supervisor's (``actorsys run`` is it)."""
        return self.proc.pid

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()


def counter_config(where, endpoint: str | None, workers: int):
    """``where/node.toml``: a node at ``endpoint`` (None: the config names none) serving
    the test actors' Counter and Shelf."""
    config = where / "node.toml"
    config.write_text(f"""\
[node]
data_dir = "data"
workers = {workers}
{'' if endpoint is None else f'endpoint = "{endpoint}"'}
python_path = ["{ACTORS_DIR}"]
shutdown_timeout = 3.0

[actors]
Counter = "actors:Counter"
Shelf = "actors:Shelf"
""")
    return config


@contextmanager
def running(where: Path) -> Iterator[RunningNode]:
    """``actorsys run CONFIG`` in a subprocess, ready to serve; killed if still running at the end."""
    sock_dir = tempfile.mkdtemp(prefix="as-cli-")
    endpoint = f"ipc://{sock_dir}/node.sock"
    config = counter_config(where, endpoint, workers=2)
    log_path = str(where / "run.log")
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
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cli_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One ``actorsys run`` node for the module's tests that leave it running (each with
    actors of its own: the ``own`` fixture); the per-test check spares its processes."""
    with running(tmp_path_factory.mktemp("cli")) as node:
        SHARED.append(node)
        try:
            yield node
        finally:
            SHARED.remove(node)


@pytest.fixture
def own_cli_node(tmp_path) -> Iterator[RunningNode]:
    """An ``actorsys run`` node of the test's own (it stops it)."""
    with running(tmp_path) as node:
        yield node


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


def test_ask_prints_the_result_as_json(cli_node, own):
    k = own("k")
    r = cli("ask", "--endpoint", cli_node.endpoint, "Counter", k, "add", "5")
    assert (r.returncode, r.stdout.strip()) == (0, "5"), f"expected 5 printed: {r}"
    r = cli("ask", "-e", cli_node.endpoint, "Counter", k, "add", "2")
    assert r.stdout.strip() == "7", f"expected the state kept between asks: {r}"
    r = cli("ask", "-e", cli_node.endpoint, "Counter", k, "whoami")
    assert json.loads(r.stdout) == ["Counter", k]


def test_tell_is_delivered_before_the_command_exits(cli_node, own):
    for _ in range(4):
        r = cli("tell", "-e", cli_node.endpoint, "Counter", own("t"), "add", "3")
        assert (r.returncode, r.stdout) == (0, ""), f"expected a silent success: {r}"
    r = cli("ask", "-e", cli_node.endpoint, "Counter", own("t"), "get")
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
    r = cli("status", "-e", f"ipc://{sock_dir}/nobody.sock", "--connect-timeout", "0.5")
    assert r.returncode == 1, f"expected exit status 1: {r}"
    assert "NodeUnavailable" in r.stderr and "did not answer" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_ask_kw_passes_keyword_arguments_as_http_does(cli_node, own):
    """``--kw '{"by": 10}'`` is ``add(by=10)`` (an HTTP JSON object body's meaning); a JSON
    object after the method stays one positional argument."""
    ep, kw = cli_node.endpoint, own("kw")
    r = cli("ask", "-e", ep, "Counter", kw, "add", "--kw", '{"by": 10}')
    assert (r.returncode, r.stdout.strip()) == (0, "10"), f"expected add(by=10) -> 10: {r}"
    r = cli("tell", "-e", ep, "Counter", kw, "add", "--kw", '{"by": 5}')
    assert r.returncode == 0, r
    assert cli("ask", "-e", ep, "Counter", kw, "get").stdout.strip() == "15"
    r = cli("ask", "-e", ep, "Counter", kw, "add", '{"by": 10}')
    assert r.returncode == 1 and "TypeError" in r.stderr, \
        f"expected the positional dict to reach add as `by` (and fail to add): {r}"
    for bad, fragment in (("[10]", "takes a JSON object"), ("{by: 10}", "is not JSON")):
        r = cli("ask", "-e", ep, "Counter", kw, "add", "--kw", bad)
        assert r.returncode != 0 and fragment in r.stderr and "Traceback" not in r.stderr, r
    # argument names the client's own ask uses for the address are the actor's here
    r = cli("ask", "-e", ep, "Shelf", kw, "put", "--kw", '{"key": "k", "value": 7}')
    assert r.returncode == 0, f"expected put(key='k', value=7), not a clash with the client's key: {r}"
    r = cli("ask", "-e", ep, "Shelf", kw, "get", "--kw", '{"key": "k"}')
    assert r.stdout.strip() == "7", r
    for name in ("timeout", "retry"):
        r = cli("ask", "-e", ep, "Counter", kw, "add", "--kw", f'{{"{name}": 1}}')
        assert r.returncode != 0 and f"cannot pass '{name}'" in r.stderr \
            and "Traceback" not in r.stderr, r


def test_a_short_timeout_blames_the_ask_not_the_router(own_cli_node):
    """``--timeout`` is the request's deadline; the connect has its own
    (``--connect-timeout``), so a deadline that passes names what did not answer (it
    used to be the connect's too: 'router ... did not answer within 0.001 s')."""
    ep = own_cli_node.endpoint
    r = cli("ask", "-e", ep, "--timeout", "0.001", "Counter", "slow", "sleep", "5")
    assert r.returncode == 1, r
    assert "AskTimeout: no answer from Counter/slow.sleep within 0.001 s" in r.stderr, r.stderr
    assert "router" not in r.stderr, f"expected the ask blamed, not the router: {r.stderr}"
    # Counter/slow's worker sleeps 5 s: requests that need it time out, each named
    for cmd, what in ((["history", "Counter", "slow"], "Counter/slow (history)"),
                      (["ls", "Counter"], "the workers listing Counter")):
        r = cli(cmd[0], "-e", ep, "--timeout", "0.2", *cmd[1:])
        assert r.returncode == 1, r
        assert f"AskTimeout: no answer from {what} within 0.2 s" in r.stderr, r.stderr


def test_config_finds_the_node_without_an_endpoint(tmp_path):
    """``--config NODE.toml`` (or ``$ACTORSYS_CONFIG``) on a node whose config names no
    endpoint: the running node recorded its private ipc endpoint in ``data_dir/endpoint``.
    ``-e`` wins; after the node stops, the error says it is not running, at once."""
    config = counter_config(tmp_path, None, workers=1)
    r = cli("ask", "Counter", "c", "get")
    assert r.returncode != 0 and "--endpoint" in r.stderr and "--config" in r.stderr \
        and "ACTORSYS_CONFIG" in r.stderr, f"expected a clear error naming both: {r}"
    r = cli("ask", "--config", str(config), "Counter", "c", "get")
    assert r.returncode != 0 and "actorsys run" in r.stderr, f"expected 'not started': {r}"
    log_path = tmp_path / "run.log"
    with actorsys_run(config, log_path) as (_proc, endpoint):
        assert f"node endpoint {endpoint}" in log_path.read_text()
        r = cli("ask", "--config", str(config), "Counter", "c", "add", "2")
        assert (r.returncode, r.stdout.strip()) == (0, "2"), r
        r = cli("ask", "Counter", "c", "add", "--kw", '{"by": 3}', env={"ACTORSYS_CONFIG": str(config)})
        assert (r.returncode, r.stdout.strip()) == (0, "5"), r
        r = cli("status", "--json", env={"ACTORSYS_CONFIG": str(config)})
        assert r.returncode == 0 and json.loads(r.stdout)["endpoint"] == endpoint, r
        for cmd in (["ls", "Counter"], ["history", "Counter", "c"], ["tell", "Counter", "c", "add"]):
            r = cli(cmd[0], "-c", str(config), *cmd[1:])
            assert r.returncode == 0, f"expected {cmd[0]} to find the node: {r}"
        r = cli("ask", "-e", "ipc:///nonexistent/x.sock", "--connect-timeout", "0.2",
                "Counter", "c", "get", env={"ACTORSYS_CONFIG": str(config)})
        assert r.returncode == 1 and "NodeUnavailable" in r.stderr, f"expected -e to win: {r}"
    started = time.monotonic()
    r = cli("ask", "-c", str(config), "Counter", "c", "get")
    assert r.returncode != 0 and "is not running" in r.stderr and "Traceback" not in r.stderr, r
    assert time.monotonic() - started < 5, "expected the stopped node named at once, not at a timeout"


def test_run_with_a_bad_config_fails_with_a_message(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[node]\nworkers = "two"\n')
    r = cli("run", str(config))
    assert r.returncode != 0, f"expected a non-zero exit status: {r}"
    assert f"{config}, line 2, key 'node.workers'" in r.stderr, f"expected file, line and key: {r.stderr}"
    assert "Traceback" not in r.stderr, f"expected a message, not a traceback: {r.stderr}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_stops_cleanly_on_signal(own_cli_node, sig):
    cli_node = own_cli_node
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


def test_run_refuses_an_unknown_log_level(tmp_path):
    r = cli("run", "--log-level", "loud", str(tmp_path / "node.toml"))
    assert r.returncode == 2 and "invalid choice: 'loud'" in r.stderr, r


_TEXT_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                          r"(supervisor|router|tree|gateway|worker\[(\d+)\]) pid=(\d+) "
                          r"(actorsys|supervisors)(\.\w+)*: ")


@pytest.mark.parametrize("json_logs", [True, False], ids=["json", "text"])
def test_every_log_line_of_a_node_names_its_process(tmp_path, sock_dir, json_logs):
    """``actorsys run --log-json``: every line a node writes to stderr is one JSON object
    with role, pid, level and logger; by default every record names role, slot and pid.
    Seen here: the supervisor's, the gateway's and a worker's (an alarm it drops)."""
    config = tmp_path / "node.toml"
    config.write_text(f"""\
[node]
data_dir = "data"
workers = 2
endpoint = "ipc://{sock_dir}/node.sock"
python_path = ["{ACTORS_DIR}"]
shutdown_timeout = 3.0
alarm_retry = {{ initial = 0.05, max = 0.05, attempts = 1 }}

[actors]
Alarmist = "alarm_actors:Alarmist"

[gateway]
listen = "127.0.0.1:0"
""")
    err_path = tmp_path / "stderr.log"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([ACTORSYS, "run", *(["--log-json"] if json_logs else []),
                                 "--log-level", "info", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"actorsys run exited early:\n{err_path.read_text()}"
            try:
                with actorsys.connect(f"ipc://{sock_dir}/node.sock", connect_timeout=1.0) as c:
                    c.ping_workers(timeout=5.0)
                    c.ask("Alarmist", "a", "set", 0.05, "doomed",
                          {"file": str(tmp_path / "attempts"), "fail_until": 1000})
                break
            except actorsys.NodeUnavailable:
                assert time.monotonic() < deadline, f"node not ready within 30 s:\n{err_path.read_text()}"
        while not ("dropped after" in err_path.read_text() and "serving http://" in err_path.read_text()):
            assert time.monotonic() < deadline, f"no worker or gateway record:\n{err_path.read_text()}"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    text = err_path.read_text()
    assert proc.returncode == 0, f"status {proc.returncode}:\n{text}"
    roles = set()
    if json_logs:
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                raise AssertionError(f"a stderr line that is not JSON: {line!r}\n{text}") from None
            assert isinstance(rec, dict) and {"role", "pid", "level", "logger", "message"} <= set(rec), rec
            assert rec["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), rec
            assert rec["logger"].split(".")[0] in ("actorsys", "supervisors") and type(rec["pid"]) is int, rec
            slot = re.fullmatch(r"worker\[(\d+)\]", rec["role"])
            assert rec["slot"] == (int(slot.group(1)) if slot else None), f"slot and role disagree: {rec}"
            roles.add("worker" if slot else rec["role"])
            if rec["role"] == "supervisor":
                assert rec["pid"] == proc.pid, rec
    else:
        seen_record = False
        for line in text.splitlines():
            m = _TEXT_RECORD.match(line)
            if m is None:      # a record's continuation (a traceback) is all that may follow one
                assert seen_record and not line[:1].isdigit(), f"a line naming no process: {line!r}\n{text}"
                continue
            seen_record = True
            roles.add("worker" if m.group(3) is not None else m.group(2))
            if m.group(2) == "supervisor":
                assert int(m.group(4)) == proc.pid, line
    assert {"supervisor", "gateway", "worker"} <= roles, f"records of {roles} only:\n{text}"


def test_an_embedded_node_logs_as_its_environment_says(tmp_path, monkeypatch, capfd):
    """actorsys.Node passes ACTORSYS_LOG_JSON / ACTORSYS_LOG_LEVEL on to the node's
    processes (seen in the gateway's record that it serves), and leaves this process's
    own logging alone."""
    import logging

    monkeypatch.setenv("ACTORSYS_LOG_JSON", "1")
    monkeypatch.setenv("ACTORSYS_LOG_LEVEL", "INFO")
    handlers = list(logging.getLogger("actorsys").handlers)
    cfg = {"node": {"data_dir": str(tmp_path / "data"), "workers": 1, "python_path": [ACTORS_DIR],
                    "start_timeout": 30.0},
           "actors": {"Counter": "actors:Counter"}, "gateway": {"listen": "127.0.0.1:0"}}
    with actorsys.Node(cfg) as node:
        url = node.gateway_url
    serving = [line for line in capfd.readouterr().err.splitlines() if "serving http://" in line]
    assert len(serving) == 1, f"expected the gateway's one 'serving' record: {serving}"
    rec = json.loads(serving[0])
    assert (rec["role"], rec["level"], rec["logger"], rec["message"]) == (
        "gateway", "INFO", "actorsys.gateway", f"serving {url}"), rec
    assert logging.getLogger("actorsys").handlers == handlers, "this process's logging is untouched"


def _decoy_supervisors(where: str, marker: str) -> None:
    """A user's module and package named ``supervisors`` that say so when imported."""
    trap = f"open({marker!r}, 'a').write(__name__ + '\\n')\nraise SystemExit('decoy imported')\n"
    with open(os.path.join(where, "supervisors.py"), "w") as f:
        f.write(trap)
    os.makedirs(os.path.join(where, "pkg", "supervisors"))
    for name in ("__init__.py", "node.py"):
        with open(os.path.join(where, "pkg", "supervisors", name), "w") as f:
            f.write(trap)


def test_a_user_module_named_supervisors_does_not_stand_in_for_the_node_supervisor(tmp_path, sock_dir):
    """`actorsys run` and an embedded Node start ``python -P -m supervisors.node`` with the
    installation first on the path: a ``supervisors.py`` beside the config (whose folder is
    on python_path by default) or a ``supervisors/`` package in the working directory is
    never imported in its place (the run used to fail with 'Error while finding module
    specification for supervisors.node')."""
    marker = str(tmp_path / "decoy-imported")
    _decoy_supervisors(str(tmp_path), marker)
    endpoint = f"ipc://{sock_dir}/node.sock"
    counter_config(tmp_path, endpoint, workers=1)
    cwd = str(tmp_path / "pkg")
    proc = subprocess.Popen([ACTORSYS, "run", str(tmp_path / "node.toml")], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"actorsys run exited early:\n{proc.stdout.read()}"
            try:
                with actorsys.connect(endpoint, connect_timeout=1.0) as c:
                    assert c.ask("Counter", "k", "add", 2) == 2
                break
            except actorsys.NodeUnavailable:
                assert time.monotonic() < deadline, "node not ready within 30 s"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    embedded = (f"import actorsys\n"
                f"with actorsys.Node({str(tmp_path / 'node.toml')!r}) as n:\n"
                f"    print(n.client().ask('Counter', 'k', 'add', 3))\n")
    r = subprocess.run([sys.executable, "-c", embedded], cwd=cwd, capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout.strip()) == (0, "5"), r
    assert not os.path.exists(marker), f"a decoy was imported: {open(marker).read()}"
