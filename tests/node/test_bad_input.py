"""Bad input from raw ZeroMQ peers (DEALER and REQ) at the router and at a worker: every
malformed message gets a clear error (or is dropped), is counted, and kills nothing."""
from __future__ import annotations

import asyncio

import msgpack
import pytest
import zmq

import actorsys
from actorsys.protocol import wire
from actorsys.testing.nodes import key_on_slot

pack = wire.pack
ASK, TELL, SPAWN, PING = wire.ASK, wire.TELL, wire.SPAWN, wire.PING

# (what, frames, expected request id in the error reply)
MALFORMED = [
    ("garbage bytes", [b"\xc1\xc1\x00\xffgarbage"], 0),
    ("an empty frame", [b""], 0),
    ("plain text", [b"hello, world"], 0),
    ("truncated msgpack", [pack([ASK, 7, "Counter", "k", "add", [1], {}])[:-3]], 0),
    ("trailing bytes after msgpack", [pack([PING, 8]) + b"\x00\x01"], 0),
    ("invalid UTF-8 in a string", [b"\x93\x06\x09\xa2\xff\xfe"], 0),
    ("msgpack nested 3000 deep", [b"\x91" * 3000 + b"\x00"], 0),
    ("an array claiming 4 billion items", [b"\xdd\xff\xff\xff\xff"], 0),
    ("a map claiming 4 billion items", [b"\xdf\xff\xff\xff\xff"], 0),
    ("a map, not an array", [pack({"op": ASK, "id": 3})], 0),
    ("a string", [pack("ping")], 0),
    ("an integer", [pack(6)], 0),
    ("nil", [pack(None)], 0),
    ("a one-element array", [pack([PING])], 0),
    ("an unknown op", [pack([99, 10])], 10),
    ("an op as a string", [pack(["ask", 11])], 11),
    ("an op as a bool", [pack([True, 12])], 12),
    ("an op as an ext type", [pack([msgpack.ExtType(1, b"x"), 13])], 13),
    ("a string request id", [pack([PING, "x"])], 0),
    ("a float request id", [pack([PING, 1.5])], 0),
    ("an ask without method and arguments", [pack([ASK, 14, "Counter", "k"])], 14),
    ("an ask with an extra element", [pack([ASK, 15, "Counter", "k", "add", [1], {}, "x"])], 15),
    ("an ask with integer type, key and method", [pack([ASK, 16, 1, 2, 3, [], {}])], 16),
    ("an ask with args not an array", [pack([ASK, 17, "Counter", "k", "add", "1", {}])], 17),
    ("an ask with kwargs not a map", [pack([ASK, 18, "Counter", "k", "add", [], []])], 18),
    ("an ask with integer kwargs keys", [pack([ASK, 19, "Counter", "k", "add", [], {1: 2}])], 19),
    ("a spawn without a key", [pack([SPAWN, 20, "Counter"])], 20),
    ("a tell without arguments", [pack([TELL, 0, "Counter", "k", "add"])], 0),
    ("two payload frames", [pack([PING, 21]), pack([PING, 22])], 22),
    ("three payload frames", [pack([PING, 23]), b"", pack([PING, 24])], 24),
]


class Peer:
    """A raw ZeroMQ peer (DEALER or REQ) of one endpoint."""

    def __init__(self, ctx: zmq.Context, kind: int, endpoint: str) -> None:
        self.ctx, self.kind, self.endpoint = ctx, kind, endpoint
        self.sock = self._socket()

    def _socket(self) -> zmq.Socket:
        s = self.ctx.socket(self.kind)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.endpoint)
        return s

    def call(self, frames: list[bytes], timeout: float = 3.0):
        """Send ``frames``; return the decoded reply, or None if nothing came back."""
        self.sock.send_multipart(frames)
        if not self.sock.poll(timeout * 1000):
            if self.kind == zmq.REQ:      # a REQ socket that got no reply is stuck: replace it
                self.sock.close(0)
                self.sock = self._socket()
            return None
        reply = self.sock.recv_multipart()
        return msgpack.unpackb(reply[-1], raw=False, strict_map_key=False)

    def ask(self, type_name: str, key: str, method: str, *args, rid: int = 1):
        return self.call([pack([ASK, rid, type_name, key, method, list(args), {}])])


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)




