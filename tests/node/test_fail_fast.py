"""Clients fail fast when their node is unreachable (issue 14), against real nodes.

A node stopped under a client with ``connect_timeout=1``: the asks pending fail with
``NodeUnavailable`` about a second after, not at their 30 s deadline; asks and tells
while it is down raise at once; the same client works again when the node is restarted
on the same endpoint. A worker killed alone (router up) is still ``WorkerLost``. A frozen
node (SIGSTOP: no connection closes) is told from an idle one by the router connection's
ZMTP heartbeats."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import threading
import time
from typing import Any, Callable, Iterator

import psutil
import pytest
from helpers import make_config

import actorsys
from actorsys.testing.nodes import key_on_slot, wait_until, worker_pids

GRACE = 1.0          # connect_timeout: how long the node may be unreachable
MARGIN = 2.5         # scheduling on a loaded machine
ASK_TIMEOUT = 30.0


@pytest.fixture
def restartable(tmp_path) -> Iterator[Callable[[], actorsys.Node]]:
    """``start()``: a node at a fixed ipc endpoint (the same one each time), on one
    data directory; every node started is stopped at the end."""
    sock_dir = tempfile.mkdtemp(prefix="as-ff-")       # short: unix socket paths are limited
    cfg = make_config(str(tmp_path / "data"), endpoint=f"ipc://{sock_dir}/node.sock",
                      shutdown_timeout=2.0)
    nodes: list[actorsys.Node] = []

    def start() -> actorsys.Node:
        n = actorsys.Node(cfg).start()
        nodes.append(n)
        return n
    try:
        yield start
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def outcome(call: Callable[[], Any]) -> dict[str, Any]:
    try:
        return {"result": call(), "at": time.monotonic()}
    except BaseException as exc:
        return {"error": exc, "at": time.monotonic()}


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(outcome(call)))
    t.start()
    return t, out


def test_blocking_client_fails_fast_on_a_stopped_node_and_works_again_after_restart(
        restartable, tmp_path):
    node = restartable()
    with actorsys.connect(node.endpoint, timeout=ASK_TIMEOUT, connect_timeout=GRACE) as c:
        assert c.ref("Counter", "ff").ask("add") == 1
        napper = key_on_slot(c, "Napper", 0)
        marker = str(tmp_path / "napping")
        nap, nap_out = in_thread(lambda: c.ask("Napper", napper, "nap", marker, 20.0))
        wait_until(lambda: os.path.exists(marker), "the nap to start on its worker")

        node.stop()
        stopped = time.monotonic()
        nap.join(GRACE + MARGIN + 2.0)    # + the node's shutdown_timeout of the napping worker
        assert isinstance(nap_out.get("error"), (actorsys.WorkerLost, actorsys.NodeUnavailable)), \
            f"the ask in flight when the node stopped should fail promptly, got {nap_out}"

        # asks sent after the stop wait (a node may come back within connect_timeout), then fail
        asks = [in_thread(lambda i=i: c.ref("Counter", f"ff{i}").ask("add")) for i in range(3)]
        for t, _ in asks:
            t.join(GRACE + MARGIN)
        for _, out in asks:
            assert isinstance(out.get("error"), actorsys.NodeUnavailable), \
                f"expected NodeUnavailable, not a wait for the {ASK_TIMEOUT:g} s deadline: {out}"
            assert out["at"] - stopped < GRACE + MARGIN, \
                f"expected NodeUnavailable about {GRACE:g} s after the stop, got {out['at'] - stopped:.1f} s"
            assert f"the node at {node.endpoint} has been unreachable for" in str(out["error"])

        began = time.monotonic()
        with pytest.raises(actorsys.NodeUnavailable, match="unreachable"):
            c.ref("Counter", "ff").tell("add")
        with pytest.raises(actorsys.NodeUnavailable, match="unreachable"):
            c.ref("Counter", "ff").ask("add")
        assert time.monotonic() - began < 0.5, "calls while the node is down raise at once"

        restartable()
        assert after_restart(lambda: c.ref("Counter", "ff").ask("get")) == 1, \
            "the same client works again once the node is back on its endpoint"
        c.ref("Counter", "ff").tell("add")
        assert c.ref("Counter", "ff").ask("get") == 2, "and its tells arrive"


def test_asyncio_client_fails_fast_on_a_stopped_node_and_works_again_after_restart(restartable):
    node = restartable()
    endpoint = node.endpoint

    async def run() -> None:
        async with actorsys.connect_async(endpoint, timeout=ASK_TIMEOUT,
                                          connect_timeout=GRACE) as c:
            ref = c.ref("Counter", "aff")
            assert await ref.ask("add") == 1
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, node.stop)
            stopped = time.monotonic()
            pending = [c.ref("Counter", f"aff{i}").ask("add") for i in range(3)]
            results = await asyncio.wait_for(
                asyncio.gather(*pending, return_exceptions=True), GRACE + MARGIN)
            waited = time.monotonic() - stopped
            assert all(isinstance(r, actorsys.NodeUnavailable) for r in results), results
            assert waited < GRACE + MARGIN, f"expected them about {GRACE:g} s after the stop: {waited:.1f} s"
            with pytest.raises(actorsys.NodeUnavailable, match="unreachable"):
                ref.tell("add")
            with pytest.raises(actorsys.NodeUnavailable, match="unreachable"):
                ref.ask("add")

            await loop.run_in_executor(None, restartable)
            deadline = time.monotonic() + 10
            while True:      # the client fetches the map when it sees the router back
                try:
                    assert await asyncio.wait_for(ref.ask("get"), 10) == 1
                    break
                except actorsys.NodeUnavailable:
                    assert time.monotonic() < deadline, "the client did not work again"
                    await asyncio.sleep(0.05)
            ref.tell("add")
            assert await ref.ask("get") == 2

    asyncio.run(run())


def after_restart(call: Callable[[], Any]) -> Any:
    """``call()``, again while the client has not yet seen the restarted router (bounded)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return call()
        except actorsys.NodeUnavailable:
            assert time.monotonic() < deadline, "the client did not work again after the restart"
            time.sleep(0.05)


