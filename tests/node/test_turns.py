"""Turn semantics against a real node: no overlap, interleaving at awaits, atomic turns,
group commit, per-sender ordering, single activation, actor-to-actor messages.

The tests share one node (:func:`helpers.module_node`); each uses actors of its own (its
keys carry the test's name: the ``own`` fixture), and the group-commit tests count the turns and
commits between their start and end."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from typing import Iterator

import pytest

import actorsys
from actorsys.protocol.shardmap import shard_of
from actorsys.testing.nodes import key_on_slot, wait_until, workers
from helpers import ROOT, make_config, module_node, own_key


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    """One two-worker node for the module."""
    yield from module_node(make_config(str(tmp_path_factory.mktemp("turns") / "data")))


# -- helpers ----------------------------------------------------------------------------

def run_clients(endpoint: str, script: str, args_per_process: list[list[str]]) -> list[str]:
    """Run one ``python -c script`` per argument list; start them together; return stdouts.

    Each process connects, prints ``ready``, waits for a line on stdin, then does its work,
    so their requests really are concurrent.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    procs = [subprocess.Popen([sys.executable, "-c", script, endpoint, *args], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for args in args_per_process]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", "client process failed to connect"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, f"client process exited with {p.returncode}"
            outs.append(out.strip())
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# -- 1. turns of one actor never overlap ------------------------------------------------

def test_concurrent_async_asks_of_one_actor_lose_no_update(node, own):
    n = 200
    key = own("counter")

    async def main():
        async with actorsys.connect_async(node.endpoint) as c:
            r = c.ref("Counter", key)
            return await asyncio.gather(*(r.ask("slow_add", 1, 0.001) for _ in range(n)))

    results = asyncio.run(main())
    assert sorted(results) == list(range(1, n + 1)), \
        "each slow_add turn should see the previous turn's write (no two turns overlapping)"
    assert node.client().ref("Counter", key).ask("get") == n, \
        f"expected all {n} concurrent slow_add updates to be kept"


def test_concurrent_asks_from_threads_lose_no_update(node, own):
    threads_n, per_thread = 4, 40
    key = own("counter")
    barrier = threading.Barrier(threads_n)
    results: list[int] = []
    errors: list[BaseException] = []

    def work():
        try:
            with actorsys.connect(node.endpoint) as c:
                r = c.ref("Counter", key)
                barrier.wait(timeout=30)
                for _ in range(per_thread):
                    results.append(r.ask("slow_add", 1, 0.001))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, f"expected no errors in client threads, got {errors!r}"
    total = threads_n * per_thread
    assert sorted(results) == list(range(1, total + 1)), \
        "each slow_add turn should see the previous turn's write (no two turns overlapping)"
    assert node.client().ref("Counter", key).ask("get") == total


_SLOW_ADD_SCRIPT = """
import sys, actorsys
ep, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with actorsys.connect(ep) as c:
    r = c.ref("Counter", key)
    print("ready", flush=True)
    sys.stdin.readline()
    print(" ".join(str(r.ask("slow_add", 1, 0.001)) for _ in range(n)))
"""


def test_concurrent_asks_from_processes_lose_no_update(node, own):
    procs_n, per_proc = 3, 40
    key = own("counter")
    outs = run_clients(node.endpoint, _SLOW_ADD_SCRIPT, [[key, str(per_proc)]] * procs_n)
    seen = sorted(int(v) for out in outs for v in out.split())
    total = procs_n * per_proc
    assert seen == list(range(1, total + 1)), \
        "each slow_add turn should see the previous turn's write, across client processes"
    assert node.client().ref("Counter", key).ask("get") == total


# -- 7. single activation -------------------------------------------------------------

_ADD_SCRIPT = """
import sys, actorsys
ep, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with actorsys.connect(ep) as c:
    r = c.ref("Counter", key)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(n):
        r.ask("add", 1)
    print(r.ask("pid"))
"""


def test_one_activation_serves_every_client_process(node, own):
    procs_n, per_proc = 4, 150
    key = own("counter")
    outs = run_clients(node.endpoint, _ADD_SCRIPT, [[key, str(per_proc)]] * procs_n)
    c = node.client()
    assert c.ref("Counter", key).ask("get") == procs_n * per_proc, \
        "expected the final count to equal the total of every process's increments"
    assert c.ref("Counter", key).ask("starts") == 1, \
        "expected exactly one activation (on_start once) for all client processes"
    assert len(set(outs)) == 1, f"expected every process to reach the same worker pid, got {outs}"


# -- 2. different actors on one worker interleave at awaits ------------------------------

@pytest.mark.parametrize("open_method", ["open", "open_async"])
def test_turns_of_actors_on_one_worker_interleave_at_awaits(node, open_method, own):
    client = node.client()
    a = key_on_slot(client, "Gate", 0, own("a"))
    b = next(k for k in (own(f"b-{i}") for i in range(10_000))
             if shard_of("Gate", k, client.map.shards) != shard_of("Gate", a, client.map.shards)
             and client.map.owner[shard_of("Gate", k, client.map.shards)] == 0)
    assert client.ref("Gate", a).ask("pid") == client.ref("Gate", b).ask("pid"), \
        "test setup: both actors should live in the same worker process"
    order: list[str] = []

    async def main():
        async with actorsys.connect_async(node.endpoint) as c:
            async def call(key, method):
                result = await c.ref("Gate", key).ask(method, "g1", timeout=20)
                order.append(key)
                return result

            # A's turn awaits until B's (sync or async) turn opens the gate: only
            # interleaving at A's await lets A finish
            ta = asyncio.create_task(call(a, "wait"))
            await asyncio.sleep(0)  # let A's ask go out first
            rb = await call(b, open_method)
            return await ta, rb

    ra, rb = asyncio.run(main())
    assert (ra, rb) == (f"{a} passed g1", f"{b} opened g1")
    assert order == [b, a], f"expected B to answer before A finished, got order {order}"


# -- 3. a failing turn commits nothing ---------------------------------------------------

def test_failed_turn_discards_state_and_storage_and_reports_the_error(node, own):
    r = node.client().ref("StoreCounter", own("atomic"))
    assert r.ask("add", 3) == 3
    r.ask("put", "kept", "yes")
    assert r.ask("starts") == 1
    with pytest.raises(actorsys.RemoteError) as info:
        r.ask("add_then_fail", 5)
    err = info.value
    assert err.remote_type == "ValueError", f"expected remote_type 'ValueError', got {err.remote_type!r}"
    assert err.remote_message == "failing after adding 5", f"unexpected remote_message {err.remote_message!r}"
    assert "add_then_fail" in err.remote_traceback and "ValueError" in err.remote_traceback, \
        f"expected the remote traceback to show the handler and exception:\n{err.remote_traceback}"
    assert str(err) == "ValueError: failing after adding 5", f"str() should show type and message, got {err}"
    assert r.ask("get") == 3, "expected the failed turn's state change to be discarded"
    assert r.ask("peek", "poison") is None, "expected the failed turn's storage write to be discarded"
    assert r.ask("entries") == {"kept": "yes"}, "expected storage to hold only committed entries"
    assert r.ask("starts") == 2, "expected the actor to restart (on_start again) after the failure"
    assert r.ask("add", 1) == 4, "expected the actor to continue from its last commit"


def test_failed_async_turn_discards_its_changes_and_queued_messages_see_the_last_commit(node, own):
    async def main():
        async with actorsys.connect_async(node.endpoint) as c:
            r = c.ref("StoreCounter", own("async-atomic"))
            assert await r.ask("add", 1) == 1
            # the failing turn awaits with its changes made; the asks queue behind it
            return await asyncio.gather(r.ask("slow_add_then_fail", 5, 0.05), r.ask("get"),
                                        r.ask("peek", "poison"), r.ask("starts"),
                                        return_exceptions=True)

    failed, n, poison, starts = asyncio.run(main())
    assert isinstance(failed, actorsys.RemoteError) and failed.remote_type == "KeyError", \
        f"expected the async handler's KeyError as a RemoteError, got {failed!r}"
    assert "async failure after adding 5" in failed.remote_message
    assert (n, poison, starts) == (1, None, 2), \
        f"expected the queued asks to see the last commit after a restart, got {(n, poison, starts)}"


# -- 4. group commit ---------------------------------------------------------------------

def test_pipelined_turns_are_committed_in_groups(node, own):
    client = node.client()
    blockers = [key_on_slot(client, "Counter", s, own("blocker")) for s in (0, 1)]
    keys = [own(f"g-{i}") for i in range(50)]
    per_key = 8
    before = workers(node)

    async def main():
        async with actorsys.connect_async(node.endpoint) as c:
            # a blocking turn on each worker first, so the writes behind it queue up
            block = [c.ref("Counter", k).ask("sleep", 0.2) for k in blockers]
            adds = [c.ref("Counter", k).ask("add", 1) for _ in range(per_key) for k in keys]
            return await asyncio.gather(*block, *adds)

    results = asyncio.run(main())
    assert results[:2] == ["slept", "slept"]
    assert sorted(results[2:]) == sorted(list(range(1, per_key + 1)) * len(keys))
    after = workers(node)
    for slot in (0, 1):
        turns = after[slot]["turns"] - before[slot]["turns"]
        commits = after[slot]["commits"] - before[slot]["commits"]
        assert turns > 0, f"worker {slot} should have run turns"
        assert commits < turns, \
            f"worker {slot}: expected group commit (commits < turns), got {commits} commits for {turns} turns"


def test_concurrent_asks_to_many_actors_commit_fewer_times_than_turns(node, own):
    before = workers(node)

    async def main():
        async with actorsys.connect_async(node.endpoint) as c:
            return await asyncio.gather(*(c.ref("Counter", own(f"m-{i % 100}")).ask("add", 1)
                                          for i in range(600)))

    results = asyncio.run(main())
    assert sorted(results) == sorted(list(range(1, 7)) * 100)
    after = workers(node)
    turns = sum(after[s]["turns"] - before[s]["turns"] for s in after)
    commits = sum(after[s]["commits"] - before[s]["commits"] for s in after)
    assert turns == 600, f"expected 600 turns, got {turns}"
    assert commits < turns, \
        f"expected group commit (commits < turns), got {commits} commits for {turns} turns"


# -- 6. ordering from one sender -------------------------------------------------------

def test_tells_and_asks_from_one_client_are_processed_in_order(node, own):
    r = node.client().ref("Log", own("ordered"))
    for i in range(300):
        if i % 3 == 2:
            assert r.ask("append", i) == i + 1
        else:
            r.tell("append", i)
    assert r.ask("items") == list(range(300)), "expected items in the order they were sent"
    assert r.ask("stored") == {f"item:{i + 1:08d}": i for i in range(300)}, \
        "expected one storage entry per item, in order"


def test_async_client_messages_are_processed_in_order(node, own):
    async def main():
        async with actorsys.connect_async(node.endpoint) as c:
            r = c.ref("Log", own("async-ordered"))
            lengths = await asyncio.gather(*(r.ask("append", i) for i in range(100)))
            r.tell("append", 100)
            r.tell("append", 101)
            return lengths, await r.ask("items"), await r.ask("stored")

    lengths, items, stored = asyncio.run(main())
    assert lengths == list(range(1, 101)), "expected each append's reply to reflect send order"
    assert items == list(range(102)), "expected items in the order they were sent"
    assert stored == {f"item:{i + 1:08d}": i for i in range(102)}


def test_messages_queued_behind_async_turns_keep_their_order(node, own):
    r = node.client().ref("AsyncLog", own("queued"))

    async def main():
        async with actorsys.connect_async(node.endpoint) as c:
            ar = c.ref("AsyncLog", own("queued"))
            lengths = []
            for i in range(120):           # tells pile up in the mailbox behind slow turns
                if i % 8 == 7:
                    lengths.append(await ar.ask("append_slowly", i))
                else:
                    ar.tell("append_slowly", i)
            # pipelined asks: sent in order, queued behind each other
            lengths += await asyncio.gather(*(ar.ask("append_slowly", i) for i in range(120, 160)))
            return lengths

    lengths = asyncio.run(main())
    assert lengths == [i + 1 for i in range(120) if i % 8 == 7] + list(range(121, 161)), \
        "expected each ask to see exactly the messages sent before it"
    assert r.ask("items") == list(range(160)), "expected the queued messages in the order sent"
    assert r.ask("stored") == {f"item:{i + 1:08d}": i for i in range(160)}


def test_tells_from_one_actor_turn_arrive_in_order(node, own):
    client = node.client()
    relay = key_on_slot(client, "RelayPlus", 0, own("relay"))
    log = key_on_slot(client, "Log", 1, own("log"))
    assert client.ref("RelayPlus", relay).ask("tell_many", "Log", log, "append", list(range(50))) == 50
    wait_until(lambda: len(client.ref("Log", log).ask("items")) == 50, "the 50 tells to arrive")
    assert client.ref("Log", log).ask("items") == list(range(50)), \
        "expected tells from one turn to be processed in the order sent"


# -- 11. actor-to-actor messages ---------------------------------------------------------

@pytest.mark.parametrize("target_slot", [0, 1])
def test_async_handler_asks_an_actor_on_either_worker(node, target_slot, own):
    client = node.client()
    relay = key_on_slot(client, "Relay", 0, own("relay"))
    target = key_on_slot(client, "Counter", target_slot, own("target"))
    r = client.ref("Relay", relay)
    assert r.ask("forward_ask", "Counter", target, "add", 4) == 4
    assert r.ask("forward_ask", "Counter", target, "add", 4) == 8
    assert client.ref("Counter", target).ask("get") == 8, \
        "expected the relayed asks to have updated the target"


@pytest.mark.parametrize("target_slot", [0, 1])
def test_sync_handler_tells_an_actor_on_either_worker(node, target_slot, own):
    client = node.client()
    relay = key_on_slot(client, "Relay", 1, own("relay"))
    target = key_on_slot(client, "Counter", target_slot, own("target"))
    r = client.ref("Relay", relay)
    assert r.ask("forward_tell", "Counter", target, "add", 5) is None
    wait_until(lambda: client.ref("Counter", target).ask("get") == 5, "the relayed tell to arrive")


def test_tells_of_a_failed_turn_are_never_delivered(node, own):
    client = node.client()
    relay = client.ref("RelayPlus", key_on_slot(client, "RelayPlus", 0, own("relay")))
    log_key = key_on_slot(client, "Log", 1, own("log"))
    with pytest.raises(actorsys.RemoteError) as info:
        relay.ask("tell_then_fail", "Log", log_key, "append", "from-failed-turn")
    assert info.value.remote_type == "RuntimeError"
    # a later tell from the same relay: had the first been sent, it would arrive before this
    relay.ask("forward_tell", "Log", log_key, "append", "from-good-turn")
    items = wait_until(lambda: client.ref("Log", log_key).ask("items"), "the good tell to arrive")
    assert items == ["from-good-turn"], \
        f"expected only the committed turn's tell to be delivered, got {items}"


@pytest.mark.parametrize("target_slot", [0, 1])
def test_a_tell_then_an_ask_from_one_turn_arrive_in_the_order_sent(node, target_slot, own):
    client = node.client()
    relay = client.ref("RelayPlus", key_on_slot(client, "RelayPlus", 0, own("relay")))
    log_key = key_on_slot(client, "Log", target_slot, own("log"))
    # The handler tells, then (still inside its turn) asks the same actor. The ask cannot
    # wait for the turn's commit, so the tells made before it leave with it, first.
    seen = relay.ask("tell_then_ask", "Log", log_key, "append", "told", "items")
    assert seen == ["told"], f"expected the earlier tell to be processed before the ask, got {seen}"


def test_an_actor_asking_itself_fails_at_once_instead_of_waiting_out_its_deadline(node):
    relay = node.client().ref("RelayPlus", "narcissus")
    with pytest.raises(actorsys.RemoteError, match="asked itself") as info:
        relay.ask("forward_ask", "RelayPlus", "narcissus", "tell_many", "Log", "x", "append", [],
                  timeout=5)
    assert info.value.remote_type == "ActorError", info.value


# -- 13. identity inside handlers ---------------------------------------------------------

@pytest.mark.parametrize("key", ["plain", "with space/and ünïcode", ""])
def test_handler_sees_its_type_name_and_key(node, key):
    assert node.client().ref("Counter", key).ask("whoami") == ["Counter", key]
    assert node.client().ref("StoreCounter", key).ask("whoami") == ["StoreCounter", key]


def test_a_worker_collects_garbage_with_its_thresholds_and_its_start_frozen(node, request):
    """Workers tune CPython's collector (runtime/worker.py, issue 19): the thresholds of
    GC_THRESHOLDS, and what the start made moved out of every collection's way."""
    from actorsys.runtime.worker import GC_THRESHOLDS

    *thresholds, frozen = node.client().ref("Counter", own_key(request)).ask("gc_settings")
    assert tuple(thresholds) == GC_THRESHOLDS
    assert frozen > 10_000      # the modules and classes of a started worker
