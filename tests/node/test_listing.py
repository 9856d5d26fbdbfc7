"""Listing actors (client.list_actors, ``actorsys ls``), an actor's own identity, and
ref.destroy() (also from the CLI), against real nodes."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

import actorsys
from actorsys.testing.nodes import after_kill, kill_worker_of, slot_of, wait_until

ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")
DO_ACTORS = {
    "Box": "do_actors:Box",
    "BoxTwo": "do_actors:Box",      # same class, another type: never mixed into Box's list
    "Bo": "do_actors:Box",          # a type name that is a prefix of "Box"
    "Witness": "do_actors:Witness",
    "HBox": {"class": "do_actors:Box", "history_window": 3600},
}


def do_config(config, **node):
    cfg = config(**node)
    cfg["actors"].update(DO_ACTORS)
    return cfg


@pytest.fixture
def do_node(config):
    with actorsys.Node(do_config(config)) as n:
        yield n


def byte_sorted(keys):
    return sorted(keys, key=lambda k: k.encode("utf-8"))


async def _touch_all(endpoint: str, type_name: str, keys: list[str]) -> None:
    async with actorsys.connect_async(endpoint, timeout=60) as c:
        got = await asyncio.gather(*(c.ref(type_name, k).ask("touch") for k in keys))
    assert got == keys, "every actor answered its touch"


def touch_all(node: actorsys.Node, type_name: str, keys: list[str]) -> None:
    """Give every actor persisted data, with pipelined asks (one round of the loop)."""
    asyncio.run(_touch_all(node.endpoint, type_name, keys))


# -- list_actors -------------------------------------------------------------------------

MIXED_KEYS = ["a", "Z", "z", "é1", "\u4e2d", "k-1", "k-10", "k-2", "k 3", "x.y/z"]


def test_list_actors_lists_keys_of_one_type_sorted_across_workers(do_node):
    c = do_node.client()
    touch_all(do_node, "Box", MIXED_KEYS)
    touch_all(do_node, "BoxTwo", ["a", "only-in-two", "k-1"])
    touch_all(do_node, "Bo", ["a", "only-in-bo"])
    slots = {slot_of(c, "Box", k) for k in MIXED_KEYS}
    assert slots == {0, 1}, f"expected the Box keys spread over both workers, got slots {slots}"
    listed = c.list_actors("Box")
    assert listed == byte_sorted(MIXED_KEYS), \
        f"expected exactly Box's keys in UTF-8 byte order, got {listed}"
    assert c.list_actors("BoxTwo") == ["a", "k-1", "only-in-two"]
    assert c.list_actors("Bo") == ["a", "only-in-bo"], "a type whose name prefixes another's"
    assert c.list_actors("Witness") == [], "a type with no actors lists nothing"
    with pytest.raises(actorsys.UnknownActorType, match="NotRegistered"):
        c.list_actors("NotRegistered")       # a typo must not look like "no actors"


def test_an_actor_is_listed_once_it_has_persisted_data(do_node):
    c = do_node.client()
    w = c.ref("Witness", "w")
    assert w.ask("seen") == [], "a read-only turn on a fresh actor (no on_start writes)"
    assert c.list_actors("Witness") == [], "expected an actor that persisted nothing unlisted"
    w.ask("record", "something")
    assert c.list_actors("Witness") == ["w"], "expected the actor listed once it wrote state"


def test_pagination_walks_2500_actors_exactly_once(do_node):
    keys = [f"user-{i:05d}" for i in range(2500)]
    touch_all(do_node, "Box", keys)
    touch_all(do_node, "BoxTwo", keys[:100])      # same keys, other type: not in Box's pages
    c = do_node.client()
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = c.list_actors("Box", start_after=after, limit=333)
        assert len(page) <= 333, f"a page holds at most its limit, got {len(page)}"
        if not page:
            break
        assert after is None or page[0] > after, "each page starts after the previous one"
        seen.extend(page)
        after = page[-1]
        pages += 1
    assert pages == 8, f"expected ceil(2500 / 333) = 8 pages, got {pages}"
    assert len(seen) == len(set(seen)) == 2500, \
        f"expected every actor once: {len(seen)} listed, {len(set(seen))} distinct"
    assert seen == keys, "expected the pages in key order, covering every actor"


def test_async_client_lists_the_same_pages(do_node):
    keys = [f"a-{i:04d}" for i in range(300)] + ["é", "\u4e2d"]
    touch_all(do_node, "Box", keys)
    c = do_node.client()

    async def pages_async():
        out = []
        async with actorsys.connect_async(do_node.endpoint) as ac:
            after = None
            while True:
                page = await ac.list_actors("Box", start_after=after, limit=70)
                if not page:
                    return out, await ac.list_actors("Box", limit=10_000)
                out.append(page)
                after = page[-1]

    sync_pages, after = [], None
    while page := c.list_actors("Box", start_after=after, limit=70):
        sync_pages.append(page)
        after = page[-1]
    async_pages, everything = asyncio.run(pages_async())
    assert async_pages == sync_pages, "expected AsyncClient.list_actors to page exactly like Client"
    assert everything == byte_sorted(keys), "expected all keys in byte order from one async call"


def test_list_actors_limit_bounds(do_node):
    keys = [f"k{i:02d}" for i in range(30)]
    touch_all(do_node, "Box", keys)
    c = do_node.client()
    assert c.list_actors("Box", limit=0) == [], "limit 0 lists nothing"
    assert c.list_actors("Box", limit=10) == keys[:10], "the first 10 over both workers"
    assert c.list_actors("Box", limit=10_000) == keys, "limit 10,000 is allowed"
    for bad in (10_001, -1, True, 1.5):
        with pytest.raises((ValueError, TypeError)) as info:
            c.list_actors("Box", limit=bad)
        assert "limit" in str(info.value), f"expected the error to name the limit: {info.value}"
    with pytest.raises(ValueError):
        c.list_actors("Box", limit=10_001)

    async def async_bounds():
        async with actorsys.connect_async(do_node.endpoint) as ac:
            first = await ac.list_actors("Box", limit=0)
            try:
                await ac.list_actors("Box", limit=10_001)
            except ValueError as exc:
                return first, exc
            return first, None

    first, exc = asyncio.run(async_bounds())
    assert first == [] and isinstance(exc, ValueError), f"AsyncClient: {first}, {exc!r}"


def test_an_actor_knows_its_type_name_and_key(do_node):
    c = do_node.client()
    assert c.ref("Box", "k/1 é").ask("whoami") == ["Box", "k/1 é"]
    assert c.ref("BoxTwo", "k/1 é").ask("whoami") == ["BoxTwo", "k/1 é"], \
        "the registered type name, not the class name"


# -- destroy -------------------------------------------------------------------------------

def test_destroy_deletes_state_storage_and_alarms_and_unlists_the_actor(do_node):
    c = do_node.client()
    victim, control = c.ref("Box", "victim"), c.ref("Box", "control")
    victim.ask("put", {"a": 1, "b": 2, "c": 3})
    victim.ask("set_state", "x", 1)
    control.ask("arm", 1.0, "w-control")      # the side channel works: this alarm fires
    at = victim.ask("arm", 3.0, "w-victim")
    assert victim.ask("alarm_names") == ["wake"]
    assert c.list_actors("Box") == ["control", "victim"]
    result = victim.destroy()
    assert time.time() < at, "the destroy must happen before the alarm's time (machine too slow?)"
    assert result == {"deleted": 5}, \
        f"expected state + 3 entries + 1 alarm record = 5 keys deleted, got {result}"
    assert c.list_actors("Box") == ["control"], "a destroyed actor is no longer listed"

    witness_c, witness_v = c.ref("Witness", "w-control"), c.ref("Witness", "w-victim")
    wait_until(lambda: witness_c.ask("seen"), "the control actor's alarm to fire", timeout=15)
    time.sleep(max(0.0, at + 1.0 - time.time()))    # a second past the victim's alarm time
    assert witness_v.ask("seen") == [], "the destroyed actor's alarm must not fire"
    assert c.list_actors("Box") == ["control"], \
        "nothing (no alarm) brought the destroyed actor back"
    state = victim.ask("get_state")
    assert state == {"starts": 1}, f"expected a fresh start (on_start once, no x, no fired): {state}"
    assert victim.ask("list") == [] and victim.ask("alarm_names") == [], "no entries, no alarms"


def test_destroy_of_an_actor_that_never_existed_deletes_nothing(do_node):
    c = do_node.client()
    assert c.ref("Box", "nobody").destroy() == {"deleted": 0}
    assert c.list_actors("Box") == []


def test_after_destroy_the_next_message_starts_the_actor_fresh(do_node):
    c = do_node.client()
    ref = c.ref("Box", "again")
    ref.ask("put", "k", "v")
    ref.ask("set_state", "x", 1)
    assert ref.ask("get_state")["starts"] == 1
    ref.destroy()
    assert ref.ask("get", "k", "absent") == "absent"
    assert ref.ask("get_state") == {"starts": 1}, \
        "expected on_start to run on an empty state (starts counts from 1 again)"
    ref.ask("put", "k", "new life")
    assert c.list_actors("Box") == ["again"], "once it writes again it is listed again"


def test_destroy_from_an_async_ref(do_node):
    c = do_node.client()
    c.ref("Box", "async-victim").ask("put", {"a": 1})
    c.ref("Box", "keeper").ask("put", {"a": 1})

    async def go():
        async with actorsys.connect_async(do_node.endpoint) as ac:
            ref = ac.ref("Box", "async-victim")
            result = await ref.destroy()
            return result, await ac.list_actors("Box"), await ref.ask("list")

    result, listed, entries = asyncio.run(go())
    assert result == {"deleted": 2}, f"expected state + 1 entry deleted, got {result}"
    assert listed == ["keeper"], f"expected only the other actor listed, got {listed}"
    assert entries == [], "the destroyed actor's entries are gone"


def test_destroy_survives_a_worker_kill(do_node):
    c = do_node.client()
    ref = c.ref("Box", "dead-for-good")
    ref.ask("put", {f"e{i}": i for i in range(20)})
    ref.ask("set_state", "x", 1)
    ref.ask("set_alarm_in", 3600, "later")
    c.ref("Box", "survivor").ask("put", "a", 1)
    assert ref.destroy() == {"deleted": 22}
    kill_worker_of(do_node, c, "Box", "dead-for-good")
    listed = after_kill(c.list_actors, "Box")
    assert listed == ["survivor"], f"expected the destroyed actor not resurrected: {listed}"
    assert after_kill(ref.ask, "list") == [], "its entries stay deleted after kill -9"
    assert after_kill(ref.ask, "alarm_names") == [], "its alarms too"
    assert after_kill(ref.ask, "get_state") == {"starts": 1}, "and its state"


# -- CLI ------------------------------------------------------------------------------------

def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([ACTORSYS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ls(node: actorsys.Node, *args: str) -> list[str]:
    r = cli("ls", "-e", node.endpoint, *args)
    assert r.returncode == 0, f"expected `actorsys ls {' '.join(args)}` to succeed: {r.stderr}"
    return r.stdout.splitlines()


def test_cli_ls_prints_the_keys_one_per_line(do_node):
    keys = ["b", "a", "é", "k 1"]
    touch_all(do_node, "Box", keys)
    touch_all(do_node, "BoxTwo", ["other"])
    assert ls(do_node, "Box") == byte_sorted(keys)
    assert ls(do_node, "Witness") == [], "no actors: no output"


def test_cli_ls_limit_and_after(do_node):
    keys = [f"k{i:03d}" for i in range(40)]
    touch_all(do_node, "Box", keys)
    assert ls(do_node, "Box", "--limit", "5") == keys[:5]
    assert ls(do_node, "--after", "k010", "Box", "--limit", "3") == keys[11:14]
    assert ls(do_node, "Box", "--after", "k035") == keys[36:]
    assert ls(do_node, "Box", "--limit", "0") == []


def test_cli_ls_all_pages_past_1000(do_node):
    keys = [f"n{i:05d}" for i in range(1234)]
    touch_all(do_node, "Box", keys)
    assert ls(do_node, "Box") == keys[:1000], "without --all, at most 1000 keys (the default limit)"
    assert ls(do_node, "Box", "--all") == keys, "--all pages through every key"
    r = cli("ls", "-e", do_node.endpoint, "Box", "--all")
    assert r.stderr.splitlines()[0].startswith("listing Box: 0 keys started"), r.stderr
    assert "listing Box: 1,234 keys done" in r.stderr.splitlines()[-1], \
        "its progress goes to standard error, as plain lines off a terminal"
    assert ls(do_node, "Box", "--all", "--after", "n01000") == keys[1001:]
    assert ls(do_node, "Box", "--limit", "1100") == keys[:1100], "a limit over one page pages too"


def test_cli_history_and_destroy_print_json(do_node):
    c = do_node.client()
    ref = c.ref("HBox", "h")
    ref.ask("put", "k", 1)
    ref.ask("put", "k", 2)
    r = cli("history", "-e", do_node.endpoint, "HBox", "h")
    assert r.returncode == 0, r.stderr
    hist = json.loads(r.stdout)
    assert hist == ref.history() and len(hist) >= 2, f"expected the versions as JSON: {r.stdout}"
    assert all(set(h) == {"version", "time"} for h in hist), hist
    r = cli("destroy", "-e", do_node.endpoint, "HBox", "h")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"deleted"} and out["deleted"] == 2 + len(hist), \
        f"expected state, entry and history records deleted, as JSON: {r.stdout}"
    assert c.list_actors("HBox") == [] and ls(do_node, "HBox") == []
    r = cli("history", "-e", do_node.endpoint, "HBox", "h")
    assert json.loads(r.stdout) == [], "destroy removes the history too"
