"""Testing the Session actor (sessions.py) with actorsys's pytest plugin:

    pytest examples/testing

Each test gets a node of its own from the ``actorsys_node`` fixture: started from
node.toml in a temporary directory, stopped at the end with a check that none of its
processes is left. The node is real (worker processes, ZeroMQ, LevelDB): these tests
kill a worker, fire a one-hour alarm at once, and talk to the actor over a WebSocket.
"""
from __future__ import annotations

import os
from typing import Any

import actorsys
from actorsys.testing import NodeFactory, fire_alarms, kill_worker, run_in_actor, ws_connect

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node.toml")


# Functions that run_in_actor runs inside the actor, with its `self`. They must be
# module-level functions: the node imports them by name ("test_session:events").
def events(self: actorsys.Actor) -> list[Any]:
    """What the session logged in its storage."""
    return list(self.storage.list(prefix="event/").values())


def logged_in_long_ago(self: actorsys.Actor, user: str) -> None:
    """Seed a session as if it had started before this test (its writes commit)."""
    self.state.update(user=user, events=0)
    self.set_alarm(60, "expire")


def test_a_login_survives_a_worker_crash(actorsys_node: NodeFactory) -> None:
    node = actorsys_node(CONFIG)
    session = node.client().ref("Session", "s1")
    session.ask("login", "ada")
    kill_worker(node, session)               # kill -9 of its worker; waits for the restart
    assert session.ask("whoami") == "ada"


def test_the_expiry_alarm_ends_the_session(actorsys_node: NodeFactory) -> None:
    node = actorsys_node(CONFIG)
    session = node.client().ref("Session", "s2")
    session.ask("login", "ada", ttl=3600)
    assert fire_alarms(session) == ["expire"]        # an hour early: no sleeping in tests
    assert session.ask("whoami") is None
    assert node.client().list_actors("Session") == [], "the session deleted itself"


def test_activity_is_logged_in_storage(actorsys_node: NodeFactory) -> None:
    node = actorsys_node(CONFIG)
    session = node.client().ref("Session", "s3")
    session.ask("login", "ada")
    session.ask("touch")
    assert run_in_actor(session, events) == [{"login": "ada"}, "touch"]


def test_a_seeded_session_can_be_touched(actorsys_node: NodeFactory) -> None:
    node = actorsys_node(CONFIG)
    session = node.client().ref("Session", "s4")
    run_in_actor(session, logged_in_long_ago, "bob")
    assert session.ask("touch") is True and session.ask("whoami") == "bob"
    assert run_in_actor(session, events) == ["touch"]


def test_a_socket_is_told_when_its_session_expires(actorsys_node: NodeFactory) -> None:
    node = actorsys_node(CONFIG)
    session = node.client().ref("Session", "s5")
    session.ask("login", "ada")
    with ws_connect(node, "Session", "s5") as ws:
        assert ws.receive_json() == {"user": "ada"}
        ws.send("ping")
        assert ws.receive_json() == {"ok": True}
        fire_alarms(session)
        assert ws.receive_json() == {"expired": "ada"}
        assert ws.wait_closed() == (4001, "session expired")
