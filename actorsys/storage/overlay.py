"""Writes not yet in LevelDB, laid over what is: the slot's staged overlay
(:class:`~.slot.SlotStore`) and a turn's own writes (:class:`~.view.Storage`) are both a
dict ``{key: value or None}`` where None deletes, merged into ordered range reads here.
"""
from __future__ import annotations

import heapq
from typing import Final, Iterator, Mapping

#: "not in the overlay" (None there means deleted): ``overlay.get(k, MISSING)``
MISSING: Final = object()


def merge(base: Iterator[tuple[bytes, bytes]], overlay: Mapping[bytes, bytes | None], lo: bytes,
          hi: bytes, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
    """Merge a sorted (key, value) stream of ``[lo, hi)`` (descending if ``reverse``)
    with an overlay of writes: the overlay wins, ``None`` deletes."""
    over = sorted(((k, v) for k, v in overlay.items() if lo <= k < hi), reverse=reverse)
    if not over:
        yield from base
        return
    # tag 0 = overlay wins ties over tag 1 = base
    keyed_over = (((k if not reverse else _Rev(k)), 0, k, v) for k, v in over)
    keyed_base = (((k if not reverse else _Rev(k)), 1, k, v) for k, v in base)
    last = None
    for _sk, _tag, k, v in heapq.merge(keyed_over, keyed_base):
        if k == last:
            continue
        last = k
        if v is not None:
            yield k, v


class _Rev:
    """Sort key that inverts bytes ordering, for merging reverse iterators."""

    __slots__ = ("b",)

    def __init__(self, b: bytes) -> None:
        self.b = b

    def __lt__(self, other: "_Rev") -> bool:
        return self.b > other.b

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and self.b == other.b
