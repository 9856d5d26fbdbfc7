"""Shard handoff key selection (actorsys/storage/handoff.py) against a real LevelDB in a
temporary directory: export returns exactly a set of shards' keys and their index
entries, in pages; import (with clear) and drop touch those shards only."""
from __future__ import annotations

import plyvel
import pytest

from actorsys.errors import BadRequest
from actorsys.protocol import wire
from actorsys.storage import handoff
from actorsys.storage.keys import (actor_prefix, alarm_index_key, alarm_record_key, due_us,
                                   entry_prefix, listing_key, listing_value, request_marker,
                                   state_key, version_key)


def actor_keys(shard: int, key: str, when: float = 2e9) -> dict[bytes, bytes]:
    """Every kind of key one actor of ``shard`` may hold, with its two index entries."""
    p = actor_prefix(shard, "T", key)
    return {
        state_key(p): wire.pack({"n": shard}),
        entry_prefix(p) + b"e1": wire.pack(1),
        alarm_record_key(p, "a"): wire.pack({"when": when, "payload": None, "attempt": 0}),
        version_key(p, 1): wire.pack({}),
        request_marker(p): b"",
        alarm_index_key(p, due_us(when), "a"): b"",
        listing_key("T", key): listing_value(p),
    }


@pytest.fixture
def db(tmp_path):
    d = plyvel.DB(str(tmp_path / "a"), create_if_missing=True)
    yield d
    d.close()


@pytest.fixture
def other(tmp_path):
    d = plyvel.DB(str(tmp_path / "b"), create_if_missing=True)
    yield d
    d.close()


def fill(db, data: dict[bytes, bytes]) -> None:
    with db.write_batch() as wb:
        for k, v in data.items():
            wb.put(k, v)


def test_export_returns_exactly_the_shards_keys_and_their_index_entries(db):
    wanted = {**actor_keys(1, "x"), **actor_keys(1, "y", 2.5e9), **actor_keys(2, "z")}
    fill(db, {**wanted, **actor_keys(0, "w"), **actor_keys(3, "v"), **actor_keys(30, "u")})
    items, nxt = handoff.export_page(db, [2, 1], None, 1 << 20)
    assert nxt is None, "one page holds everything"
    assert dict(items) == wanted
    assert len(items) == len(wanted), "no entry twice"


def test_export_pages_resume_after_the_cursor_and_cover_everything_once(db):
    wanted = {}
    for i in range(20):
        wanted.update(actor_keys(1 + i % 3, f"k{i}"))
    fill(db, {**wanted, **actor_keys(7, "other")})
    seen: dict[bytes, bytes] = {}
    actor_seen: list[bytes] = []
    after, pages = None, 0
    while True:
        items, after = handoff.export_page(db, [1, 2, 3], after, 200)
        actor_items = [(k, v) for k, v in items if k[:1] == b"a"]
        assert len(actor_items) == 1 or sum(len(k) + len(v) for k, v in actor_items) <= 200
        pages += 1
        seen.update(items)
        actor_seen += [k for k, _ in items if k[:1] == b"a"]
        if after is None:
            break
        assert pages < 1000
    assert pages > 5, "small pages: many of them"
    assert seen == wanted
    assert len(actor_seen) == len(set(actor_seen)), "no actor key in two pages"


def test_import_with_clear_replaces_the_shards_and_keeps_the_others(db, other):
    fill(db, actor_keys(4, "moved"))
    stale, kept = actor_keys(4, "stale", 2.2e9), actor_keys(5, "stays")
    fill(other, {**stale, **kept})
    items, _ = handoff.export_page(db, [4], None, 1 << 20)
    checked = handoff.check_items([[k, v] for k, v in items], {4})
    assert handoff.import_items(other, {4}, checked, clear=True) == len(items)
    assert dict(other.iterator()) == {**dict(items), **kept}


def test_import_without_clear_adds(db, other):
    fill(other, actor_keys(4, "already"))
    new = actor_keys(4, "new")
    handoff.import_items(other, {4}, handoff.check_items([[k, v] for k, v in new.items()], {4}),
                         clear=False)
    assert dict(other.iterator()) == {**actor_keys(4, "already"), **new}


@pytest.mark.parametrize("items", [
    "nope", [[b"a", b"b", b"c"]], [["text", b"v"]], [[b"\x00\x04", b"v"]],
    [[k, v] for k, v in actor_keys(6, "foreign").items()],
])
def test_import_items_are_checked(items):
    with pytest.raises(BadRequest):
        handoff.check_items(items, {4})


def test_drop_deletes_the_shards_and_their_index_entries_only(db):
    kept = {**actor_keys(0, "a"), **actor_keys(9, "b")}
    gone = {**actor_keys(3, "c"), **actor_keys(8, "d")}
    fill(db, {**kept, **gone})
    assert handoff.drop_shards(db, {3, 8}) == len(gone)
    assert dict(db.iterator()) == kept
    assert handoff.drop_shards(db, {3, 8}) == 0
