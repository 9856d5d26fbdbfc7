"""``self.destroy()`` and the listing of empty actors, against real nodes (real workers,
LevelDB, kill -9). Semantics under test: ``actorsys/runtime/destroy.py``."""
from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from helpers import slot_dbs

import actorsys
from actorsys.storage.keys import REQUEST
from actorsys.testing import fire_alarms, kill_worker
from actorsys.testing.nodes import wait_until

SESSION = {"Session": {"class": "selfdestroy:Session", "history_window": 3600},
           "Room": "selfdestroy:Room"}


def session_config(config, **node):
    cfg = config(**node)
    cfg["actors"].update(SESSION)
    return cfg


@pytest.fixture
def s_node(config):
    with actorsys.Node(session_config(config)) as n:
        yield n


def keys_of(data_dir: str, key: str) -> list[bytes]:
    """Every key of any slot's LevelDB that belongs to Session ``key``: its own keys,
    its listing entry, its alarms' due-index entries (the node must be stopped); not
    its request-id window (exactly-once asks: the record of the ask that destroyed it
    stays, so a retry of that ask is answered, not run on a fresh actor)."""
    own = b"Session\x00" + key.encode() + b"\x00"
    listing = b"nSession\x00" + key.encode()
    return [k for db in slot_dbs(data_dir).values() for k in db
            if (own in k and k[k.index(own) + len(own):][:1] != REQUEST) or k == listing]


def test_destroy_in_an_ask_answers_then_the_actor_is_gone_even_after_kill_9(config, tmp_path):
    cfg = session_config(config)
    with actorsys.Node(cfg) as node:
        c = node.client()
        s, keeper = c.ref("Session", "s1"), c.ref("Session", "keeper")
        s.ask("open", "hello")
        s.ask("set_state", "more", 1)           # a second version in its history
        keeper.ask("open", "kept")
        assert c.list_actors("Session") == ["keeper", "s1"]
        assert len(s.history()) >= 2 and s.ask("peek")["alarms"] == ["later"]

        assert s.ask("end") == "bye", "the destroying ask is answered with its result"
        kill_worker(node, s)            # right after the reply: it is durable
        assert c.list_actors("Session") == ["keeper"], \
            "the destroyed actor is no longer listed, even after kill -9"
        assert s.history() == [], "its history is gone"
        after = s.ask("peek")
        assert after == {"state": {}, "storage": {}, "alarms": [], "fresh": True}, \
            f"the next ask starts a fresh actor (nothing the destroying turn wrote): {after}"
        assert c.list_actors("Session") == ["keeper"], "a read-only ask does not list it again"
        assert keeper.ask("peek")["state"] == {"data": "kept"}, "the other actor is untouched"
    assert keys_of(os.path.join(tmp_path, "data"), "keeper"), "the check sees an actor's keys"
    left = keys_of(os.path.join(tmp_path, "data"), "s1")
    assert left == [], f"nothing of the destroyed actor is left in LevelDB: {left}"


def test_destroy_from_an_async_handler_sends_its_tells(s_node):
    c = s_node.client()
    s, w = c.ref("Session", "a1"), c.ref("Session", "w1")
    s.ask("open", 1)
    w.ask("open", 2, later=False)
    assert s.ask("bump") == 2, "the instance is live before destroy"
    assert s.ask("end_async", "w1") == "bye after ['alarms', 'fresh', 'state', 'storage']"
    wait_until(lambda: w.ask("peek")["state"].get("told_by") == "a1",
               "the destroying turn's tell to arrive")
    assert c.list_actors("Session") == ["w1"]
    assert s.ask("bump") == 2, "a new instance (in-memory counter starts again)"
    assert s.ask("peek")["state"] == {}


def test_destroy_then_raise_destroys_nothing(s_node):
    c = s_node.client()
    s = c.ref("Session", "r1")
    s.ask("open", "keep me")
    before = s.ask("peek")
    with pytest.raises(actorsys.RemoteError, match="changed my mind"):
        s.ask("end_then_raise")
    assert c.list_actors("Session") == ["r1"], "still listed"
    after = s.ask("peek")
    assert after["state"] == before["state"] and after["storage"] == before["storage"] \
        and after["alarms"] == before["alarms"], f"nothing destroyed: {before} -> {after}"
    assert len(s.history()) == 1, "and its history is kept"


def test_destroy_from_on_alarm(actorsys_node, config):
    c = actorsys_node(session_config(config)).client()
    s = c.ref("Session", "al1")
    c.ref("Session", "stays").ask("open", "long-lived")
    s.ask("open", "short-lived", ttl=3600)
    assert c.list_actors("Session") == ["al1", "stays"], "listed until its alarm fires"
    assert fire_alarms(s, "expire") == ["expire"]
    assert c.list_actors("Session") == ["stays"], \
        "the session destroyed itself from on_alarm, in the alarm turn's commit"
    assert s.ask("peek") == {"state": {}, "storage": {}, "alarms": [], "fresh": True}, \
        "its other alarm ('later') went with it"
    assert s.history() == []


