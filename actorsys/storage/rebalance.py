"""Shard rebalancing: change the worker count of an existing data directory.

What you get:

* **Change ``workers`` and restart.** A node started with a different worker count on an
  existing data directory first moves shards between worker slots, then starts. Every
  actor keeps its state, storage entries, alarms, history, supervision record and
  listing entry; nothing is lost and nothing is duplicated. The shard count never
  changes.
* **Offline, at start.** The move happens before any worker runs (the node holds the
  data directory's lock), so no actor runs while its data moves and no client sees a
  half-moved shard. The node answers once the move is done; the move takes time
  proportional to the data of the shards that move.
* **As few moves as possible.** Every slot ends up with ``shards // workers`` shards, or
  one more; a shard stays where it is while its slot still exists and has room for it.
  Going from 2 to 3 workers moves about a third of the shards (all to the new slot);
  going from 3 to 1 moves only the shards of slots 1 and 2. The plan is deterministic.
* **Crash-safe and resumable.** The plan is written to ``node.meta`` before any key
  moves; each batch of keys is written (fsynced) to its new slot before it is deleted
  from the old one. A node killed while moving finishes the same plan at its next start
  (whatever worker count that start asks for; it then plans again from there), so a
  kill at any point loses nothing.
* **Removed slots are cleaned up.** After shrinking, the directories of the slots that
  no longer exist are deleted, after checking they hold no data; a slot directory
  that still holds actor data is an error at start, never a deletion.

One log line per move (logger ``actorsys.rebalance``, on stderr) says how many shards
and keys moved and how long it took.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, OrderedDict
from itertools import islice
from typing import Any, Iterator

import plyvel

from ..errors import ConfigError
from ..log import get_logger, setup as setup_logging
from .handoff import with_indexes
from .keys import (ACTOR_KEYS, ALARM, ENTRY, FENCE_KEYS, KEY_SPACES, LISTING_KEYS,
                   SLOT_INDEXES, STATE, fence_shard, index_entry_shard, listing_key,
                   listing_value, prefix_range, shard_range, split_actor_key)
from .meta import LISTING_INDEX, fsync_dir, read_meta, write_meta
from .slot import synced_open

log = get_logger("rebalance")
#: seconds between two progress lines of a long rebalance, checked after each part of
#: this many shards
PROGRESS_EVERY, PROGRESS_SHARDS = 5.0, 64

#: keys per LevelDB batch: memory stays bounded however many actors a shard holds
BATCH_KEYS = 10_000
#: slot databases held open at once while moving
MAX_OPEN_DBS = 8
_SLOT_DIR = re.compile(r"slot-(\d+)")
_TOMBSTONE = re.compile(r"slot-\d+\.removed")
_PR_SET_PDEATHSIG = 1
#: a state value that is no data: msgpack's empty map (``{}``, an actor never written)
_EMPTY_STATE = b"\x80"


def plan(owner: list[int], workers: int) -> list[int]:
    """The new shard -> slot map for ``workers`` slots, moving as few shards as possible.

    Each slot gets ``shards // workers`` shards, and the slots holding the most shards
    today (ties: the lower slot) one more, until all ``shards % workers`` extra shards are
    placed. A shard stays on its slot while the slot exists and is under its count (the
    lowest-numbered shards stay); the others go, in shard order, to the slots short of
    their count, in slot order.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    base, extra = divmod(len(owner), workers)
    held = Counter(o for o in owner if 0 <= o < workers)
    target = [base] * workers
    for slot in sorted(range(workers), key=lambda s: (-held[s], s))[:extra]:
        target[slot] += 1
    new = list(owner)
    kept = [0] * workers
    movers = []
    for shard, slot in enumerate(owner):
        if 0 <= slot < workers and kept[slot] < target[slot]:
            kept[slot] += 1
        else:
            movers.append(shard)
    room = (slot for slot in range(workers) for _ in range(target[slot] - kept[slot]))
    for shard, slot in zip(movers, room):
        new[shard] = slot
    return new