def test_a_killed_worker_is_still_worker_lost_not_node_unavailable(node, tmp_path):
    with actorsys.connect(node.endpoint, timeout=ASK_TIMEOUT, connect_timeout=GRACE) as c:
        napper = key_on_slot(c, "Napper", 0)
        counter = key_on_slot(c, "Counter", 0)
        marker = str(tmp_path / "napping")
        victim = worker_pids(node)[0]       # before the nap: a napping worker answers no status
        nap, out = in_thread(lambda: c.ask("Napper", napper, "nap", marker, 20.0))
        wait_until(lambda: os.path.exists(marker), "the nap to start on its worker")
        os.kill(victim, signal.SIGKILL)
        nap.join(GRACE + MARGIN)
        assert isinstance(out.get("error"), actorsys.WorkerLost), out
        time.sleep(GRACE + 0.5)       # past connect_timeout: the router stayed up throughout
        assert c.ref("Counter", counter).ask("add") == 1, \
            "asks to the restarted slot are answered: a worker restart is not an unreachable node"
        c.ref("Counter", counter).tell("add")
        assert c.ref("Counter", counter).ask("get") == 2


def node_pids(node: actorsys.Node) -> list[int]:
    """The node supervisor and every process under it."""
    sup = psutil.Process(node.pid)
    return [sup.pid] + [p.pid for p in sup.children(recursive=True)]


def test_a_frozen_node_is_told_from_an_idle_one_by_heartbeats_and_works_again_when_thawed(node):
    """Every process of the node stopped (SIGSTOP): no connection closes, so only the
    router connection's ZMTP heartbeats show the node is gone."""
    with actorsys.connect(node.endpoint, timeout=ASK_TIMEOUT, connect_timeout=GRACE) as c:
        ref = c.ref("Counter", "frozen")
        assert ref.ask("add") == 1
        time.sleep(2 * GRACE)        # idle for longer than the grace period: still up
        assert ref.ask("add") == 2, "an idle node is not an unreachable one"
        pids = node_pids(node)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            frozen = time.monotonic()
            out = outcome(lambda: ref.ask("add"))
            took = out["at"] - frozen
            assert isinstance(out.get("error"), actorsys.NodeUnavailable), out
            # heartbeat timeout (~GRACE after the last ping) + the grace period
            assert took < 3 * GRACE + MARGIN, \
                f"expected NodeUnavailable within ~{3 * GRACE:g} s: {took:.1f} s"
            with pytest.raises(actorsys.NodeUnavailable, match="unreachable"):
                ref.tell("add")
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        assert after_restart(lambda: ref.ask("get")) in (2, 3), \
            "the client works again when the node is thawed (the failed ask may have run)"


