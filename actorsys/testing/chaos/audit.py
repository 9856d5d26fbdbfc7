"""The chaos run's audit: what must hold of every actor, and of the node, after the faults.

Per actor (:func:`check_actor`), from the clients' counts and the actor's own read:

* acknowledged <= final count <= attempted: nothing acknowledged was lost, nothing was
  applied that was not sent (an ask that failed may or may not have been applied);
* exactly once (a run whose every ask retried with its request id, ``exact``): an actor
  whose every attempted increment was acknowledged has count == acknowledged; above it,
  a retried ask was applied twice;
* single activation: ``Tally``'s activation records ``[first_n, last_n]`` tile
  ``1 .. count`` in activation order (contiguous, disjoint, increasing, turns summing to
  the count). Two activations of one actor at once would break this.

And the node (:func:`node_health`): its supervisor runs, and the status shows every
process up.
"""
from __future__ import annotations

import math
import time
from typing import Any

from actorsys.client import Client
from actorsys.errors import ActorError, NodeUnavailable
from actorsys.node import Node

TALLY, PROBE = "Tally", "Probe"
ACTORS = {TALLY: "actorsys.testing.chaos.actors:Tally", PROBE: "actorsys.testing.chaos.actors:Probe"}


def actor_key(i: int) -> str:
    """The key of the ``i``-th counted actor."""
    return f"t-{i}"


def check_actor(i: int, acked: int, attempted: int, read: dict[str, Any],
                exact: bool = False) -> list[str]:
    """Every violation of actor ``i``'s invariants (empty: it is fine); ``exact``: every
    ask was retried until acknowledged (see the module docstring)."""
    out = []
    n = read["n"]
    key = actor_key(i)
    if exact and acked == attempted and n > acked:
        out.append(f"{key}: count {n} is above the {acked} exactly-once increments, all "
                   f"acknowledged (a retried ask applied twice)")
    if acked > n:
        out.append(f"{key}: {acked} increments acknowledged but the count is {n} (lost {acked - n})")
    if n > attempted:
        out.append(f"{key}: count {n} is above the {attempted} increments attempted")
    expect, turns, last_no = 1, 0, 0
    for number, rec in read["acts"]:
        if number <= last_no:
            out.append(f"{key}: activation records out of order ({number} after {last_no})")
        last_no = number
        first, last, t = rec.get("first_n"), rec.get("last_n"), rec.get("turns")
        if first != expect or last - first + 1 != t or t < 1:
            out.append(f"{key}: activation {number} (pid {rec.get('pid')}) counted [{first}, {last}] "
                       f"in {t} turns; expected a range starting at {expect} with "
                       f"last - first + 1 == turns (two activations at once?)")
            expect = max(expect, (last or 0) + 1)
        else:
            expect = last + 1
        turns += t or 0
    if turns != n:
        out.append(f"{key}: activation records hold {turns} turns but the count is {n}")
    return out


def read_all(probe: Client, actors: int, problems: list[str]) -> dict[int, dict[str, Any]]:
    """Every actor's count and activation records (three tries each, 5 s per try); an
    actor that does not answer is a problem, appended to ``problems``."""
    reads: dict[int, dict[str, Any]] = {}
    for i in range(actors):
        for attempt in range(3):
            try:
                reads[i] = probe.ask(TALLY, actor_key(i), "read", timeout=5.0)
                break
            except ActorError as exc:
                if attempt == 2:
                    problems.append(f"{actor_key(i)} did not answer a read: {type(exc).__name__}: {exc}")
                else:
                    time.sleep(0.1)
    return reads


