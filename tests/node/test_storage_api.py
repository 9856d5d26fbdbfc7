"""The Durable Objects storage API of ``self.storage``, against real nodes.

Batch get/put/delete, list (prefix, start, start_after, end, reverse, limit), reads
that see the turn's own writes, ``transaction()`` blocks, ``delete_all()``, ``size()``,
the key and value limits, and the per-actor read cache.

The tests share one node (:func:`helpers.module_node`), each with a Box of its own.
"""
from __future__ import annotations

from typing import Iterator

import pytest
from helpers import make_config, module_node, own_key

import actorsys
from actorsys.protocol import wire
from actorsys.storage.slot import CACHE_ENTRIES, MAX_STORAGE_KEY_BYTES
from actorsys.testing.nodes import after_kill, kill_worker_of

MAX_VALUE = 64 * 1024          # the node's max_value_bytes in these tests ("64KiB")
DO_ACTORS = {
    "Box": "do_actors:Box",
    "Witness": "do_actors:Witness",
    "HBox": {"class": "do_actors:Box", "history_window": 3600},
}


def do_config(config, **node):
    cfg = config(**{"max_value_bytes": "64KiB", **node})
    cfg["actors"].update(DO_ACTORS)
    return cfg


@pytest.fixture(scope="module")
def box_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    """One node for the module: each test's Box is its own (its key is the test's name)."""
    cfg = make_config(str(tmp_path_factory.mktemp("storage_api") / "data"), max_value_bytes="64KiB")
    cfg["actors"].update(DO_ACTORS)
    yield from module_node(cfg)


@pytest.fixture
def box(box_node, request):
    return box_node.client().ref("Box", own_key(request))


def pairs_keys(pairs):
    return [k for k, _v in pairs]


# -- batch get / put / delete ----------------------------------------------------------

def test_batch_get_returns_a_dict_of_the_found_keys_only(box):
    box.ask("put", {"a": 1, "b": [2], "c": None})
    got = box.ask("get", ["a", "b", "missing", "c"])
    assert got == {"a": 1, "b": [2], "c": None}, \
        f"expected the found keys only (a stored None is found), got {got}"
    assert box.ask("get", []) == {}, "a batch get of no keys is an empty dict"


def test_batch_put_writes_every_item_of_the_dict(box):
    items = {f"k{i}": {"i": i} for i in range(50)}
    assert box.ask("put", items) is None
    assert box.ask("get", list(items)) == items, "every item of the batch put reads back"


def test_batch_put_with_an_unencodable_value_writes_nothing_of_the_batch(box):
    got = box.ask("batch_put_unencodable")
    assert got[0] == "TypeError", f"expected TypeError from the unencodable value, got {got}"
    keys = pairs_keys(box.ask("list"))
    assert keys == ["marker"], f"expected none of the batch written (only the marker), got {keys}"


def test_batch_put_with_a_too_large_value_writes_nothing_of_the_batch(box):
    big = b"x" * (MAX_VALUE + 1)
    got = box.ask("batch_put_catching", {"a_good": 1, "b_big": big, "c_good": 3})
    assert got[:2] == ["LimitExceeded", True], \
        f"expected LimitExceeded (a ValueError) from the batch put, got {got}"
    keys = pairs_keys(box.ask("list"))
    assert keys == ["marker"], \
        f"expected no item of the failed batch stored, only the later marker, got {keys}"


def test_batch_put_with_a_too_long_key_writes_nothing_of_the_batch(box):
    got = box.ask("batch_put_catching", {"a_good": 1, "k" * (MAX_STORAGE_KEY_BYTES + 1): 2})
    assert got[0] == "LimitExceeded", f"expected LimitExceeded for the long key, got {got}"
    assert pairs_keys(box.ask("list")) == ["marker"], "expected nothing of the batch stored"


