"""Shard handoff: the keys of a set of shards in one slot's LevelDB database, read out,
written in and deleted, with their slot-wide index entries.

A shard's data is the contiguous key range :func:`~.keys.shard_range` (state, storage
entries, alarm records, history, request windows, supervision records, delivery marks:
everything under its :func:`~.keys.shard_prefix`), plus, in the two slot-wide indexes
that are not prefixed by shard, each actor's listing entry and each alarm's due-index
entry (:func:`~.keys.index_entry_shard` says which shard an entry belongs to). What
moves a shard, here and in :mod:`.rebalance`, moves both.

* :func:`export_page`: the committed keys of some shards, in key order, in pages of
  about ``max_bytes``, each page with the index entries of the actor keys it holds; a
  cursor (the last actor key of a page) resumes the next. Read from the database
  itself, never from a worker's staged writes.
* :func:`import_items`: write a page into another slot (after checking every key
  belongs to the shards named), in one batch, fsynced; ``clear`` first deletes
  everything those shards held there (in the same batch, so a page lands whole or not
  at all).
* :func:`drop_shards`: delete everything of some shards (their ranges and every index
  entry naming them), fsynced, in batches of :data:`BATCH_KEYS`.

A replicated shard's position key (:func:`~.keys.position_key`) is in its range: it is
exported, imported and dropped with the shard. Its fence (:func:`~.keys.fence_key`) is
not data: never exported; dropping a shard, or an import that clears it, deletes it.

No function here knows who may serve a shard: the worker refuses these for shards it
serves (``actorsys/runtime/grants.py``), rebalancing runs with no worker up.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import BadRequest
from .keys import (ACTOR_KEYS, ALARM, SHARD_BYTES, SLOT_INDEXES, alarm_index_key_of,
                   fence_key, index_entry_shard, listing_key, prefix_range, shard_range, split_actor_key,
                   successor)

#: keys per LevelDB batch when deleting (memory stays bounded however large a shard)
BATCH_KEYS = 10_000

Items = list[tuple[bytes, bytes]]


def with_indexes(db: Any, items: Items) -> Items:
    """``items`` (actor keys) plus the slot-wide index entries that belong to them and are
    still in ``db``: each actor's listing entry, each alarm record's due-index entry."""
    wanted: dict[bytes, None] = {}
    for k, v in items:
        parts = split_actor_key(k)
        if parts is None:
            continue
        type_b, key_b, rest = parts
        wanted[listing_key(type_b, key_b)] = None
        if rest[:1] == ALARM:
            prefix = k[:len(k) - len(rest)]
            try:
                wanted[alarm_index_key_of(prefix, rest[1:], v)] = None
            except Exception:
                continue               # unreadable record: an index sweep still finds its entry
    extra = [(k, v) for k in wanted if (v := db.get(k)) is not None]
    return items + extra


def export_page(db: Any, shards: Iterable[int], after: bytes | None,
                max_bytes: int) -> tuple[Items, bytes | None]:
    """One page of the keys of ``shards`` (in shard order, then key order) after the
    actor key ``after`` (None: from the start), of at most ``max_bytes`` of keys and
    values (but at least one key, if any is left), with their index entries (a few bytes
    each). Returns ``(items, next)``: ``next`` is the cursor of the next page, or None
    when this page is the last."""
    items: Items = []
    size = 0
    for shard in sorted(set(shards)):
        lo, hi = shard_range(shard)
        if after is not None:
            if after >= hi:
                continue
            if after >= lo:
                lo = successor(after)
        with db.iterator(start=lo, stop=hi) as it:
            for k, v in it:
                if items and size + len(k) + len(v) > max_bytes:
                    return with_indexes(db, items), items[-1][0]
                items.append((k, v))
                size += len(k) + len(v)
    return with_indexes(db, items), None


def key_shard(k: bytes, v: bytes) -> int | None:
    """The shard a key of a slot's database belongs to (an actor key, or an index
    entry with its value), or None if it is neither."""
    if k[:1] == ACTOR_KEYS:
        return int.from_bytes(k[1:1 + SHARD_BYTES], "big") if len(k) > 1 + SHARD_BYTES else None
    return index_entry_shard(k, v)


def check_items(items: Any, shards: set[int]) -> Items:
    """``items`` as ``[(key, value)]`` if it is an array of ``[bytes, bytes]`` pairs whose
    keys all belong to ``shards``; raises :class:`BadRequest` otherwise."""
    if not isinstance(items, list):
        raise BadRequest("import items must be an array of [key, value] pairs")
    out: Items = []
    for item in items:
        if (not isinstance(item, (list, tuple)) or len(item) != 2 or type(item[0]) is not bytes
                or type(item[1]) is not bytes):
            raise BadRequest("import items must be [key, value] pairs of bytes")
        k, v = item
        if key_shard(k, v) not in shards:
            raise BadRequest(f"import item key {k[:40]!r} belongs to none of the shards imported")
        out.append((k, v))
    return out


def index_keys(db: Any, shards: set[int]) -> list[bytes]:
    """Every slot-wide index entry of ``shards`` (one pass over the slot's indexes)."""
    found = []
    for tag in SLOT_INDEXES:
        with db.iterator(start=prefix_range(tag)[0], stop=prefix_range(tag)[1]) as it:
            for k, v in it:
                if index_entry_shard(k, v) in shards:
                    found.append(k)
    return found


def shard_keys(db: Any, shards: set[int]) -> Iterable[bytes]:
    for shard in sorted(shards):
        lo, hi = shard_range(shard)
        with db.iterator(start=lo, stop=hi, include_value=False) as it:
            yield from list(it)


def import_items(db: Any, shards: set[int], items: Items, clear: bool) -> int:
    """Write ``items`` (checked by :func:`check_items`) in one fsynced batch; ``clear``
    deletes everything ``shards`` held first, in the same batch. Returns the items written."""
    with db.write_batch(sync=True) as wb:
        if clear:
            for k in shard_keys(db, shards):
                wb.delete(k)
            for k in index_keys(db, shards):
                wb.delete(k)
            for s in shards:
                wb.delete(fence_key(s))
        for k, v in items:
            wb.put(k, v)
    return len(items)


def drop_shards(db: Any, shards: set[int]) -> int:
    """Delete every key of ``shards`` and every index entry naming them (fsynced, in
    batches of :data:`BATCH_KEYS`); returns how many keys were deleted."""
    deleted = 0
    keys = [fence_key(s) for s in sorted(shards) if db.get(fence_key(s)) is not None]
    keys += index_keys(db, shards)
    keys_iter = iter(shard_keys(db, shards))
    while True:
        batch = keys[:BATCH_KEYS]
        keys = keys[BATCH_KEYS:]
        for k in keys_iter:
            batch.append(k)
            if len(batch) >= BATCH_KEYS:
                break
        if not batch:
            return deleted
        with db.write_batch(sync=True) as wb:
            for k in batch:
                wb.delete(k)
        deleted += len(batch)
