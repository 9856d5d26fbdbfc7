"""keys.py: the exact bytes of every key (the on-disk format), the round trips of the
keys that are taken apart, and the ordering properties range reads and rebalancing
rely on."""
from __future__ import annotations

import datetime

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from actorsys.protocol import wire
from actorsys.storage.keys import (DUE_INDEX_RANGE, actor_prefix, actor_range, alarm_ident,
                                   alarm_index_key, alarm_index_key_of, alarm_record_key,
                                   alarm_records_range, due_us, entry_prefix, index_entry_shard,
                                   index_key_due, index_key_ident, listing_key, listing_range,
                                   listing_value, mark_key, next_prefix, parse_alarm_index_key,
                                   prefix_range, shard_range, sized_ranges, split_actor_key,
                                   state_key, successor, supervision_key, version_key,
                                   version_of_key, version_range)

FAST = settings(max_examples=60, deadline=None)
# actor types and keys: any text without NUL (the worker refuses NUL in actor keys)
names = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
shards = st.integers(0, 0xFFFF)
P = actor_prefix(258, "Type", "key")


def within(k: bytes, r: tuple[bytes, bytes]) -> bool:
    return r[0] <= k < r[1]


# -- the format, byte for byte --------------------------------------------------------

def test_every_key_has_its_documented_bytes():
    assert P == b"a\x01\x02Type\x00key\x00"
    assert state_key(P) == P + b"s"
    assert entry_prefix(P) + "é".encode() == P + b"k\xc3\xa9"
    assert alarm_record_key(P, "tick") == P + b"ltick"
    assert version_key(P, 5) == P + b"h" + b"\x00" * 7 + b"\x05"
    assert supervision_key(P) == P + b"m"
    assert mark_key(P) == P + b"w"
    assert listing_key("Type", "key") == b"nType\x00key"
    assert listing_value(P) == b"\x01\x02"
    assert alarm_index_key(P, 7, "tick") == b"t" + (7).to_bytes(8, "big") + b"\x01\x02Type\x00key\x00tick"
    assert DUE_INDEX_RANGE == (b"t", b"u")



def test_due_us_is_whole_microseconds_and_never_negative():
    assert due_us(1.5) == 1_500_000 and due_us(-3.0) == 0 and due_us(0.0000004) == 0


def test_a_records_index_key_is_the_one_of_its_due_time():
    when = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    rec = wire.pack({"when": when, "payload": None, "attempt": 0})
    assert alarm_index_key_of(P, "tick", rec) == alarm_index_key(P, due_us(when), "tick")
    assert alarm_index_key_of(P, b"tick", rec) == alarm_index_key(P, due_us(when), "tick")


# -- taking keys apart --------------------------------------------------------------

@FAST
@given(shards, names, names, st.sampled_from([b"s", b"m", b"w", b"kname", b"l\x00odd", b"h" + bytes(8)]))
def test_split_actor_key_gives_back_type_key_and_rest(shard, type_name, key, rest):
    parts = split_actor_key(actor_prefix(shard, type_name, key) + rest)
    assert parts == (type_name.encode(), key.encode(), rest)
    assert parts is not None and parts.type_name == type_name.encode() and parts.rest == rest


def test_split_actor_key_refuses_what_is_not_an_actors_key():
    assert split_actor_key(P) is None, "a prefix alone has no rest"
    assert split_actor_key(b"a\x00\x01Type\x00") is None
    assert split_actor_key(b"nType\x00key") is None


@FAST
@given(st.integers(0, 2 ** 63 - 1), shards, names, names, st.text(max_size=10))
def test_a_due_index_key_parses_back(due, shard, type_name, key, name):
    p = actor_prefix(shard, type_name, key)
    k = alarm_index_key(p, due, name)
    assert parse_alarm_index_key(k) == (due, shard, type_name, key, name)
    assert parse_alarm_index_key(k).name == name, "a NamedTuple: fields by name too"
    assert index_key_due(k) == due and index_key_ident(k) == alarm_ident(p, name)
    assert index_entry_shard(k, b"") == shard


@FAST
@given(shards, names, names)
def test_a_listing_entry_names_its_shard(shard, type_name, key):
    p = actor_prefix(shard, type_name, key)
    assert index_entry_shard(listing_key(type_name, key), listing_value(p)) == shard
    assert listing_value(state_key(p)) == listing_value(p), "any key of the actor gives it"