def test_batch_delete_returns_how_many_existed_and_deletes_them(box):
    box.ask("put", {"a": 1, "b": 2, "c": 3})
    n = box.ask("delete", ["a", "c", "nope", "a"])
    assert n == 2, f"expected 2 of the keys to have existed (a, c; a again counts once), got {n}"
    assert pairs_keys(box.ask("list")) == ["b"], "a and c are gone, b stays"
    assert box.ask("delete", ["a", "c"]) == 0, "deleting deleted keys counts 0"
    assert box.ask("delete", "b") is True and box.ask("delete", "b") is False


# -- list ------------------------------------------------------------------------------

LIST_ITEMS = {"a": 0, "b/1": 1, "b/2": 2, "b/3": 3, "b/3\x00x": 4, "c": 5, "é": 6, "\u4e2d": 7}
# key-byte order: é is C3 A9, 中 is E4 B8 AD; "b/3\0x" sorts right after "b/3"
LIST_ORDER = ["a", "b/1", "b/2", "b/3", "b/3\x00x", "c", "é", "\u4e2d"]


@pytest.fixture
def listed(box):
    box.ask("put", LIST_ITEMS)
    return lambda **kw: pairs_keys(box.ask("list", **kw))


def test_list_returns_every_entry_ordered_by_key_bytes_with_values(box, listed):
    assert listed() == LIST_ORDER, "expected key-byte (UTF-8) order"
    assert box.ask("list") == [[k, LIST_ITEMS[k]] for k in LIST_ORDER], "values come with keys"


def test_list_prefix_selects_keys_starting_with_it(listed):
    assert listed(prefix="b/") == ["b/1", "b/2", "b/3", "b/3\x00x"]
    assert listed(prefix="b/3") == ["b/3", "b/3\x00x"], "the prefix itself is included"
    assert listed(prefix="zzz") == []


def test_list_start_is_inclusive_and_end_exclusive(listed):
    assert listed(start="b/2") == LIST_ORDER[2:]
    assert listed(end="b/3") == ["a", "b/1", "b/2"]
    assert listed(start="b/1", end="c") == ["b/1", "b/2", "b/3", "b/3\x00x"]
    assert listed(start="c", end="b") == [], "an empty range lists nothing"


def test_list_start_after_is_exclusive(listed):
    assert listed(start_after="b/2") == ["b/3", "b/3\x00x", "c", "é", "\u4e2d"]
    assert listed(start_after="b/3") == ["b/3\x00x", "c", "é", "\u4e2d"], \
        "start_after excludes only the key itself, not keys that extend it"
    assert listed(start_after="b/25") == ["b/3", "b/3\x00x", "c", "é", "\u4e2d"], \
        "start_after need not be a stored key"
    assert listed(prefix="b/", start_after="b/1", end="b/3") == ["b/2"]


def test_list_reverse_and_limit(listed):
    assert listed(reverse=True) == LIST_ORDER[::-1]
    assert listed(reverse=True, limit=3) == ["\u4e2d", "é", "c"]
    assert listed(limit=2) == ["a", "b/1"]
    assert listed(prefix="b/", reverse=True, limit=2) == ["b/3\x00x", "b/3"]
    assert listed(start_after="a", end="c", reverse=True) == ["b/3\x00x", "b/3", "b/2", "b/1"]
    assert listed(limit=0) == []


def test_list_with_start_and_start_after_is_a_clear_error(box):
    kind, msg = box.ask("list_error", start="a", start_after="b")
    assert kind == "ValueError" and "start_after" in msg and "start" in msg, \
        f"expected a ValueError naming start and start_after, got {kind}: {msg}"


# -- reads within a turn see the turn's writes -----------------------------------------