def snapshot(node: actorsys.Node) -> dict:
    """role/slot -> (pid, bad_frames) of every process."""
    out = {}
    for p in node.status()["processes"]:
        assert p["up"], f"expected every process up: {p}"
        out[(p["role"], p["slot"])] = (p["pid"], p.get("bad_frames"))
    return out


def bad_frames_delta(before: dict, after: dict) -> dict:
    return {k: after[k][1] - before[k][1] for k in after if k[0] != "supervisor"}


def assert_pids_unchanged(before: dict, after: dict) -> None:
    pids_before = {k: v[0] for k, v in before.items()}
    pids_after = {k: v[0] for k, v in after.items()}
    assert pids_after == pids_before, \
        f"expected no process restarted by bad input: {pids_before} -> {pids_after}"


def assert_error(reply, code: str, rid: int, what: str) -> None:
    assert reply is not None, f"{what}: expected an error reply, got nothing"
    assert isinstance(reply, list) and len(reply) == 3, f"{what}: expected [ERR, id, body], got {reply!r}"
    kind, got_rid, body = reply
    assert kind == wire.ERR, f"{what}: expected an error reply, got {reply!r}"
    assert got_rid == rid, f"{what}: expected the error to carry request id {rid}, got {got_rid}"
    assert body.get("code") == code, f"{what}: expected code {code!r}, got {body!r}"
    assert isinstance(body.get("message"), str) and body["message"], f"{what}: expected a message: {body!r}"


def target_endpoint(node: actorsys.Node, target: str) -> str:
    return node.endpoint if target == "router" else node.client().map.endpoints[0]


def expected_counts(target: str, n: int) -> dict:
    counts = {("router", None): 0, ("worker", 0): 0, ("worker", 1): 0}
    counts[("router", None) if target == "router" else ("worker", 0)] = n
    return counts


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["router", "worker"])
def test_malformed_messages_from_a_dealer_get_bad_request_and_are_counted(node, zctx, target):
    before = snapshot(node)
    peer = Peer(zctx, zmq.DEALER, target_endpoint(node, target))
    for what, frames, rid in MALFORMED:
        assert_error(peer.call(frames), "bad_request", rid, what)
    after = snapshot(node)
    assert_pids_unchanged(before, after)
    assert bad_frames_delta(before, after) == expected_counts(target, len(MALFORMED)), \
        f"expected {len(MALFORMED)} bad frames counted on the {target} only"
    # the same peer is still served
    c = node.client()
    key = key_on_slot(c, "Counter", 0)
    assert peer.ask("Counter", key, "add", 3, rid=99) == [wire.OK, 99, 3]
    assert peer.call([pack([PING, 100])]) == [wire.OK, 100, "pong"]
    assert c.ask("Counter", key, "add", 1) == 4


@pytest.mark.parametrize("target", ["router", "worker"])
def test_malformed_messages_from_a_req_peer_get_bad_request(node, zctx, target):
    """REQ peers add an empty delimiter frame; their errors must come back inside it."""
    before = snapshot(node)
    peer = Peer(zctx, zmq.REQ, target_endpoint(node, target))
    for what, frames, rid in MALFORMED:
        assert_error(peer.call(frames), "bad_request", rid, f"{what} (REQ)")
    after = snapshot(node)
    assert_pids_unchanged(before, after)
    assert bad_frames_delta(before, after) == expected_counts(target, len(MALFORMED))
    key = key_on_slot(node.client(), "Counter", 0)
    assert peer.ask("Counter", key, "add", 5, rid=7) == [wire.OK, 7, 5]


