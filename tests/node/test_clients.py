"""The client surface: spawn, the asyncio client, and the clear errors (unknown type,
unknown method, deadline).

The tests share one node (:func:`helpers.module_node`), each with actors of its own
(the ``own`` fixture); spawn's counts are the differences its test made."""
from __future__ import annotations

import asyncio
import threading
from typing import Iterator

import pytest
from helpers import make_config, module_node

import actorsys


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    """One two-worker node for the module."""
    yield from module_node(make_config(str(tmp_path_factory.mktemp("clients") / "data")))


def workers(node) -> dict[int, dict]:
    return {p["slot"]: p for p in node.status()["processes"] if p["role"] == "worker"}


# -- 12. spawn ------------------------------------------------------------------------------

def test_spawn_activates_the_actor_and_returns_a_ref(node, own):
    c = node.client()
    key = own("spawned")
    slot = c.map.slot_of("Recorder", key)
    before = workers(node)[slot]
    ref = c.spawn("Recorder", key)
    assert isinstance(ref, actorsys.Ref) and (ref.type_name, ref.key) == ("Recorder", key)
    after = workers(node)[slot]
    assert after["activations"] == before["activations"] + 1, \
        "expected spawn itself to activate the actor (on_start ran)"
    assert after["resident"] == before["resident"] + 1, "expected the spawned actor to be resident"
    assert ref.ask("info") == {"activations": 1}, \
        "expected the spawned activation to serve the next ask (on_start ran once)"


def test_spawn_commits_on_start(config):
    cfg = config()
    with actorsys.Node(cfg) as n:
        n.client().spawn("Recorder", "durable-spawn")
    with actorsys.Node(cfg) as n:
        info = n.client().ref("Recorder", "durable-spawn").ask("info")
        assert info == {"activations": 2, "stops": 1}, \
            f"expected the spawn's on_start (and the shutdown's on_stop) to have committed, got {info}"


def test_spawn_without_key_makes_a_unique_key(node):
    c = node.client()
    refs = [c.spawn("Counter") for _ in range(5)]
    keys = [r.key for r in refs]
    assert all(isinstance(k, str) and k for k in keys), f"expected non-empty string keys, got {keys}"
    assert len(set(keys)) == 5, f"expected five distinct keys, got {keys}"
    refs[0].ask("add", 3)
    assert [r.ask("get") for r in refs] == [3, 0, 0, 0, 0], "expected five distinct actors"


def test_spawn_of_unknown_type_is_refused(node):
    with pytest.raises(actorsys.UnknownActorType, match="NoSuchType"):
        node.client().spawn("NoSuchType", "x")


# -- 12. asyncio client ------------------------------------------------------------------------

def test_async_client_as_context_manager(node, own):
    async def main():
        async with actorsys.connect_async(node.endpoint) as c:
            assert isinstance(c, actorsys.AsyncClient)
            ref = c.ref("Counter", own("ac"))
            assert isinstance(ref, actorsys.AsyncRef)
            first = await ref.ask("add", 2)
            second = await ref.ask("add", by=3)
            spawned = await c.spawn("Recorder")
            assert isinstance(spawned, actorsys.AsyncRef) and spawned.key
            return first, second, await spawned.ask("info")

    assert asyncio.run(main()) == (2, 5, {"activations": 1})


def test_async_client_by_await(node, own):
    key = own("awaited")

    async def main():
        c = await actorsys.connect_async(node.endpoint)
        try:
            ref = await c.spawn("Counter", key)
            assert await ref.ask("starts") == 1, "expected spawn to have run on_start"
            return await asyncio.gather(ref.ask("add", 1), c.ask("Counter", key, "add", 1))
        finally:
            await c.close()

    assert sorted(asyncio.run(main())) == [1, 2]
    assert node.client().ref("Counter", key).ask("get") == 2


def test_the_blocking_client_works_from_threads_and_inside_a_running_loop(node, own):
    c = node.client()
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(c.ref("Counter", own("lanes")).ask("add", 1)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == list(range(1, 9)), f"expected every thread answered once: {results}"

    async def coroutine() -> tuple:
        # blocking calls from a coroutine block its loop, as they always have, and work
        return c.ref("Counter", own("lanes")).ask("add", 1), len(c.status()["processes"])

    assert asyncio.run(coroutine()) == (9, 4)


# -- 10. clear errors ------------------------------------------------------------------------------

def test_unknown_actor_type_names_the_type(node):
    with pytest.raises(actorsys.UnknownActorType) as info:
        node.client().ref("NoSuchType", "k").ask("get")
    assert "NoSuchType" in str(info.value), f"expected the error to name the type: {info.value}"


def test_unknown_method_names_the_method(node, own):
    with pytest.raises(actorsys.UnknownMethod) as info:
        node.client().ref("Counter", own("k")).ask("no_such_method")
    assert "no_such_method" in str(info.value), f"expected the error to name the method: {info.value}"
    assert node.client().ref("Counter", own("k")).ask("add", 1) == 1, "expected the actor to work afterwards"


@pytest.mark.parametrize("method", ["_private", "on_start", "ref", "state"])
def test_non_handler_attributes_are_unknown_methods(node, method, own):
    with pytest.raises(actorsys.UnknownMethod, match=method):
        node.client().ref("Counter", own("k")).ask(method)


def test_ask_past_its_deadline_raises_ask_timeout(node, own):
    r = node.client().ref("Counter", own("slow"))
    with pytest.raises(actorsys.AskTimeout):
        r.ask("sleep", 1.0, timeout=0.2)
    # the late reply of the timed-out ask must not be taken for the next ask's answer
    assert r.ask("add", 1) == 1, "expected the next ask to get its own reply"


def test_async_errors(node, own):
    async def main():
        async with actorsys.connect_async(node.endpoint) as c:
            with pytest.raises(actorsys.UnknownActorType, match="NoSuchType"):
                await c.ref("NoSuchType", "k").ask("get")
            with pytest.raises(actorsys.UnknownMethod, match="no_such_method"):
                await c.ref("Counter", own("k")).ask("no_such_method")
            with pytest.raises(actorsys.AskTimeout):
                await c.ref("Counter", own("k")).ask("sleep", 1.0, timeout=0.2)
            with pytest.raises(actorsys.RemoteError) as info:
                await c.ref("Counter", own("k")).ask("add_then_fail", 2)
            assert (info.value.remote_type, info.value.remote_message) == \
                ("ValueError", "failing after adding 2")
            return await c.ref("Counter", own("k")).ask("get")

    assert asyncio.run(main()) == 0


def test_async_ask_leaves_at_the_call_so_call_order_is_send_order(node, own):
    async def run():
        async with actorsys.connect_async(node.endpoint) as c:
            ref = c.ref("Log", own("call-order"))
            first = ref.ask("append", "asked first")   # not awaited yet
            ref.tell("append", "told second")
            await first
            return await ref.ask("items")

    items = asyncio.run(run())
    assert items == ["asked first", "told second"], f"expected call order, got {items}"
