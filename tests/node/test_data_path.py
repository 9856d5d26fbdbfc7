"""The data path is one hop: clients ask the router for the map, then talk to workers."""
import zmq

from actorsys.protocol import wire


def _router(status):
    return next(p for p in status["processes"] if p["role"] == "router")


def _worker_received(status):
    return sum(p["received"] for p in status["processes"] if p["role"] == "worker")


def test_asks_go_straight_to_the_owning_worker_not_through_the_router(node):
    c = node.client()
    before = node.status()
    for i in range(50):
        c.ref("Counter", f"k{i}").ask("add")
    after = node.status()
    assert _router(after)["received"] - _router(before)["received"] == 1, \
        "the router should only have seen the second status request, not the 50 asks"
    assert _router(after)["forwarded"] == 0
    assert _worker_received(after) - _worker_received(before) >= 50, "the workers got every ask"
    slots = {c.map.slot_of("Counter", f"k{i}") for i in range(50)}
    assert slots == {0, 1}, "50 keys spread over both worker slots"


def test_the_router_forwards_asks_from_peers_that_do_not_route(node):
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(node.endpoint)
        s.send(wire.pack([wire.ASK, 5, "Counter", "via-router", "add", [3], {}]))
        assert s.poll(5000), "the router should relay the worker's reply"
        assert wire.unpack(s.recv()) == [wire.OK, 5, 3]
    finally:
        ctx.destroy(linger=0)
    assert node.client().ref("Counter", "via-router").ask("get") == 3
    assert _router(node.status())["forwarded"] == 1
