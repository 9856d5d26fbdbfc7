"""A replicated shard's copy in a slot's LevelDB database (issue 16): positions, fences,
batches applied by a follower, snapshot pages, and the leader's split of a group's writes
by shard. Pure storage: no sockets, no worker (``actorsys/runtime/replication.py`` drives
it); every function takes a plyvel database.

* **Position** (:func:`~.keys.position_key`, in the shard's range): ``(epoch, seq)`` of
  the last batch the copy holds; absent ``(0, 0)``. The leader writes it in the same
  LevelDB batch as the shard's writes; a follower writes the batch's items, which carry
  it. Positions compare as tuples.
* **Fence** (:func:`~.keys.fence_key`, slot-wide, local): the highest epoch this copy
  promised; a batch or snapshot page of an older epoch is refused with it. Raising it
  (:func:`raise_fences`) is fsynced before the caller answers: the failover's promise.
* **append** (:func:`apply_batches`): per shard, refused if served here or its epoch is
  below the fence; held if the copy already has that epoch at that seq or later;
  applied if the copy's position is the batch's ``prev``; else behind. A batch whose
  ``prev`` is ``(0, 0)`` is never applied: a copy with no position holds nothing known,
  and the leader may have held data from before its shard was replicated, so such a
  follower is always rebuilt by a snapshot. Every applied batch of one call goes in one
  LevelDB batch.
* **snapshot** (:func:`apply_snapshot_page`): pages of a full copy; the first clears
  what the shard held here. The position key of the pages is held back until the last
  page, so a copy whose snapshot was cut short has no position (it gets a snapshot
  again, never a batch applied onto half a copy).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import BadRequest
from ..protocol import wire
from ..protocol.shardmap import shard_of
from .handoff import Items, index_keys, shard_keys, check_items
from .keys import (ACTOR_KEYS, DUE_BYTES, DUE_KEYS, LISTING_KEYS, SHARD_BYTES, fence_key,
                   position_key)

Position = tuple[int, int]
#: integers a peer may send (epochs, seqs): msgpack and LevelDB's values stay in range
MAX_INT = 1 << 63
#: the position of a copy that holds no batch
NO_POSITION: Position = (0, 0)


def pack_position(pos: Position) -> bytes:
    return wire.pack([pos[0], pos[1]])


def read_position(db: Any, shard: int) -> Position:
    """The position of ``shard``'s copy in ``db`` (``(0, 0)``: none)."""
    raw = db.get(position_key(shard))
    if raw is None:
        return NO_POSITION
    e, s = wire.unpack_stored(raw)
    return int(e), int(s)


def read_fence(db: Any, shard: int) -> int:
    """The highest epoch this slot promised for ``shard`` (0: none)."""
    raw = db.get(fence_key(shard))
    return 0 if raw is None else int(wire.unpack_stored(raw))


def floor(db: Any, shard: int, position: Position | None = None) -> int:
    """The oldest epoch a batch or snapshot page of ``shard`` may have here: its fence,
    or its copy's position's epoch if newer (an ex-leader's copy has no fence, yet a
    leader of an older epoch must not write over it). ``position``: the copy's, if the
    caller has read it already."""
    if position is None:
        position = read_position(db, shard)
    return max(read_fence(db, shard), position[0])


def raise_fences(db: Any, fences: Mapping[int, int]) -> dict[int, int]:
    """Each shard's fence becomes ``max(fence, given)``, fsynced before returning;
    returns the fences after."""
    out: dict[int, int] = {}
    with db.write_batch(sync=True, transaction=True) as wb:
        for s, e in fences.items():
            now = read_fence(db, s)
            if e > now:
                wb.put(fence_key(s), wire.pack(e))
                now = e
            out[s] = now
    return out


# -- the leader's split of a group's writes ------------------------------------------------
def write_shard(k: bytes, shards: int) -> int | None:
    """The shard a staged write's key belongs to (actor keys, due-index keys, listing keys
    by the actor's address), or None for a key of no shard."""
    tag = k[:1]
    if tag == ACTOR_KEYS:       # (b"a" alone or with part of a shard is no shard's key)
        return int.from_bytes(k[1:1 + SHARD_BYTES], "big") if len(k) > 1 + SHARD_BYTES else None
    if tag == DUE_KEYS:
        if len(k) <= 1 + DUE_BYTES + SHARD_BYTES:
            return None
        return int.from_bytes(k[1 + DUE_BYTES:1 + DUE_BYTES + SHARD_BYTES], "big")
    if tag == LISTING_KEYS:
        type_b, sep, key_b = k[1:].partition(b"\x00")
        if not sep:
            return None
        return shard_of(type_b.decode("utf-8", "replace"), key_b.decode("utf-8", "replace"), shards)
    return None


def split_by_shard(pending: Mapping[bytes, bytes | None], wanted: Callable[[int], bool],
                   shards: int) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """The staged writes of the shards ``wanted`` says yes to, per shard, in the
    overlay's order (deletes as None)."""
    out: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for k, v in pending.items():
        s = write_shard(k, shards)
        if s is not None and wanted(s):
            got = out.get(s)
            if got is None:
                got = out[s] = []
            got.append((k, v))
    return out


# -- a follower -----------------------------------------------------------------------------
Batch = tuple[int, int, int, int, int, list[tuple[bytes, bytes | None]]]


