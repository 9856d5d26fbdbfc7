"""kill -9 of the supervision tree process while clients start and terminate children.

Several threads call ``start_child`` and ``terminate_child`` without pause on a
``one_for_one`` supervisor (permanent dynamic children) and a ``simple_one_for_one`` one;
the tree process is killed with SIGKILL a few times meanwhile. Afterwards:

* the tree is back and the node healthy;
* every child whose ``start_child`` was acknowledged and not terminated is running and
  answers; every child whose ``terminate_child`` was acknowledged is not running;
* no child id or actor address is listed twice;
* every call ended within its timeout, with a result or an ``ActorError`` (the ones in
  flight at a kill: ``WorkerLost``, whose outcome is unknown: such children may be in
  either state).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest

import actorsys
from actorsys.testing.nodes import wait_until
from helpers import ACTORS_DIR

QUICK = {"shutdown": 300}
CALL_TIMEOUT = 5.0
KILL_PAUSES = (1.0, 0.4, 0.0, 0.7, 0.0, 0.0, 0.5)   # seconds before each kill


def _config(tmp_path) -> dict[str, Any]:
    sups = {"dyn": {"max_restarts": 1000, "max_seconds": 10,
                    "children": []},
            "pool": {"strategy": "simple_one_for_one", "max_restarts": 1000, "max_seconds": 10,
                     "children": [{"id": "tpl", "actor": "Worker", "restart": "transient", **QUICK}]}}
    return {"node": {"data_dir": str(tmp_path / "data"), "workers": 2, "python_path": [ACTORS_DIR],
                     "shutdown_timeout": 5.0, "start_timeout": 30.0, "ask_timeout": CALL_TIMEOUT},
            "supervisors": sups,
            "actors": {"Worker": "sup_actors:Worker", "Journal": "sup_actors:Journal"}}


def tree_pid(node: actorsys.Node) -> int | None:
    return next((p["pid"] for p in node.status()["processes"] if p["role"] == "tree" and p["up"]), None)


class Churn:
    """One thread's record: what was acknowledged, what ended unknown, how calls ended."""

    def __init__(self) -> None:
        self.started: set[tuple[str, str]] = set()       # (supervisor, child id) acknowledged
        self.terminated: set[tuple[str, str]] = set()    # acknowledged terminate_child
        self.unknown: set[tuple[str, str]] = set()       # a call failed: either state is right
        self.errors: Counter[str] = Counter()
        self.said: dict[str, str] = {}                   # an error's message, by type
        self.slowest = 0.0
        self.bad: list[str] = []

    def call(self, what: tuple[str, str], fn: Any, *args: Any) -> bool:
        """``fn(*args)``: True if acknowledged; an error is counted and leaves ``what`` unknown."""
        t0 = time.monotonic()
        try:
            fn(*args, timeout=CALL_TIMEOUT)
            return True
        except actorsys.ActorError as exc:
            self.errors[type(exc).__name__] += 1
            self.said[type(exc).__name__] = str(exc)
            self.unknown.add(what)
            return False
        except Exception as exc:       # anything else is a bug: not a clear error
            self.bad.append(f"{what}: {type(exc).__name__}: {exc}")
            self.unknown.add(what)
            return False
        finally:
            self.slowest = max(self.slowest, time.monotonic() - t0)


def churn(client: actorsys.Client, n: int, stop: threading.Event, rec: Churn) -> None:
    dyn, pool = client.supervisor("dyn"), client.supervisor("pool")
    i = 0
    while not stop.is_set():
        i += 1
        cid = f"d{n}-{i}"
        spec = {"id": cid, "actor": "Worker", "key": cid, **QUICK}
        if rec.call(("dyn", cid), dyn.start_child, spec):
            rec.started.add(("dyn", cid))
            if i % 2 and rec.call(("dyn", cid), dyn.terminate_child, cid):
                rec.terminated.add(("dyn", cid))
        key = f"p{n}-{i}"
        if rec.call(("pool", key), pool.start_child, {"key": key}):
            rec.started.add(("pool", key))
            if i % 3 == 0 and rec.call(("pool", key), pool.terminate_child, key):
                rec.terminated.add(("pool", key))


