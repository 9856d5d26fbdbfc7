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

WebSockets (:func:`check_websockets`), from the WebSocket client's record of every
socket (:mod:`.wsload`) and each ``Inbox`` actor's list of the messages it applied:
every number the gateway acknowledged (the actor's ``ack`` frame, which leaves only
after the batch's commit) is in the state of the actor its socket was open to exactly
once; no number is there twice, acknowledged or not (a batch delivered again after a
fault applies once); none that was not sent; and one socket's numbers in the order it
sent them.

And the node (:func:`node_health`): its supervisor runs, and the status shows every
process up.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any, Callable

from actorsys.client import Client
from actorsys.errors import ActorError, NodeUnavailable
from actorsys.node import Node

TALLY, PROBE, INBOX = "Tally", "Probe", "Inbox"
ACTORS = {TALLY: "actorsys.testing.chaos.actors:Tally", PROBE: "actorsys.testing.chaos.actors:Probe",
          INBOX: "actorsys.testing.chaos.actors:Inbox"}
#: the violations of one kind a WebSocket audit lists (then: how many more)
WS_LISTED = 10


def actor_key(i: int) -> str:
    """The key of the ``i``-th counted actor."""
    return f"t-{i}"


def inbox_key(i: int) -> str:
    """The key of the ``i``-th ``Inbox`` actor (the WebSocket client's sockets' actors)."""
    return f"ws-{i}"


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
    return read_each(probe, TALLY, actor_key, "read", actors, problems)


def read_each(probe: Client, type_name: str, key_of: Callable[[int], str], method: str,
              actors: int, problems: list[str]) -> dict[int, Any]:
    """``method``'s answer of each actor ``key_of(0 .. actors - 1)`` of ``type_name``
    (three tries each, 5 s per try); one that does not answer is a problem, appended to
    ``problems``."""
    reads: dict[int, Any] = {}
    for i in range(actors):
        for attempt in range(3):
            try:
                reads[i] = probe.ask(type_name, key_of(i), method, timeout=5.0)
                break
            except ActorError as exc:
                if attempt == 2:
                    problems.append(f"{key_of(i)} did not answer a read: {type(exc).__name__}: {exc}")
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


def read_inboxes(probe: Client, actors: int, problems: list[str]) -> dict[int, list[list[int]]]:
    """Every ``Inbox`` actor's messages applied (``[[client, n], ...]``, three tries each);
    one that does not answer is a problem, appended to ``problems``."""
    return read_each(probe, INBOX, inbox_key, "got", actors, problems)


def check_websockets(sockets: list[dict[str, Any]],
                     reads: dict[int, list[list[int]]]) -> tuple[dict[str, int], list[str]]:
    """The WebSocket audit (see the module docstring). ``sockets``: the client's record of
    each socket (:mod:`.wsload`: ``client``, ``sent``, ``acked`` numbers, ``ack_dups``,
    ``stray_acks`` and its connections ``[actor, node, first n, last n, how it ended]``,
    each sending ``first .. last`` to ``Inbox`` ``actor``); ``reads``: ``Inbox`` index ->
    its ``got()``. Returns ``({"sent", "acknowledged", "applied", "duplicates",
    "missing", "out_of_order", "invented", "ack_dups"}, violations)``: ``applied`` counts
    the numbers sent that are in a state (once or more), ``duplicates`` the numbers in
    the states more than once, ``missing`` the acknowledged numbers not in their
    actor's state (actors not read are left out: a violation already)."""
    found: dict[str, list[str]] = {}

    def bad(kind: str, what: str) -> None:
        found.setdefault(kind, []).append(what)

    stats = dict(sent=0, acknowledged=0, applied=0, duplicates=0, missing=0, out_of_order=0,
                 invented=0, ack_dups=0)
    sent_to: dict[tuple[int, int], tuple[int, int]] = {}     # (client, n) -> (actor, connection)
    for s in sockets:
        c = int(s["client"])
        stats["sent"] += int(s["sent"])
        stats["ack_dups"] += int(s.get("ack_dups", 0))
        if s.get("ack_dups"):
            bad("ack_dups", f"socket {c}: {s['ack_dups']} acknowledgement(s) came twice "
                            f"(a batch's effects reach its socket once)")
        if s.get("stray_acks"):
            bad("stray", f"socket {c}: {s['stray_acks']} acknowledgement(s) of numbers it did "
                         f"not send on that connection")
        for k, (actor, _node, first, last, _end) in enumerate(s["conns"]):
            for n in range(int(first), int(last) + 1):
                sent_to[(c, n)] = (int(actor), k)
    counts: dict[int, Counter[tuple[int, int]]] = {}
    total: Counter[tuple[int, int]] = Counter()
    for actor, got in reads.items():
        mine = counts[actor] = Counter()
        last_n: dict[tuple[int, int], int] = {}        # (client, connection) -> last n seen
        for c, n in got:
            m = (int(c), int(n))
            mine[m] += 1
            total[m] += 1
            to = sent_to.get(m)
            if to is None:
                stats["invented"] += 1
                bad("invented", f"{inbox_key(actor)}: message {m[0]}/{m[1]} applied but never sent")
                continue
            if to[0] != actor:
                bad("wrong", f"{inbox_key(actor)}: message {m[0]}/{m[1]} applied there but sent "
                             f"to {inbox_key(to[0])}")
            conn = (m[0], to[1])
            if conn in last_n and m[1] < last_n[conn]:
                stats["out_of_order"] += 1
                bad("order", f"{inbox_key(actor)}: socket {m[0]}'s message {m[1]} applied after "
                             f"its {last_n[conn]} (sent on one connection, in order)")
            last_n[conn] = max(m[1], last_n.get(conn, 0))
    for m, times in sorted(total.items()):
        if m in sent_to:
            stats["applied"] += 1
        if times > 1:
            stats["duplicates"] += 1
            bad("duplicate", f"message {m[0]}/{m[1]} applied {times} times")
    for s in sockets:
        c = int(s["client"])
        acked = set(int(n) for n in s["acked"])
        stats["acknowledged"] += len(acked)
        for n in sorted(acked):
            to = sent_to.get((c, n))
            if to is None or to[0] not in counts:
                continue                   # not sent on a recorded connection (stray), or not read
            if counts[to[0]][(c, n)] == 0:
                stats["missing"] += 1
                elsewhere = [inbox_key(a) for a, cnt in counts.items() if cnt[(c, n)]]
                bad("missing", f"{inbox_key(to[0])}: message {c}/{n}, acknowledged, is not in its "
                               f"state" + (f" (it is in {', '.join(elsewhere)})" if elsewhere else ""))
    out: list[str] = []
    for what in found.values():
        out.extend(what[:WS_LISTED])
        if len(what) > WS_LISTED:
            out.append(f"... and {len(what) - WS_LISTED} more like the one above")
    return stats, out


#: the gateway counters a run reports (how often the WebSocket audit met a redelivery)
GATEWAY_COUNTERS = ("batches", "redeliveries", "duplicates", "dropped_events")


def gateway_counters(statuses: list[dict[str, Any] | None]) -> dict[str, int]:
    """The sum of :data:`GATEWAY_COUNTERS` over the gateways in nodes' ``statuses`` (each
    gateway's since it started: a restarted one's are gone)."""
    out = dict.fromkeys(GATEWAY_COUNTERS, 0)
    for st in statuses:
        for p in (st or {}).get("processes", ()):
            if p.get("role") == "gateway":
                for k in GATEWAY_COUNTERS:
                    out[k] += int(p.get(k) or 0)
    return out


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