def rebalance(data_dir: str, meta: dict[str, Any], workers: int) -> dict[str, Any]:
    """Make ``data_dir`` hold its shards on ``workers`` slots; returns the new meta.

    The move runs in a fresh Python process (``python -m actorsys.storage.rebalance``): the node
    supervisor forks its workers without exec, and LevelDB's background compaction
    thread does not survive a fork, so a process that forks workers must never have
    opened LevelDB itself (a worker would then hang closing its database). Nothing to
    do (same worker count, no unfinished plan, no slot directory to remove): no process.
    """
    for tomb in _tombstones(data_dir):   # a removal cut short: the data check had passed
        shutil.rmtree(tomb)
    if ("target" not in meta and meta["workers"] == workers and not _removed_slots(data_dir, workers)
            and meta.get("listing") == LISTING_INDEX):
        return meta
    # the directory holding the actorsys package (this file is actorsys/storage/rebalance.py)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    # -P: the working directory is not put on sys.path (an `actorsys` folder there must
    # not shadow this package)
    r = subprocess.run([sys.executable, "-P", "-m", "actorsys.storage.rebalance", data_dir, str(workers),
                        str(os.getpid())],
                       env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    if r.returncode == 2 and r.stdout.strip():
        raise ConfigError(r.stdout.strip(), key="node.workers")
    if r.returncode != 0:
        how = (f"killed by {signal.Signals(-r.returncode).name}" if r.returncode < 0
               else f"exit status {r.returncode}")
        raise ConfigError(f"moving shards in {data_dir} to {workers} workers failed ({how}); "
                          f"the move resumes at the next start", key="node.workers")
    return read_meta(data_dir)


def rebalance_here(data_dir: str, meta: dict[str, Any], workers: int) -> dict[str, Any]:
    """:func:`rebalance` in this process (it opens LevelDB; see :func:`rebalance`).

    An unfinished plan in ``meta`` (``"target"``) is finished first. Without a change of
    worker count only the cleanup of removed slot directories runs.
    """
    meta = dict(meta)
    try:
        if "target" in meta:
            meta = _finish(data_dir, meta, resumed=True)
        if meta["workers"] != workers:
            meta["target"] = {"workers": workers, "owner": plan(meta["owner"], workers)}
            write_meta(data_dir, meta)
            meta = _finish(data_dir, meta, resumed=False)
        _remove_empty_slots(data_dir, meta["workers"])
        if meta.get("listing") != LISTING_INDEX:
            _build_listing(data_dir, meta["workers"])
            meta["listing"] = LISTING_INDEX
            write_meta(data_dir, meta)
    except (plyvel.Error, OSError) as exc:
        raise ConfigError(f"moving shards in {data_dir} failed: {exc} (the move resumes "
                          f"at the next start)", key="node.workers") from None
    return meta


def main(argv: list[str]) -> int:
    """``python -m actorsys.storage.rebalance DATA_DIR WORKERS [PARENT_PID]``: what
    :func:`rebalance` runs. Dies with its parent (a node killed while moving resumes at
    its next start, instead of leaving a move running beside a new node). Logs as role
    ``rebalance``; prints the reason of a failure on stdout (for the parent, which
    raises it as a ConfigError) and exits 2."""
    setup_logging("rebalance")
    data_dir, workers = argv[0], int(argv[1])
    if len(argv) > 2:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:       # not Linux
            pass
        if os.getppid() != int(argv[2]):
            return 1            # the parent is already gone
    try:
        rebalance_here(data_dir, read_meta(data_dir), workers)
    except ConfigError as exc:
        print(exc.problem, flush=True)     # not a log line: the parent's answer
        return 2
    return 0


# -- moving ---------------------------------------------------------------------------

def _finish(data_dir: str, meta: dict[str, Any], resumed: bool) -> dict[str, Any]:
    """Carry out ``meta["target"]`` (idempotent) and write the final meta."""
    started = time.monotonic()
    target = meta["target"]
    workers, new = int(target["workers"]), list(target["owner"])
    old = list(meta["owner"])
    if len(new) != meta["shards"] or not all(0 <= s < workers for s in new):
        raise ConfigError(f"corrupt rebalancing plan in {data_dir}/node.meta: {target!r:.200}")
    pairs: dict[tuple[int, int], list[int]] = {}
    for shard, (src, dst) in enumerate(zip(old, new)):
        if src != dst:
            pairs.setdefault((src, dst), []).append(shard)
    keys = done = 0
    total = sum(len(s) for s in pairs.values())
    said = started
    with _Pool(data_dir) as pool:
        parts = [(src, dst, shards[i:i + PROGRESS_SHARDS])      # (one pair may be every shard)
                 for (src, dst), shards in sorted(pairs.items())
                 for i in range(0, len(shards), PROGRESS_SHARDS)]
        for src, dst, part in parts:
            keys += _move_shards(pool, src, dst, part)
            done += len(part)
            if time.monotonic() - said >= PROGRESS_EVERY and done < total:
                said = time.monotonic()       # (a line now and then: a long move shows it moves)
                log.info("rebalancing: %s of %s shards moved (%d%%, %s keys, %.1f s)", done, total,
                         100 * done // total, keys, said - started)
        for src in sorted({src for src, _dst in pairs}):
            keys += _sweep_indexes(pool, src, new)
    final = {k: v for k, v in meta.items() if k != "target"}
    final.update(workers=workers, epoch=int(meta["epoch"]) + 1, owner=new)
    write_meta(data_dir, final)
    moved = sum(len(s) for s in pairs.values())
    log.info("%s: %s -> %s workers, moved %s of %s shards, %s keys in %.2f s",
             "resumed and finished" if resumed else "done", meta["workers"], workers, moved,
             meta["shards"], keys, time.monotonic() - started)
    return final


class _Pool:
    """Slot databases opened on demand; the least recently used closes past MAX_OPEN_DBS."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.dbs: OrderedDict[int, plyvel.DB] = OrderedDict()

    def path(self, slot: int) -> str:
        return os.path.join(self.data_dir, f"slot-{slot}")

    def exists(self, slot: int) -> bool:
        return slot in self.dbs or os.path.isdir(self.path(slot))

    def get(self, slot: int) -> plyvel.DB:
        db = self.dbs.pop(slot, None)
        if db is None:
            db = synced_open(self.path(slot), create_if_missing=True)
            while len(self.dbs) >= MAX_OPEN_DBS:
                self.dbs.popitem(last=False)[1].close()
        self.dbs[slot] = db
        return db

    def __enter__(self) -> "_Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        for db in self.dbs.values():
            db.close()
        self.dbs.clear()


def _scan(pool: _Pool, slot: int, lo: bytes, hi: bytes) -> Iterator[list[tuple[bytes, bytes]]]:
    """The items of ``[lo, hi)`` in chunks of at most BATCH_KEYS. No iterator stays open
    across a yield, so the caller may delete what it got and open other databases."""
    start, include = lo, True
    while True:
        with pool.get(slot).iterator(start=start, stop=hi, include_start=include) as it:
            chunk = list(islice(it, BATCH_KEYS))
        if not chunk:
            return
        yield chunk
        if len(chunk) < BATCH_KEYS:
            return
        start, include = chunk[-1][0], False


def _transfer(pool: _Pool, src: int, dst: int, items: list[tuple[bytes, bytes]]) -> int:
    """Write ``items`` to ``dst`` (fsynced), then delete them from ``src``."""
    _copy(pool.get(dst), items)
    _drop(pool.get(src), items)
    return len(items)


def _copy(db: plyvel.DB, items: list[tuple[bytes, bytes]]) -> None:
    with db.write_batch(sync=True) as wb:
        for k, v in items:
            wb.put(k, v)


def _drop(db: plyvel.DB, items: list[tuple[bytes, bytes]]) -> None:
    with db.write_batch(sync=True) as wb:
        for k, _v in items:
            wb.delete(k)


def _move_shards(pool: _Pool, src: int, dst: int, shards: list[int]) -> int:
    """Move every key of ``shards`` from slot ``src`` to ``dst``, with the listing and
    alarm index entries of their actors (:func:`.handoff.with_indexes`)."""
    if not pool.exists(src):
        return 0
    moved = 0
    pending: list[tuple[bytes, bytes]] = []
    for shard in shards:
        for chunk in _scan(pool, src, *shard_range(shard)):
            pending.extend(chunk)
            if len(pending) >= BATCH_KEYS:
                moved += _transfer(pool, src, dst, with_indexes(pool.get(src), pending))
                pending = []
    if pending:
        moved += _transfer(pool, src, dst, with_indexes(pool.get(src), pending))
    return moved


def _sweep_indexes(pool: _Pool, src: int, owner: list[int]) -> int:
    """Move the listing and alarm index entries left in ``src`` whose shard it no longer
    owns (entries of actors with no data left, or an alarm whose due time was stored
    differently from its record's), and the replication fences of those shards (a
    fence is a promise: it goes where the shard's copy goes; a shard's position key is
    in its range and moved with it). One pass over the slot's index and fence keys."""
    if not pool.exists(src):
        return 0
    moved = 0
    for tag in (*SLOT_INDEXES, FENCE_KEYS):
        for chunk in _scan(pool, src, *prefix_range(tag)):
            away: dict[int, list[tuple[bytes, bytes]]] = {}
            for k, v in chunk:
                shard = fence_shard(k) if tag == FENCE_KEYS else index_entry_shard(k, v)
                if shard is None or shard >= len(owner):
                    continue           # not an index entry we understand: left alone
                if owner[shard] != src:
                    away.setdefault(owner[shard], []).append((k, v))
            for dst, items in sorted(away.items()):
                moved += _transfer(pool, src, dst, items)
    return moved


# -- cleanup --------------------------------------------------------------------------

def _removed_slots(data_dir: str, workers: int) -> list[str]:
    """The directories of slots ``>= workers`` (they hold no shard)."""
    return sorted(os.path.join(data_dir, name) for name in os.listdir(data_dir)
                  if (m := _SLOT_DIR.fullmatch(name)) and int(m[1]) >= workers
                  and os.path.isdir(os.path.join(data_dir, name)))


def _tombstones(data_dir: str) -> list[str]:
    return [os.path.join(data_dir, name) for name in os.listdir(data_dir)
            if _TOMBSTONE.fullmatch(name) and os.path.isdir(os.path.join(data_dir, name))]


def _remove_empty_slots(data_dir: str, workers: int) -> None:
    """Delete the directories of slots ``>= workers``; refuse if one still holds data.

    A checked directory is renamed to ``slot-N.removed`` (atomically, the directory
    fsynced) before it is deleted, so a removal cut short leaves a tombstone that the
    next start deletes without opening it (a half-deleted LevelDB cannot be opened)."""
    for path in _removed_slots(data_dir, workers):
        if os.listdir(path):
            db = synced_open(path)
            try:
                for tag in KEY_SPACES:
                    with db.iterator(prefix=tag, include_value=False) as it:
                        first = next(it, None)
                    if first is not None:
                        raise ConfigError(
                            f"{path} belongs to no worker slot (workers = {workers}) but still "
                            f"holds data (key {first[:40]!r}); it was not deleted. Start with "
                            f"more workers, or move its data away", key="node.workers")
            finally:
                db.close()
        tomb = path + ".removed"
        os.rename(path, tomb)
        fsync_dir(data_dir)
        shutil.rmtree(tomb)


def _build_listing(data_dir: str, workers: int) -> None:
    """Write the listing entry of every actor that holds data (state other than ``{}``,
    storage entries or alarms), and only theirs, for a data directory made before the
    listing index, or before actors left with no data were unlisted (meta.LISTING_INDEX)."""
    started, listed = time.monotonic(), 0
    for slot in range(workers):
        path = os.path.join(data_dir, f"slot-{slot}")
        if not os.path.isdir(path):
            continue
        db = synced_open(path)
        try:
            last = None
            wb = db.write_batch(sync=True)
            for n, k in enumerate(db.iterator(prefix=LISTING_KEYS, include_value=False), 1):
                wb.delete(k)             # (an entry of an actor that still has data is put back)
                if n % BATCH_KEYS == 0:
                    wb.write()
                    wb = db.write_batch(sync=True)
            for k, v in db.iterator(prefix=ACTOR_KEYS):
                parts = split_actor_key(k)
                if parts is None:
                    continue
                entry = listing_key(parts.type_name, parts.key)
                kind = parts.rest[:1]
                if entry == last or not (kind in (ENTRY, ALARM) or (kind == STATE and v != _EMPTY_STATE)):
                    continue
                wb.put(entry, listing_value(k))
                last, listed = entry, listed + 1
                if listed % BATCH_KEYS == 0:
                    wb.write()
                    wb = db.write_batch(sync=True)
            wb.write()
        finally:
            db.close()
    log.info("listed %s actors of a data directory made before the listing index, in %.2f s",
             listed, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
