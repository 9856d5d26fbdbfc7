"""A socket pump (actorsys/net/sockets.py) on a real DEALER/ROUTER pair over ipc: every
message is handled once and in order, a handler's exception does not stop the socket,
and a backlog of slow messages is drained in slices of at most DRAIN_BUDGET seconds, so
the loop's timers (a worker's heartbeat is one) run in between."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

import pytest
import zmq
from loops import run_until

from actorsys.net import sockets
from actorsys.net.sockets import SocketPump

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair(tmp_path: Any) -> Iterator[tuple[asyncio.AbstractEventLoop, zmq.Socket[Any], zmq.Socket[Any]]]:
    ctx: zmq.Context[Any] = zmq.Context()
    loop = asyncio.new_event_loop()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    for s in (router, dealer):
        s.setsockopt(zmq.LINGER, 0)
    router.bind(f"ipc://{tmp_path}/pump")
    dealer.connect(f"ipc://{tmp_path}/pump")
    try:
        yield loop, router, dealer
    finally:
        router.close(0)
        dealer.close(0)
        loop.close()
        ctx.destroy(linger=0)



def test_a_backlog_of_slow_messages_yields_to_the_loops_timers(pair, monkeypatch) -> None:
    loop, router, dealer = pair
    monkeypatch.setattr(sockets, "DRAIN_BUDGET", 0.03)
    handled: list[int] = []
    ticks: list[int] = []            # how many messages were handled at each timer tick

    def slow(frames: list[bytes]) -> None:
        time.sleep(0.01)             # (a grant of many shards, say)
        handled.append(int(frames[-1]))

    def tick() -> None:
        ticks.append(len(handled))
        if len(handled) < 40:
            loop.call_later(0.005, tick)
    for i in range(40):
        dealer.send(b"%d" % i)
    run_until(loop, lambda: router.poll(0) != 0, 10.0)    # (queued at the router)
    time.sleep(0.05)
    pump = SocketPump(loop, router, slow)
    loop.call_later(0.005, tick)
    run_until(loop, lambda: len(handled) == 40, 10.0)
    pump.close()
    assert handled == list(range(40)), "each once, in order"
    steps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= 5 and max(steps) <= 6, \
        f"the timer ran between slices of about 3 messages (0.03 s at 0.01 s each): {ticks}"


def test_a_handlers_exception_does_not_stop_the_socket(pair, caplog) -> None:
    loop, router, dealer = pair
    handled: list[bytes] = []

    def picky(frames: list[bytes]) -> None:
        if frames[-1] == b"bad":
            raise ValueError("a bug in one message's handling")
        handled.append(frames[-1])
    pump = SocketPump(loop, router, picky)
    for m in (b"one", b"bad", b"two"):
        dealer.send(m)
    run_until(loop, lambda: len(handled) == 2, 10.0)
    pump.close()
    assert handled == [b"one", b"two"]
    assert "handling a message from" in caplog.text
