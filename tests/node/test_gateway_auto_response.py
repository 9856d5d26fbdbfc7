"""``auto_response`` against a real node: the gateway answers a text frame equal to the
type's request itself, a passivated actor stays passivated, an actor type's own pair
replaces ``[gateway]``'s, every other frame (and every binary one) still reaches
``on_message``, the answer is ordered after the frames queued before it, and the actor
learns when it happened (``conn.auto_response_at``). Real processes, a real WebSocket
client (``actorsys.testing.ws_connect``)."""
from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import make_config

from actorsys.node import Node
from actorsys.testing import ws_connect
from actorsys.testing.nodes import slot_of, wait_until, workers

pytestmark = pytest.mark.timeout(60)

PING = {"request": "ping", "response": "pong"}


def config(**node: Any) -> dict[str, Any]:
    """Beat takes [gateway]'s ping/pong, OwnBeat its own hb/ok, NoBeat none."""
    cfg = make_config("unused", **node)
    cfg["actors"].update({
        "Beat": "ws_actors:Beat",
        "OwnBeat": {"class": "ws_actors:Beat", "auto_response": {"request": "hb", "response": "ok"}},
        "NoBeat": {"class": "ws_actors:Beat", "auto_response": False},
    })
    cfg["gateway"] = {"listen": "127.0.0.1:0", "auto_response": PING}
    return cfg


def gateway_status(node: Node) -> dict[str, Any]:
    return next(p for p in node.status()["processes"] if p["role"] == "gateway")


def activations(node: Node) -> int:
    return sum(w["activations"] for w in workers(node).values())


def test_a_passivated_actor_is_not_woken_by_pings_and_learns_when_they_were(actorsys_node):
    node = actorsys_node(config(idle_timeout=0.3))
    slot = slot_of(node.client(), "Beat", "sleepy")
    with ws_connect(node, "Beat", "sleepy") as ws:
        assert ws.receive() == "hello"
        ws.send("when?")
        assert ws.receive_json() == {"at": None, "activations": 1}, \
            "no auto-response yet: conn.auto_response_at is None"
        before = workers(node)[slot]["passivations"]
        wait_until(lambda: workers(node)[slot]["passivations"] > before,
                   "the idle Beat/sleepy to be passivated with its socket open")
        woken, events = activations(node), gateway_status(node)["events"]
        sent = time.time()
        for _ in range(5):
            ws.send("ping")
            assert ws.receive() == "pong", "the gateway answers the request with the response"
        answered = time.time()
        time.sleep(0.5)        # (longer than a batch's round trip: anything sent would have run)
        gw = gateway_status(node)
        assert activations(node) == woken, "no worker activated an actor for the pings"
        assert gw["events"] == events and gw["auto_responses"] == 5, \
            f"no event was queued for the actor and five frames were answered: {gw}"

        ws.send("when?")       # wakes it: the roster it gets carries the time
        got = ws.receive_json()
        assert got["activations"] == 2, f"woken once, by this frame, not by the pings: {got}"
        assert got["at"] is not None and sent <= got["at"] <= answered, \
            f"conn.auto_response_at is the last ping's time ({sent}..{answered}): {got}"

        first = got["at"]
        ws.send("ping")        # the actor is active now: the time rides with the next batch
        assert ws.receive() == "pong"
        ws.send("when?")
        again = ws.receive_json()
        assert again["at"] > first and again["activations"] == 2, \
            f"an active actor's conn.auto_response_at follows the next auto-response: {again}"


def test_a_types_own_pair_replaces_the_gateways_and_other_frames_reach_on_message(actorsys_node):
    node = actorsys_node(config())
    with ws_connect(node, "Beat", "b") as beat, ws_connect(node, "OwnBeat", "o") as own, \
            ws_connect(node, "NoBeat", "n") as none:
        for ws in (beat, own, none):
            assert ws.receive() == "hello"
        own.send("hb")
        assert own.receive() == "ok", "OwnBeat's own request and response"
        own.send("ping")
        assert own.receive() == "got ping", "[gateway]'s request is a frame like any other for OwnBeat"
        none.send("ping")
        assert none.receive() == "got ping", "auto_response = false: no answer from the gateway"
        beat.send("hb")
        assert beat.receive() == "got hb", "another type's request is a frame like any other"
        beat.send(b"ping")
        assert beat.receive() == b"ping", "a binary frame is never auto-answered: on_message echoed it"
        for near in ("ping ", "PING", "pingping"):
            beat.send(near)
            assert beat.receive() == f"got {near}", f"only a frame exactly equal is answered: {near!r}"
        beat.send("ping")
        assert beat.receive() == "pong"
    assert gateway_status(node)["auto_responses"] == 2


#: frames of 4 kB one turn sends (its effects: one batch reply, all queued at once)
FLOOD = 100


def test_the_answer_comes_after_frames_queued_before_it_and_never_waits_for_a_turn(actorsys_node):
    """(Whether the flood is still in the gateway's queue when the ping comes depends on
    the kernel's socket buffers, which take megabytes on loopback: the queue's order
    itself is checked in tests/unit/test_gateway_batches.py.)"""
    node = actorsys_node(config())
    with ws_connect(node, "Beat", "order") as ws:
        assert ws.receive() == "hello"
        ws.send(f"flood:{FLOOD}")
        assert ws.receive().startswith("0:")  # the turn's frames are all queued now
        ws.send("ping")
        rest = [ws.receive() for _ in range(FLOOD)]
        at = [i for i, r in enumerate(rest) if r == "pong"]
        assert [r.split(":", 1)[0] for r in rest[:-1]] == [str(i) for i in range(1, FLOOD)] \
            and at == [FLOOD - 1], f"pong goes after the {FLOOD - 1} frames queued before it: at {at}"

        ws.send("slow")                       # a turn that takes half a second
        ws.send("ping")
        assert ws.receive() == "pong", "the gateway answers at once, not after the actor's turn"
        assert ws.receive() == "slow done"
