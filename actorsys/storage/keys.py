"""The whole key layout of a slot's LevelDB database, in one place.

 Every key of an actor starts with its shard, so shards can move between
slots by copying key ranges; P is the actor's prefix::

    P = b"a" + shard (2 bytes, big-endian) + type + b"\\0" + key + b"\\0"
    P + b"s"                    -> state
    P + b"k" + name             -> storage entry
    P + b"m"                    -> supervision record (runtime: supervised children)
    P + b"l" + name             -> alarm record (alarms.py)
    P + b"h" + version (8 bytes) -> history record (history.py)
    P + b"w"                    -> WebSocket delivery mark (runtime/ws_turns.py)

Two slot-wide indexes are not prefixed by shard; rebalancing moves them with the actor
(rebalance.py)::

    b"n" + type + b"\\0" + key   -> shard (2 bytes): the actor has persisted data (listing)
    b"t" + due (8 bytes, microseconds) + P[1:] + name -> b"": alarms in due order

Nothing else builds a key: every module that reads or writes the database asks this one.
"""
from __future__ import annotations

from ..protocol import wire

def actor_prefix(shard: int, type_name: str, key: str) -> bytes:
    return b"a" + shard.to_bytes(2, "big") + type_name.encode() + b"\x00" + key.encode() + b"\x00"


def split_actor_key(k: bytes) -> tuple[bytes, bytes, bytes] | None:
    """``(type, key, rest)`` of a key ``P + rest`` (rest: ``b"s"``, ``b"k" + name``...),
    or None if ``k`` is not an actor key."""
    parts = k[3:].split(b"\x00", 2)
    if len(parts) != 3 or not parts[2]:
        return None
    return parts[0], parts[1], parts[2]


def listing_key(type_name: str | bytes, key: str | bytes) -> bytes:
    """The slot-wide index entry saying an actor has persisted data (``list_actors``)."""
    t = type_name.encode() if isinstance(type_name, str) else type_name
    k = key.encode() if isinstance(key, str) else key
    return b"n" + t + b"\x00" + k


def state_key(prefix: bytes) -> bytes:
    return prefix + b"s"


def next_prefix(p: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``p``."""
    b = bytearray(p)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b"\xff" * (len(p) + 1)
    b[-1] += 1
    return bytes(b)


def meta_key(prefix: bytes) -> bytes:
    """Where a supervised child's supervision record lives, beside its state."""
    return prefix + b"m"


def mark_key(prefix: bytes) -> bytes:
    """Where an actor's delivery mark ``[gateway, batch_number, effects]`` lives, beside
    its state."""
    return prefix + b"w"


def version_key(prefix: bytes, version: int) -> bytes:
    return prefix + b"h" + version.to_bytes(8, "big")


def due_us(when: float) -> int:
    return max(0, int(when * 1_000_000))


def record_key(prefix: bytes, name: str) -> bytes:
    return prefix + b"l" + name.encode("utf-8")


def index_key(prefix: bytes, due: int, name: str | bytes) -> bytes:
    n = name.encode("utf-8") if isinstance(name, str) else name
    return b"t" + due.to_bytes(8, "big") + prefix[1:] + n


def record_index_key(prefix: bytes, name: str | bytes, record: bytes) -> bytes:
    """The due-index entry of a stored alarm record."""
    return index_key(prefix, due_us(wire.unpack_stored(record)["when"]), name)


def alarm_ident(prefix: bytes, name: str) -> bytes:
    """What names one alarm in the clock, whatever its due time: the index key's tail."""
    return prefix[1:] + name.encode("utf-8")


def parse_index_key(k: bytes) -> tuple[int, int, str, str, str]:
    """``(due_us, shard, type, key, name)`` of an index key."""
    due = int.from_bytes(k[1:9], "big")
    shard = int.from_bytes(k[9:11], "big")
    type_b, key_b, name_b = k[11:].split(b"\x00", 2)
    return due, shard, type_b.decode(), key_b.decode(), name_b.decode("utf-8")
