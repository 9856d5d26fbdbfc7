"""Point-in-time history against real nodes: ``ref.history()``, ``ref.rewind()``,
``ref.destroy()`` (blocking, asyncio and CLI), the per-node and per-type
``history_window``, pruning, and history across worker kills and node restarts.

See ``actorsys/history.py`` for the semantics under test.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Iterator

import pytest
from helpers import make_config, module_node

import actorsys
from actorsys.testing.nodes import after_kill, kill_worker_of, wait_until

ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")
DAY = 86400
HISTORY_ACTORS = {
    "Doc": "history_actors:Doc",                                                  # node's window
    "Counted": "history_actors:CountingDoc",                                      # node's window
    "Plain": {"class": "history_actors:Doc", "history_window": 0},               # never history
    "Kept": {"class": "history_actors:Doc", "history_window": DAY},              # always history
    "Brief": {"class": "history_actors:Doc", "history_window": 1},               # 1 s of history
}


def history_config(config, **node):
    cfg = config(**{"history_window": DAY, **node})
    cfg["actors"].update(HISTORY_ACTORS)
    return cfg


@pytest.fixture(scope="module")
def hnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    """A node whose [node] history_window is one day, shared by the module's tests (each
    with actors of its own key)."""
    cfg = make_config(str(tmp_path_factory.mktemp("history") / "data"), history_window=DAY)
    cfg["actors"].update(HISTORY_ACTORS)
    yield from module_node(cfg)


def versions(ref) -> list[int]:
    return [b["version"] for b in ref.history()]


def commit_three(ref) -> list[dict]:
    """Three committing turns (state, storage, state); the snapshot after each."""
    snaps = []
    for call in (("set", "title", "one"), ("put", "body", "first"), ("set", "title", "two")):
        ref.ask(*call)
        snaps.append(ref.ask("snapshot"))
    return snaps


# -- bookmarks ---------------------------------------------------------------------------

def test_history_has_one_bookmark_per_committing_turn_oldest_first(hnode):
    ref = hnode.client().ref("Doc", "bookmarks")
    assert ref.history() == [], "expected no history before the actor ever committed"
    before = time.time()
    ref.ask("set", "a", 1)
    ref.ask("put", "b", 2)
    ref.ask("set_alarm_in", 3600, "far")
    ref.ask("delete", "b")
    after = time.time()
    h = ref.history()
    assert [b["version"] for b in h] == [1, 2, 3, 4], \
        f"expected one version per committing turn (state, storage, alarm, delete), got {h}"
    times = [b["time"] for b in h]
    assert times == sorted(times), f"expected bookmarks oldest first, got {h}"
    assert before - 1 <= times[0] and times[-1] <= after + 1, \
        f"expected commit times (epoch seconds) between {before} and {after}, got {times}"
    assert all(set(b) == {"version", "time"} for b in h), f"bookmarks are {{version, time}}: {h}"

    ref.ask("snapshot")
    ref.ask("memory")
    ref.ask("set", "a", 1)              # the same value: nothing changes, nothing commits
    with pytest.raises(actorsys.RemoteError):
        ref.ask("set_then_fail", "c", 3)    # a failed turn commits nothing
    assert ref.history() == h, \
        "expected read-only turns, a no-op write and a failed turn to add no version"
    ref.ask("set", "a", 2)
    assert versions(ref) == [1, 2, 3, 4, 5], "expected the next commit to be version 5"


# -- rewind --------------------------------------------------------------------------------

def test_rewind_to_a_version_restores_state_storage_and_alarms_and_restarts(hnode):
    ref = hnode.client().ref("Doc", "restore")
    ref.ask("set", "title", "one")                  # v1
    ref.ask("put", "body", "first")                 # v2
    ref.ask("set_alarm_in", 3600, "keep")           # v3
    at_v3 = ref.ask("snapshot")
    ref.ask("set", "title", "two")                  # v4
    ref.ask("put", "body", "second")                # v5
    ref.ask("put", "extra", [1, 2])                 # v6
    ref.ask("cancel", "keep")                       # v7
    ref.ask("set_alarm_in", 3600, "new")            # v8
    ref.ask("set", "added", True)                   # v9
    assert ref.ask("snapshot") != at_v3
    mem = ref.ask("memory")
    assert mem["turns"] > 1

    assert ref.rewind(version=3) == {"version": 10, "restored": 3}, \
        "expected the rewind to be committed as version 10 restoring version 3"
    after = ref.ask("memory")
    assert after["turns"] == 1, \
        f"expected a fresh instance after the rewind (its in-memory turn count reset), got {after}"
    assert after["activations"] == mem["activations"] + 1 and after["pid"] == mem["pid"], \
        f"expected on_start to run again in the same worker after the rewind: {mem} -> {after}"
    assert after["stops"] == mem["stops"], \
        f"expected the instance dropped without on_stop (its memory is from the future): {after}"
    now = ref.ask("snapshot")
    assert now == at_v3, f"expected state, storage and alarms as of version 3:\n{at_v3}\ngot\n{now}"
    assert versions(ref) == list(range(1, 11)), "expected the rewind to add one version"


def test_rewind_runs_on_start_again_on_the_restored_state(hnode):
    ref = hnode.client().ref("Counted", "starts")
    ref.ask("set", "x", 1)                          # v1: starts = 1 (first activation), x = 1
    ref.ask("set", "x", 2)                          # v2
    assert ref.ask("snapshot")["state"] == {"starts": 1, "x": 2}
    ref.rewind(version=1)
    assert ref.ask("snapshot")["state"] == {"starts": 2, "x": 1}, \
        "expected version 1's state (starts=1, x=1) with on_start run once more (starts=2)"


def test_alarms_follow_the_rewind_set_after_is_gone_cancelled_after_is_back(hnode):
    ref = hnode.client().ref("Doc", "alarms")
    back_at = ref.ask("set_alarm_in", 2.5, "back")      # v1
    ref.ask("cancel", "back")                           # v2
    late_at = ref.ask("set_alarm_in", 2.0, "late")      # v3: due before "back"
    assert late_at < back_at
    assert ref.ask("snapshot")["alarms"] == {"late": late_at}

    assert ref.rewind(version=1)["restored"] == 1
    assert ref.ask("snapshot")["alarms"] == {"back": back_at}, \
        "expected the alarm cancelled after version 1 back (same time) and the later one gone"
    # "late" was due before "back": once "back" has fired, "late" would have too
    wait_until(lambda: ref.ask("fired"), "the restored alarm 'back' to fire", timeout=20)
    assert ref.ask("fired") == ["back"], \
        "expected only the restored alarm to fire, not the one set after version 1"
    assert ref.ask("snapshot")["alarms"] == {}, "expected no alarm left after 'back' fired"


def test_rewind_by_time_picks_the_last_version_at_or_before_it(hnode):
    ref = hnode.client().ref("Doc", "by-time")
    snaps = commit_three(ref)
    h = ref.history()
    assert [b["version"] for b in h] == [1, 2, 3]
    t1, t2, t3 = (b["time"] for b in h)

    assert ref.rewind(time=t2)["restored"] == 2, "expected time == version 2's to restore 2"
    assert ref.ask("snapshot") == snaps[1], "expected version 2's data"
    assert ref.rewind(time=(t1 + t2) / 2)["restored"] == 1, \
        "expected a time between versions 1 and 2 to restore version 1"
    assert ref.ask("snapshot") == snaps[0], "expected version 1's data"
    assert ref.rewind(time=(t3 + ref.history()[3]["time"]) / 2)["restored"] == 3, \
        "expected a time between versions 3 and 4 to restore version 3"
    assert ref.ask("snapshot") == snaps[2], "expected version 3's data"
    assert ref.rewind(time=t1 - 10)["restored"] == 0, \
        "expected a time before the first commit to restore the empty actor (version 0)"
    assert ref.ask("snapshot") == {"state": {}, "storage": {}, "alarms": {}}
    assert versions(ref) == [1, 2, 3, 4, 5, 6, 7], "expected every rewind to be a new version"


def test_a_rewind_is_a_version_and_rewinding_to_the_one_before_undoes_it(hnode):
    ref = hnode.client().ref("Doc", "undo")
    snaps = commit_three(ref)
    assert ref.rewind(version=1) == {"version": 4, "restored": 1}
    assert ref.ask("snapshot") == snaps[0]
    assert ref.rewind(version=3) == {"version": 5, "restored": 3}, \
        "expected rewinding to version 3 (just before the rewind) to be version 5"
    assert ref.ask("snapshot") == snaps[2], "expected the rewind undone: version 3's data again"
    assert ref.rewind(version=4) == {"version": 6, "restored": 4}
    assert ref.ask("snapshot") == snaps[0], "expected version 4 (the first rewind's result) again"


def test_bad_rewinds_are_bad_requests_and_change_nothing(hnode):
    ref = hnode.client().ref("Doc", "bad")
    commit_three(ref)
    h = ref.history()
    snap = ref.ask("snapshot")
    turns = ref.ask("memory")["turns"]
    cases = [
        ({"version": 4}, "the next (future) version"),
        ({"version": 99}, "a future version"),
        ({"version": -1}, "a negative version"),
        ({}, "neither version nor time"),
        ({"version": 1, "time": h[0]["time"]}, "both version and time"),
        ({"version": "2"}, "a version that is a string"),
        ({"version": 2.0}, "a version that is a float"),
        ({"time": "yesterday"}, "a time that is a string"),
        ({"time": float("nan")}, "a time that is not a number"),
        ({"time": float("inf")}, "an infinite time"),
    ]
    for kwargs, what in cases:
        with pytest.raises(actorsys.BadRequest) as e:
            ref.rewind(**kwargs)
        assert str(e.value), f"expected an explanation for the rejected rewind ({what})"
    assert ref.history() == h, "expected no version added by rejected rewinds"
    assert ref.ask("snapshot") == snap, "expected the actor's data unchanged by rejected rewinds"
    assert ref.ask("memory")["turns"] == turns + 2, \
        "expected the live instance kept (not restarted) by rejected rewinds"


# -- windows ---------------------------------------------------------------------------------

def test_a_type_with_window_0_has_no_history_even_if_the_node_has(hnode):
    ref = hnode.client().ref("Plain", "none")
    commit_three(ref)
    assert ref.history() == [], "expected no history for a type with history_window = 0"
    with pytest.raises(actorsys.BadRequest, match="history"):
        ref.rewind(version=1)
    with pytest.raises(actorsys.BadRequest, match="history"):
        ref.rewind(time=time.time())
    assert ref.ask("snapshot")["state"] == {"title": "two"}, "expected the data untouched"


def test_a_type_window_gives_history_on_a_node_without(config):
    with actorsys.Node(history_config(config, history_window=0)) as n:
        c = n.client()
        off, on = c.ref("Doc", "k"), c.ref("Kept", "k")
        snaps = commit_three(off)
        commit_three(on)
        assert off.history() == [], "expected no history when the node's window is 0"
        with pytest.raises(actorsys.BadRequest, match="history"):
            off.rewind(version=1)
        assert off.ask("snapshot") == snaps[2]
        assert versions(on) == [1, 2, 3], \
            "expected history for a type with its own history_window on a node without"
        assert on.rewind(version=1)["restored"] == 1
        assert on.ask("snapshot") == snaps[0]


def test_versions_older_than_the_window_are_pruned_and_numbering_goes_on(hnode):
    ref = hnode.client().ref("Brief", "pruned")      # history_window = 1 s (node: a day)
    ref.ask("set", "n", 1)
    ref.ask("set", "n", 2)
    old = ref.history()
    assert [b["version"] for b in old] == [1, 2]
    while time.time() <= old[-1]["time"] + 1.2:       # let both versions age out of the window
        time.sleep(0.05)
    assert ref.history() == old, "expected pruning only as the actor commits"
    ref.ask("set", "n", 3)
    h = ref.history()
    assert [b["version"] for b in h] == [2, 3], \
        f"expected version 1 pruned, and 2 kept (it was current when the window began): {h}"
    ref.ask("set", "n", 4)
    assert versions(ref) == [2, 3, 4], "expected numbering to go on after pruning"

    # only listed versions are restorable: version 1 (pruned) neither by number nor by time
    for kwargs in ({"version": 0}, {"version": 1}, {"time": old[0]["time"]}):
        with pytest.raises(actorsys.BadRequest):
            ref.rewind(**kwargs)
    assert versions(ref) == [2, 3, 4], "expected a rejected rewind to add nothing"
    assert ref.ask("snapshot")["state"] == {"n": 4}
    # any time inside the window restores, including one before its first commit
    assert ref.rewind(time=h[1]["time"] - 0.5) == {"version": 5, "restored": 2}
    assert ref.ask("snapshot")["state"] == {"n": 2}


def test_rewind_takes_a_bookmark_from_history(hnode):
    ref = hnode.client().ref("Doc", "bookmark")
    ref.ask("set", "n", 1)
    mark = ref.history()[-1]
    ref.ask("set", "n", 2)
    assert ref.rewind(mark) == {"version": 3, "restored": mark["version"]}
    assert ref.ask("snapshot")["state"] == {"n": 1}, "the bookmark's version was restored"


def test_rewind_to_version_0_unlists_the_actor_until_it_writes_again(hnode):
    c = hnode.client()
    ref = c.ref("Doc", "zero")
    ref.ask("set", "n", 1)
    assert ref.rewind(version=0) == {"version": 2, "restored": 0}
    assert "zero" not in c.list_actors("Doc"), "expected the empty actor not listed"
    ref.ask("set", "n", 2)
    assert "zero" in c.list_actors("Doc"), "expected the actor listed again once it holds data"


# -- durability ------------------------------------------------------------------------------

def test_history_survives_worker_kill_and_node_restart(config):
    cfg = history_config(config)
    with actorsys.Node(cfg) as n:
        c = n.client()
        ref = c.ref("Doc", "durable")
        snaps = commit_three(ref)
        h = ref.history()
        kill_worker_of(n, c, "Doc", "durable")
        assert after_kill(ref.history) == h, "expected the history kept across kill -9"
        assert ref.rewind(version=1) == {"version": 4, "restored": 1}, \
            "expected a rewind after kill -9"
        assert ref.ask("snapshot") == snaps[0]
        h = ref.history()
    with actorsys.Node(cfg) as n:
        ref = n.client().ref("Doc", "durable")
        assert ref.history() == h, "expected the history (with the rewind) kept across a restart"
        assert ref.ask("snapshot") == snaps[0], "expected the rewound data after the restart"
        assert ref.rewind(version=3) == {"version": 5, "restored": 3}, \
            "expected a rewind after the restart, numbered after the stored versions"
        assert ref.ask("snapshot") == snaps[2]
        ref.ask("set", "title", "three")
        assert versions(ref) == [1, 2, 3, 4, 5, 6]


def test_destroy_removes_the_history_too(hnode):
    ref = hnode.client().ref("Doc", "gone")
    commit_three(ref)
    ref.ask("set_alarm_in", 3600, "a")
    assert ref.destroy()["deleted"] > 0
    assert ref.history() == [], "expected no history after destroy"
    with pytest.raises(actorsys.BadRequest):
        ref.rewind(version=1)
    assert ref.ask("snapshot") == {"state": {}, "storage": {}, "alarms": {}}, \
        "expected nothing left of the actor after destroy (a rejected rewind restores nothing)"
    ref.ask("set", "title", "new")
    assert versions(ref) == [1], "expected a destroyed actor to start its history afresh"


# -- other clients ----------------------------------------------------------------------------

def test_async_ref_history_rewind_and_destroy(hnode):
    async def main():
        async with actorsys.connect_async(hnode.endpoint) as c:
            ref = c.ref("Doc", "async")
            assert await ref.history() == []
            await ref.ask("set", "title", "one")
            first = await ref.ask("snapshot")
            await ref.ask("put", "body", "x")
            h = await ref.history()
            assert [b["version"] for b in h] == [1, 2]
            assert await ref.rewind(1) == {"version": 3, "restored": 1}
            assert await ref.ask("snapshot") == first
            assert (await ref.rewind(time=h[1]["time"]))["restored"] == 2
            with pytest.raises(actorsys.BadRequest):
                await ref.rewind(version=99)
            assert [b["version"] for b in await ref.history()] == [1, 2, 3, 4]
            await ref.destroy()
            assert await ref.history() == []
    asyncio.run(main())


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ACTORSYS, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_cli_history_and_rewind_print_json(hnode):
    ref = hnode.client().ref("Doc", "cli")
    snaps = commit_three(ref)
    ep = hnode.endpoint

    r = cli("history", "Doc", "cli", "-e", ep)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == ref.history(), f"expected the bookmarks as JSON, got {r.stdout}"

    r = cli("rewind", "Doc", "cli", "--version", "1", "-e", ep)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"version": 4, "restored": 1}
    assert ref.ask("snapshot") == snaps[0]

    t2 = ref.history()[1]["time"]
    r = cli("rewind", "Doc", "cli", "--time", repr(t2), "-e", ep)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"version": 5, "restored": 2}
    assert ref.ask("snapshot") == snaps[1]

    r = cli("rewind", "Doc", "cli", "--version", "99", "-e", ep)
    assert r.returncode == 1 and "BadRequest" in r.stderr, \
        f"expected a clear error for a future version: {r.returncode} {r.stderr!r}"
    r = cli("rewind", "Doc", "cli", "-e", ep)
    assert r.returncode != 0 and "--version" in r.stderr, \
        f"expected a usage error without --version/--time: {r.returncode} {r.stderr!r}"
    assert versions(ref) == [1, 2, 3, 4, 5], "expected the failed CLI rewinds to change nothing"


def test_a_supervised_child_that_cannot_start_can_still_be_rewound(config):
    """Its state makes every start fail: history and rewind still answer (they run no actor
    code), and the rewind lets the next restart succeed."""
    cfg = config(ask_timeout=5.0)
    cfg["actors"]["Worker"] = {"class": "sup_actors:Worker", "history_window": 3600}
    cfg["supervisors"] = {"root": {"max_restarts": 1000, "max_seconds": 60,
                                   "backoff": {"initial": 0.3, "max": 0.5, "jitter": 0.0},
                                   "children": [{"id": "c", "actor": "Worker", "key": "c"}]}}
    with actorsys.Node(cfg) as n:
        c = n.client()
        r = c.ref("Worker", "c")
        wait_until(lambda: after_kill(r.ask, "add", 1), "the child to run")
        good = r.history()[-1]["version"]
        r.ask("fail_next_start", True)        # from now on every start of this state fails
        with pytest.raises(actorsys.RemoteError):
            r.ask("crash")
        wait_until(lambda: c.supervisor("root").which_children()[0]["status"] != "running",
                   "the child to be down, its restarts failing")
        assert r.history(timeout=5)[-1]["version"] > good, "history answers while the child is down"
        r.rewind(version=good, timeout=5)
        wait_until(lambda: c.supervisor("root").which_children()[0]["status"] == "running",
                   "a restart to succeed from the rewound state", timeout=15)
        assert r.ask("add", 0) == 1, "the child runs on the state before the bad one"
