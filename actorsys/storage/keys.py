"""The whole key layout of a slot's LevelDB database, in one place.

Nothing else builds or takes apart a key: every module that reads or writes a slot's
database (the storage view, alarms, history, rebalancing, the worker) asks this one.
The layout is the on-disk format: changing any byte here breaks every data directory.

Key spaces: the first byte of every key says what it is::

    b"a"  ACTOR_KEYS     an actor's own keys, grouped by shard (below)
    b"n"  LISTING_KEYS   the listing index: which actors have persisted data
    b"t"  DUE_KEYS       the alarms' due index
    b"f"  FENCE_KEYS     replication fences (below): slot-wide, local, not data

A replicated shard's *position* (issue 16) lives IN the shard's range, so it travels with
its data (snapshots, moves, rebalancing): ``position_key(shard) = b"a" + shard + b"\\0"``
-> msgpack ``[epoch, seq]`` of the last batch this copy holds (absent: ``[0, 0]``). It
sorts before every actor key of the shard, and no actor prefix equals it (type names are
non-empty), so :func:`split_actor_key` answers None for it. A shard's *fence* on a
follower, ``fence_key(shard) = b"f" + shard`` -> msgpack int, is the highest epoch it has
promised (it refuses batches of older epochs): local to the slot, never replicated,
never exported, not data for the empty-directory check; dropping or clearing a shard
deletes it.

An actor's keys. Every key of an actor starts with its prefix ``P``, which starts with
its shard, so a shard's keys are one contiguous range (:func:`shard_range`) and shards
move between slots by copying key ranges. Actor keys contain no NUL (the worker refuses
them), so no actor's prefix is a prefix of another's. The byte after ``P`` says what the
key holds::

    P = b"a" + shard (2 bytes, big-endian) + type + b"\\0" + key + b"\\0"
    P + b"s"                     STATE        -> the actor's state
    P + b"k" + name              ENTRY        -> a storage entry (``self.storage``)
    P + b"l" + name              ALARM        -> an alarm record (alarms.py)
    P + b"h" + version (8 bytes) VERSION      -> a history record (history.py)
    P + b"m"                     SUPERVISION  -> a supervised child's supervision record
    P + b"w"                     MARK         -> the WebSocket delivery mark (ws_turns.py)
    P + b"r"                     REQUEST      -> b"": the actor has request records (below)
    P + b"r" + place (4 bytes)   REQUEST      -> a committed ask's id and reply (requests.py)

The two slot-wide indexes are not prefixed by shard; rebalancing moves each entry with
its actor (the entry names the shard: :func:`index_entry_shard`)::

    b"n" + type + b"\\0" + key               -> shard (2 bytes): the actor has data
    b"t" + due (8 bytes, microseconds) + P[1:] + name -> b"": an alarm, in due order

Ordering (LevelDB orders keys by their bytes): shards in shard order, an actor's keys
together; storage entries in the order of their names' UTF-8 bytes; versions in
version order; due-index entries in due order (ties: by actor, then name); listing
entries of a type in the order of the actors' keys.
"""
from __future__ import annotations

from typing import NamedTuple

from ..protocol import wire

# -- key spaces (the first byte of every key) -------------------------------------------
ACTOR_KEYS = b"a"
LISTING_KEYS = b"n"
DUE_KEYS = b"t"
FENCE_KEYS = b"f"
#: the slot-wide indexes (not prefixed by shard)
SLOT_INDEXES = (LISTING_KEYS, DUE_KEYS)
#: every key space that holds data (a slot directory with none of these is empty)
KEY_SPACES = (ACTOR_KEYS, LISTING_KEYS, DUE_KEYS)

# -- what follows an actor's prefix ----------------------------------------------------
STATE = b"s"
ENTRY = b"k"
ALARM = b"l"
VERSION = b"h"
SUPERVISION = b"m"
MARK = b"w"
REQUEST = b"r"

#: bytes of the shard number in an actor prefix and in a listing entry's value
SHARD_BYTES = 2
#: bytes of a due time (microseconds) in a due-index key, and of a version number
DUE_BYTES = VERSION_BYTES = 8


