"""Edge cases of supervised children inside a worker (actorsys/worker.py), each against a
real node: a SPAWN that meets a live plain activation, a child that ends (a failed start,
self.stop() with a slow on_stop) after its supervisor already stopped it, a brutally
killed async turn that keeps awaiting in its cancellation handler, and ill-typed SPAWN /
STOP options sent by a raw ZeroMQ peer.

Slow steps wait on gate files the test creates (see sup_edges_actors.py), so nothing here
depends on how fast the machine is.
"""
from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

import msgpack
import pytest
import zmq

import actorsys
from actorsys.protocol import wire
from actorsys.testing.nodes import key_on_slot, supervised_config, wait_until, workers

EDGE_ACTORS = {
    "EdgeW": "sup_edges_actors:EdgeW",
    "FailLateStart": "sup_edges_actors:FailLateStart",
    "GatedStop": "sup_edges_actors:GatedStop",
    "CleanupOnCancel": "sup_edges_actors:CleanupOnCancel",
}


def edge_config(config, supervisors: dict[str, Any], **node: Any) -> dict[str, Any]:
    return supervised_config(config, EDGE_ACTORS, supervisors, **node)


def status_of(sup: actorsys.SupervisorRef, cid: str) -> str | None:
    return next((ch["status"] for ch in sup.which_children() if ch["id"] == cid), None)


class Call(threading.Thread):
    """Run ``fn(client)`` in a thread with its own client; ``.result`` / ``.error``."""

    def __init__(self, endpoint: str, fn) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.fn = endpoint, fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with actorsys.connect(self.endpoint) as c:
                self.result = self.fn(c)
        except BaseException as exc:   # reported by the test
            self.error = exc

    def outcome(self, timeout: float) -> Any:
        self.join(timeout)
        assert not self.is_alive(), f"expected the call to end within {timeout} s"
        return self.error if self.error is not None else self.result


# ---------------------------------------------------------------------------------------
# 3. a SPAWN meeting a live plain activation starts it with the spec's arguments


def test_start_child_over_a_live_plain_activation_runs_on_start_with_the_spec_args(config):
    sups = {"root": {"children": [{"id": "anchor", "actor": "EdgeW", "key": "anchor"}]}}
    with actorsys.Node(edge_config(config, sups)) as node:
        c = node.client()
        root = c.supervisor("root")
        assert c.ask("EdgeW", "p", "info") == {"starts": 1, "stops": 0, "args": [], "kwargs": {}}, \
            "expected a plain activation started without arguments"
        root.start_child({"id": "p", "actor": "EdgeW", "key": "p", "args": [7],
                          "kwargs": {"tag": "x"}})
        info = c.ask("EdgeW", "p", "info")
        assert info["args"] == [7] and info["kwargs"] == {"tag": "x"}, \
            f"expected the child started with the spec's args [7] and kwargs, got {info}"
        assert info["starts"] == 2 and info["stops"] == 1, \
            f"expected the plain activation stopped (on_stop) and then started as a child: {info}"
        # it is a real child now: its self.stop() is an exit its supervisor restarts
        assert c.ask("EdgeW", "p", "exit", "crashy") == "crashy"
        wait_until(lambda: c.ask("EdgeW", "p", "info")["starts"] == 3,
                   "the child restarted by its supervisor after an abnormal exit")
        assert c.ask("EdgeW", "p", "info")["args"] == [7], "expected the restart to reuse the spec args"


# ---------------------------------------------------------------------------------------
# 4. a child that ends after its supervisor stopped it stays stopped; the STOP is answered


