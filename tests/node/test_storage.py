"""self.storage: a key-value store per actor whose writes commit with the turn."""
import pytest

import actorsys

ITEMS = {"a": 1, "b/1": [1, 2], "b/2": {"x": "y"}, "b/3": None, "c": "text", "é": b"\x00bytes"}


@pytest.fixture
def shelf(node):
    ref = node.client().ref("Shelf", "s1")
    ref.ask("put_many", ITEMS)
    return ref


def test_values_round_trip_with_their_msgpack_types(shelf):
    for k, v in ITEMS.items():
        assert shelf.ask("get", k, "MISSING") == v, f"{k!r} should read back as {v!r}"
    assert shelf.ask("get", "nope", "MISSING") == "MISSING", "an absent key gives the default"


def test_list_orders_by_key_bytes_and_honours_prefix_range_reverse_limit(shelf):
    def keys(**kw):
        return [k for k, _ in shelf.ask("list", **kw)]

    assert keys() == ["a", "b/1", "b/2", "b/3", "c", "é"], "key-byte order (é is 0xC3 0xA9)"
    assert keys(prefix="b/") == ["b/1", "b/2", "b/3"]
    assert keys(start="b/2") == ["b/2", "b/3", "c", "é"], "start is inclusive"
    assert keys(end="b/3") == ["a", "b/1", "b/2"], "end is exclusive"
    assert keys(prefix="b/", start="b/2", end="b/3") == ["b/2"]
    assert keys(reverse=True, limit=2) == ["é", "c"]
    assert keys(prefix="b/", reverse=True) == ["b/3", "b/2", "b/1"]
    assert keys(limit=0) == [] and keys(prefix="nope") == []


def test_delete_reports_whether_the_key_existed_and_removes_it(shelf):
    assert shelf.ask("delete", "a") is True
    assert shelf.ask("delete", "a") is False
    assert shelf.ask("get", "a", "gone") == "gone"
    assert [k for k, _ in shelf.ask("list", end="b/2")] == ["b/1"]


def test_reads_within_a_turn_see_its_own_writes_and_deletes(shelf):
    seen = shelf.ask("write_then_list", {"b/0": "new", "b/4": "new"}, ["b/2"], prefix="b/")
    assert [k for k, _ in seen] == ["b/0", "b/1", "b/3", "b/4"], seen
    seen_rev = shelf.ask("write_then_list", {}, ["b/3"], prefix="b/", reverse=True, limit=2)
    assert [k for k, _ in seen_rev] == ["b/4", "b/1"], seen_rev


def test_bad_storage_use_fails_the_turn_with_a_clear_error(shelf):
    with pytest.raises(actorsys.RemoteError, match="storage keys are strings"):
        shelf.ask("put_bad_key")
    with pytest.raises(actorsys.RemoteError) as info:
        shelf.ask("put_unencodable")
    assert info.value.remote_type == "TypeError", info.value
    assert shelf.ask("get", "k", "untouched") == "untouched", "the failed turn wrote nothing"


def test_storage_survives_a_worker_kill_and_a_node_restart(config):
    import os
    import signal

    with actorsys.Node(config()) as node:
        c = node.client()
        ref = c.ref("Shelf", "durable")
        ref.ask("put_many", ITEMS)
        pid = next(p["pid"] for p in node.status()["processes"]
                   if p["role"] == "worker" and p["slot"] == c.map.slot_of("Shelf", "durable"))
        os.kill(pid, signal.SIGKILL)
        for _attempt in range(20):  # an ask that races the kill may be failed with WorkerLost
            try:
                back = dict(ref.ask("list", timeout=5))
                break
            except actorsys.WorkerLost:
                continue
        assert back == ITEMS, "every acknowledged put is back after kill -9"
    with actorsys.Node(config()) as node:
        assert dict(node.client().ref("Shelf", "durable").ask("list")) == ITEMS