# -- ordering -----------------------------------------------------------------------------
def next_prefix(p: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``p`` (``p``
    holds a byte other than 0xFF, as every prefix of this layout does)."""
    b = bytearray(p)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b"\xff" * (len(p) + 1)
    b[-1] += 1
    return bytes(b)


def successor(k: bytes) -> bytes:
    """The smallest byte string greater than ``k`` (a range starting just after ``k``)."""
    return k + b"\x00"


def prefix_range(p: bytes) -> tuple[bytes, bytes]:
    """``[lo, hi)`` of every key starting with ``p``."""
    return p, next_prefix(p)


# -- actors ---------------------------------------------------------------------------------
def shard_prefix(shard: int) -> bytes:
    """What every key of the actors of ``shard`` starts with."""
    return ACTOR_KEYS + shard.to_bytes(SHARD_BYTES, "big")


def shard_range(shard: int) -> tuple[bytes, bytes]:
    """``[lo, hi)`` of every key of the actors of ``shard`` (what a shard move copies)."""
    return prefix_range(shard_prefix(shard))


def position_key(shard: int) -> bytes:
    """Where a replicated shard's position ``[epoch, seq]`` lives (first key of its range)."""
    return shard_prefix(shard) + b"\x00"


def fence_key(shard: int) -> bytes:
    """Where a shard's replication fence (an epoch, msgpack int) lives on this slot."""
    return FENCE_KEYS + shard.to_bytes(SHARD_BYTES, "big")


def fence_shard(k: bytes) -> int | None:
    """The shard a fence key names, or None if ``k`` is not a fence key."""
    if k[:1] != FENCE_KEYS or len(k) != 1 + SHARD_BYTES:
        return None
    return int.from_bytes(k[1:], "big")


def actor_prefix(shard: int, type_name: str, key: str) -> bytes:
    """``P``: what every key of one actor starts with."""
    return shard_prefix(shard) + type_name.encode() + b"\x00" + key.encode() + b"\x00"


def actor_range(prefix: bytes) -> tuple[bytes, bytes]:
    """``[lo, hi)`` of every key of the actor whose prefix is ``prefix``."""
    return prefix_range(prefix)


class ActorKey(NamedTuple):
    """An actor's key taken apart (:func:`split_actor_key`)."""

    type_name: bytes
    key: bytes
    #: what follows the actor's prefix: a tag (``STATE``, ``ENTRY``...) and its suffix
    rest: bytes


def split_actor_key(k: bytes) -> ActorKey | None:
    """``(type, key, rest)`` of a key ``P + rest`` (rest: ``b"s"``, ``b"k" + name``...),
    or None if ``k`` is not an actor key."""
    parts = k[1 + SHARD_BYTES:].split(b"\x00", 2)
    if len(parts) != 3 or not parts[2]:
        return None
    return ActorKey(parts[0], parts[1], parts[2])


def state_key(prefix: bytes) -> bytes:
    """Where an actor's state lives."""
    return prefix + STATE


def entry_prefix(prefix: bytes) -> bytes:
    """What the keys of an actor's storage entries start with (the entry's name follows,
    as UTF-8)."""
    return prefix + ENTRY


def supervision_key(prefix: bytes) -> bytes:
    """Where a supervised child's supervision record lives, beside its state."""
    return prefix + SUPERVISION


def mark_key(prefix: bytes) -> bytes:
    """Where an actor's delivery mark ``[gateway, batch_number, effects]`` lives, beside
    its state."""
    return prefix + MARK


def sized_ranges(prefix: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The ranges of an actor's keys that count towards ``storage.size()``: everything
    but its history records, its supervision record, its request-id window and its
    delivery mark."""
    p = prefix
    return ((p, p + VERSION), (p + next_prefix(VERSION), p + SUPERVISION),
            (p + next_prefix(SUPERVISION), p + REQUEST), (p + next_prefix(REQUEST), p + MARK),
            (p + next_prefix(MARK), next_prefix(p)))


# -- the request-id window (requests.py) ---------------------------------------------------
#: bytes of a request record's place in its actor's ring of records
REQUEST_PLACE_BYTES = 4


def request_key(prefix: bytes, place: int) -> bytes:
    """Where the request record at ``place`` of an actor's ring of records lives."""
    return prefix + REQUEST + place.to_bytes(REQUEST_PLACE_BYTES, "big")


def request_marker(prefix: bytes) -> bytes:
    """Present once an actor has request records: an activation without it needs no
    range read to know its window is empty."""
    return prefix + REQUEST


def request_range(prefix: bytes) -> tuple[bytes, bytes]:
    """``[lo, hi)`` of an actor's request records, in the order of their places, and its
    marker first; a record's place is its key past ``len(lo)``."""
    return prefix_range(prefix + REQUEST)


# -- the listing index ------------------------------------------------------------------
def listing_key(type_name: str | bytes, key: str | bytes) -> bytes:
    """The slot-wide index entry saying an actor has persisted data (``list_actors``)."""
    t = type_name.encode() if isinstance(type_name, str) else type_name
    k = key.encode() if isinstance(key, str) else key
    return LISTING_KEYS + t + b"\x00" + k


def listing_value(actor_key: bytes) -> bytes:
    """The value of the listing entry of the actor whose prefix (or any key) this is:
    its shard, as it appears in the prefix."""
    return actor_key[1:1 + SHARD_BYTES]


def listing_range(type_name: str, start_after: str | None = None) -> tuple[bytes, bytes]:
    """``[lo, hi)`` of the listing entries of a type, after ``start_after``'s if given.
    An entry's actor key is the entry's key past ``len(listing_key(type_name, ""))``."""
    base = listing_key(type_name, "")
    lo = base if start_after is None else successor(listing_key(type_name, start_after))
    return lo, next_prefix(base)


# -- history ----------------------------------------------------------------------------
def version_key(prefix: bytes, version: int) -> bytes:
    """Where version ``version``'s history record of an actor lives."""
    return prefix + VERSION + version.to_bytes(VERSION_BYTES, "big")


def version_range(prefix: bytes) -> tuple[bytes, bytes]:
    """``[lo, hi)`` of an actor's history records, in version order."""
    return prefix_range(prefix + VERSION)


def version_of_key(k: bytes) -> int:
    """The version number of a history record's key."""
    return int.from_bytes(k[-VERSION_BYTES:], "big")


# -- alarms: records and the due index ----------------------------------------------------
#: ``[lo, hi)`` of the whole due index, in due order
DUE_INDEX_RANGE = prefix_range(DUE_KEYS)


def due_us(when: float) -> int:
    """A due time (epoch seconds) as the due index stores it: whole microseconds."""
    return max(0, int(when * 1_000_000))


def alarm_record_key(prefix: bytes, name: str) -> bytes:
    """Where alarm ``name``'s record ``{"when", "payload", "attempt"}`` lives (and, for a
    recurring alarm, its schedule: ``"cron"``/``"tz"`` or ``"every"``, and ``"scheduled"``;
    alarms.py and schedule.py)."""
    return prefix + ALARM + name.encode("utf-8")


def alarm_records_range(prefix: bytes) -> tuple[bytes, bytes]:
    """``[lo, hi)`` of an actor's alarm records, in the order of their names' bytes; a
    record's name is its key past ``len(lo)``."""
    return prefix_range(prefix + ALARM)


def alarm_ident(prefix: bytes, name: str | bytes) -> bytes:
    """What names one alarm in the clock, whatever its due time: the index key's tail."""
    n = name.encode("utf-8") if isinstance(name, str) else name
    return prefix[1:] + n


def alarm_index_key(prefix: bytes, due: int, name: str | bytes) -> bytes:
    """The due-index entry of alarm ``name`` of an actor, due at ``due`` microseconds."""
    return DUE_KEYS + due.to_bytes(DUE_BYTES, "big") + alarm_ident(prefix, name)


def alarm_index_key_of(prefix: bytes, name: str | bytes, record: bytes) -> bytes:
    """The due-index entry of a stored alarm record (raises if the record is not one)."""
    return alarm_index_key(prefix, due_us(wire.unpack_stored(record)["when"]), name)


def index_key_due(k: bytes) -> int:
    """The due time (microseconds) of a due-index key."""
    return int.from_bytes(k[1:1 + DUE_BYTES], "big")


def index_key_ident(k: bytes) -> bytes:
    """The alarm a due-index key names (:func:`alarm_ident`), without its due time."""
    return k[1 + DUE_BYTES:]


class DueAlarm(NamedTuple):
    """A due-index key taken apart (:func:`parse_alarm_index_key`)."""

    due: int            # microseconds since the epoch
    shard: int
    type_name: str
    key: str
    name: str


def parse_alarm_index_key(k: bytes) -> DueAlarm:
    """``(due_us, shard, type, key, name)`` of a due-index key."""
    rest = k[1 + DUE_BYTES:]
    type_b, key_b, name_b = rest[SHARD_BYTES:].split(b"\x00", 2)
    return DueAlarm(index_key_due(k), int.from_bytes(rest[:SHARD_BYTES], "big"),
                    type_b.decode(), key_b.decode(), name_b.decode("utf-8"))


def index_entry_shard(k: bytes, v: bytes) -> int | None:
    """The shard a slot-wide index entry (a listing or due-index key ``k`` and its value
    ``v``) belongs to, or None if it is not an index entry this layout understands."""
    if k[:1] == LISTING_KEYS:
        raw = v
    elif k[:1] == DUE_KEYS:
        raw = k[1 + DUE_BYTES:1 + DUE_BYTES + SHARD_BYTES]
    else:
        return None
    return int.from_bytes(raw, "big") if len(raw) == SHARD_BYTES else None
