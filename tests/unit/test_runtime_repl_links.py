"""A replication peer link (actorsys/runtime/repl_links.py) against a real ROUTER peer
over ipc: each request gets its outcome once (the answer, or ShardUnavailable naming
its timeout when unanswered), with one timer for all of them: answered requests leave
no timer behind, and the deadlines kept for them are pruned."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
import zmq
from loops import run_until

from actorsys.errors import ShardUnavailable
from actorsys.protocol import wire
from actorsys.runtime import repl_links
from actorsys.runtime.repl_links import PeerLink

pytestmark = pytest.mark.timeout(30)


class Peer:
    """A peer worker's ROUTER that answers the requests it is told to."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)

    def answer(self, loop: asyncio.AbstractEventLoop, n: int, skip: set[int] = frozenset()) -> None:
        """Read ``n`` requests (running ``loop`` meanwhile); answer those not in ``skip``."""
        for _ in range(n):
            assert self.sock.poll(5000), "no request came"
            envelope, payload = self.sock.recv_multipart()
            op, rid, cmd, args = wire.unpack(payload)
            assert (op, cmd) == (wire.SHARDS, "append")
            if rid not in skip:
                self.sock.send_multipart([envelope, wire.ok(rid, {"n": args["n"]})])


@pytest.fixture
def link(tmp_path: Any) -> Iterator[tuple[asyncio.AbstractEventLoop, PeerLink, Peer]]:
    ctx: zmq.Context[Any] = zmq.Context()
    loop = asyncio.new_event_loop()
    endpoint = f"ipc://{tmp_path}/peer"
    peer = Peer(ctx, endpoint)
    made = PeerLink(loop, ctx, "n2", endpoint, None, 32)
    try:
        yield loop, made, peer
    finally:
        made.close()
        peer.sock.close(0)
        loop.close()
        ctx.destroy(linger=0)



def test_each_request_gets_its_answer_or_its_timeout_once_with_one_timer(link) -> None:
    loop, made, peer = link
    outcomes: dict[int, list[tuple[bool, Any]]] = {}

    def request(n: int, timeout: float) -> None:
        made.request("append", {"n": n}, timeout, lambda ok, body: outcomes.setdefault(n, []).append(
            (ok, body)))
    for n in range(5):
        request(n, 0.3 if n != 2 else 0.15)
    assert made.sweep is not None and made.sweep_at == min(d for d, _r, _t in made.deadlines)
    peer.answer(loop, 5, skip={2 + 1, 4 + 1})       # (request ids count from 1)
    run_until(loop, lambda: len(outcomes) == 5, 5.0)
    assert [outcomes[n] for n in (0, 1, 3)] == [[(True, {"n": n})] for n in (0, 1, 3)]
    for n, timeout in ((2, 0.15), (4, 0.3)):
        [(ok, err)] = outcomes[n]
        assert not ok and isinstance(err, ShardUnavailable), outcomes[n]
        assert f"did not answer within {timeout:g} s" in str(err)
    assert made.calls == {} and made.room == 32
    loop.run_until_complete(asyncio.sleep(0.1))
    assert all(len(v) == 1 for v in outcomes.values()), "each outcome exactly once"
    assert made.sweep is None and made.deadlines == [], "nothing left in flight: no timer"


def test_answered_requests_arm_no_timer_of_their_own_and_are_pruned(link, monkeypatch) -> None:
    loop, made, peer = link
    monkeypatch.setattr(repl_links, "PRUNE_AT", 50)
    got: list[Any] = []
    armed: list[float] = []
    arm = made._arm

    def counting(at: float) -> None:
        armed.append(at)
        arm(at)
    monkeypatch.setattr(made, "_arm", counting)
    for n in range(200):
        made.request("append", {"n": n}, 5.0, lambda ok, body: got.append(body))
        peer.answer(loop, 1)
        run_until(loop, lambda n=n: len(got) == n + 1, 5.0)
    assert len(armed) == 1, "one timer for 200 requests in a row (each answered)"
    assert len(made.deadlines) <= 51, "the answered requests' deadlines are pruned"
    assert got == [{"n": n} for n in range(200)]


def test_close_fails_what_is_in_flight_and_stops_the_timer(link) -> None:
    loop, made, _peer = link
    got: list[tuple[bool, Any]] = []
    made.request("append", {"n": 1}, 5.0, lambda ok, body: got.append((ok, body)))
    made.close()
    assert len(got) == 1 and not got[0][0] and "was closed" in str(got[0][1])
    assert made.sweep is None and made.deadlines == []
