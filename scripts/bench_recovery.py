"""The crash recovery measurement of scripts/bench.py (its item 5), also run by
scripts/bench_recovery_ab.py: kill -9 of the worker hosting an actor, time to the first
ask the new worker answers (issue 19)."""
from __future__ import annotations

import os
import re
import signal
import time

import actorsys
from actorsys.storage.slot import log_bytes
from actorsys.testing.bench import TYPE, Resources, actorsys_pipelined, pct


def bench_recovery(node, res: Resources, repeats: int, fill: int = 0, fill_bytes: int = 1024,
                   quiet: float = 0.05) -> dict:
    """kill -9 the worker hosting an actor; time to the first ask the new worker answers.

    Before each kill, up to ``fill`` other new actors on the same worker slot each commit
    one turn storing ``fill_bytes`` (``put``, pipelined), then the crashed actor commits
    its own, and ``quiet`` seconds later the worker is killed: so the LevelDB log the
    restarted worker replays holds the writes since the last memtable flush, as a kill at
    a random moment of a steady write load finds it (issue 19). A restart replays the log
    and starts a new one, so the sample ``i`` of ``n`` writes ``fill * k / n`` actors, ``k``
    a permutation of ``1 .. n``: the samples spread evenly over log sizes up to
    ``fill * (fill_bytes + ~150)`` bytes (3,600 actors of 1 KiB: 4 MiB, LevelDB's default
    write buffer), whatever the buffer size (a fixed amount would always leave the same
    remainder of it in the log). The time runs from the SIGKILL to
    the answer of the new worker (the supervisor forks it at once: no interpreter start,
    no imports; the bench configures no backoff); each sample also records the log's size
    at the kill and how long the new worker's LevelDB open took (its log line).
    """
    import collections
    import itertools

    client = node.client()
    samples, attempts, errors = [], [], collections.Counter()
    opens, logs = [], []
    for i in range(repeats):
        ref = client.ref(TYPE, f"crash-{i}")
        ref.ask("add", 1, timeout=10.0)
        slot = client.map.slot_of(TYPE, f"crash-{i}")
        n = fill * ((i * 7) % repeats + 1) // repeats if repeats % 7 else fill * (i + 1) // repeats
        if n:
            keys = list(itertools.islice((k for k in (f"fill-{i}-{j}" for j in itertools.count())
                                          if client.map.slot_of(TYPE, k) == slot), n))
            actorsys_pipelined(node.endpoint, keys, min(1000, n), method="put", args=(fill_bytes,))
        expected = ref.ask("add", 1000 + i, timeout=10.0)
        old_pid = ref.ask("pid", timeout=10.0)
        time.sleep(quiet)
        slot_dir = os.path.join(node.config.data_dir, f"slot-{slot}")
        logs.append(log_bytes(slot_dir))
        t0 = time.perf_counter()
        deadline = time.monotonic() + 30.0
        os.kill(old_pid, signal.SIGKILL)
        tries = 0
        while True:
            tries += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"actor crash-{i} did not come back within 30 s "
                                   f"(errors seen: {dict(errors)})")
            try:
                # "get" answered by a new process: pid first (the old worker may not have
                # died yet when the first ask arrives), then the state.
                pid = ref.ask("pid", timeout=min(2.0, remaining))
                if pid == old_pid:
                    time.sleep(0.001)
                    continue
                value = ref.ask("get", timeout=min(2.0, remaining))
            except actorsys.ActorError as exc:
                errors[type(exc).__name__] += 1
                continue
            break
        el = time.perf_counter() - t0
        if value != expected:
            raise RuntimeError(f"actor crash-{i} came back with {value}, expected {expected}")
        samples.append(el * 1e3)
        attempts.append(tries)
        opens.append(_last_open(res, slot))
        time.sleep(0.3)   # let the node settle (and stay far below the restart intensity)
    known = [o[0] for o in opens if o is not None]
    return _recovery_summary(samples) | {
        "attempts": attempts, "errors_seen": dict(errors), "fill": fill, "fill_bytes": fill_bytes,
        "log_kib": [round(b / 1024) for b in logs], "open_ms": [o and o[0] for o in opens],
        "replayed_kib": [o and o[1] for o in opens], "open": _recovery_summary(known) if known else None}


_OPENED = re.compile(r"worker slot (\d+): opened its LevelDB in ([0-9.]+) ms \(a (\d+) KiB log")


def _last_open(res: Resources, slot: int) -> tuple[float, int] | None:
    """How long the newest LevelDB open of worker ``slot`` took, ms, and the KiB of log it
    replayed (its worker's log line)."""
    found = [(float(m.group(2)), int(m.group(3))) for m in _OPENED.finditer(res.log_tail(200_000))
             if int(m.group(1)) == slot]
    return found[-1] if found else None


def _recovery_summary(samples: list[float]) -> dict:
    """Percentiles (nearest rank: with fewer than 100 samples p99 is the maximum) and the samples."""
    import statistics
    v = sorted(samples)
    return {"median_ms": statistics.median(v), "p90_ms": pct(v, 0.9), "p99_ms": pct(v, 0.99),
            "max_ms": v[-1], "n": len(v), "samples_ms": samples}