def check_batches(raw: Any, nshards: int) -> list[Batch]:
    """An append's ``batches``: ``[[shard, epoch, prev_epoch, prev_seq, seq, items], ...]``
    with ``items`` ``[[key, value or nil], ...]`` whose keys belong to ``shard``;
    BadRequest otherwise."""
    if not isinstance(raw, list):
        raise BadRequest("append batches must be an array of [shard, epoch, prev_epoch, "
                         "prev_seq, seq, items]")
    out: list[Batch] = []
    for b in raw:
        if not (isinstance(b, (list, tuple)) and len(b) == 6
                and all(type(x) is int and 0 <= x < MAX_INT for x in b[:5]) and isinstance(b[5], list)):
            raise BadRequest("append batches must be arrays [shard, epoch, prev_epoch, prev_seq, "
                             "seq, items] of integers (0 <= n < 2**63) and an array")
        s, e, pe, ps, seq, items = b
        if not 0 <= s < nshards:
            raise BadRequest(f"append batch shard {s} is out of range (0..{nshards - 1})")
        if (e, seq) <= (pe, ps) or seq <= 0:
            raise BadRequest(f"append batch of shard {s}: [{e}, {seq}] does not follow [{pe}, {ps}]")
        checked: list[tuple[bytes, bytes | None]] = []
        for item in items:
            if (not isinstance(item, (list, tuple)) or len(item) != 2 or type(item[0]) is not bytes
                    or not (item[1] is None or type(item[1]) is bytes)):
                raise BadRequest("append items must be [key, value or nil] pairs of bytes")
            k, v = item
            if write_shard(k, nshards) != s:
                raise BadRequest(f"append item key {k[:40]!r} does not belong to shard {s}")
            checked.append((k, v))
        out.append((s, e, pe, ps, seq, checked))
    return out


def apply_batches(db: Any, batches: Iterable[Batch], served: Callable[[int], bool],
                  sync: bool, granted: Callable[[int], int] = lambda _s: 0) -> dict[str, dict[int, Any]]:
    """A follower's ``append`` (see the module docstring): ``{"held": {shard: [epoch,
    seq]}, "behind": {shard: [epoch, seq]}, "refused": {shard: fence}}``. Batches of one
    shard apply in order; all applied ones are written in one batch. A shard served
    here is refused with ``max(fence, granted(shard))`` (the epoch it is served with: the
    leader stops only if that is newer than its own)."""
    held: dict[int, list[int]] = {}
    behind: dict[int, list[int]] = {}
    refused: dict[int, int] = {}
    pos: dict[int, Position] = {}
    fences: dict[int, int] = {}
    writes: dict[bytes, bytes | None] = {}
    for s, e, pe, ps, seq, items in batches:
        if s in refused:
            continue
        fence = fences.get(s)
        if fence is None:
            p = pos[s] = read_position(db, s)
            fence = fences[s] = floor(db, s, p)
        if served(s) or e < fence:
            refused[s] = max(fence, granted(s)) if served(s) else fence
            held.pop(s, None)
            behind.pop(s, None)
            continue
        p = pos[s]
        if p[0] == e and p[1] >= seq:
            held[s] = [p[0], p[1]]
            behind.pop(s, None)
        elif p == (pe, ps) and p != NO_POSITION:
            for k, v in items:
                writes[k] = v
            writes[position_key(s)] = pack_position((e, seq))
            pos[s] = (e, seq)
            if e > fence:
                fences[s] = e
                writes[fence_key(s)] = wire.pack(e)
            held[s] = [e, seq]
            behind.pop(s, None)
        else:
            behind[s] = [p[0], p[1]]
            held.pop(s, None)
    if writes:
        with db.write_batch(sync=sync, transaction=True) as wb:
            for k, v in writes.items():
                if v is None:
                    wb.delete(k)
                else:
                    wb.put(k, v)
    return {"held": held, "behind": behind, "refused": refused}


def apply_snapshot_page(db: Any, shard: int, epoch: int, first: bool, last: bool,
                        items: Any, served: Callable[[int], bool],
                        granted: Callable[[int], int] = lambda _s: 0) -> dict[str, Any]:
    """A page of a full copy of ``shard`` at ``epoch``: ``{"refused": fence}`` if served
    here or ``epoch`` is below the fence; else written (fsynced; ``first`` clears the
    shard first, fence kept) and ``{"written": n, "position": [epoch, seq]}`` (the
    copy's position: ``[0, 0]`` until the ``last`` page)."""
    fence = floor(db, shard)
    if served(shard):
        return {"refused": max(fence, granted(shard))}
    if epoch < fence:
        return {"refused": fence}
    checked: Items = check_items(items, {shard})
    pkey = position_key(shard)
    for k, v in checked:
        if k != pkey:
            continue
        if not last:
            raise BadRequest("snapshot pages carry the position key in the last page only")
        try:
            pos = wire.unpack_stored(v)
        except Exception:
            pos = None
        if not (isinstance(pos, list) and len(pos) == 2
                and all(type(x) is int and 0 <= x < MAX_INT for x in pos)):
            raise BadRequest("a snapshot's position value must be [epoch, seq] (integers)")
    with db.write_batch(sync=True, transaction=True) as wb:
        if first:            # what the shard held here goes (its fence stays: raised below)
            for k in shard_keys(db, {shard}):
                wb.delete(k)
            for k in index_keys(db, {shard}):
                wb.delete(k)
        for k, v in checked:
            wb.put(k, v)
        if epoch > fence:
            wb.put(fence_key(shard), wire.pack(epoch))
    p = read_position(db, shard)
    return {"written": len(checked), "position": [p[0], p[1]]}