@pytest.mark.parametrize("target", ["router", "worker"])
def test_unknown_types_methods_and_bad_keys_get_clear_codes(node, zctx, target):
    c = node.client()
    key = key_on_slot(c, "Counter", 0)   # the worker target is slot 0: it owns this key
    assert c.ask("Counter", key, "add", 1) == 1
    before = snapshot(node)
    peer = Peer(zctx, zmq.DEALER, target_endpoint(node, target))
    refused = [
        ("Nope", key, "get", "unknown_type"),
        ("", key, "get", "unknown_type"),
        ("Counter", key, "nope", "unknown_method"),
        ("Counter", key, "", "unknown_method"),
        ("Counter", key, "_private", "unknown_method"),
        ("Counter", key, "__init__", "unknown_method"),
        ("Counter", key, "__class__", "unknown_method"),
        ("Counter", key, "on_start", "unknown_method"),
        ("Counter", key, "on_stop", "unknown_method"),
        ("Counter", key, "ref", "unknown_method"),
        ("Counter", key, "state", "unknown_method"),
        ("Counter", key, "storage", "unknown_method"),
        ("Counter", "nul\x00key", "get", "bad_request"),
        ("Counter", "k" * 1025, "get", "bad_request"),
    ]
    for i, (type_name, k, method, code) in enumerate(refused, start=1):
        reply = peer.ask(type_name, k, method, rid=i)
        assert_error(reply, code, i, f"{type_name}/{k[:20]}.{method}")
    reply = peer.ask("Counter", key, "add", 1, 2, 3, rid=50)
    # arguments that do not fit the handler: a bad request (the handler never ran), not
    # the actor's crash
    assert_error(reply, "bad_request", 50, "a handler called with the wrong arity")
    assert "Counter.add()" in reply[2]["message"], f"the error names the method: {reply[2]}"
    reply = peer.call([pack([ASK, 51, "Counter", key, "add", [msgpack.ExtType(5, b"?")], {}])])
    assert_error(reply, "remote", 51, "a handler given an opaque ext type")
    after = snapshot(node)
    assert_pids_unchanged(before, after)
    delta = bad_frames_delta(before, after)
    assert delta[("router", None)] == 0, "the router forwards these; the worker judges them"
    assert delta[("worker", 0)] + delta[("worker", 1)] == len(refused), \
        f"expected {len(refused)} refused requests counted by the workers, got {delta}"
    assert peer.ask("Counter", key, "add", 1, rid=52) == [wire.OK, 52, 2], \
        "expected the actor's state intact after the refused and failed requests"
    assert c.ask("Counter", key, "get") == 2


@pytest.mark.parametrize("target", ["router", "worker"])
def test_oversized_payloads_are_refused_or_dropped_and_the_peer_is_served_again(config, zctx, target):
    with actorsys.Node(config(max_message_bytes=4096)) as node:
        c = node.client()
        key = key_on_slot(c, "Log", 0)
        before = snapshot(node)
        peer = Peer(zctx, zmq.DEALER, target_endpoint(node, target))
        for size in (4097, 5000, 60_000):
            reply = peer.call([pack([ASK, 1, "Log", key, "append", ["x" * size], {}])])
            assert_error(reply, "too_large", 1, f"a {size}-byte argument")
            assert "4096" in reply[2]["message"], "expected the limit named in the error"
        # far above the limit: ZeroMQ itself drops the message and the connection
        assert peer.call([pack([ASK, 2, "Log", key, "append", ["x" * 200_000], {}])], timeout=1.0) is None
        after = snapshot(node)
        assert_pids_unchanged(before, after)
        assert bad_frames_delta(before, after) == expected_counts(target, 3)
        # the dropped peer reconnects by itself and is served; a message just under the limit works
        reply = peer.call([pack([ASK, 3, "Log", key, "append", ["y" * 3000], {}])], timeout=5.0)
        assert reply == [wire.OK, 3, 1], f"expected a message under the limit accepted, got {reply!r}"
        assert c.ask("Log", key, "items") == ["y" * 3000]


# ---------------------------------------------------------------------------------------
# the client refuses oversized messages without sending them


def _worker_received(node: actorsys.Node) -> dict:
    return {p["slot"]: p["received"] for p in node.status()["processes"] if p["role"] == "worker"}


