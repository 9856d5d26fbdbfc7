"""WebSockets with more than one gateway (issue 15: every cluster node's gateway may hold
sockets of any actor): the actor's roster is the union of the gateways' (a gateway's
roster replaces only its own sockets and its predecessor's at the same endpoint), the
delivery mark keeps one entry per gateway, a batch's effects also leave for the other
gateways when there are several, and a gateway applies another gateway's batch effects
to its own sockets, unmarked."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from runtime_fakes import Slot
from test_gateway_batches import ScriptedTransport, make, open_socket, settle

from actorsys import Actor, ShardUnavailable
from actorsys.gateway.http import HttpAsks
from actorsys.gateway.effects import Effects
from actorsys.gateway.rooms import CONNECT, Room
from actorsys.protocol import wire
from actorsys.runtime.ws_turns import home, read_marks
from actorsys.storage.keys import mark_key

GA, GB, GA2 = "ta@tcp://10.0.0.1:7000", "tb@tcp://10.0.0.2:7000", "tc@tcp://10.0.0.1:7000"


class Room_(Actor):
    def on_connect(self, conn: Any) -> None:
        conn.send("hello")

    def on_message(self, conn: Any, data: Any) -> None:
        self.broadcast(data)

    def on_disconnect(self, conn: Any) -> None:
        pass

    def who(self) -> list[str]:
        return [c.id for c in self.connections()]


def rec(sid: str) -> list[Any]:
    return [sid, [], None, {}]


def batch(slot: Slot, gateway: str, number: int, roster: Any, events: list[Any]) -> Any:
    return slot.call("Room_", "r", "$ws", gateway, number, roster, events)


def test_rosters_and_marks_are_kept_per_gateway(tmp_path):
    slot = Slot(str(tmp_path), {"Room_": Room_})
    try:
        assert batch(slot, GA, 1, [], [["c", rec("a1")]]) == {"ok": True, "effects": [["s", "a1", "hello"]]}
        assert batch(slot, GB, 1, None, [["c", rec("b1")]]) == {"need": "roster"}
        assert batch(slot, GB, 1, [], [["c", rec("b1")]])["ok"]
        # A's batch broadcasts to both gateways' sockets (A's roster did not replace B's)
        assert batch(slot, GA, 2, None, [["m", "a1", "hi"]]) == {
            "ok": True, "effects": [["b", None, None, "hi", ["a1", "b1"], [GA, GB]]]}
        assert slot.call("Room_", "r", "who") == ["a1", "b1"]
        # each gateway's batch delivered again is a duplicate, with its own effects
        assert batch(slot, GA, 2, None, [["m", "a1", "hi"]]) == {
            "dup": True, "effects": [["b", None, None, "hi", ["a1", "b1"], [GA, GB]]]}
        assert batch(slot, GB, 1, [], [["c", rec("b1")]]) == {"dup": True, "effects": [["s", "b1", "hello"]]}
        raw = slot.store.db.get(mark_key(slot.act("Room_", "r").prefix))
        assert [m[:2] for m in read_marks(raw)] == [[GA, 2], [GB, 1]]
        # A restarted (same endpoint, new incarnation): its roster replaces A's old sockets only
        assert batch(slot, GA2, 1, [], [["m", "b1", "x"]]) == {
            "ok": True, "effects": [["b", None, None, "x", ["b1"], [GB, GA2]]]}
        raw = slot.store.db.get(mark_key(slot.act("Room_", "r").prefix))
        assert [m[:2] for m in read_marks(raw)] == [[GA2, 1], [GB, 1]]
    finally:
        slot.close()


def test_one_gateway_keeps_the_single_node_mark_and_fanout_sends_batch_effects(tmp_path):
    slot = Slot(str(tmp_path), {"Room_": Room_})
    try:
        batch(slot, "plain", 1, [], [["c", rec("p1")]])
        raw = slot.store.db.get(mark_key(slot.act("Room_", "r").prefix))
        assert wire.unpack_stored(raw) == ["plain", 1, [["s", "p1", "hello"]]]   # as before clusters
        assert read_marks(raw) == [["plain", 1, [["s", "p1", "hello"]]]]
        assert slot.out.ws == [], "one gateway: a batch's effects travel in its reply only"
        slot.rt.services.ws_fanout = True
        batch(slot, "plain", 2, None, [["m", "p1", "yo"]])
        [msg] = slot.out.ws
        assert (msg.batch, msg.part, msg.effects) == (
            ["plain", 2], 0, [["b", None, None, "yo", ["p1"], ["plain"]]])
    finally:
        slot.close()


def test_home_and_read_marks():
    assert home(GA) == "tcp://10.0.0.1:7000" and home("0123abcd") == ""
    assert read_marks(None) == []
    assert read_marks(wire.pack([[GA, 3, None], [GB, 1, []]])) == [[GA, 3, None], [GB, 1, []]]


def test_a_gateway_applies_another_gateways_batch_unmarked_and_its_own_once():
    async def scenario():
        loop = asyncio.get_running_loop()
        hub, _e, _d, counters = make(loop, ScriptedTransport())
        effects = Effects(hub, GA, counters)              # a cluster gateway's incarnation
        room = hub.rooms[("Room", "r")] = Room("Room", "r")
        a = open_socket(hub, room, "a1")
        a.joined = True
        effects.apply("Room", "r", [["b", None, None, "from b's batch", ["a1", "b1"]]], [GB, 7], 0)
        effects.apply("Room", "r", [["b", None, None, "again b", ["a1", "b1"]]], [GB, 7], 0)
        effects.apply("Room", "r", [["s", "a1", "stale"]], ["t0@tcp://10.0.0.1:7000", 9], 0)
        effects.apply("Room", "r", [["s", "a1", "mine"]], [GA, 1], 0)         # its reply
        effects.apply("Room", "r", [["s", "a1", "mine"]], [GA, 1], 0)         # the fan-out copy
        await asyncio.sleep(0.01)
        return a, counters

    a, counters = asyncio.run(scenario())
    # another gateway's batch is not this gateway's to deduplicate (its worker sends it once)
    assert a.peer.ws.sent == ["from b's batch", "again b", "mine"], a.peer.ws.sent
    assert counters["stale_effects"] == 1 and counters["duplicate_effects"] == 1, counters


def test_a_broadcast_reaches_the_sockets_of_a_gateway_the_actor_does_not_know():
    """A fresh activation (after a failover or a move) that had a batch from gateway A
    only knows A's sockets; its broadcast lists them and names A: gateway B, not named,
    sends it to its joined sockets of the actor (with the tag, but the excluded one)."""
    async def scenario():
        loop = asyncio.get_running_loop()
        hub, _e, _d, counters = make(loop, ScriptedTransport())
        effects = Effects(hub, GB, counters)
        room = hub.rooms[("Room", "r")] = Room("Room", "r")
        b1, b2, b3 = (open_socket(hub, room, sid) for sid in ("b1", "b2", "b3"))
        b1.joined = b2.joined = True             # b3's on_connect has not committed
        b2.tags.add("t")
        effects.apply("Room", "r", [["b", None, None, "to all", ["a1"], [GA]]], None, 0)
        effects.apply("Room", "r", [["b", "t", None, "to t", ["a1"], [GA]]], None, 0)
        effects.apply("Room", "r", [["b", None, "b1", "but b1", ["a1"], [GA]]], None, 0)
        # named: only the sockets listed (b2 is not), as before
        effects.apply("Room", "r", [["b", None, None, "listed", ["b1"], [GA, GB]]], None, 0)
        await asyncio.sleep(0.01)
        return b1, b2, b3

    b1, b2, b3 = asyncio.run(scenario())
    assert b1.peer.ws.sent == ["to all", "listed"], b1.peer.ws.sent
    assert b2.peer.ws.sent == ["to all", "to t", "but b1"], b2.peer.ws.sent
    assert b3.peer.ws.sent == [], b3.peer.ws.sent


def test_a_shard_whose_node_is_down_delays_a_batch_and_answers_http_503():
    async def scenario():
        loop = asyncio.get_running_loop()
        transport = ScriptedTransport(ShardUnavailable("shard 3 belongs to node n2, which is down"),
                                      {"ok": True, "effects": [["s", "a", "back"]]})
        hub, _effects, delivery, counters = make(loop, transport)
        room = hub.rooms[("Room", "r")] = Room("Room", "r")
        a = open_socket(hub, room, "a")
        delivery.enqueue(room, [CONNECT, a.record()], 64)
        await settle(room)
        await asyncio.sleep(0.01)
        return a, counters

    a, counters = asyncio.run(scenario())
    assert a.peer.ws.sent == ["back"] and counters["redeliveries"] == 1 and counters["failed_events"] == 0
    resp = HttpAsks._actor_error(None, ShardUnavailable("shard 3 belongs to node n2, which is down"))
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert json.loads(resp.text)["error"] == "shard_unavailable"