def test_an_actor_that_empties_itself_is_unlisted_until_it_writes_again(s_node):
    c = s_node.client()
    e, other = c.ref("Session", "e1"), c.ref("Session", "o1")
    e.ask("open", "data")
    other.ask("open", "data")
    assert c.list_actors("Session") == ["e1", "o1"]
    e.ask("clear")
    assert c.list_actors("Session") == ["o1"], "empty state, no storage, no alarms: unlisted"
    e.ask("put", "k", "v")
    assert c.list_actors("Session") == ["e1", "o1"], "listed again once it writes"
    e.ask("set_state", "x", 1)
    assert e.ask("delete", "k") is True
    assert c.list_actors("Session") == ["e1", "o1"], "a state alone keeps it listed"
    e.ask("clear_state")
    assert c.list_actors("Session") == ["o1"], "emptying the state last unlists it too"
    e.ask("set_state", "x", 2)
    assert c.list_actors("Session") == ["e1", "o1"], "and a state write lists it again"


def test_expired_sessions_destroy_themselves_and_leave_no_listing(s_node):
    c = s_node.client()
    n = 100
    for i in range(n):
        c.ref("Session", f"sess-{i:03d}").ask("open", {"user": i}, ttl=2.0 + i * 0.01)
    listed = c.list_actors("Session", limit=1000)
    assert len(listed) >= n // 2, f"most sessions are listed before they expire: {len(listed)}"
    wait_until(lambda: c.list_actors("Session", limit=1000) == [],
               "every session to expire and destroy itself", timeout=30)
    assert all(c.ref("Session", f"sess-{i:03d}").ask("peek")["state"] == {} for i in range(0, n, 17))


def test_a_supervised_child_that_destroys_itself_exits_normally_without_on_stop(config, tmp_path):
    stops = tmp_path / "stops"
    cfg = session_config(config, shutdown_timeout=3.0)
    cfg["supervisors"] = {"root": {"children": [
        {"id": "perm", "actor": "Session", "key": "perm", "restart": "permanent",
         "kwargs": {"file": str(stops)}},
        {"id": "trans", "actor": "Session", "key": "trans", "restart": "transient",
         "kwargs": {"file": str(stops)}}]}}
    with actorsys.Node(cfg) as node:
        c = node.client()
        sup = c.supervisor("root")
        for key in ("perm", "trans"):
            c.ref("Session", key).ask("open", key)
        assert c.ref("Session", "trans").ask("end") == "bye"
        wait_until(lambda: {ch["id"]: ch["status"] for ch in sup.which_children()}
                   == {"perm": "running", "trans": "stopped"},
                   "the transient child to stay stopped after its normal exit", timeout=15)
        assert c.ref("Session", "perm").ask("end") == "bye"

        def restarted_fresh():
            try:
                return c.ref("Session", "perm").ask("peek", timeout=5)["state"] == {}
            except (actorsys.ActorStopped, actorsys.AskTimeout):
                return False
        wait_until(restarted_fresh, "the permanent child restarted with an empty state", timeout=15)
        assert c.list_actors("Session") == [], "neither child holds data now"
        assert not stops.exists(), f"on_stop does not run after destroy(): {stops.read_text()}"


def test_destroy_from_a_websocket_handler(config):
    cfg = session_config(config)
    cfg["gateway"] = {"listen": "127.0.0.1:0"}
    with actorsys.Node(cfg) as node:
        c = node.client()
        base = node.gateway_url

        async def frame(ws: aiohttp.ClientWebSocketResponse) -> str:
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg}"
            return str(msg.data)

        async def scenario() -> None:
            async with aiohttp.ClientSession() as s:
                ws = await s.ws_connect(f"{base}/ws/Room/r1")
                assert await frame(ws) == "hello"
                for want in ("1", "2"):
                    await ws.send_str("x")
                    assert await frame(ws) == want
                assert c.list_actors("Room") == ["r1"]
                await ws.send_str("end")
                assert await frame(ws) == "bye", "the destroying turn's effects are sent"
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4001, msg
                # the bye left after the destroy committed
                assert c.list_actors("Room") == [], "the room is gone once its bye arrived"
                ws = await s.ws_connect(f"{base}/ws/Room/r1")
                assert await frame(ws) == "hello"
                await ws.send_str("x")
                assert await frame(ws) == "1", "a new socket reaches a fresh room"
                await ws.close()
        asyncio.run(asyncio.wait_for(scenario(), 40))
        assert c.ref("Room", "r1").ask("count") == 1