def test_a_start_failing_after_the_tree_gave_up_leaves_the_child_stopped(config, tmp_path):
    marker, gate = str(tmp_path / "in_on_start"), str(tmp_path / "gate")
    sups = {"root": {"children": [{"id": "anchor", "actor": "EdgeW", "key": "anchor"}]}}
    # the tree waits ask_timeout (1 s) for the start, then stops the child (shutdown 60 s)
    with actorsys.Node(edge_config(config, sups, ask_timeout=1.0)) as node:
        c = node.client()
        spec = {"id": "s", "actor": "FailLateStart", "key": "s", "args": [marker, gate],
                "shutdown": 60000}
        start = Call(node.endpoint, lambda c2: c2.supervisor("root").start_child(spec, timeout=20))
        start.start()
        wait_until(lambda: os.path.exists(marker), "the child's on_start to begin")
        # this ask waits behind the start and is failed when the tree's STOP arrives
        with pytest.raises(actorsys.ActorStopped):
            c.ask("FailLateStart", "s", "info", timeout=20)
        open(gate, "w").close()          # now on_start raises, long after the tree gave up
        outcome = start.outcome(30)
        assert isinstance(outcome, actorsys.StartFailed), \
            f"expected start_child to fail with StartFailed once the child's STOP is answered, " \
            f"got {outcome!r}"
        with pytest.raises(actorsys.ActorStopped):
            c.ask("FailLateStart", "s", "info", timeout=5)
        assert status_of(c.supervisor("root"), "anchor") == "running"


def test_terminate_child_during_an_async_on_stop_of_self_stop_is_answered(config, tmp_path):
    gate = str(tmp_path / "gate")
    sups = {"root": {"children": [{"id": "x", "actor": "GatedStop", "key": "x",
                                   "shutdown": 60000}]}}
    with actorsys.Node(edge_config(config, sups)) as node:
        c = node.client()
        assert c.ask("GatedStop", "x", "exit", gate) == "exiting"   # its on_stop now waits
        term = Call(node.endpoint, lambda c2: c2.supervisor("root").terminate_child("x", timeout=20))
        term.start()
        # queued behind the on_stop, this ask is failed when the STOP reaches the worker
        with pytest.raises(actorsys.ActorStopped):
            c.ask("GatedStop", "x", "info", timeout=20)
        open(gate, "w").close()          # the on_stop ends: the exit after the STOP
        outcome = term.outcome(30)
        assert outcome is None, f"expected terminate_child answered once on_stop ended, got {outcome!r}"
        root = c.supervisor("root")
        assert status_of(root, "x") == "stopped"
        with pytest.raises(actorsys.ActorStopped):
            c.ask("GatedStop", "x", "info", timeout=5)
        root.restart_child("x")
        assert c.ask("GatedStop", "x", "info", timeout=5) == "running", \
            "expected the child to run again after restart_child"


# ---------------------------------------------------------------------------------------
# 5. a brutally killed async turn that keeps awaiting is discarded when it ends


def test_a_killed_turn_awaiting_in_its_cancel_handler_is_discarded(config, tmp_path):
    marker, gate = str(tmp_path / "hanging"), str(tmp_path / "gate")
    sups = {"root": {"children": [
        {"id": "s", "actor": "CleanupOnCancel", "key": "s", "shutdown": "brutal_kill"}]}}
    with actorsys.Node(edge_config(config, sups)) as node:
        c = node.client()
        root = c.supervisor("root")
        slot = c.map.slot_of("CleanupOnCancel", "s")
        # a temporary child on the same worker: its exit travels the same way as any
        # exit of "s", so its removal from the tree is a barrier for those
        probe = key_on_slot(c, "EdgeW", slot, prefix="probe")
        root.start_child({"id": "probe", "actor": "EdgeW", "key": probe, "restart": "temporary"})
        witness = key_on_slot(c, "EdgeW", 1 - slot, prefix="witness")
        hang = Call(node.endpoint, lambda c2: c2.ask("CleanupOnCancel", "s", "hang", marker, gate,
                                                     witness, timeout=40))
        hang.start()
        wait_until(lambda: os.path.exists(marker), "the async turn to begin")
        root.terminate_child("s")                  # brutal_kill: the turn is cancelled
        root.restart_child("s", timeout=10)        # must not wait for the cancelled turn
        assert hang.is_alive(), "the killed turn is still in its cleanup (its gate is closed)"
        assert c.ask("CleanupOnCancel", "s", "info", timeout=5) == {"starts": 2, "hung": False}, \
            "expected the restarted child to serve while the killed turn still awaits"
        open(gate, "w").close()                    # the zombie turn ends now
        outcome = hang.outcome(30)
        assert isinstance(outcome, actorsys.ActorStopped), \
            f"expected the killed turn's caller to get ActorStopped, got {outcome!r}"
        assert c.ask("EdgeW", probe, "exit", "normal") == "normal"
        wait_until(lambda: status_of(root, "probe") is None, "the probe's exit to reach the tree")
        assert status_of(root, "s") == "running"
        assert c.ask("CleanupOnCancel", "s", "info", timeout=5) == {"starts": 2, "hung": False}, \
            "expected no crash reported for the new incarnation (it would be restarted: 3 starts)"
        # what the cancelled turn sent in its cleanup was discarded with it; this ask from
        # the same worker arrives after anything that worker sent the witness before
        c.ask("CleanupOnCancel", "s", "reach", witness, "barrier", timeout=10)
        assert c.ask("EdgeW", witness, "notes") == ["barrier"], \
            "expected the tells and the ask of the killed turn dropped"