def test_index_entry_shard_leaves_what_it_does_not_understand():
    assert index_entry_shard(b"nType\x00key", b"\x01") is None, "a value that is not 2 bytes"
    assert index_entry_shard(b"t\x00\x00", b"") is None, "a truncated due key"
    assert index_entry_shard(P + b"s", b"\x00\x01") is None, "not an index entry"
    assert index_entry_shard(b"zother", b"\x00\x01") is None


@FAST
@given(st.integers(0, 2 ** 64 - 1))
def test_a_version_key_gives_back_its_version(v):
    assert version_of_key(version_key(P, v)) == v


# -- ordering --------------------------------------------------------------------------

@FAST
@given(st.binary(max_size=6), st.binary(max_size=6))
def test_next_prefix_bounds_every_extension_and_successor_is_the_next_key(p, tail):
    assume(p.strip(b"\xff"))      # (no finite bound above every extension of b"\xff...")
    assert p + tail < next_prefix(p) and p < next_prefix(p)
    assert p < successor(p), "successor(p) lies after p ..."
    assert not tail or successor(p) <= p + tail, "... and before any longer key starting with p"
    assert prefix_range(p) == (p, next_prefix(p))


def test_next_prefix_of_ff_bytes():
    assert next_prefix(b"a\xff\xff") == b"b" and next_prefix(b"\xff") == b"\xff\xff"


@FAST
@given(shards, shards, names, names, names, names)
def test_a_shards_keys_are_one_range_in_shard_order(s1, s2, t1, k1, t2, k2):
    a, b = actor_prefix(s1, t1, k1), actor_prefix(s2, t2, k2)
    for k in (state_key(a), alarm_record_key(a, "x"), version_key(a, 2 ** 64 - 1), a + b"\xff" * 4):
        assert within(k, shard_range(s1)) and within(k, actor_range(a))
        if s1 < s2:
            assert k < b, "every key of a lower shard sorts before a higher shard's keys"
        if s1 != s2:
            assert not within(k, shard_range(s2))


@FAST
@given(names, names, names)
def test_an_actors_range_holds_no_other_actors_keys(type_name, key, more):
    a = actor_prefix(3, type_name, key)
    other = actor_prefix(3, type_name, key + more) if more else actor_prefix(3, type_name + "x", key)
    assert not within(state_key(other), actor_range(a)), "a key that extends another is a different actor"
    assert not within(state_key(a), actor_range(other))


def test_entries_versions_and_alarms_sort_by_name_bytes_version_and_due():
    names_sorted = sorted(["b", "a", "é", "a/1", "Z"], key=lambda n: n.encode())
    assert sorted(entry_prefix(P) + n.encode() for n in names_sorted) == \
        [entry_prefix(P) + n.encode() for n in names_sorted]
    assert sorted([version_key(P, v) for v in (300, 2, 1 << 40)]) == \
        [version_key(P, v) for v in (2, 300, 1 << 40)]
    other = actor_prefix(0, "A", "a")     # a lower shard, due later: the due time decides
    due = [alarm_index_key(P, 5, "z"), alarm_index_key(other, 9, "a"), alarm_index_key(P, 1 << 40, "a")]
    assert sorted(due) == due
    assert all(within(k, DUE_INDEX_RANGE) for k in due)
    assert within(alarm_record_key(P, "x"), alarm_records_range(P))
    assert within(version_key(P, 1), version_range(P))


def test_size_counts_every_kind_of_key_but_history_supervision_requests_and_the_mark():
    counted = {bytes([t]) for t in range(256)
               if any(within(P + bytes([t]) + b"x", r) for r in sized_ranges(P))}
    assert set(range(256)) - {c[0] for c in counted} == {ord("h"), ord("m"), ord("r"), ord("w")}
    assert not any(within(actor_prefix(258, "Type", "key2") + b"s", r) for r in sized_ranges(P))


def test_listing_range_holds_a_types_actors_after_start_after():
    ks = [listing_key("T", k) for k in ("", "a", "a\x01", "b")]
    ks += [listing_key("TT", "a"), listing_key("S", "z")]
    assert [k for k in sorted(ks) if within(k, listing_range("T"))] == ks[:4]
    assert [k for k in sorted(ks) if within(k, listing_range("T", "a"))] == ks[2:4]
