"""The gateway's delivery and effects logic against a scripted transport and fake
browsers (in-process: no node, no HTTP)."""
from __future__ import annotations

import asyncio
from typing import Any

from actorsys.errors import RemoteError, WorkerLost
from actorsys.gateway.admission import Admission
from actorsys.gateway.batches import Delivery
from actorsys.gateway.effects import Effects
from actorsys.gateway.peers import WebSocketPeer
from actorsys.gateway.rooms import CONNECT, DISCONNECT, MESSAGE, Room, Socket, SocketState
from actorsys.gateway.sockets import Hub

INC = "inc0inc0inc0inc0"
GATEWAY = {"max_connections": 10, "max_connections_per_actor": 10, "max_message_bytes": 65536,
           "allowed_origins": [], "allowed_hosts": []}


class FakeWs:
    """What a socket's writer uses of aiohttp's WebSocketResponse."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed_with: tuple[int, bytes] | None = None

    @property
    def closed(self) -> bool:
        return self.closed_with is not None

    async def send_str(self, data: str) -> None:
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int, message: bytes) -> None:
        self.closed_with = (code, message)


class ScriptedTransport:
    """``ask`` answers from a script: an exception to raise or a result, one per ask."""

    def __init__(self, *script: Any) -> None:
        self.script, self.asks = list(script), []

    async def ask(self, type_name: str, key: str, method: str, args: list[Any], kwargs: dict[str, Any],
                  timeout: float) -> Any:
        self.asks.append(args)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def make(loop: asyncio.AbstractEventLoop, transport: ScriptedTransport):
    counters: dict[str, int] = {}
    for name in ("events", "batches", "redeliveries", "duplicates", "duplicate_effects", "failed_events",
                 "dropped_events", "stale_effects", "effects", "slow_closed", "ws_closed", "ws_opened",
                 "subscribers_closed"):
        counters[name] = 0
    hub = Hub(loop, GATEWAY, INC, Admission(GATEWAY, "127.0.0.1:1", {"Room"}, None, counters), counters)
    effects = Effects(hub, INC, counters)
    delivery = Delivery(loop, hub, effects, transport, INC, counters,
                        max_message_bytes=1 << 20, ask_timeout=5.0, turn_timeout=1.0)
    hub.connect(delivery)
    return hub, effects, delivery, counters


def open_socket(hub: Hub, room: Room, sid: str) -> Socket:
    s = Socket(sid, WebSocketPeer(FakeWs(), None), room, {"user": None})  # type: ignore[arg-type]
    hub.sockets[sid] = room.sockets[sid] = s
    return s


async def settle(room: Room) -> None:
    for _ in range(200):
        if room.task is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("delivery did not finish")


def test_a_batch_whose_worker_died_is_delivered_again_with_the_roster_and_applied_once():
    async def scenario():
        loop = asyncio.get_running_loop()
        transport = ScriptedTransport(WorkerLost("gone"), {"need": "roster"},
                                      {"ok": True, "effects": [["s", "a", "hi"]]})
        hub, _effects, delivery, counters = make(loop, transport)
        room = hub.rooms[("Room", "r")] = Room("Room", "r")
        a = open_socket(hub, room, "a")
        delivery.enqueue(room, [CONNECT, a.record()], 64)
        delivery.enqueue(room, [MESSAGE, "a", "hello"], 5)
        await settle(room)
        await asyncio.sleep(0.01)           # the writer sends
        return transport, a, counters, room

    transport, a, counters, room = asyncio.run(scenario())
    assert len(transport.asks) == 3, transport.asks
    assert [args[1] for args in transport.asks] == [1, 1, 1], "the same batch number each time"
    assert transport.asks[0][2] == [] and transport.asks[2][2] == [], \
        "the roster (no socket joined yet: empty) goes with the first try and after need-roster"
    assert transport.asks[2][3] == [[CONNECT, ["a", [], None, {"user": None}]], [MESSAGE, "a", "hello"]]
    assert (counters["redeliveries"], counters["batches"], counters["events"]) == (1, 1, 2), counters
    assert a.joined and room.roster_known and a.peer.ws.sent == ["hi"]


def test_a_failing_batch_is_split_and_a_failed_connect_closes_its_socket():
    async def scenario():
        loop = asyncio.get_running_loop()
        transport = ScriptedTransport(RemoteError("ValueError", "no"),      # the pair
                                      RemoteError("ValueError", "no"),      # the connect alone
                                      {"ok": True, "effects": []},          # the message alone
                                      {"ok": True, "effects": []})          # the disconnect
        hub, _effects, delivery, counters = make(loop, transport)
        room = hub.rooms[("Room", "r")] = Room("Room", "r")
        a = open_socket(hub, room, "a")
        delivery.enqueue(room, [CONNECT, a.record()], 64)
        delivery.enqueue(room, [MESSAGE, "a", "x"], 1)
        await settle(room)
        await asyncio.sleep(0.01)
        return transport, a, counters, hub

    transport, a, counters, hub = asyncio.run(scenario())
    assert [len(args[3]) for args in transport.asks] == [2, 1, 1, 1], transport.asks
    assert transport.asks[3][3] == [[DISCONNECT, "a"]], "the closed socket's disconnect follows"
    assert a.state is SocketState.CLOSED and a.peer.ws.closed_with == (1011, b"on_connect failed")
    assert counters["failed_events"] == 1 and not a.joined
    assert hub.rooms == {}, "a room with no sockets left is dropped"


def test_effects_apply_once_and_only_for_this_incarnation():
    async def scenario():
        loop = asyncio.get_running_loop()
        hub, effects, _delivery, counters = make(loop, ScriptedTransport())
        room = hub.rooms[("Room", "r")] = Room("Room", "r")
        a, b, c = (open_socket(hub, room, sid) for sid in "abc")
        a.joined = b.joined = True              # c's on_connect has not committed
        b.tags.add("red")
        effects.apply("Room", "r", [["b", None, "a", "to all but a", None]], [INC, 1], 0)
        effects.apply("Room", "r", [["b", None, "a", "to all but a", None]], [INC, 1], 0)   # again
        effects.apply("Room", "r", [["b", "red", None, "to red", None]], [INC, 2], 0)
        effects.apply("Room", "r", [["b", None, None, "to listed", ["a", "c", "gone"]]], [INC, 2], 1)
        effects.apply("Room", "r", [["s", "a", "stale"]], ["another-gateway", 9], 0)
        effects.apply("Room", "r", [["t", "a", ["blue", 3]], ["a", "a", {"n": 1}], ["x", "c", 4000, "bye"]],
                      None, 0)
        await asyncio.sleep(0.01)
        return a, b, c, counters

    a, b, c, counters = asyncio.run(scenario())
    assert a.peer.ws.sent == ["to listed"], a.peer.ws.sent
    assert b.peer.ws.sent == ["to all but a", "to red"], b.peer.ws.sent
    assert c.peer.ws.sent == ["to listed"], c.peer.ws.sent
    assert (counters["duplicate_effects"], counters["stale_effects"]) == (1, 1), counters
    assert a.tags == {"blue"} and a.attachment == {"n": 1}
    assert c.state is SocketState.CLOSED and c.peer.ws.closed_with == (4000, b"bye")


def test_a_browser_that_does_not_read_is_closed():
    async def scenario():
        loop = asyncio.get_running_loop()
        hub, _effects, _delivery, counters = make(loop, ScriptedTransport())
        room = hub.rooms[("Room", "r")] = Room("Room", "r")
        a = open_socket(hub, room, "a")
        for _ in range(10_001):                 # no await: the writer never runs meanwhile
            hub.push(a, "x")
        return a, counters

    a, counters = asyncio.run(scenario())
    assert a.state is SocketState.CLOSED and counters["slow_closed"] == 1
    assert not a.unsent and a.unsent_bytes == 0


# -- auto_response: answered here, its times ride with the next batch ----------------------
def test_an_auto_response_queues_behind_earlier_frames_and_starts_no_batch():
    async def scenario():
        loop = asyncio.get_running_loop()
        transport = ScriptedTransport()
        hub, _effects, _delivery, counters = make(loop, transport)
        counters["auto_responses"] = 0
        room = hub.rooms[("Room", "r")] = Room("Room", "r")
        a = open_socket(hub, room, "a")
        hub.push(a, "first")
        hub.push(a, b"second")
        hub.auto_respond(a, "pong")
        await asyncio.sleep(0.01)
        return transport, a, room, counters

    transport, a, room, counters = asyncio.run(scenario())
    assert a.peer.ws.sent == ["first", b"second", "pong"], "the answer goes after the frames queued before it"
    assert transport.asks == [] and room.task is None and counters["events"] == 0, \
        "no event, no batch: the actor is not asked"
    assert counters["auto_responses"] == 1 and a.auto_response_at is not None
    assert room.auto_responded == {"a": a.auto_response_at}
    assert a.record()[3] == {"user": None, "auto_response_at": a.auto_response_at}, \
        "the roster record carries the time"


def test_auto_response_times_ride_at_the_head_of_the_next_batch_for_joined_sockets():
    async def scenario():
        loop = asyncio.get_running_loop()
        transport = ScriptedTransport({"ok": True, "effects": []}, {"ok": True, "effects": []})
        hub, _effects, delivery, counters = make(loop, transport)
        counters["auto_responses"] = 0
        room = hub.rooms[("Room", "r")] = Room("Room", "r")
        room.roster_known = True
        a, b = open_socket(hub, room, "a"), open_socket(hub, room, "b")
        a.joined = True                             # b's on_connect has not committed
        hub.auto_respond(a, "pong")
        hub.auto_respond(b, "pong")
        room.auto_responded["gone"] = 1.0           # a socket no longer in the room
        delivery.enqueue(room, [MESSAGE, "a", "hello"], 5)
        await settle(room)
        first = dict(room.auto_responded)
        b.joined = True
        delivery.enqueue(room, [MESSAGE, "b", "again"], 5)
        await settle(room)
        return transport, a, b, room, first

    transport, a, b, room, first = asyncio.run(scenario())
    assert transport.asks[0][3] == [["r", [["a", a.auto_response_at]]], [MESSAGE, "a", "hello"]], \
        "a joined socket's time goes first, in the batch that went anyway"
    assert first == {"b": b.auto_response_at}, \
        "a socket the actor does not know yet keeps its time for a later batch; a gone one's is dropped"
    assert transport.asks[1][3] == [["r", [["b", b.auto_response_at]]], [MESSAGE, "b", "again"]]
    assert room.auto_responded == {}


def test_the_protocol_takes_auto_response_times_and_refuses_bad_ones():
    from actorsys.errors import BadRequest
    from actorsys.protocol.ws import check_batch

    check_batch(INC, 1, None, [["r", [["a", 1.5], ["b", 2]]], ["m", "a", "x"]])
    for bad in (["r"], ["r", "a"], ["r", [["a"]]], ["r", [[1, 1.0]]], ["r", [["a", "now"]]]):
        try:
            check_batch(INC, 1, None, [bad])
        except BadRequest as exc:
            assert "auto-response" in str(exc) or "socket event" in str(exc), exc
        else:
            raise AssertionError(f"{bad!r} was taken")


def joined_room(hub: Hub, sids: str) -> tuple[Room, list[Socket]]:
    """A room whose actor knows its sockets ``sids`` (their on_connect committed)."""
    room = hub.rooms[("Room", "r")] = Room("Room", "r")
    room.roster_known = True
    socks = [open_socket(hub, room, sid) for sid in sids]
    for s in socks:
        s.joined = True
    return room, socks


def test_a_failing_batch_is_split_without_its_auto_response_head():
    """The head never goes as a batch of its own: the split parts are the real events,
    the first with the roster, whose records carry the times the head had."""
    async def scenario():
        loop = asyncio.get_running_loop()
        transport = ScriptedTransport(RemoteError("ValueError", "no"),      # head, x, y
                                      {"ok": True, "effects": []},          # x alone
                                      {"ok": True, "effects": []},          # y alone
                                      RemoteError("ValueError", "no"))      # head, z
        hub, _effects, delivery, counters = make(loop, transport)
        counters["auto_responses"] = 0
        room, (a,) = joined_room(hub, "a")
        hub.auto_respond(a, "pong")
        first = a.auto_response_at
        delivery.enqueue(room, [MESSAGE, "a", "x"], 1)
        delivery.enqueue(room, [MESSAGE, "a", "y"], 1)
        await settle(room)
        hub.auto_respond(a, "pong")
        delivery.enqueue(room, [MESSAGE, "a", "z"], 1)
        await settle(room)
        return transport, first, counters

    transport, first, counters = asyncio.run(scenario())
    events = [args[3] for args in transport.asks]
    assert events[0] == [["r", [["a", first]]], [MESSAGE, "a", "x"], [MESSAGE, "a", "y"]], events[0]
    assert events[1:3] == [[[MESSAGE, "a", "x"]], [[MESSAGE, "a", "y"]]], events
    assert transport.asks[1][2] == [["a", [], None, {"user": None, "auto_response_at": first}]], \
        "the first part carries the roster, with the time the head had"
    assert len(events) == 4 and events[3][0][0] == "r", \
        "a failed batch of one real event behind a head is that event's failure: no retry of either alone"
    assert counters["failed_events"] == 1, counters


class FirstBatchLost(ScriptedTransport):
    """Batch 1's worker is lost at every try; later batches commit."""

    async def ask(self, type_name: str, key: str, method: str, args: list[Any], kwargs: dict[str, Any],
                  timeout: float) -> Any:
        self.asks.append(args)
        if args[1] == 1:
            raise WorkerLost("gone")
        return {"ok": True, "effects": []}