# ---------------------------------------------------------------------------------------
# 7. ill-typed SPAWN / STOP options from the wire are refused, never raised

GOOD_SPAWN = {"sup": "root", "child": "c", "args": [1], "kwargs": {}, "inc": 5}
BAD_SPAWN = [
    ("no inc", {k: v for k, v in GOOD_SPAWN.items() if k != "inc"}),
    ("no sup", {k: v for k, v in GOOD_SPAWN.items() if k != "sup"}),
    ("an integer sup", dict(GOOD_SPAWN, sup=5)),
    ("a nil child", dict(GOOD_SPAWN, child=None)),
    ("args a string", dict(GOOD_SPAWN, args="xy")),
    ("args a map", dict(GOOD_SPAWN, args={"a": 1})),
    ("kwargs an array", dict(GOOD_SPAWN, kwargs=[1])),
    ("kwargs with integer keys", dict(GOOD_SPAWN, kwargs={1: 2})),
    ("inc a string", dict(GOOD_SPAWN, inc="5")),
    ("inc a bool", dict(GOOD_SPAWN, inc=True)),
    ("inc a float", dict(GOOD_SPAWN, inc=5.0)),
    ("inc negative", dict(GOOD_SPAWN, inc=-1)),
    ("inc 2**63", dict(GOOD_SPAWN, inc=2 ** 63)),
    ("inc 1e30", dict(GOOD_SPAWN, inc=1e30)),
    ("inc infinite", dict(GOOD_SPAWN, inc=math.inf)),
    ("inc NaN", dict(GOOD_SPAWN, inc=math.nan)),
]
BAD_STOP = [
    ("shutdown negative", {"shutdown": -1}),
    ("shutdown an unknown word", {"shutdown": "soon"}),
    ("shutdown a float", {"shutdown": 1.5}),
    ("shutdown a bool", {"shutdown": True}),
    ("shutdown nil", {"shutdown": None}),
    ("shutdown infinite", {"shutdown": math.inf}),
    ("forget a string", {"forget": "yes"}),
    ("forget an integer", {"forget": 1}),
    ("inc 1e30", {"shutdown": 100, "inc": 1e30}),
    ("inc a string", {"shutdown": 100, "inc": "5"}),
]


