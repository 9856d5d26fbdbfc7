"""The core benchmark's workloads (``scripts/bench.py``) on the peers, for
``scripts/bench --all``: what a program outside the actor system sees.

Each runs against :class:`Echo` actors (a counter: ``add(k)`` answers the new count, ``inc``
nothing) through a :class:`.peer.PeerRunner`'s own operations, from the benchmark's main thread:

* ``latency``      sequential asks of one actor (Pykka ``ref.ask(...)``, Thespian
                   ``ActorSystem().ask(addr, msg, timeout)``, Ray ``ray.get(a.msg.remote(...))``):
                   p50 and p99 in microseconds, after a warm-up of a tenth as many;
* ``pipelined``    ``window`` asks sent before their answers are collected, spread over
                   ``actors`` actors, repeated until ``n`` (Pykka ``ask(block=False)`` futures
                   then ``pykka.get_all``; Ray a list of ObjectRefs then one ``ray.get``):
                   asks per second. Thespian has no non-blocking ask from outside its actors
                   (``ActorSystem().ask`` waits for its answer), so it has no figure here;
* ``tells``        ``n`` one-way messages to one actor, then one ask to know they were all
                   processed (its answer is checked): messages per second;
* ``creations``    ``n`` new actors, each then asked ``ready`` (Pykka ``start()``, Thespian
                   ``createActor``, Ray ``.remote()``; Ray's asks go out together, like the
                   actorsys side's pipelined asks to new keys): actors per second, each
                   existing and having answered one message. They are stopped after, untimed.

Counts (:func:`params`): Pykka as the core benchmark's (creations fewer: each is a thread);
Thespian and Ray, whose every actor is an OS process answering a few hundred messages a
second here, fewer messages, at most 8 actors, and a handful of creations. The rates
compare; the counts are in the report and its JSON. Every loop is bounded in count and by a
deadline (:data:`DEADLINE`); every ask has the runner's timeout.
"""
from __future__ import annotations

import time
from typing import Any

from .behaviours import Behaviour

WORKLOADS = ("latency", "pipelined", "tells", "creations")
#: seconds one workload may take on one runtime (full run, quick run)
DEADLINE = {"full": 180.0, "quick": 30.0}
#: seconds the answers of one window of pipelined asks may take
WINDOW_TIMEOUT = 60.0

_COUNTS = {
    # runtime: (mode: latency n, pipelined n, window, pipelined actors, tells n, creations n)
    "pykka": {"full": (5000, 50_000, 1000, 100, 50_000, 2000),
              "quick": (500, 5000, 1000, 100, 5000, 200)},
    "thespian": {"full": (1000, 0, 0, 0, 5000, 16), "quick": (100, 0, 0, 0, 300, 4)},
    "ray": {"full": (1000, 20_000, 1000, 8, 10_000, 8), "quick": (100, 2000, 500, 4, 1000, 2)},
}


