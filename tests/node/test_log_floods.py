"""Logs that cannot flood (issue 20): each source of repeated log lines other than the
gateway, flooded on a real node, writes a bounded number of bytes to the node's
standard error. Bad frames to a worker and to the router (counted, answered, never
logged one by one), a supervised child in a crash loop (its exits and failed restarts:
``supervisors/supervisor.py``'s ``child_log``), refused requests (``test_key_roles.py``).
"""
from __future__ import annotations

import sys
import time
from typing import Iterator

import msgpack
import pytest
import zmq

import actorsys
from actorsys.protocol import wire
from actorsys.testing.nodes import wait_until
from helpers import NodeStderr, make_config, module_node

pytestmark = pytest.mark.timeout(120)
#: malformed messages sent to each of a worker and the router
FLOOD = 5_000
#: what the node may write to its standard error for a whole flood
BOUND = 20_000


@pytest.fixture(scope="module")
def err(tmp_path_factory) -> Iterator[NodeStderr]:
    e = NodeStderr(tmp_path_factory.mktemp("floods-err") / "stderr.log")
    yield e
    sys.stderr.write(e.read()[-5000:])


@pytest.fixture(scope="module")
def node(tmp_path_factory, err) -> Iterator[actorsys.Node]:
    yield from module_node(make_config(str(tmp_path_factory.mktemp("floods") / "data")), err)


def malformed(i: int) -> list[bytes]:
    """One of the kinds of bad input a peer can send (frames after the routing id)."""
    kind = i % 10
    if kind == 0:
        return [b"\xc1garbage"]                                   # not msgpack
    if kind == 1:
        return [wire.pack([99, i])]                               # unknown op
    if kind == 2:
        return [wire.pack([wire.ASK, i, "NoSuchType", "k", "m", [], {}])]
    if kind == 3:
        return [wire.pack([wire.TELL, 0, "NoSuchType", "k", "m", [], {}])]   # nobody to answer
    if kind == 4:
        return [wire.pack([wire.TELL, 0, "Counter", f"f{i % 7}", "no_such_method", [], {}])]
    if kind == 5:
        return [wire.pack([wire.ASK, i, "Counter", "k", 5, "x", None])]      # ill-typed
    if kind == 6:
        return [b"a", b"b", b"c", b"d"]                           # wrong frame count
    if kind == 7:
        return [wire.pack([wire.EXIT, 0, "s", "c", "T", "k", 1, "r", ""])]   # the tree's
    if kind == 8:
        return [wire.pack([wire.BATCH, i, [wire.pack([wire.BATCH, 1, []]), b"\xc1"]])]
    return [msgpack.packb({"not": "a request"})]


def flood(ctx: zmq.Context, endpoint: str) -> None:
    """Send FLOOD malformed messages, then a PING; its answer (in order on one
    connection) says all were handled and the process still serves."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.connect(endpoint)
    try:
        for i in range(FLOOD):
            s.send_multipart(malformed(i))
        s.send(wire.pack([wire.PING, 424242]))
        deadline = time.monotonic() + 30
        while True:
            assert s.poll(max(deadline - time.monotonic(), 0) * 1000), \
                f"expected {endpoint} to answer a PING after the flood"
            reply = wire.unpack(s.recv_multipart()[-1])
            # (replies to a peer that sent a batch come back batched)
            inner = [wire.unpack(p) for p in reply[2]] if reply[0] == wire.BATCH else [reply]
            if any(r[:2] == [wire.OK, 424242] for r in inner):
                return
    finally:
        s.close(0)


@pytest.mark.parametrize("target", ["worker", "router"])
def test_a_flood_of_bad_frames_writes_a_bounded_log(node, err, target):
    c = node.client()
    c.ref("Counter", "warm").ask("add", 1)
    endpoint = c.map.endpoints[0] if target == "worker" else node.endpoint
    before_bytes = len(err.read())
    ctx = zmq.Context()
    try:
        t0 = time.monotonic()
        flood(ctx, endpoint)
        took = time.monotonic() - t0
    finally:
        ctx.destroy(0)
    time.sleep(0.3)
    written = len(err.read()) - before_bytes
    bad = sum(p.get("bad_frames") or 0 for p in node.status()["processes"]
              if p["role"] == target)
    assert bad >= FLOOD * 0.5, f"expected the bad frames counted, got {bad}"
    assert written < BOUND, (f"{FLOOD} bad frames to the {target} wrote {written} bytes in "
                             f"{took:.1f} s:\n{err.text[-3000:]}")
    assert c.ref("Counter", "warm").ask("get") >= 1, "expected the node to serve on"


def test_a_child_in_a_crash_loop_writes_a_bounded_log(tmp_path):
    """A supervised child whose every start fails, under an intensity that allows 1,000
    restarts: its supervisor restarts it as fast as it can until it gives up; the
    node's log stays a few kilobytes."""
    err = NodeStderr(tmp_path / "stderr.log")
    cfg = make_config(str(tmp_path / "data"))
    cfg["actors"].update({"Worker": "sup_actors:Worker", "Journal": "sup_actors:Journal"})
    cfg["supervisors"] = {"loop": {"max_restarts": 1000, "max_seconds": 120,
                                   "children": [{"id": "w", "actor": "Worker", "key": "w"}]}}
    node = err.node(cfg)
    try:
        c = node.client()
        c.ref("Worker", "w").ask("fail_next_start")
        start = len(err.read())
        t0 = time.monotonic()
        with pytest.raises(actorsys.RemoteError):
            c.ref("Worker", "w").ask("crash")
        # the loop ends when the supervisor reaches its intensity; as a root, that
        # stops the node
        wait_until(lambda: "reached max restart intensity" in err.read(),
                   "the crash loop's end", timeout=90)
        took = time.monotonic() - t0
    finally:
        node.stop()
    text = err.read()[start:]
    written = len(text)
    restarts = text.count("exited (") + text.count("restarting child")
    assert "suppressed" in text, f"expected a count of the suppressed lines:\n{text[-3000:]}"
    assert written < BOUND, f"a 1,000-restart crash loop wrote {written} bytes in {took:.1f} s " \
                            f"({restarts} restart lines):\n{text[-3000:]}"