def test_a_batch_given_up_on_counts_only_its_real_events_and_retries_without_its_head():
    async def scenario():
        loop = asyncio.get_running_loop()
        transport = FirstBatchLost()
        hub, _effects, delivery, counters = make(loop, transport)
        counters["auto_responses"] = 0
        delivery.patience = 0.1
        room, (a,) = joined_room(hub, "a")
        hub.auto_respond(a, "pong")
        delivery.enqueue(room, [MESSAGE, "a", "x"], 1)
        await settle(room)
        await asyncio.sleep(0.01)
        return transport, a, counters

    transport, a, counters = asyncio.run(scenario())
    first = [args for args in transport.asks if args[1] == 1]
    assert len(first) > 1, first
    assert first[0][3] == [["r", [["a", a.auto_response_at]]], [MESSAGE, "a", "x"]], first[0]
    assert all(args[3] == [[MESSAGE, "a", "x"]] and args[2] == [a.record()] for args in first[1:]), \
        "a batch delivered again carries the roster (the latest times) and no head"
    assert counters["dropped_events"] == 1, "the head is no event: one dropped, not two"
    assert transport.asks[-1][1:] == [2, [a.record()], [[DISCONNECT, "a"]]], \
        "the closed socket's disconnect follows, with the roster again"
    assert a.state is SocketState.CLOSED and a.peer.ws.closed_with == (1011, b"the actor is unavailable")


def test_auto_response_times_past_a_quarter_of_a_batch_follow_with_the_next_batches():
    async def scenario():
        loop = asyncio.get_running_loop()
        transport = ScriptedTransport(*[{"ok": True, "effects": []}] * 3)
        hub, _effects, delivery, counters = make(loop, transport)
        counters["auto_responses"] = 0
        delivery.batch_limit = 340              # a head: 16 bytes + 13 a socket; 5 fit in 85
        room, socks = joined_room(hub, "abcdefgh")
        for s in socks:
            hub.auto_respond(s, "pong")
        for text in ("1", "2", "3"):
            delivery.enqueue(room, [MESSAGE, "a", text], 1)
            await settle(room)
        return transport, room

    transport, room = asyncio.run(scenario())
    heads = [[sid for sid, _t in args[3][0][1]] if args[3][0][0] == "r" else [] for args in transport.asks]
    assert heads == [list("abcde"), list("fgh"), []], heads
    assert room.auto_responded == {}
