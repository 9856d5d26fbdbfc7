"""The cost of one idle sweep (``Catalog.passivate_idle``) with many resident actors.

In-process, no node: a real :class:`~actorsys.runtime.catalog.Catalog` holds ``N``
activations (made by ``resident``, as a worker makes them), none idle past the cutoff
but ``IDLE`` of them at the least recently used end, and the 1% most recent with one
waiting message each (bytes the sweep's queued-bytes recount reads). Passivating is a
stand-in that just forgets the record: what is timed is the sweep's own walk, not the
actors' on_stop turns. Prints the best and the median of a few sweeps, in ms.

    .venv/bin/python scripts/bench_idle_sweep.py [N] [IDLE]

It runs against the checkout on ``PYTHONPATH`` (the catalog's API before and after
issue 19 both work), so one script gives the before and the after of a change.
"""
from __future__ import annotations

import inspect
import statistics
import sys
import tempfile
import time

from actorsys import Actor
from actorsys.protocol import wire
from actorsys.protocol.shardmap import ShardMap
from actorsys.runtime.activation import Waiting
from actorsys.runtime.catalog import Catalog
from actorsys.storage.slot import SlotStore

SHARDS = 16
IDLE_TIMEOUT = 60.0


class Item(Actor):
    def touch(self) -> None:
        pass


def build(store: SlotStore, n: int, idle: int, now: float) -> Catalog:
    counters = {"bad_frames": 0, "evictions": 0}
    cat = Catalog(0, ShardMap(epoch=1, shards=SHARDS, owner=[0] * SHARDS, endpoints=["x"]),
                  {"Item": Item}, {"Item": {}}, store, False, n + 1, counters)
    cat.passivate = cat.forget
    for i in range(n):
        act = cat.resident("Item", f"k{i}")
        act.instance = object()       # type: ignore[assignment]   (a live actor)
        act.last_used = now - 2 * IDLE_TIMEOUT if i < idle else now
    raw = wire.pack([wire.TELL, 0, "Item", "k", "touch", [], {}])
    for i in range(n - n // 100, n):
        act = cat.acts[("Item", f"k{i}")]
        msg = Waiting(wire.TELL, None, 0, "touch", raw)
        queue = getattr(cat, "queue", None)
        if queue is not None:        # (after issue 19: the catalog knows who holds bytes)
            queue(act, msg)
        else:
            cat.queued_bytes += len(raw)
            act.mail().append(msg)
    return cat


def sweep(cat: Catalog, now: float) -> tuple[float, float, float]:
    """One reaper tick's catalog work, timed: (all of it, its longest step, the
    queued-bytes recount), in seconds. Before issue 19 it is one step, recount included."""
    params = inspect.signature(cat.passivate_idle).parameters
    t0 = time.perf_counter()
    if "now" not in params:
        cat.passivate_idle(now - IDLE_TIMEOUT)
        t = time.perf_counter() - t0
        return t, t, t
    longest, more = 0.0, True
    while more:            # (the worker runs these steps with call_soon between them)
        t = time.perf_counter()
        more = cat.passivate_idle(now - IDLE_TIMEOUT, now)
        longest = max(longest, time.perf_counter() - t)
    t = time.perf_counter()
    cat.recount_queued()
    t1 = time.perf_counter()
    return t1 - t0, longest, t1 - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    idle = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with tempfile.TemporaryDirectory() as tmp:
        store = SlotStore(f"{tmp}/slot-0", fsync=False, max_value_bytes=1 << 20, what="bench")
        try:
            now = time.monotonic()
            cat = build(store, n, idle, now)
            expected = sum(len(m.raw) for a in cat.acts.values() for m in a.mailbox)
            times = [sweep(cat, now)]          # the first passivates the idle ones
            times += [sweep(cat, now) for _ in range(7)]
            assert cat.queued_bytes == expected, (cat.queued_bytes, expected)
            assert len(cat.acts) == n - idle, len(cat.acts)
        finally:
            store.close()
    first, later = times[0], times[1:]
    print(f"{n} resident, {idle} idle at the LRU end, {n // 100} with a waiting message:")
    print(f"  first sweep (passivates the idle): {first[0] * 1000:.2f} ms in all, longest step "
          f"{first[1] * 1000:.2f} ms")
    print(f"  later sweeps (nothing idle): median {statistics.median(t[0] for t in later) * 1000:.3f}"
          f" ms in all, of which the queued-bytes recount "
          f"{statistics.median(t[2] for t in later) * 1000:.3f} ms")

if __name__ == "__main__":
    main()