def test_client_refuses_an_oversized_message_without_sending_it(config):
    with actorsys.Node(config(max_message_bytes=4096)) as node:
        c = node.client()
        before = _worker_received(node)
        with pytest.raises(actorsys.MessageTooLarge, match="4096"):
            c.ask("Log", "big", "append", "x" * 5000)
        with pytest.raises(actorsys.MessageTooLarge):
            c.tell("Log", "big", "append", "x" * 5000)
        with pytest.raises(actorsys.MessageTooLarge):
            c.ask("Log", "big", "append", item="x" * 5000)
        after = _worker_received(node)
        # each status request reaches every worker once; nothing else did
        assert after == {s: n + 1 for s, n in before.items()}, \
            f"expected nothing sent to the workers: received {before} -> {after}"
        assert c.ask("Log", "big", "append", "x" * 3000) == 1, "expected a message under the limit to work"


def test_async_client_refuses_an_oversized_message_without_sending_it(config):
    with actorsys.Node(config(max_message_bytes=4096)) as node:
        before = _worker_received(node)

        async def main():
            async with actorsys.connect_async(node.endpoint) as ac:
                with pytest.raises(actorsys.MessageTooLarge, match="4096"):
                    await ac.ask("Log", "big", "append", "x" * 5000)
                with pytest.raises(actorsys.MessageTooLarge):
                    ac.tell("Log", "big", "append", "x" * 5000)
                return await ac.ask("Log", "small", "append", "x" * 3000)

        assert asyncio.run(main()) == 1
        after = _worker_received(node)
        assert sum(after.values()) - sum(before.values()) == 1 + len(after), \
            f"expected only the small ask and one status request sent: {before} -> {after}"


# -- found by scripts/fuzz ---------------------------------------------------------------

def _nested(depth: int) -> list:
    v: list = []
    for _ in range(depth):
        v = [v]
    return v


def test_a_rewind_to_a_deeply_nested_version_is_answered_bad_request(config, zctx):
    """The error message used to repr the version: RecursionError, and no reply at all."""
    with actorsys.Node(config(history_window=60)) as node:
        ref = node.client().ref("Counter", "deep")
        assert ref.ask("add") == 1
        slot = node.client().map.slot_of("Counter", "deep")
        peer = Peer(zctx, zmq.DEALER, node.client().map.endpoints[slot])
        reply = peer.call([pack([ASK, 5, "Counter", "deep", "$rewind", [], {"version": _nested(1000)}])])
        assert_error(reply, "bad_request", 5, "a $rewind to a nested version")
        assert ref.ask("add") == 2


def test_a_tell_to_a_non_string_key_fails_its_turn_and_loses_no_other_reply(config):
    """It used to raise in the group commit after the outbox was taken: the replies of
    every other turn in that batch were never sent."""
    async def run(endpoint: str) -> list:
        async with actorsys.connect_async(endpoint, timeout=10) as c:
            slot = c.transport.map.slot_of("Relay", "r")
            keys = [k for k in (f"c{i}" for i in range(2000))
                    if c.transport.map.slot_of("Counter", k) == slot][:30]
            futs = [c.ask("Relay", "r", "forward_tell", "Counter", 42, "add")]
            futs += [c.ask("Counter", k, "add", 1) for k in keys]
            return await asyncio.gather(*futs, return_exceptions=True)

    with actorsys.Node(config()) as node:
        results = asyncio.run(run(node.endpoint))
    assert isinstance(results[0], actorsys.RemoteError) and "two strings" in str(results[0]), results[0]
    assert results[1:] == [1] * 30, f"expected every other ask answered: {results[1:]}"


def test_only_a_supervision_tree_can_start_or_stop_children(node, zctx):
    """On a node without supervisors, a SPAWN with options from any peer made the actor
    a 'dead' child whose asks then timed out."""
    slot = node.client().map.slot_of("Counter", "victim")
    peer = Peer(zctx, zmq.DEALER, node.client().map.endpoints[slot])
    reply = peer.call([pack([SPAWN, 3, "Counter", "victim", {"sup": "x", "child": "c", "args": [1, 2, 3]}])])
    assert_error(reply, "bad_request", 3, "a SPAWN with options on a node without supervisors")
    reply = peer.call([pack([wire.STOP, 4, "Counter", "victim", {"mode": "kill"}])])
    assert_error(reply, "bad_request", 4, "a STOP on a node without supervisors")
    assert node.client().ref("Counter", "victim").ask("add", timeout=5) == 1