def _back(c: actorsys.Client) -> bool:
    try:
        c.supervisor("dyn").count_children(timeout=2)
        return True
    except actorsys.ActorError:
        return False


@pytest.mark.timeout(120)
def test_kill_9_of_the_tree_under_start_and_terminate_load(tmp_path):
    with actorsys.Node(_config(tmp_path)) as node:
        c = node.client()
        wait_until(lambda: _back(c), "the tree to serve", 15)
        stop = threading.Event()
        recs = [Churn() for _ in range(4)]
        threads = [threading.Thread(target=churn, args=(node.client(), n, stop, rec), daemon=True)
                   for n, rec in enumerate(recs)]
        for t in threads:
            t.start()
        kills = 0
        try:
            for pause in KILL_PAUSES:
                # (0: the moment the new process is up, while it restores its children)
                time.sleep(pause)
                old = wait_until(lambda: tree_pid(node), "the tree process", 15)
                os.kill(old, signal.SIGKILL)
                kills += 1
                wait_until(lambda old=old: tree_pid(node) not in (None, old), "a new tree process", 15)
            wait_until(lambda: _back(c), "the tree to serve again", 15)
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(CALL_TIMEOUT + 5)
        assert not any(t.is_alive() for t in threads), "a caller hung"
        started = set().union(*(r.started for r in recs))
        terminated = set().union(*(r.terminated for r in recs))
        unknown = set().union(*(r.unknown for r in recs))
        errors = sum((r.errors for r in recs), Counter())
        assert not [b for r in recs for b in r.bad], [b for r in recs for b in r.bad]
        assert max(r.slowest for r in recs) < CALL_TIMEOUT + 1.5, "a call outlived its timeout"
        assert len(started) > 50, f"too little load to mean anything: {len(started)} starts"
        assert errors, "no call was in flight at any of the kills: the test tested nothing"
        said = {k: v for r in recs for k, v in r.said.items()}
        assert set(errors) <= {"WorkerLost"}, f"unexpected errors: {said}"
        assert "may or may not have been carried out" in said["WorkerLost"], said

        listed: dict[tuple[str, str], str] = {}
        for name in ("dyn", "pool"):
            children = c.supervisor(name).which_children()
            ids = Counter(ch["id"] for ch in children)
            assert max(ids.values(), default=1) == 1, f"{name}: a child listed twice: {ids.most_common(3)}"
            keys = Counter(ch["key"] for ch in children)
            assert max(keys.values(), default=1) == 1, f"{name}: an address listed twice"
            listed.update({(name, ch["id"]): ch["status"] for ch in children})
        must_run = started - terminated - unknown
        not_running = sorted(k for k in must_run if listed.get(k) != "running")
        assert not not_running, f"acknowledged children not running: {not_running[:10]} " \
                                f"(of {len(must_run)})"
        still = sorted(k for k in terminated - unknown if listed.get(k) == "running")
        assert not still, f"acknowledged terminations running again: {still[:10]}"
        for _sup, cid in sorted(must_run)[:: max(1, len(must_run) // 40)]:
            assert c.ask("Worker", cid, "info", timeout=CALL_TIMEOUT)["starts"] >= 1
        for _sup, cid in sorted(terminated - unknown)[:20]:
            with pytest.raises(actorsys.ActorStopped):
                c.ask("Worker", cid, "info", timeout=CALL_TIMEOUT)
        tree = next(p for p in node.status()["processes"] if p["role"] == "tree")
        assert tree["up"], tree
        assert all(p["up"] for p in node.status()["processes"]), node.status()["processes"]
        print(f"{kills} kills; {len(started)} starts, {len(terminated)} terminations acknowledged; "
              f"{len(unknown)} unknown; errors {dict(errors)}; "
              f"slowest call {max(r.slowest for r in recs):.2f} s")