class Echo(Behaviour):
    """A counter: what ``scripts/bench_actors.py``'s BenchCounter is to actorsys, without
    the durable state."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, ctx: Any, k: int) -> int:
        self.count += k
        return self.count

    def inc(self, ctx: Any) -> None:
        """(a tell's: answers nothing, so that Thespian's host sends no reply)"""
        self.count += 1

    def get(self, ctx: Any) -> int:
        return self.count


def params(runtime: str, mode: str) -> dict[str, int]:
    """The counts of each workload on ``runtime`` ("pykka", "thespian", "ray") in ``mode``."""
    lat, pipe, window, actors, tells, create = _COUNTS[runtime][mode]
    return {"latency_n": lat, "pipelined_n": pipe, "window": window, "pipelined_actors": actors,
            "tells_n": tells, "creations_n": create, "rounds": 3 if mode == "full" else 1}


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"{what} did not finish before its deadline")


def latency(runner: Any, p: dict[str, int], deadline: float) -> dict[str, Any]:
    n = p["latency_n"]
    runner.made = a = [runner.spawn(Echo())]
    ask, actor = runner.ask, a[0]
    for i in range(max(1, n // 10)):
        ask(actor, "add", 1)
        if not i & 63:
            _check_deadline(deadline, "latency warm-up")
    base = ask(actor, "get")
    samples = []
    perf = time.perf_counter_ns
    for i in range(n):
        t = perf()
        ask(actor, "add", 1)
        samples.append(perf() - t)
        if not i & 63:
            _check_deadline(deadline, "latency")
    got = ask(actor, "get")
    if got - base != n:
        raise RuntimeError(f"latency: {n} asks, the actor counted {got - base}")
    samples.sort()
    return {"p50_us": samples[len(samples) // 2] / 1e3,
            "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1e3, "n": n}


def _ask_many(runner: Any, calls: list[tuple[Any, str, tuple[Any, ...]]]) -> list[Any]:
    """Send every ask of ``calls`` before waiting for any answer; the answers in order."""
    if runner.name == "pykka":
        import pykka
        futures = [to.ask((m, args), block=False) for to, m, args in calls]
        return list(pykka.get_all(futures, timeout=WINDOW_TIMEOUT))
    if runner.name == "ray":
        import ray
        return list(ray.get([to.msg.remote(m, *args) for to, m, args in calls],
                            timeout=WINDOW_TIMEOUT))
    raise NotImplementedError(f"{runner.name}: no non-blocking ask from outside its actors")


def pipelined(runner: Any, p: dict[str, int], deadline: float) -> dict[str, Any] | None:
    if runner.name not in ("pykka", "ray") or not p["pipelined_n"]:
        return None
    n, window = p["pipelined_n"], p["window"]
    runner.made = actors = [runner.spawn(Echo()) for _ in range(p["pipelined_actors"])]
    runner.ready(actors)
    rates = []
    for _ in range(p["rounds"]):
        sent = 0
        t0 = time.perf_counter()
        while sent < n:
            m = min(window, n - sent)
            answers = _ask_many(runner, [(actors[(sent + i) % len(actors)], "add", (1,))
                                         for i in range(m)])
            if len(answers) != m or not all(isinstance(x, int) for x in answers):
                raise RuntimeError(f"pipelined: {m} asks, answers {answers[:5]!r}...")
            sent += m
            _check_deadline(deadline, "pipelined asks")
        rates.append(n / (time.perf_counter() - t0))
    total = sum(runner.ask(a, "get") for a in actors)
    if total != n * p["rounds"]:
        raise RuntimeError(f"pipelined: the actors counted {total}, expected {n * p['rounds']}")
    return {"per_s": max(rates), "rounds_per_s": rates, "n": n, "window": window,
            "actors": len(actors)}


def tells(runner: Any, p: dict[str, int], deadline: float) -> dict[str, Any]:
    n = p["tells_n"]
    runner.made = a = [runner.spawn(Echo())]
    runner.ready(a)
    tell, actor, rates = runner.tell, a[0], []
    for _ in range(p["rounds"]):
        base = runner.ask(actor, "get")
        t0 = time.perf_counter()
        for i in range(n):
            tell(actor, "inc")
            if not i & 1023:
                _check_deadline(deadline, "tells")
        got = runner.ask(actor, "get")
        el = time.perf_counter() - t0
        if got - base != n:
            raise RuntimeError(f"tells: {n} sent, {got - base} processed")
        rates.append(n / el)
    return {"per_s": max(rates), "rounds_per_s": rates, "n": n}


def creations(runner: Any, p: dict[str, int], deadline: float) -> dict[str, Any]:
    n, rates = p["creations_n"], []
    for _ in range(p["rounds"]):
        runner.made = made = []
        t0 = time.perf_counter()
        for _i in range(n):
            made.append(runner.spawn(Echo()))
            _check_deadline(deadline, "creations")
        runner.ready(made)
        rates.append(n / (time.perf_counter() - t0))
        runner.made = []
        runner.teardown(made)
    return {"per_s": max(rates), "rounds_per_s": rates, "n": n}


def run(runner: Any, name: str, p: dict[str, int], mode: str) -> dict[str, Any] | None:
    """Workload ``name`` on a started ``runner``; the actors it made are stopped after,
    also on an error (None: the runtime has no way to do it)."""
    runner.made = []
    try:
        fn = {"latency": latency, "pipelined": pipelined, "tells": tells,
              "creations": creations}[name]
        out: dict[str, Any] | None = fn(runner, p, time.monotonic() + DEADLINE[mode])
        return out
    finally:
        made, runner.made = runner.made, []
        if made:
            runner.teardown(made)