def test_reads_within_a_turn_see_its_batch_writes_and_deletes(box):
    box.ask("put", {"x/1": "old", "x/2": "old", "x/3": "old"})
    seen = box.ask("write_then_read", {"x/2": "new", "x/4": "new"}, ["x/3", "x/9"],
                   ["x/1", "x/2", "x/3", "x/4"], prefix="x/")
    assert seen["single"] == {"x/1": "old", "x/2": "new", "x/3": "<absent>", "x/4": "new"}, seen
    assert seen["batch"] == {"x/1": "old", "x/2": "new", "x/4": "new"}, seen
    assert seen["list"] == [["x/1", "old"], ["x/2", "new"], ["x/4", "new"]], \
        f"list within the turn merges its writes and deletes: {seen['list']}"
    assert seen["deleted"] == 1, "x/3 existed, x/9 did not"
    after = box.ask("list", prefix="x/")
    assert after == seen["list"], "the next turn sees what the turn committed"


def test_reads_within_a_turn_see_its_single_puts(box):
    val, listed = box.ask("put_one_by_one_then_read", {"p": 1, "q": 2, "p2": 3}, "q")
    assert val == 2 and listed == [["p", 1], ["p2", 3], ["q", 2]], (val, listed)


# -- transactions -----------------------------------------------------------------------

def test_a_raising_block_undoes_its_writes_state_and_alarms_and_the_turn_goes_on(box):
    seen = box.ask("txn_rollback")
    assert seen["caught"] == "undo the block", "the block's exception propagates to the handler"
    assert seen["storage"] == [["after", 1], ["before", 1], ["overwritten", "before"]], \
        f"expected the block's put, overwrite and delete undone within the turn: {seen['storage']}"
    assert seen["state"] == {"before": 1, "nested": {"kept": True}, "after": 1}, \
        f"expected the block's self.state changes (also nested ones) undone: {seen['state']}"
    assert seen["alarms"] == [], f"expected the alarm set in the block undone: {seen['alarms']}"
    # what the turn did outside the block committed
    assert box.ask("list") == [["after", 1], ["before", 1], ["overwritten", "before"]]
    state = box.ask("get_state")
    assert state.get("before") == 1 and state.get("after") == 1 and "inside" not in state, state
    assert box.ask("alarm_names") == [], "no alarm from the rolled-back block was committed"


def test_a_raising_block_undoes_an_alarm_cancel(box):
    box.ask("set_alarm_in", 3600, "keep")
    seen = box.ask("txn_cancel_alarm_rollback", "keep")
    assert seen == {"caught": "cancelled=True", "alarms": ["keep"]}, \
        f"expected the cancel undone with the block: {seen}"
    assert box.ask("alarm_names") == ["keep"], "the alarm is still set after the turn"


def test_nested_blocks_inner_fails_outer_commits(box):
    seen = box.ask("txn_nested")
    expected_storage = [["outer", 1], ["outer_after_inner", 1]]
    assert seen["storage"] == expected_storage, \
        f"expected the inner block's writes (and its overwrite of 'outer') undone: {seen}"
    assert seen["state"] == {"outer": 1}, f"expected only the outer state change: {seen}"
    assert box.ask("list") == expected_storage, "the outer block committed with the turn"
    assert "inner" not in box.ask("get_state")


def test_a_block_that_succeeds_commits_with_the_turn(box):
    assert box.ask("txn_ok") == "ok"
    assert box.ask("get", "in_ok_block") == 1
    assert box.ask("get_state").get("in_ok_block") == 1
    assert box.ask("alarm_names") == ["ok_alarm"]


def test_a_block_that_succeeds_in_a_turn_that_fails_commits_nothing(box):
    with pytest.raises(actorsys.RemoteError) as info:
        box.ask("txn_then_fail_turn")
    assert info.value.remote_type == "Boom", info.value
    assert box.ask("get", "block_of_failed_turn", "absent") == "absent", \
        "a block's writes commit with the turn, so a failed turn drops them"


