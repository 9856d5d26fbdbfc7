"""Where the test suite's files are, and the config of its test actors.

Node helpers (wait_until, key_on_slot, kill_worker_of, worker_pids, ...) live in
:mod:`actorsys.testing.nodes`, shared with the scripts; this module holds what only the
tests know: the test actor modules live in ``tests/actors/`` (:data:`ACTORS_DIR`), which a
test node gets as its ``python_path``. A test that waits for a line of a node's log reads it
from a :class:`NodeStderr` file.
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import plyvel

import actorsys
from actorsys.testing.nodes import node_config, wait_until, worker_pids
from actorsys.testing.processes import describe, leftover_processes, start_logged

if TYPE_CHECKING:
    import aetcd

    from actorsys.testing.etcd import Etcd

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)
ACTORS_DIR = os.path.join(TESTS_DIR, "actors")
EXAMPLES_DIR = os.path.join(ROOT, "examples")
SCRIPTS_DIR = os.path.join(ROOT, "scripts")

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


#: the ``actorsys`` command of this interpreter's environment
ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")


@contextmanager
def actorsys_run(config: "str | os.PathLike[str]", log_path: Path, *options: str,
                 env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``actorsys run [options] config``, its output in ``log_path``: yields the process and
    its endpoint once the router listens (the data dir's ``endpoint`` file is written when
    the node claims the dir, a moment before the router binds the ipc socket it names).
    At the end of the block it is stopped with SIGTERM and must exit 0; whatever happens,
    it is gone afterwards."""
    recorded = Path(config).parent / "data" / "endpoint"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([ACTORSYS, "run", *options, str(config)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30

        def listening() -> str | None:
            endpoint = recorded.read_text().strip() if recorded.exists() else ""
            return endpoint if endpoint and (not endpoint.startswith("ipc://")
                                             or os.path.exists(endpoint[6:])) else None
        while (endpoint := listening()) is None:
            assert proc.poll() is None, f"actorsys run exited early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no endpoint recorded:\n{log_path.read_text()}"
            time.sleep(0.05)
        yield proc, endpoint
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


#: what a module's tests share now (each with a ``pid``: the root of its processes): the
#: nodes of :func:`module_node`, a module's ``actorsys run`` node or browser. The suite's
#: per-test check for processes left behind spares their processes.
SHARED: list[Any] = []


def module_node(cfg: dict[str, Any], stderr: "NodeStderr | None" = None) -> Iterator[actorsys.Node]:
    """A node for a whole test module (``yield from`` it in a module-scoped fixture):
    started from ``cfg`` (its processes' standard error to ``stderr``'s file, if given),
    and once it has stopped, no process of it may be left.

    A node start costs about 0.7 s and as much CPU, which a module of short tests pays
    once this way instead of once a test. Its tests share it: each uses actors (keys) of
    its own (:func:`own_key`), and a test that needs a node nobody else touched (a fresh
    data directory, counters from zero, a node it stops or breaks) starts its own. Its
    processes are spared by the per-test check (``tests/conftest.py``), which still
    fails a test that leaves a process of its own behind."""
    with (stderr.node(cfg) if stderr is not None else actorsys.Node(cfg)) as n:
        SHARED.append(n)
        try:
            yield n
        finally:
            SHARED.remove(n)
    # (what the module's other fixtures still hold, its browser or etcd, is not the node's)
    left = leftover_processes(timeout=10, spare=shared_pids())
    assert not left, f"processes left behind by the module's node: {describe(left)}"


class _SharedEtcd:
    """A module's etcd as :data:`SHARED` holds it."""

    def __init__(self, etcd: Etcd) -> None:
        self.etcd = etcd

    @property
    def pid(self) -> int | None:
        return self.etcd.proc.pid if self.etcd.proc is not None else None


def module_etcd(workdir: str) -> Iterator[Etcd]:
    """One etcd for a whole test module (``yield from`` it in a module-scoped fixture),
    each test's view of it through :func:`emptied` (a start costs about a second)."""
    from actorsys.testing.etcd import Etcd

    with Etcd(workdir) as etcd:
        shared = _SharedEtcd(etcd)
        SHARED.append(shared)
        try:
            yield etcd
        finally:
            SHARED.remove(shared)


def emptied(etcd: Etcd) -> Iterator[Etcd]:
    """``etcd`` for one test (``yield from`` it in the module's ``etcd`` fixture over
    :func:`module_etcd`): at its end every lease is revoked and every key deleted, so the
    next test finds it as a fresh etcd would be (its revision aside: a count that only
    grows, which no test reads)."""
    yield etcd
    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(etcd.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            out: dict[str, Any] = json.loads(r.read())
            return out
    for lease in post("/v3/lease/leases", {}).get("leases", []):
        post("/v3/lease/revoke", {"ID": lease["ID"]})
    post("/v3/kv/deleterange", {"key": base64.b64encode(b"\0").decode(),
                                "range_end": base64.b64encode(b"\0").decode()})
    left = post("/v3/kv/range", {"key": base64.b64encode(b"\0").decode(),
                                 "range_end": base64.b64encode(b"\0").decode(), "count_only": True})
    assert int(left.get("count", 0)) == 0, f"etcd keys left after the wipe: {left}"


def shared_pids() -> list[int]:
    """The root pids of :data:`SHARED`."""
    return [pid for n in SHARED if (pid := n.pid) is not None]


def own_key(request: Any, suffix: str = "") -> str:
    """A key of the test's own on a shared node: its name (parameters included), plus
    ``suffix``."""
    return f"{request.node.name}{suffix}"


def make_config(data_dir: str, **node: Any) -> dict[str, Any]:
    """A node config dict for the test actors; ``node`` overrides ``[node]`` keys."""
    node.setdefault("python_path", [ACTORS_DIR])
    return node_config(data_dir, ACTORS, **node)


def mover_config(data_dir: str) -> dict[str, Any]:
    """``make_config`` with the handoff tests' Mover actor and a 5 s turn timeout."""
    cfg = make_config(data_dir, turn_timeout=5.0)
    cfg["actors"]["Mover"] = "handoff_actors:Mover"
    return cfg


def etcd_client(etcd: Etcd) -> aetcd.Client:
    """An aetcd client (not yet connected: ``async with``) of a test ``Etcd``."""
    import aetcd     # the cluster extra's: imported only by the tests that use it

    host, port = etcd.url.split("://", 1)[1].rsplit(":", 1)
    return aetcd.Client(host=host, port=int(port), timeout=5)


def slot_dbs(path: str) -> dict[int, dict[bytes, bytes]]:
    """slot -> every key and value of its LevelDB under data directory ``path`` (the
    node must be stopped)."""
    out = {}
    for name in sorted(os.listdir(path)):
        if name.startswith("slot-"):
            db = plyvel.DB(os.path.join(path, name))
            try:
                out[int(name[5:])] = dict(db.iterator())
            finally:
                db.close()
    return out


class NodeStderr:
    """What a node's processes wrote to standard error so far: a file they inherit as
    their fd 2, appended to and never truncated (:meth:`node` starts the node so).

    Not pytest's capfd: its ``readouterr`` reads the capture file and then truncates it,
    so a line a worker writes between the two is lost, and a wait polling it can miss
    the line it waits for (it did, three times in CI, for the dropped-tell warning)."""

    def __init__(self, path: Path) -> None:
        self.path, self.text = path, ""

    def node(self, config: dict[str, Any]) -> actorsys.Node:
        """A node started with its processes' standard error going to this file."""
        node = actorsys.Node(config)
        start_logged(node, str(self.path), fds=(2,))
        return node

    def read(self) -> str:
        self.text = self.path.read_text(errors="replace") if self.path.exists() else ""
        return self.text

    def wait_for(self, pattern: str, what: str, timeout: float = 15.0) -> re.Match[str]:
        try:
            return wait_until(lambda: re.search(pattern, self.read()), what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the node's standard error so far:\n"
                                 f"{self.text[-6000:]}") from None


def writes_through_kills(node: actorsys.Node, keys: list[str], threads: int,
                         kills: list[list[int]], pause: float) -> list[int]:
    """``threads`` blocking writers ``add`` 1 to the ``Counter`` of each of ``keys`` in a
    loop while, ``pause`` seconds apart, each entry of ``kills`` kill -9s those worker
    slots and waits for their restart; then checks that no acknowledged write was lost,
    no counter is above the adds attempted, and nothing but WorkerLost / AskTimeout was
    seen around the kills. Returns the acknowledged count before each kill and at the
    end."""
    c = node.client()
    attempted = {k: 0 for k in keys}
    acked = {k: 0 for k in keys}
    errors: list[str] = []
    stop = threading.Event()

    def writer(mine: list[str]) -> None:
        while not stop.is_set():
            for k in mine:
                attempted[k] += 1
                try:
                    n = c.ask("Counter", k, "add", 1, timeout=5.0)
                except (actorsys.WorkerLost, actorsys.AskTimeout) as exc:
                    errors.append(type(exc).__name__)
                    continue
                except BaseException as exc:     # anything else is a failure of the test
                    errors.append(repr(exc))
                    raise
                acked[k] += 1
                if n < acked[k]:
                    errors.append(f"{k}: add returned {n} after {acked[k]} acknowledged adds")

    def restarted(old: dict[int, int]) -> bool:
        try:
            now = worker_pids(node)
        except actorsys.ActorError:
            return False
        return set(now) == set(range(node.config.workers)) and all(
            now[s] != pid for s, pid in old.items())

    writers = [threading.Thread(target=writer, args=(keys[i::threads],)) for i in range(threads)]
    for t in writers:
        t.start()
    progress = []
    try:
        for victims in kills:
            time.sleep(pause)
            before = worker_pids(node)
            progress.append(sum(acked.values()))
            for s in victims:
                os.kill(before[s], signal.SIGKILL)
            old = {s: before[s] for s in victims}
            wait_until(lambda: restarted(old), f"worker slot(s) {victims} restarted", 15)  # noqa: B023
        time.sleep(pause)
    finally:
        stop.set()
        for t in writers:
            t.join(15)
    progress.append(sum(acked.values()))
    unexpected = [e for e in errors if e not in ("WorkerLost", "AskTimeout")]
    assert not unexpected, f"expected only WorkerLost/AskTimeout around kills, got {unexpected}"
    final = {k: c.ask("Counter", k, "get", timeout=10) for k in keys}
    lost = {k: (final[k], acked[k]) for k in keys if final[k] < acked[k]}
    assert not lost, f"acknowledged writes lost (value, acknowledged): {lost}"
    extra = {k: (final[k], attempted[k]) for k in keys if final[k] > attempted[k]}
    assert not extra, f"counters above the number of attempted adds (value, attempted): {extra}"
    return progress
