"""The eight Savina workloads: parameters (published, ours, quick), what a rate counts, and
the check every runtime's result must pass.

What each workload does (as in Savina's Akka versions; "tell" is a one-way message):

* ``pingpong``    Ping tells Pong ``ping``; Pong counts it and tells Ping ``pong``; Ping
                  tells itself ``ping`` (Savina's PingMessage) and sends the next, N round
                  trips; then Ping tells Pong ``finish`` (Savina's StopMessage) and Pong
                  reports its count.
                  Rate: round trips/s. Check: Pong counted N.
* ``count``       A Producer actor tells a Counter ``increment`` N times in one turn, then
                  ``retrieve``; the Counter tells the Producer its count, which reports it.
                  Rate: increments/s. Check: the count is N.
* ``fjthrput``    A actors; the driver tells each of them N messages (round robin). Each
                  message does Savina's small computation (sin^2 of 37.2); an actor that
                  has processed N reports. Rate: messages/s. Check: A * N processed.
* ``fjcreate``    N new actors, each sent one message: it does the computation, reports and
                  exits. Rate: actors/s (created, run, reported). Check: N reported.
* ``threadring``  N actors in a ring pass one token R hops (the token carries what is
                  left and how many actors received it); the last receiver reports.
                  Rate: hops/s. Check: R + 1 receptions.
* ``chameneos``   C chameneos meet at a Mall M times: each tells the Mall ``meet``; the Mall
                  pairs two waiting ones (forwards the second's ``meet`` to the first, which
                  tells the other ``change``); after M meetings each is told ``exit`` and
                  reports its meetings to the Mall, which reports the sum.
                  Rate: meetings/s. Check: the meetings sum to 2 M.
* ``big``         W actors; each sends N pings, one at a time, to neighbours picked at
                  random (a per-actor generator), waits for the pong, and reports when done,
                  with any pong from an unexpected sender counted as bad.
                  Rate: pings/s (each a ping and its pong). Check: W * N pings, no bad pong.
* ``banking``     A Teller sends N transfers (random source < destination, as Savina, so no
                  wait cycle): the source account takes the amount off, asks the
                  destination to add it and waits for the answer (Savina's Await version;
                  actorsys: ``await self.ref(...).ask``), then tells the Teller, which
                  reports after N. Rate: transfers/s. Check: N done and the balances' sum
                  unchanged.

Every rate is ``units / seconds``, the seconds from the first message of the workload
(after its actors are set up, except ``fjcreate``, where creating them is the point)
until the driver learns of its last report.

Scaling: Savina's published parameters are for a many-core JVM. Ours divide every message
count by 20 (Big's by 100) and keep the actor counts. Thespian's multiprocTCPBase and Ray
make every actor an OS process and run a few hundred of these messages per second here
(Thespian's Counting Actor under 200/s), so on them a full run makes at most
:data:`PROCESS_CAPS` actors per workload and a tenth of the work
(:data:`PROCESS_DIVISOR`; ``fjcreate``'s actors are its work), the messages per actor
set to match: a rate per unit is what compares.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

WORKLOADS = ("pingpong", "count", "fjthrput", "fjcreate", "threadring", "chameneos", "big",
             "banking")


class Workload(NamedTuple):
    title: str
    unit: str                     # what its rate counts
    published: dict[str, int]     # Savina's defaults (its *Config.java)
    full: dict[str, int]          # ours, for a 2-core machine
    quick: dict[str, int]         # the smoke test's
    actors: str | None            # the parameter that is a number of actors
    count: str | None             # the one that is a number of messages (None: fjcreate)
    per_actor: bool               # ... per actor (else in all)


TABLE: dict[str, Workload] = {
    "pingpong": Workload("Ping Pong", "round trips", {"N": 40_000}, {"N": 2_000}, {"N": 100},
                         None, "N", False),
    "count": Workload("Counting Actor", "increments", {"N": 1_000_000}, {"N": 50_000},
                      {"N": 500}, None, "N", False),
    "fjthrput": Workload("Fork-Join throughput", "messages", {"A": 60, "N": 10_000},
                         {"A": 60, "N": 500}, {"A": 10, "N": 20}, "A", "N", True),
    "fjcreate": Workload("Fork-Join creation", "actors", {"N": 40_000}, {"N": 2_000},
                         {"N": 100}, "N", None, False),
    "threadring": Workload("Thread Ring", "hops", {"N": 100, "R": 100_000},
                           {"N": 100, "R": 5_000}, {"N": 10, "R": 200}, "N", "R", False),
    "chameneos": Workload("Chameneos", "meetings", {"C": 100, "M": 200_000},
                          {"C": 100, "M": 10_000}, {"C": 10, "M": 100}, "C", "M", False),
    "big": Workload("Big", "pings", {"W": 120, "N": 20_000}, {"W": 120, "N": 200},
                    {"W": 10, "N": 10}, "W", "N", True),
    "banking": Workload("Bank Transaction", "transfers", {"A": 1_000, "N": 50_000},
                        {"A": 1_000, "N": 2_500}, {"A": 20, "N": 100}, "A", "N", False),
}

#: the most actors one workload makes on a runtime whose every actor is an OS process
PROCESS_CAPS = {"thespian": 32, "ray": 8}
#: ... and the part of the work they do, by mode
PROCESS_DIVISOR = {"full": 10, "quick": 1}
#: the most seconds one workload may take on one runtime (full run, quick run)
DEADLINE = {"full": 180.0, "quick": 30.0}
#: an account's opening balance (integers, so that the sum check is exact)
OPENING_BALANCE = 1_000_000
#: the Teller's and Big's generators' seeds (Savina's Teller uses 123456)
TELLER_SEED = 123456


def params(name: str, mode: str, runtime: str) -> dict[str, int]:
    """The parameters of workload ``name`` in ``mode`` ("full" or "quick") on ``runtime``."""
    w = TABLE[name]
    p = dict(w.full if mode == "full" else w.quick)
    cap = PROCESS_CAPS.get(runtime)
    if cap is None:
        return p
    work = max(1, units(name, p) // PROCESS_DIVISOR[mode])
    if w.actors is not None:
        p[w.actors] = min(p[w.actors], cap, work if w.count is None else cap)
    if w.count is not None:
        p[w.count] = math.ceil(work / p[w.actors]) if w.per_actor else work
    return p


def units(name: str, p: dict[str, int]) -> int:
    """What the workload's rate counts, for parameters ``p``."""
    if name == "fjthrput":
        return p["A"] * p["N"]
    if name == "threadring":
        return p["R"]
    if name == "chameneos":
        return p["M"]
    if name == "big":
        return p["W"] * p["N"]
    return p["N"]