def alarm_lists(reports: list[dict[str, Any]]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The clients' alarms: ([(actor, id)] acknowledged, [(actor, id)] maybe set)."""
    acked: list[tuple[int, str]] = []
    maybe: list[tuple[int, str]] = []
    for r in reports:
        a = r.get("alarms") or {}
        acked += [(int(i), str(aid)) for i, aid in a.get("acknowledged", ())]
        maybe += [(int(i), str(aid)) for i, aid in a.get("failed", ())]
    return acked, maybe


def settle_alarms(probe: Client, acked: list[tuple[int, str]], timeout: float) -> float:
    """Wait (at most ``timeout`` s) until every acknowledged alarm fired, reading only the
    actors that still have one to fire; returns the seconds waited. (What did not fire
    by then is the audit's to report.)"""
    t0 = time.monotonic()
    deadline = t0 + timeout
    waiting: dict[int, set[str]] = {}
    for i, aid in acked:
        waiting.setdefault(i, set()).add(aid)
    while waiting and time.monotonic() < deadline:
        for i in list(waiting):
            try:
                fired = probe.ask(TALLY, actor_key(i), "read", timeout=5.0)["fired"]
            except ActorError:
                continue
            waiting[i] -= set(fired)
            if not waiting[i]:
                del waiting[i]
        if waiting:
            time.sleep(0.25)
    return time.monotonic() - t0


def check_alarms(acked: list[tuple[int, str]], maybe: list[tuple[int, str]],
                 reads: dict[int, dict[str, Any]]) -> tuple[dict[str, int], list[str]]:
    """The alarms' audit (see the module docstring) over the actors read: ``({"scheduled",
    "fired", "duplicates", "missing", "maybe_scheduled", "maybe_fired"}, violations)``;
    ``fired`` counts the acknowledged alarms that fired (once or more)."""
    out: list[str] = []
    stats = dict(scheduled=len(acked), fired=0, duplicates=0, missing=0,
                 maybe_scheduled=len(maybe), maybe_fired=0)
    sent: dict[int, set[str]] = {}
    for group, ids in (("acknowledged", acked), ("maybe", maybe)):
        for i, aid in ids:
            sent.setdefault(i, set()).add(aid)
            rd = reads.get(i)
            if rd is None:
                continue                 # not read: a violation already
            times = int(rd.get("fired", {}).get(aid, 0))
            if times > 1:
                stats["duplicates"] += 1
                out.append(f"{actor_key(i)}: alarm {aid} ({group}) fired {times} times")
            if group == "maybe":
                stats["maybe_fired"] += times > 0
            elif times > 0:
                stats["fired"] += 1
            else:
                stats["missing"] += 1
                pending = aid in rd.get("pending", ())
                out.append(f"{actor_key(i)}: alarm {aid}, acknowledged, never fired ("
                           + ("still set" if pending else "no longer set") + ")")
    for i, rd in reads.items():
        unknown = sorted(set(rd.get("fired", {})) - sent.get(i, set()))
        if unknown:
            out.append(f"{actor_key(i)}: alarm(s) {unknown[:5]} fired but never scheduled")
    return stats, out


def node_health(node: Node, workers: int) -> tuple[bool, str]:
    """(healthy, what was seen): the node supervisor runs and every process is up."""
    try:
        code = node.wait(0.01)
        return False, f"the node supervisor exited with status {code}"
    except NodeUnavailable:
        pass
    try:
        st = node.status()
    except ActorError as exc:
        return False, f"status failed: {type(exc).__name__}: {exc}"
    procs = st["processes"]
    down = [f"{p['role']}{'' if p.get('slot') is None else ' ' + str(p['slot'])}"
            for p in procs if not p.get("up")]
    slots = sorted(p["slot"] for p in procs if p["role"] == "worker" and p.get("up"))
    roles = {p["role"] for p in procs if p.get("up")}
    if down or slots != list(range(workers)) or not {"supervisor", "router"} <= roles:
        return False, f"processes down: {down or 'none'}; workers up: {slots}; roles up: {sorted(roles)}"
    return True, f"supervisor, router and {workers} workers up"


def percentiles(samples: list[float]) -> dict[str, float] | None:
    """Nearest-rank p50, p99 and max of recovery times in ms (None for no samples)."""
    if not samples:
        return None
    s = sorted(samples)

    def rank(p: float) -> float:
        return s[max(math.ceil(p * len(s)) - 1, 0)]

    return {"n": len(s), "p50_ms": round(rank(0.5), 1), "p99_ms": round(rank(0.99), 1),
            "max_ms": round(s[-1], 1)}