def test_asyncio_client_tells_a_frozen_node_by_heartbeats(node):
    endpoint = node.endpoint

    async def run() -> None:
        async with actorsys.connect_async(endpoint, timeout=ASK_TIMEOUT,
                                          connect_timeout=GRACE) as c:
            ref = c.ref("Counter", "afrozen")
            assert await ref.ask("add") == 1
            await asyncio.sleep(2 * GRACE)      # idle past the grace period: still up
            assert await ref.ask("add") == 2, "an idle node is not an unreachable one"
            pids = node_pids(node)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                frozen = time.monotonic()
                with pytest.raises(actorsys.NodeUnavailable, match="unreachable"):
                    await asyncio.wait_for(ref.ask("add"), 3 * GRACE + MARGIN)
                assert time.monotonic() - frozen < 3 * GRACE + MARGIN
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert await asyncio.wait_for(ref.ask("get"), 10) in (2, 3)
                    break
                except actorsys.NodeUnavailable:
                    assert time.monotonic() < deadline, "the client did not work again"
                    await asyncio.sleep(0.05)

    asyncio.run(run())


@pytest.mark.parametrize("flavour", ["blocking", "asyncio"])
def test_a_retrying_ask_outlives_a_node_restart_within_connect_timeout_and_runs_once(
        restartable, flavour):
    """A node stopped and back within connect_timeout loses nothing: an ask(retry=True)
    sent meanwhile waits for it and is answered once."""
    node = restartable()
    key = f"rr-{flavour}"

    def restart_soon() -> threading.Timer:
        node.stop()
        later = threading.Timer(0.5, restartable)
        later.start()
        return later

    if flavour == "blocking":
        with actorsys.connect(node.endpoint, connect_timeout=15.0, timeout=ASK_TIMEOUT) as c:
            ref = c.ref("Counter", key)
            assert ref.ask("add") == 1
            later = restart_soon()
            try:
                got = ref.ask("add", retry=True, timeout=20.0)
            finally:
                later.join()
            assert ref.ask("get") == 2
    else:
        async def run() -> int:
            async with actorsys.connect_async(node.endpoint, connect_timeout=15.0) as ac:
                ref = ac.ref("Counter", key)
                assert await ref.ask("add") == 1
                later = await asyncio.get_running_loop().run_in_executor(None, restart_soon)
                try:
                    r = await ref.ask("add", retry=True, timeout=20.0)
                finally:
                    await asyncio.to_thread(later.join)
                assert await ref.ask("get") == 2
                return r
        got = asyncio.run(run())
    assert got == 2, "expected the retried add answered once, after the restart"


def test_a_retrying_ask_still_fails_fast_on_a_node_down_past_connect_timeout(restartable):
    """retry=True retries a lost worker, not an unreachable node: past connect_timeout
    the ask fails with NodeUnavailable then, not at its deadline."""
    node = restartable()
    with actorsys.connect(node.endpoint, connect_timeout=GRACE, timeout=ASK_TIMEOUT) as c:
        assert c.ref("Counter", "down").ask("add") == 1
        node.stop()
        started = time.monotonic()
        with pytest.raises(actorsys.NodeUnavailable, match="unreachable"):
            c.ref("Counter", "down").ask("add", retry=True, timeout=20.0)
        took = time.monotonic() - started
        assert took < GRACE + MARGIN, f"expected NodeUnavailable after ~{GRACE} s, took {took:.1f} s"
        started = time.monotonic()
        with pytest.raises(actorsys.NodeUnavailable, match="unreachable"):
            c.ref("Counter", "down").ask("add", retry=True, timeout=20.0)
        assert time.monotonic() - started < 1.0, "expected a retrying ask refused at the call"