def test_transaction_outcome_survives_a_worker_kill(box_node):
    c = box_node.client()
    box = c.ref("Box", "txn-kill")
    box.ask("txn_rollback")
    box.ask("txn_nested")
    kill_worker_of(box_node, c, "Box", "txn-kill")
    keys = pairs_keys(after_kill(box.ask, "list"))
    assert keys == ["after", "before", "outer", "outer_after_inner", "overwritten"], \
        f"expected exactly the committed entries after kill -9 (no 'inside', no 'inner'): {keys}"
    assert after_kill(box.ask, "get", "overwritten") == "before"
    state = after_kill(box.ask, "get_state")
    assert {"before", "after", "outer"} <= set(state) and not {"inside", "inner"} & set(state), \
        f"expected committed state only: {state}"
    assert after_kill(box.ask, "alarm_names") == [], "the rolled-back alarm is not on disk"


# -- delete_all ---------------------------------------------------------------------------

def test_delete_all_removes_every_entry_returns_the_count_and_keeps_state(box):
    box.ask("put", {f"e{i}": i for i in range(30)})
    box.ask("set_state", "kept", "yes")
    n, left = box.ask("delete_all_then_list")
    assert n == 30 and left == [], f"expected 30 entries deleted and none left in the turn: {n}, {left}"
    assert box.ask("list") == [], "expected no entry after the turn committed"
    assert box.ask("get_state").get("kept") == "yes", "delete_all leaves self.state alone"
    assert box.ask("delete_all") == 0, "nothing left to delete"


def test_delete_all_counts_this_turns_writes_too(box):
    box.ask("put", {"a": 1, "b": 2})
    n, left = box.ask("delete_all_then_list")
    assert (n, left) == (2, [])


def test_delete_all_is_durable_across_a_worker_kill(box_node):
    c = box_node.client()
    box = c.ref("Box", "da-kill")
    box.ask("put", {f"e{i}": i for i in range(10)})
    box.ask("set_state", "kept", 1)
    assert box.ask("delete_all") == 10
    kill_worker_of(box_node, c, "Box", "da-kill")
    assert after_kill(box.ask, "list") == [], "expected the deleted entries to stay deleted"
    assert after_kill(box.ask, "get_state").get("kept") == 1, "state survives delete_all and the kill"


# -- size -------------------------------------------------------------------------------

def entry_cost(name: str, value) -> int:
    """What one storage entry adds to size(): the key suffix (b"k" + name) and the value."""
    return 1 + len(name.encode()) + len(wire.pack(value))


def test_size_is_the_bytes_of_state_and_entries(box):
    items = {"a": 1, "bb": "x" * 100, "é": [1, 2, 3], "d": {"nested": b"\x00" * 50}}
    box.ask("put", items)
    state = box.ask("get_state")
    expected = (1 + len(wire.pack(state))) + sum(entry_cost(k, v) for k, v in items.items())
    assert box.ask("size") == expected, \
        f"expected size() = state (1 + packed) + sum of (1 + key + packed value) = {expected}"


def test_size_grows_with_puts_and_shrinks_with_deletes(box):
    box.ask("put", "seed", 0)
    base = box.ask("size")
    value = "v" * 1000
    box.ask("put", "big", value)
    grown = box.ask("size")
    assert grown - base == entry_cost("big", value), \
        f"expected size to grow by exactly the entry ({entry_cost('big', value)}), {base} -> {grown}"
    box.ask("put", "big", "small")
    assert box.ask("size") == base + entry_cost("big", "small"), "an overwrite counts the new value"
    box.ask("delete", "big")
    assert box.ask("size") == base, "a delete gives the bytes back"


def test_size_within_a_turn_counts_its_writes(box):
    box.ask("put", "seed", 0)
    base = box.ask("size")
    during = box.ask("put_then_size", "new", [1, 2, 3])
    assert during == base + entry_cost("new", [1, 2, 3]), (base, during)


def test_size_counts_alarm_records(box):
    box.ask("put", "seed", 0)
    base = box.ask("size")
    at = box.ask("set_alarm_in", 3600, "a1")
    record = {"when": at, "payload": None, "attempt": 0}
    assert box.ask("size") == base + 1 + len("a1") + len(wire.pack(record)), \
        "expected an alarm to add its record (b'l' + name, packed record) to size()"