def test_ill_typed_spawn_and_stop_options_get_bad_request_and_the_worker_serves_on(config):
    sups = {"root": {"children": [{"id": "c", "actor": "EdgeW", "key": "c", "args": [1]}]}}
    with actorsys.Node(edge_config(config, sups)) as node:
        c = node.client()
        slot = c.map.slot_of("EdgeW", "c")
        before = workers(node)[slot]
        ctx = zmq.Context()
        try:
            peer = ctx.socket(zmq.DEALER)
            peer.setsockopt(zmq.LINGER, 0)
            peer.connect(c.map.endpoints[slot])

            def call(msg: list) -> Any:
                peer.send(wire.pack(msg))
                assert peer.poll(5000), f"expected a reply to {msg!r} from worker slot {slot}"
                return msgpack.unpackb(peer.recv_multipart()[-1], raw=False, strict_map_key=False)

            cases = ([(f"spawn with {what}", [wire.SPAWN, "EdgeW", "c", opts]) for what, opts in BAD_SPAWN]
                     + [(f"stop with {what}", [wire.STOP, "EdgeW", "c", opts]) for what, opts in BAD_STOP])
            for rid, (what, (op, type_name, key, opts)) in enumerate(cases, start=1):
                reply = call([op, rid, type_name, key, opts])
                assert isinstance(reply, list) and len(reply) == 3 and reply[0] == wire.ERR \
                    and reply[1] == rid, f"{what}: expected an error reply to request {rid}, got {reply!r}"
                assert reply[2].get("code") == "bad_request" and reply[2].get("message"), \
                    f"{what}: expected a bad_request error with a message, got {reply[2]!r}"
                assert call([wire.PING, 1000 + rid]) == [wire.OK, 1000 + rid, "pong"], \
                    f"{what}: expected the worker to answer a ping afterwards"
        finally:
            ctx.destroy(linger=0)
        after = workers(node)[slot]
        assert after["pid"] == before["pid"], "expected the worker process to survive the bad options"
        assert after["bad_frames"] - before["bad_frames"] == len(cases), \
            f"expected {len(cases)} refused requests counted, " \
            f"got {after['bad_frames'] - before['bad_frames']}"
        # neither restarted, re-labelled nor stopped by the refused requests
        assert c.ask("EdgeW", "c", "info") == {"starts": 1, "stops": 0, "args": [1], "kwargs": {}}
        root = c.supervisor("root")
        assert status_of(root, "c") == "running"
        assert c.ask("EdgeW", "c", "exit", "oops") == "oops"     # its record still names root/c
        wait_until(lambda: c.ask("EdgeW", "c", "info")["starts"] == 2,
                   "the child restarted by root after its abnormal exit")


def test_a_plain_turn_failing_after_start_child_is_not_the_new_childs_exit(config, tmp_path):
    """A plain activation's async turn is in flight when start_child makes the address a
    temporary child; when that turn fails, it is the old activation's failure, not an exit
    of the child (which would remove it at once)."""
    import threading
    sups = {"root": {"max_restarts": 5, "children": []}}
    with actorsys.Node(edge_config(config, sups)) as node:
        c = node.client()
        root = c.supervisor("root")
        go = tmp_path / "go"
        out: dict = {}

        def plain_turn() -> None:
            try:
                node.client().ask("EdgeW", "k", "crash_after", str(go), timeout=20)
            except actorsys.ActorError as exc:
                out["error"] = exc

        t = threading.Thread(target=plain_turn)
        t.start()
        wait_until(lambda: workers(node) and sum(w.get("resident", 0) for w in workers(node).values()) >= 1,
                   "the plain activation")
        started = {}

        def start() -> None:
            started["info"] = root.start_child({"id": "k", "actor": "EdgeW", "key": "k",
                                                "restart": "temporary", "args": [3], "shutdown": 300})

        s = threading.Thread(target=start)
        s.start()
        time.sleep(0.3)                 # the SPAWN waits behind the plain turn
        go.write_text("now")
        t.join(20)
        s.join(20)
        assert isinstance(out.get("error"), actorsys.RemoteError), out
        assert started.get("info", {}).get("status") == "running", started
        time.sleep(0.3)                 # an EXIT, had one been sent, has reached the tree now
        assert {ch["id"]: ch["status"] for ch in root.which_children()} == {"k": "running"}
        assert c.ask("EdgeW", "k", "info")["args"] == [3]
