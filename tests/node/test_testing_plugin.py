"""The users' pytest plugin against real nodes: ``actorsys_node`` (isolated nodes, stopped
with a check that no process is left), ``run_in_actor``, ``fire_alarms``, ``kill_worker``
and the gateway's WebSocket test client (``actorsys/testing/``).

The functions ``run_in_actor`` runs are this module's: the fixture puts this folder on the
node's ``python_path``, and a worker imports this module by its name (``tests/`` too, for
the ``helpers`` it imports).
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from helpers import ROOT, make_config

import actorsys
from actorsys.errors import BadRequest, NotTesting
from actorsys.testing import (NodeFactory, WsClosed, WsRefused, fire_alarms, kill_worker,
                              run_in_actor, ws_connect)
from actorsys.testing.factory import import_roots
from actorsys.testing.nodes import wait_until, worker_pids
from actorsys.testing.processes import gone

ALARMS = {"Alarmist": "alarm_actors:Alarmist", "AsyncAlarmist": "alarm_actors:AsyncAlarmist"}


def config(**node: Any) -> dict[str, Any]:
    """The test actors (the factory gives each node its own data directory)."""
    cfg = make_config("unused", **node)
    cfg["actors"].update(ALARMS)
    return cfg


# -- functions run inside actors ----------------------------------------------------------
def seed(self: Any, n: int, note: str = "") -> dict[str, Any]:
    self.state["n"] = n
    self.storage.put("note", note)
    return {"type": self.type_name, "key": self.key}


def peek(self: Any) -> dict[str, Any]:
    return {"state": self.state, "note": self.storage.get("note")}


def write_then_fail(self: Any) -> None:
    self.state["n"] = -1
    self.storage.put("note", "half-written")
    raise ValueError("failing on purpose")


async def add_elsewhere(self: Any, key: str, by: int) -> int:
    result: int = await self.ref("Counter", key).ask("add", by)
    return result


def spawn_orphan(self: Any) -> int:
    """A process the worker starts and nobody stops: it outlives the node."""
    return subprocess.Popen(["sleep", "120"], start_new_session=True).pid


# -- the fixture ---------------------------------------------------------------------------
def test_each_node_is_isolated_and_set_up_for_testing(actorsys_node):
    a, b = actorsys_node(config()), actorsys_node(config(), workers=1)
    assert a.config.data_dir != b.config.data_dir and a.endpoint != b.endpoint, \
        "two nodes of one test get their own data directory and endpoint"
    assert a.config.testing and b.config.testing and b.config.workers == 1, \
        "testing = true is set, and the [node] overrides apply"
    assert os.path.dirname(__file__) in a.config.python_path, \
        "the test's folder is on the node's python_path (run_in_actor imports from it)"
    a.client().ref("Counter", "x").ask("add", 2)
    assert b.client().ref("Counter", "x").ask("get") == 0, "the nodes share no storage"


def test_a_config_file_keeps_its_relative_paths_and_loses_its_fixed_endpoints(actorsys_node, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "shop.py").write_text("import actorsys\n\nclass Cart(actorsys.Actor):\n"
                                 "    def add(self, item):\n"
                                 "        self.state.setdefault('items', []).append(item)\n"
                                 "        return self.state['items']\n")
    (app / "node.toml").write_text(
        f'[node]\ndata_dir = "data"\nendpoint = "ipc://{tmp_path}/fixed.sock"\n'
        f'metrics = "127.0.0.1:9"\n[actors]\nCart = "shop:Cart"\n'
        f'[gateway]\nlisten = "127.0.0.1:1"\n')
    node = actorsys_node(app / "node.toml")
    assert node.client().ref("Cart", "c").ask("add", "tea") == ["tea"], \
        "the actor module beside the file imports (the file's folder is on python_path)"
    assert not os.path.exists(app / "data") and node.config.data_dir.startswith(str(tmp_path)), \
        "the data directory is the test's own, not the file's"
    assert "fixed.sock" not in node.endpoint, "the file's endpoint is replaced by a private one"
    assert not node.gateway_url.endswith(":1") and not node.metrics_url.endswith(":9/metrics"), \
        f"the gateway and metrics listen on free ports: {node.gateway_url} {node.metrics_url}"


def test_the_factory_stops_its_nodes_and_fails_on_a_process_left_behind(tmp_path):
    with NodeFactory(tmp_path) as make:
        node = make(config())
        pids = set(worker_pids(node).values()) | {node.pid}
    assert all(gone(p) for p in pids), "leaving the factory stopped the node and all its processes"

    make = NodeFactory(tmp_path / "second", import_roots(sys.modules[__name__], ROOT), exit_grace=1.0)
    try:
        node = make(config())
        orphan = run_in_actor(node.client().ref("Counter", "o"), spawn_orphan)
    except BaseException:
        make.close()
        raise
    with pytest.raises(AssertionError, match=rf"pid {orphan} \(sleep 120\).*still running 1 s"):
        make.close()
    wait_until(lambda: gone(orphan), "the process left behind to be killed", timeout=5)


# -- run_in_actor --------------------------------------------------------------------------
def test_run_in_actor_seeds_and_reads_state_and_storage_in_a_committed_turn(actorsys_node):
    node = actorsys_node(config())
    ref = node.client().ref("Counter", "seeded")
    assert run_in_actor(ref, seed, 40, note="by the test") == {"type": "Counter", "key": "seeded"}
    assert ref.ask("add", 2) == 42, "the seeded state is what the actor's next turn sees"
    assert run_in_actor(ref, peek) == {"state": {"n": 42, "starts": 1}, "note": "by the test"}
    kill_worker(node, ref)
    assert run_in_actor(ref, "test_testing_plugin:peek")["note"] == "by the test", \
        "the seeded storage was committed (it survives kill -9 of the worker); a reference works too"
    assert run_in_actor(ref, add_elsewhere, "other", 5) == 5, "an async function awaits other actors"


def test_run_in_actor_errors_reach_the_test(actorsys_node):
    node = actorsys_node(config())
    ref = node.client().ref("Counter", "errors")
    run_in_actor(ref, seed, 7, note="kept")
    with pytest.raises(actorsys.RemoteError) as exc:
        run_in_actor(ref, write_then_fail)
    assert exc.value.remote_type == "ValueError" and "write_then_fail" in exc.value.remote_traceback
    assert run_in_actor(ref, peek)["note"] == "kept" and ref.ask("get") == 7, \
        "the raising function's turn was rolled back, state and storage"
    with pytest.raises(BadRequest, match="cannot import 'nosuchmodule:f'.*ModuleNotFoundError"):
        run_in_actor(ref, "nosuchmodule:f")
    with pytest.raises(BadRequest, match=r"peek\(self, \.\.\.\).*argument"):
        run_in_actor(ref, peek, 1, 2)
    with pytest.raises(TypeError, match="module-level function"):
        run_in_actor(ref, lambda self: None)
    assert ref.ask("add", 1) == 8, "the actor works on after every refused or failed run"


def test_a_node_not_started_for_testing_refuses_run_in_actor_and_fire_alarms(actorsys_node):
    node = actorsys_node(config(), testing=False)
    ref = node.client().ref("Counter", "prod")
    with pytest.raises(NotTesting, match=r"run_in_actor.*testing = true"):
        run_in_actor(ref, seed, 1)
    with pytest.raises(NotTesting, match=r"fire_alarms.*testing = true"):
        fire_alarms(ref)
    assert ref.ask("get") == 0, "nothing of the refused run happened"


# -- fire_alarms ---------------------------------------------------------------------------
def test_fire_alarms_runs_pending_alarms_now_earliest_first(actorsys_node):
    node = actorsys_node(config())
    ref = node.client().ref("Alarmist", "a")
    ref.ask("set", 7200, "later", "l")
    ref.ask("set", 3600, "sooner", "s")
    ref.ask("set", 3600 * 24, "tomorrow")
    assert fire_alarms(ref, "sooner", "later") == ["sooner", "later"], \
        "the named alarms ran, earliest first, though none was due"
    assert [f["name"] for f in ref.ask("fired")] == ["sooner", "later"]
    assert list(ref.ask("pending")) == ["tomorrow"], "fired alarms are gone; the other stays"
    assert fire_alarms(ref) == ["tomorrow"] and ref.ask("pending") == {}
    assert fire_alarms(ref) == [], "no alarm: nothing runs"


def test_fire_alarms_runs_a_periodic_alarm_once_and_awaits_an_async_on_alarm(actorsys_node):
    c = actorsys_node(config()).client()
    ref = c.ref("Alarmist", "p")
    ref.ask("set", 3600, "tick", {"repeat": 3, "every": 3600})
    assert fire_alarms(ref) == ["tick"]
    assert [f["payload"]["repeat"] for f in ref.ask("fired")] == [3]
    assert ref.ask("pending")["tick"]["payload"] == {"repeat": 2, "every": 3600}, \
        "the alarm on_alarm set again is left for its time"
    assert fire_alarms(ref) == ["tick"], "a second call runs it again"
    assert ref.ask("pending")["tick"]["payload"]["repeat"] == 1
    slow = c.ref("AsyncAlarmist", "a")
    slow.ask("set", 3600, "once")
    assert fire_alarms(slow) == ["once"] and slow.ask("async_fired") == 1, \
        "an async on_alarm has run and committed when fire_alarms returns"
    assert slow.ask("pending") == {}


def test_a_failing_alarm_raises_and_is_retried_like_any_failed_attempt(actorsys_node, tmp_path):
    node = actorsys_node(config(), alarm_retry={"initial": 60.0})
    ref = node.client().ref("Alarmist", "f")
    ref.ask("set", 3600, "flaky", {"file": str(tmp_path / "attempts"), "fail_until": 2})
    with pytest.raises(actorsys.RemoteError, match="attempt 1 fails on purpose"):
        fire_alarms(ref)
    assert ref.ask("pending")["flaky"]["attempt"] == 1 and not ref.ask("rolled_back"), \
        "the failed attempt was counted and its turn rolled back; the alarm waits for its retry"
    assert fire_alarms(ref) == ["flaky"] and ref.ask("pending") == {}
    assert [f["name"] for f in ref.ask("fired")] == ["flaky"]


# -- kill_worker ---------------------------------------------------------------------------
def test_kill_worker_restarts_the_actors_worker_and_waits_for_it(actorsys_node):
    node = actorsys_node(config())
    ref = node.client().ref("Counter", "k")
    ref.ask("add", 3)
    old = ref.ask("pid")
    new = kill_worker(node, ref)
    assert new != old and gone(old), "the old worker is dead, a new one runs"
    assert ref.ask("pid") == new and ref.ask("get") == 3, \
        "the next ask reaches the new worker at once, and the acknowledged write survived"


# -- the WebSocket client ------------------------------------------------------------------
def test_ws_client_sends_receives_and_sees_the_actor_close(actorsys_node):
    cfg = config()
    cfg["actors"]["Echo"] = "ws_actors:Echo"
    cfg["gateway"] = {}
    node = actorsys_node(cfg)
    with ws_connect(node, "Echo", "room 1", query={"name": "ada"}) as ws:
        assert ws.receive_json()["user"] is None, "the hello on_connect sent (JSON text)"
        ws.send("hi")
        assert ws.receive() == "hi"
        ws.send(b"\x00\x01")
        assert ws.receive() == b"\x00\x01", "a binary frame comes back as bytes"
        ws.send("who")
        assert ws.receive_json() == ["ada"]
        ws.send("close")
        assert ws.wait_closed() == (4000, "asked to")
        with pytest.raises(WsClosed):
            ws.receive(timeout=1)
    assert node.client().ref("Echo", "room 1").ask("counts") == \
        {"connects": 1, "messages": 4, "disconnects": 1}
    with pytest.raises(WsRefused) as refused:
        ws_connect(node, "NoSuchType", "x")
    assert refused.value.status == 404
    left_open = ws_connect(node, "Echo", "open")
    left_open.receive_json()
    with pytest.raises(TimeoutError):
        left_open.receive(timeout=0.2)
    # (left open: the fixture closes it at teardown)