# -- limits -------------------------------------------------------------------------------

def test_a_16_kib_key_works(box):
    key = "k" * MAX_STORAGE_KEY_BYTES
    assert MAX_STORAGE_KEY_BYTES == 16 * 1024
    box.ask("put", key, "fits")
    assert box.ask("get", key) == "fits"
    assert pairs_keys(box.ask("list")) == [key]


def test_a_16_kib_key_in_multibyte_characters_is_measured_in_bytes(box):
    key = "é" * (MAX_STORAGE_KEY_BYTES // 2)      # 2 bytes each: exactly at the limit
    box.ask("put", key, 1)
    assert box.ask("get", key) == 1
    with pytest.raises(actorsys.RemoteError) as info:
        box.ask("put", key + "a", 1)
    assert info.value.remote_type == "LimitExceeded", info.value


def test_a_key_one_byte_over_16_kib_raises_limit_exceeded_and_the_turn_writes_nothing(box):
    key = "k" * (MAX_STORAGE_KEY_BYTES + 1)
    with pytest.raises(actorsys.RemoteError) as info:
        box.ask("put_marker_then", key, "too long")
    assert info.value.remote_type == "LimitExceeded", f"expected LimitExceeded, got {info.value}"
    assert "16384" in str(info.value), f"expected the message to say the limit: {info.value}"
    assert box.ask("list") == [], "the failed turn's earlier put was not committed"
    assert "marker" not in box.ask("get_state"), "nor its state change"


def test_limit_exceeded_is_a_value_error_inside_the_handler(box):
    got = box.ask("batch_put_catching", {"k" * (MAX_STORAGE_KEY_BYTES + 1): 1})
    assert got[:2] == ["LimitExceeded", True], f"expected a LimitExceeded that is a ValueError: {got}"
    assert issubclass(actorsys.LimitExceeded, ValueError)


def test_a_value_over_max_value_bytes_raises(box):
    with pytest.raises(actorsys.RemoteError) as info:
        box.ask("put_marker_then", "v", b"x" * MAX_VALUE)   # packs to MAX_VALUE + 3 bytes
    assert info.value.remote_type == "LimitExceeded", info.value
    assert str(MAX_VALUE) in str(info.value), f"expected the limit in the message: {info.value}"
    assert box.ask("list") == [], "the failed turn wrote nothing"


def test_a_value_at_max_value_bytes_works(box):
    n = MAX_VALUE - 3                # bin 16 header: 3 bytes
    assert len(wire.pack(b"x" * n)) == MAX_VALUE
    box.ask("put", "v", b"x" * n)
    assert box.ask("get", "v") == b"x" * n
    with pytest.raises(actorsys.RemoteError) as info:
        box.ask("put", "w", b"x" * (n + 1))
    assert info.value.remote_type == "LimitExceeded", "one byte more is over the limit"


def test_a_state_over_max_value_bytes_fails_the_turn(box):
    box.ask("set_state", "before", 1)
    with pytest.raises(actorsys.RemoteError) as info:
        box.ask("grow_state", MAX_VALUE)
    assert info.value.remote_type == "LimitExceeded", f"expected LimitExceeded, got {info.value}"
    assert "self.state" in str(info.value), info.value
    state = box.ask("get_state")
    assert state.get("before") == 1 and "blob" not in state, \
        f"expected the last committed state back: {sorted(state)}"
    assert box.ask("grow_state", MAX_VALUE // 2) == MAX_VALUE // 2, "a state under the limit commits"


@pytest.mark.parametrize("bad", ["lots", "12 parsecs", -1, "512B", "2GiB", 100])
def test_a_bad_max_value_bytes_is_a_config_error_naming_the_key(config, bad):
    with pytest.raises(actorsys.ConfigError) as info:
        actorsys.Node(do_config(config, max_value_bytes=bad))
    assert "max_value_bytes" in str(info.value), f"expected the key named: {info.value}"
    assert "between 1KiB and 1GiB" in str(info.value), f"expected the allowed range: {info.value}"


# -- the read cache ------------------------------------------------------------------------

def test_repeated_reads_follow_writes_in_and_across_turns(box):
    box.ask("put", "c", 1)
    assert box.ask("read_n", "c", 200) == [1] * 200
    assert box.ask("put_read_n", "c", 2, 200) == [2] * 200, "reads in the turn see its write"
    assert box.ask("read_n", "c", 200) == [2] * 200, "the next turn sees the committed write"
    box.ask("delete", "c")
    assert box.ask("read_n", "c", 50) == [None] * 50, "and a delete"
    for i in range(20):
        box.ask("put", "c", i)
        assert box.ask("read_n", "c", 5) == [i] * 5


def test_reads_of_more_keys_than_the_cache_holds_follow_writes(box):
    keys = [f"many/{i:04d}" for i in range(CACHE_ENTRIES + 200)]
    box.ask("put", {k: 0 for k in keys})
    assert box.ask("get", keys) == {k: 0 for k in keys}, "reads fill (and overflow) the cache"
    box.ask("put", {k: 1 for k in keys})
    assert box.ask("get", keys) == {k: 1 for k in keys}, \
        "expected every key's new value, cached or evicted"
    box.ask("delete", keys[::2])
    assert box.ask("get", keys) == {k: 1 for k in keys[1::2]}


def test_reads_after_a_failed_turn_give_the_committed_value(box):
    box.ask("put", "c", "committed")
    box.ask("read_n", "c", 100)
    with pytest.raises(actorsys.RemoteError):
        box.ask("read_put_read_fail", "c", "rolled back", 100)
    assert box.ask("read_n", "c", 100) == ["committed"] * 100


def test_reads_after_a_rolled_back_block_give_the_committed_value(box):
    box.ask("put", "c", "committed")
    seen = box.ask("read_txn_rollback_read", "c", "rolled back", 100)
    assert seen == ["committed"] * 101, f"expected the cached committed value: {set(map(str, seen))}"
    assert box.ask("read_n", "c", 10) == ["committed"] * 10


def test_reads_after_destroy_see_nothing(box):
    box.ask("put", "c", "before destroy")
    assert box.ask("read_n", "c", 100) == ["before destroy"] * 100
    box.destroy()
    assert box.ask("read_n", "c", 100) == [None] * 100, "destroy drops the instance and its cache"


def test_reads_after_rewind_see_the_restored_value(box_node):
    ref = box_node.client().ref("HBox", "h1")
    ref.ask("put", "c", "v1")
    ref.ask("put", "c", "v2")
    assert ref.ask("read_n", "c", 100) == ["v2"] * 100
    hist = ref.history()
    assert len(hist) >= 2, f"expected two versions in the history: {hist}"
    ref.rewind(hist[-2]["version"])
    assert ref.ask("read_n", "c", 100) == ["v1"] * 100, "rewind drops the instance and its cache"


def test_misuse_of_put_and_list_says_what_is_wrong(box):
    kind, msg = box.ask("call_error", "put", "k")
    assert (kind, "needs a value" in msg) == ("TypeError", True), (kind, msg)
    kind, msg = box.ask("call_error", "put", "k", None, encodable=False)
    assert kind == "TypeError" and "'k'" in msg and "msgpack" in msg, \
        f"expected the key of the value that cannot be stored named: {kind}: {msg}"
    for bad in (-1, "3", 1.5):
        kind, msg = box.ask("list_error", limit=bad)
        assert kind == "ValueError" and "limit" in msg, f"expected a clear error for limit={bad!r}: {msg}"
    assert box.ask("get", "k") is None, "nothing was stored by the failed calls"
