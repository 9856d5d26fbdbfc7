"""Moving a shard's data between worker slots: the SHARDS commands ``export``, ``import``
and ``drop`` (a part of :class:`~.grants.ShardCommands`, which owns one
:class:`ShardMoves`; the key layout is ``storage/handoff.py``'s).

* **export** ``{"shards": [..], "after": bytes or nil, "max_bytes": n}`` -> ``{"items":
  [[key, value], ...], "next": bytes or nil}``: a page of the committed keys of those
  shards with their index entries; ``next`` resumes.
* **import** ``{"shards": [..], "clear": bool, "items": [[key, value], ...]}`` ->
  ``{"written": n}``: one fsynced batch (``clear`` deletes what those shards held here
  first, in the same batch); every key must belong to the shards named, homed here.
  The alarm clock rescans after.
* **drop** ``{"shards": [..], "epochs": {shard: epoch}?}`` -> ``{"deleted": n, "kept":
  [shards]}``: every key of those shards goes, but for a shard whose latest incoming
  move (an ``import`` with ``clear`` and ``epochs``) has a newer epoch than the drop's:
  that copy is kept (the dropper's view was older than the move into this slot).
  ``import`` pages carry the move's ``epochs`` too: a page that is not of the latest
  move into this slot (an attempt given up, arriving late) is refused.

All three are refused (``BadRequest``) for a shard this slot serves (in cluster mode:
granted; before it: every shard homed here) or one still draining, and import and drop
while the store is read-only (its error). Bad arguments are ``BadRequest``.

Invariant: :attr:`ShardMoves.incoming` only grows per shard (a later move's epoch
replaces an earlier one's, never the other way round).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import BadRequest
from ..storage import handoff

if TYPE_CHECKING:
    from .assembly import Runtime
    from .grants import Grants

#: largest export page asked for (bytes of keys and values)
MAX_EXPORT_BYTES = 64 << 20


class ShardMoves:
    """Serves export, import and drop (see the module docstring)."""

    def __init__(self, grants: Grants, rt: Runtime) -> None:
        self.grants, self.rt = grants, rt
        #: shard -> the epoch of the latest move that began copying it into this slot (its
        #: first, clearing import page): a page of an older attempt, or a drop decided
        #: before that move, is refused (memory only: a restarted worker has no request of
        #: before its restart still queued)
        self.incoming: dict[int, int] = {}

    def _shards(self, args: dict[str, Any], what: str, homed: bool = False) -> set[int]:
        n = len(self.grants.home)
        shards = args.get("shards")
        if not isinstance(shards, list) or not all(type(s) is int and 0 <= s < n for s in shards):
            raise BadRequest(f"{what} shards must be an array of shards (0..{n - 1})")
        g = self.grants
        served = [s for s in shards if g.served(s)]
        if served:
            raise BadRequest(f"cannot {what} shard(s) {', '.join(map(str, served[:10]))}: "
                             f"served by worker slot {g.slot} (revoke them first)")
        if homed and any(g.home[s] != g.slot for s in shards):
            raise BadRequest(f"cannot {what} shards homed on another worker slot: "
                             f"{[s for s in shards if g.home[s] != g.slot][:10]}")
        want = set(shards)
        busy = {a.shard for a in self.rt.catalog.acts.values() if a.shard in want}
        if busy:
            raise BadRequest(f"cannot {what} shard(s) {sorted(busy)[:10]}: still draining")
        store = self.rt.commit.store
        if store.broken is not None and what != "export":
            raise store.broken
        return want

    def export(self, args: dict[str, Any]) -> dict[str, Any]:
        shards = self._shards(args, "export")
        after, max_bytes = args.get("after"), args.get("max_bytes", 1 << 20)
        if not (after is None or type(after) is bytes):
            raise BadRequest("export after must be bytes or nil")
        if type(max_bytes) is not int or not 0 < max_bytes <= MAX_EXPORT_BYTES:
            raise BadRequest(f"export max_bytes must be 1..{MAX_EXPORT_BYTES}")
        items, nxt = handoff.export_page(self.rt.commit.store.db, shards, after, max_bytes)
        return {"items": [[k, v] for k, v in items], "next": nxt}

    def _epochs(self, args: dict[str, Any], cmd: str, shards: set[int]) -> dict[int, int] | None:
        epochs = args.get("epochs")
        if epochs is None:
            return None
        if not (isinstance(epochs, dict) and all(type(s) is int and type(e) is int
                                                 for s, e in epochs.items())
                and all(s in epochs for s in shards)):
            raise BadRequest(f"{cmd} epochs must map every shard named to an epoch (integer)")
        return epochs

    def import_page(self, args: dict[str, Any]) -> dict[str, Any]:
        """``import`` (a Python keyword: hence the name)."""
        shards = self._shards(args, "import", homed=True)
        clear = args.get("clear", False)
        if type(clear) is not bool:
            raise BadRequest("import clear must be a boolean")
        epochs = self._epochs(args, "import", shards)
        if epochs is not None:
            incoming = self.incoming
            if not clear and any(incoming.get(s) != epochs[s] for s in shards):
                # a page of an attempt given up (a later one began with its own clear)
                raise BadRequest(f"import page of shards {sorted(shards)[:5]} from a move that is no "
                                 f"longer the latest one into this slot: refused")
            if clear:
                for s in shards:
                    if epochs[s] < incoming.get(s, 0):
                        raise BadRequest(f"import of shard {s} at epoch {epochs[s]}: a later move "
                                         f"(epoch {incoming[s]}) already began here: refused")
                for s in shards:
                    incoming[s] = epochs[s]
        items = handoff.check_items(args.get("items", []), shards)
        written = handoff.import_items(self.rt.commit.store.db, shards, items, clear)
        if self.rt.alarms.clock is not None:
            self.rt.alarms.clock.rescan()
        return {"written": written}

    def drop(self, args: dict[str, Any]) -> dict[str, Any]:
        shards = self._shards(args, "drop")
        epochs = self._epochs(args, "drop", shards)
        kept: list[int] = []
        if epochs is not None:
            # a copy that came in by a move newer than what the dropper saw stays
            kept = sorted(s for s in shards if self.incoming.get(s, 0) > epochs[s])
            shards = shards - set(kept)
        return {"deleted": handoff.drop_shards(self.rt.commit.store.db, shards) if shards else 0,
                "kept": kept}