def expected_total(name: str, p: dict[str, int]) -> int:
    """The sum of the values reported to the workload's sink."""
    if name == "threadring":
        return p["R"] + 1
    if name == "chameneos":
        return 2 * p["M"]
    return units(name, p)


def reports(name: str, p: dict[str, int]) -> int:
    """How many reports the sink waits for."""
    if name == "fjthrput":
        return p["A"]
    if name == "fjcreate":
        return p["N"]
    if name == "big":
        return p["W"]
    return 1


def check(name: str, p: dict[str, int], facts: dict[str, Any]) -> str | None:
    """None if a run's ``facts`` (``total``, ``bad``; ``balance_sum`` for banking) are
    right, else what is wrong."""
    want = expected_total(name, p)
    if facts.get("total") != want:
        return f"reports sum to {facts.get('total')}, expected {want}"
    if facts.get("bad", 0):
        return f"{facts['bad']} bad messages (pongs from an unexpected sender)"
    if name == "banking" and facts.get("balance_sum") != p["A"] * OPENING_BALANCE:
        return (f"the balances sum to {facts.get('balance_sum')}, expected "
                f"{p['A'] * OPENING_BALANCE} (money made or lost)")
    return None


# -- what the actors of every runtime compute the same way --------------------------------


def lcg(x: int) -> int:
    """The next state of a 64-bit linear congruential generator (Knuth's MMIX constants)."""
    return (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF


def below(x: int, n: int) -> int:
    """A number in ``range(n)`` from generator state ``x`` (its high bits)."""
    return (x >> 33) % n


def transfers(accounts: int, n: int, seed: int = TELLER_SEED) -> list[tuple[int, int, int]]:
    """The Teller's ``n`` transfers ``(source, destination, amount)``, source < destination
    as in Savina (so a source waiting on its destination never closes a cycle)."""
    out, x = [], seed
    for _ in range(n):
        x = lcg(x)
        src = below(x, max(1, accounts * 8 // 10))
        x = lcg(x)
        step = below(x, accounts - src) or 1
        x = lcg(x)
        out.append((src, src + step, below(x, 1000) + 1))
    return out


def compute() -> float:
    """Savina's per-message computation in Fork-Join (``performComputation(37.2)``)."""
    s = math.sin(37.2)
    return s * s


#: Chameneos' colours: red, yellow, blue; FADED once it has left the Mall
FADED = 3


def complement(color: int, other: int) -> int:
    """Savina's ChameneosHelper.complement: the same colour stays, two differ -> the third."""
    if color == FADED or other == FADED:
        return FADED
    return color if color == other else 3 - color - other
