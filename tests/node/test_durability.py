"""What is durable: commits survive node restarts (also with durability = "fsync"),
failed turns leave nothing behind, and passivated actors come back from storage."""
from __future__ import annotations

import pytest

import actorsys
from actorsys.testing.nodes import key_on_slot, wait_until, workers


def write_everything(client) -> dict:
    """Committed writes on both worker slots: counters, state lists, storage entries."""
    expected: dict = {"counters": {}, "logs": {}}
    for slot in (0, 1):
        ck = key_on_slot(client, "Counter", slot, "c")
        for _ in range(3):
            client.ref("Counter", ck).tell("add", 10)
        assert client.ref("Counter", ck).ask("add", 1) == 31   # after the tells: all committed
        expected["counters"][ck] = 31
        lk = key_on_slot(client, "Log", slot, "log")
        for i in range(20):
            client.ref("Log", lk).tell("append", f"{slot}:{i}")
        assert client.ref("Log", lk).ask("append", f"{slot}:last") == 21
        expected["logs"][lk] = [f"{slot}:{i}" for i in range(20)] + [f"{slot}:last"]
    return expected


def check_everything(client, expected: dict) -> None:
    for ck, n in expected["counters"].items():
        assert client.ref("Counter", ck).ask("get") == n, f"expected Counter/{ck} == {n} after restart"
    for lk, items in expected["logs"].items():
        assert client.ref("Log", lk).ask("items") == items, f"expected Log/{lk} state after restart"
        assert client.ref("Log", lk).ask("stored") == \
            {f"item:{i + 1:08d}": v for i, v in enumerate(items)}, \
            f"expected Log/{lk} storage entries after restart"


# -- 9. restart keeps every committed write ----------------------------------------------

def test_restart_on_same_data_dir_keeps_every_committed_write(config):
    cfg = config()
    with actorsys.Node(cfg) as n:
        expected = write_everything(n.client())
        assert n.stop() == 0, "expected a clean stop (exit status 0)"
    with actorsys.Node(cfg) as n:
        check_everything(n.client(), expected)
        assert n.client().ref("Counter", next(iter(expected["counters"]))).ask("starts") == 2, \
            "expected the restarted node to reactivate the actor (on_start a second time)"


def test_failed_turn_leaves_nothing_on_disk(config):
    cfg = config()
    with actorsys.Node(cfg) as n:
        r = n.client().ref("StoreCounter", "atomic")
        r.ask("add", 2)
        r.ask("put", "kept", 1)
        with pytest.raises(actorsys.RemoteError):
            r.ask("add_then_fail", 100)
    with actorsys.Node(cfg) as n:
        r = n.client().ref("StoreCounter", "atomic")
        assert r.ask("get") == 2, "expected the failed turn's state change never to reach disk"
        assert r.ask("entries") == {"kept": 1}, "expected the failed turn's storage write never to reach disk"


# -- 5. durability = "fsync" ---------------------------------------------------------------

def test_fsync_durability_serves_asks_and_keeps_writes_across_restart(config):
    cfg = config(durability="fsync")
    with actorsys.Node(cfg) as n:
        assert n.status()["durability"] == "fsync", "expected the node to run with durability = fsync"
        expected = write_everything(n.client())
    with actorsys.Node(cfg) as n:
        assert n.status()["durability"] == "fsync"
        check_everything(n.client(), expected)


# -- 8. passivation --------------------------------------------------------------------------

def test_idle_actor_is_passivated_and_reactivated_from_storage(config):
    with actorsys.Node(config(idle_timeout=0.3)) as n:
        c = n.client()
        slot = c.map.slot_of("Recorder", "idle")
        assert c.ref("Recorder", "idle").ask("info") == {"activations": 1}
        assert workers(n)[slot]["resident"] == 1, "expected the actor to be resident after its first message"
        w = wait_until(lambda: (lambda w: w if w["resident"] == 0 else None)(workers(n)[slot]),
                       "the idle actor to be passivated")
        assert w["passivations"] >= 1, f"expected the worker to count a passivation: {w}"
        info = c.ref("Recorder", "idle").ask("info")
        assert info == {"activations": 2, "stops": 1}, \
            f"expected on_stop to have run and committed, then a fresh activation; got {info}"


def test_passivated_actor_keeps_its_state_and_storage(config):
    with actorsys.Node(config(idle_timeout=0.3)) as n:
        c = n.client()
        r = c.ref("StoreCounter", "sleepy")
        assert r.ask("add", 7) == 7
        r.ask("put", "note", {"x": [1, 2]})
        slot = c.map.slot_of("StoreCounter", "sleepy")
        wait_until(lambda: workers(n)[slot]["resident"] == 0, "the idle actor to be passivated")
        assert r.ask("get") == 7, "expected the state to survive passivation"
        assert r.ask("peek", "note") == {"x": [1, 2]}, "expected storage to survive passivation"
        assert r.ask("starts") == 2, "expected a reactivation (on_start again) after passivation"
