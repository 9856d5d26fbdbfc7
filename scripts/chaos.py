"""Chaos under load: kill -9 parts of a node while clients keep counting, then audit.

What it does, in the user's words:

* starts an embedded node (``--workers`` workers, ``--durability``) in a fresh data dir;
* starts ``--clients`` client processes; each keeps ``--in-flight`` asks of ``Tally.add``
  in flight on random actors among ``--actors`` keys, and counts per actor what it sent
  (*attempted*) and what got a successful reply (*acknowledged*). Any error (WorkerLost,
  AskTimeout, Overloaded, NodeUnavailable, a remote error) means "maybe applied";
* every ``--fault-every`` seconds (randomised +-50%) a fault injector kills with SIGKILL
  a random worker (most often), the router, or all the node supervisor's children at
  once (the first three faults are one of each kind, in random order), and measures
  the recovery time: from the kill until the killed part answers again from a new
  process (a worker: a probe actor on its slot answers with a new pid; the router: it
  answers a ping, and the status shows a new router pid; all: both, for every part);
* after ``--duration`` seconds the clients stop sending, wait for their asks in flight
  (each has a ``--ask-timeout`` deadline) and report their counts; then every actor is
  read, and the audit checks, per actor:

  - acknowledged <= final count <= attempted (nothing acknowledged was lost, nothing
    was applied that was not sent);
  - single activation: ``Tally`` records each activation that counted in its own
    storage, in the same turn as the count (see ``chaos_actors.py``); the records'
    ``[first_n, last_n]`` ranges must tile ``1 .. count`` in activation order
    (contiguous, disjoint, increasing, turns summing to the count). Two activations of
    one actor at once would break this;
  - the node is healthy: its supervisor runs, the status shows every process up, and
    every actor answers a read.

A kill -9 keeps what the killed process wrote to the OS, so both durability modes face
the same faults here; what ``fsync`` adds (surviving power loss) is not simulated.

It prints the load held, the faults injected, recovery p50/p99/max, the activations
seen and every violation (first 20), and as its LAST line ``acknowledged writes lost: N``
(N = sum over actors of max(0, acknowledged - final)). Exit status 0 only if N == 0,
there is no other violation and the node was healthy; 130 on Ctrl-C.

Everything it starts (node, clients, temp dirs) is gone at the end, also on Ctrl-C,
SIGTERM or an error; every wait has a deadline. The node runs with a high restart
intensity limit (``max_restarts``): the kills are deliberate, and the harness tests the
data path, not the supervisor's give-up rule.

Usage: ``scripts/chaos [--duration 30] [--durability process|fsync] [--json FILE] ...``
(``scripts/chaos.py --help``). ``scripts/chaos.py --client ...`` is one client process.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import math
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import psutil  # noqa: E402
import zmq  # noqa: E402

import actorsys  # noqa: E402
from actorsys.protocol import wire  # noqa: E402
from actorsys.net.sockets import dealer  # noqa: E402

TALLY, PROBE = "Tally", "Probe"
KINDS = ("worker", "router", "all")
WEIGHTS = {"worker": 0.6, "router": 0.25, "all": 0.15}
LOST_LINE = "acknowledged writes lost: {}"
MAX_VIOLATIONS_SHOWN = 20


def actor_key(i: int) -> str:
    return f"t-{i}"


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------------------------------
# a client process: many asks in flight, counts per actor


async def _client(endpoint: str, actors: int, in_flight: int, seed: int, timeout: float,
                  commands: "asyncio.Queue[str]") -> dict[str, Any]:
    rng = random.Random(seed)
    attempted = [0] * actors
    acked = [0] * actors
    errors: Counter[str] = Counter()
    stopping = asyncio.Event()
    async with actorsys.connect_async(endpoint, timeout=timeout, connect_timeout=30.0) as c:
        print("ready", flush=True)
        while (cmd := await commands.get()) not in ("go", "stop"):
            pass
        started = time.monotonic()

        async def lane() -> None:
            while not stopping.is_set():
                i = rng.randrange(actors)
                attempted[i] += 1
                try:
                    await c.ask(TALLY, actor_key(i), "add", timeout=timeout)
                except actorsys.ActorError as exc:
                    errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.01)      # no busy loop while a part is down
                except Exception as exc:            # counted, never fatal: keep going
                    errors[f"other:{type(exc).__name__}"] += 1
                    await asyncio.sleep(0.01)
                else:
                    acked[i] += 1

        lanes = [asyncio.create_task(lane()) for _ in range(in_flight)] if cmd == "go" else []
        while cmd != "stop":
            cmd = await commands.get()
        stopping.set()
        stopped = time.monotonic()
        # the asks in flight end by their own deadline; this one is a backstop
        pending = (await asyncio.wait(lanes, timeout=timeout + 3.0))[1] if lanes else set()
        for t in pending:
            t.cancel()                     # attempted, not acknowledged: "maybe applied"
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        return {"attempted": attempted, "acknowledged": acked, "errors": dict(errors),
                "unfinished_lanes": len(pending), "load_s": stopped - started,
                "drain_s": time.monotonic() - stopped, "pid": os.getpid()}


def client_main(a: argparse.Namespace) -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the harness's to handle

    async def run() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[str] = asyncio.Queue()

        def read_stdin() -> None:        # "go", then "stop" (end of input also stops)
            for line in sys.stdin:
                loop.call_soon_threadsafe(commands.put_nowait, line.strip())
            loop.call_soon_threadsafe(commands.put_nowait, "stop")

        threading.Thread(target=read_stdin, daemon=True).start()
        return await _client(a.client, a.actors, a.in_flight, a.seed, a.ask_timeout, commands)

    result = asyncio.run(run())
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


class _Lines:
    """Lines from a child's stdout, each read with a deadline (no thread, no blocking)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.buf = proc, b""

    def readline(self, deadline: float) -> str | None:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None            # the client exited
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------
# the fault injector


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Injector:
    """Kills parts of the node and measures how long until they answer again."""

    def __init__(self, node: actorsys.Node, rng: random.Random, recovery_timeout: float) -> None:
        self.node, self.rng = node, rng
        self.recovery_timeout = recovery_timeout
        self.probe = actorsys.connect(node.endpoint, timeout=5.0)    # its own client
        self.ctx = zmq.Context()
        self.router_sock = dealer(self.ctx, node.endpoint)
        self.ping_ids = iter(range(1, 1 << 62))
        self.slots = node.config.workers
        self.probe_keys = [self._key_on_slot(s) for s in range(self.slots)]
        self.worker_pids: dict[int, int] = {}
        self.router_pid = 0
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.deck = list(KINDS)
        rng.shuffle(self.deck)         # the first faults: one of each kind

    def _key_on_slot(self, slot: int) -> str:
        for i in range(100_000):
            if self.probe.map.slot_of(PROBE, f"probe-{i}") == slot:
                return f"probe-{i}"
        raise RuntimeError(f"no probe key on slot {slot}")

    def close(self) -> None:
        self.router_sock.close(0)
        self.ctx.term()
        self.probe.close()

    # -- who is who ---------------------------------------------------------------
    def learn_pids(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for slot in range(self.slots):
            pid = self._probe_slot(slot, None, deadline)
            if pid is None:
                raise RuntimeError(f"worker slot {slot} did not answer its probe within {timeout:g} s")
            self.worker_pids[slot] = pid
        self.router_pid = self._router_pid_from_status(deadline) or 0
        if not self.router_pid:
            raise RuntimeError("the router did not report its pid")

    def _router_pid_from_status(self, deadline: float) -> int | None:
        while time.monotonic() < deadline:
            try:
                st = self.probe.status(timeout=max(min(deadline - time.monotonic(), 3.0), 0.1))
                return next(p["pid"] for p in st["processes"] if p["role"] == "router")
            except actorsys.ActorError:
                time.sleep(0.05)
        return None

    # -- probes ---------------------------------------------------------------------
    def _probe_slot(self, slot: int, old: int | None, deadline: float) -> int | None:
        """The pid serving ``slot`` once it answers from a process other than ``old``."""
        while time.monotonic() < deadline:
            try:
                pid = self.probe.ask(PROBE, self.probe_keys[slot], "pid",
                                     timeout=min(0.3, max(deadline - time.monotonic(), 0.01)))
            except actorsys.ActorError:
                continue
            if pid != old:
                return pid
            time.sleep(0.01)           # should not happen after a kill -9: the old pid answered
        return None

    def _router_answers(self, deadline: float) -> bool:
        """Ping the router (fresh ids only, resent: a ping can be lost with the old one)."""
        sent: set[int] = set()
        sock = self.router_sock
        while time.monotonic() < deadline:
            rid = next(self.ping_ids)
            sent.add(rid)
            sock.send(wire.pack([wire.PING, rid]), zmq.NOBLOCK)
            until = min(deadline, time.monotonic() + 0.1)
            while (remaining := until - time.monotonic()) > 0 and sock.poll(remaining * 1000):
                try:
                    msg = wire.unpack(sock.recv(zmq.NOBLOCK))
                except (actorsys.ActorError, zmq.Again):
                    continue
                if isinstance(msg, list) and len(msg) >= 2 and msg[1] in sent and msg[0] == wire.OK:
                    return True
        return False

    def _wait_gone(self, pids: list[int], deadline: float) -> None:
        while time.monotonic() < deadline and not all(_gone(p) for p in pids):
            time.sleep(0.002)

    # -- faults ---------------------------------------------------------------------
    def next_kind(self) -> str:
        if self.deck:
            return self.deck.pop()
        x, acc = self.rng.random(), 0.0
        for kind in KINDS:
            acc += WEIGHTS[kind]
            if x < acc:
                return kind
        return KINDS[0]

    def inject(self, kind: str, at: float) -> dict[str, Any]:
        deadline_of = lambda: time.monotonic() + self.recovery_timeout  # noqa: E731
        ev: dict[str, Any] = {"kind": kind, "at_s": round(at, 3)}
        if kind == "worker":
            slot = self.rng.randrange(self.slots)
            old = self.worker_pids[slot]
            ev.update(slot=slot, killed=[old])
            t0 = time.monotonic()
            _kill(old)
            deadline = deadline_of()
            self._wait_gone([old], deadline)
            new = self._probe_slot(slot, old, deadline)
            t1 = time.monotonic()
            if new is None:
                self.problems.append(f"worker slot {slot} (killed pid {old}) did not answer from a "
                                     f"new process within {self.recovery_timeout:g} s")
            else:
                self.worker_pids[slot] = new
                ev.update(recovery_ms=(t1 - t0) * 1000, new=[new])
        elif kind == "router":
            old = self.router_pid
            ev.update(killed=[old])
            t0 = time.monotonic()
            _kill(old)
            deadline = deadline_of()
            self._wait_gone([old], deadline)
            ok = self._router_answers(deadline)
            t1 = time.monotonic()
            new = self._router_pid_from_status(deadline) if ok else None
            if not ok or new is None:
                self.problems.append(f"the router (killed pid {old}) did not answer within "
                                     f"{self.recovery_timeout:g} s")
            elif new == old:
                self.problems.append(f"the router answered after kill -9 of pid {old} but the "
                                     f"status still names pid {old}")
            else:
                self.router_pid = new
                ev.update(recovery_ms=(t1 - t0) * 1000, new=[new])
        else:
            try:
                victims = [p.pid for p in psutil.Process(self.node.pid).children()]
            except psutil.Error as exc:
                self.problems.append(f"cannot list the node supervisor's children: {exc}")
                return ev
            ev.update(killed=victims)
            t0 = time.monotonic()
            for pid in victims:
                _kill(pid)
            deadline = deadline_of()
            self._wait_gone(victims, deadline)
            parts: dict[str, float] = {}
            if self._router_answers(deadline):
                parts["router"] = time.monotonic()
            for slot in range(self.slots):
                new = self._probe_slot(slot, self.worker_pids[slot], deadline)
                if new is not None:
                    parts[f"worker {slot}"] = time.monotonic()
                    self.worker_pids[slot] = new
            t1 = max(parts.values(), default=time.monotonic())
            missing = [p for p in ["router", *(f"worker {s}" for s in range(self.slots))] if p not in parts]
            new_router = self._router_pid_from_status(deadline) if "router" in parts else None
            if missing:
                self.problems.append(f"after kill -9 of all the supervisor's children {victims}, "
                                     f"{', '.join(missing)} did not answer within {self.recovery_timeout:g} s")
            elif new_router is None or new_router in victims:
                self.problems.append(f"after kill -9 of all the supervisor's children {victims}, the "
                                     f"status names router pid {new_router}")
            else:
                self.router_pid = new_router
                ev.update(recovery_ms=(t1 - t0) * 1000,
                          new=[new_router, *self.worker_pids.values()])
        self.events.append(ev)
        return ev


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------
# the audit


def check_actor(i: int, acked: int, attempted: int, read: dict[str, Any]) -> list[str]:
    """Every violation of actor ``i``'s invariants (empty: it is fine)."""
    out = []
    n = read["n"]
    key = actor_key(i)
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


def percentiles(samples: list[float]) -> dict[str, float] | None:
    if not samples:
        return None
    s = sorted(samples)

    def rank(p: float) -> float:
        return s[max(math.ceil(p * len(s)) - 1, 0)]

    return {"n": len(s), "p50_ms": round(rank(0.5), 1), "p99_ms": round(rank(0.99), 1),
            "max_ms": round(s[-1], 1)}


def read_all(probe: actorsys.Client, actors: int, problems: list[str]) -> dict[int, dict[str, Any]]:
    """Every actor's count and activation records (three tries each, 5 s per try)."""
    reads: dict[int, dict[str, Any]] = {}
    for i in range(actors):
        for attempt in range(3):
            try:
                reads[i] = probe.ask(TALLY, actor_key(i), "read", timeout=5.0)
                break
            except actorsys.ActorError as exc:
                if attempt == 2:
                    problems.append(f"{actor_key(i)} did not answer a read: {type(exc).__name__}: {exc}")
                else:
                    time.sleep(0.1)
    return reads


def node_health(node: actorsys.Node, workers: int) -> tuple[bool, str]:
    try:
        code = node.wait(0.01)
        return False, f"the node supervisor exited with status {code}"
    except actorsys.NodeUnavailable:
        pass
    try:
        st = node.status()
    except actorsys.ActorError as exc:
        return False, f"status failed: {type(exc).__name__}: {exc}"
    procs = st["processes"]
    down = [f"{p['role']}{'' if p.get('slot') is None else ' ' + str(p['slot'])}"
            for p in procs if not p.get("up")]
    slots = sorted(p["slot"] for p in procs if p["role"] == "worker" and p.get("up"))
    roles = {p["role"] for p in procs if p.get("up")}
    if down or slots != list(range(workers)) or not {"supervisor", "router"} <= roles:
        return False, f"processes down: {down or 'none'}; workers up: {slots}; roles up: {sorted(roles)}"
    return True, f"supervisor, router and {workers} workers up"


# ---------------------------------------------------------------------------------------
# the run


def _terminate(sig: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {sig}")


def run(a: argparse.Namespace) -> int:
    rng = random.Random(a.seed)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    own_dir = None
    if a.data_dir:
        if os.path.isdir(a.data_dir) and os.listdir(a.data_dir):
            print(f"chaos: --data-dir {a.data_dir} is not empty; give a new or empty directory",
                  file=sys.stderr)
            return 2
        data_dir = a.data_dir
    else:
        own_dir = tempfile.mkdtemp(prefix="actorsys-chaos-", dir=a.tmpdir)
        data_dir = os.path.join(own_dir, "data")
    config = {"node": {"data_dir": data_dir, "workers": a.workers, "durability": a.durability,
                       "python_path": [HERE], "shutdown_timeout": 5.0, "start_timeout": 30.0,
                       "ask_timeout": a.ask_timeout,
                       **({"max_resident": a.max_resident} if a.max_resident else {}),
                       **({"idle_timeout": a.idle_timeout} if a.idle_timeout else {}),
                       # the kills are deliberate: do not let the restart-intensity rule stop the node
                       "max_restarts": 1_000_000, "max_seconds": 1.0},
              "actors": {TALLY: "chaos_actors:Tally", PROBE: "chaos_actors:Probe"}}
    node: actorsys.Node | None = None
    clients: list[subprocess.Popen] = []
    injector: Injector | None = None
    result: dict[str, Any] = {"params": {k: v for k, v in vars(a).items() if k != "client"}}
    violations: list[str] = []
    t_begin = time.monotonic()
    try:
        node = actorsys.Node(config).start()
        result["node_endpoint"] = node.endpoint
        result["node_pid"] = node.pid
        result["data_dir"] = data_dir
        injector = Injector(node, rng, a.recovery_timeout)
        injector.learn_pids()

        cmd = [sys.executable, os.path.abspath(__file__), "--client", node.endpoint,
               "--actors", str(a.actors), "--in-flight", str(a.in_flight),
               "--ask-timeout", str(a.ask_timeout)]
        for k in range(a.clients):
            clients.append(subprocess.Popen(cmd + ["--seed", str(rng.randrange(1 << 30))],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            bufsize=0))
        readers = [_Lines(p) for p in clients]
        deadline = time.monotonic() + 40.0
        for k, r in enumerate(readers):
            line = r.readline(deadline)
            if line != "ready":
                raise RuntimeError(f"client {k} did not start (said {line!r}, status "
                                   f"{clients[k].poll()})")
        for p in clients:
            p.stdin.write(b"go\n")  # type: ignore[union-attr]
        t_load = time.monotonic()
        end = t_load + a.duration
        print(f"chaos: {a.duration:g} s, {a.actors} actors, {a.clients} clients x {a.in_flight} "
              f"asks in flight, {a.workers} workers, durability {a.durability}, seed {a.seed}",
              flush=True)

        next_fault = t_load + a.fault_every * rng.uniform(0.5, 1.5)
        while True:
            now = time.monotonic()
            if now >= end:
                break
            dead = [k for k, p in enumerate(clients) if p.poll() is not None]
            if dead:
                raise RuntimeError(f"client process(es) {dead} exited during the run")
            if now < next_fault:
                time.sleep(min(next_fault, end, now + 0.25) - now)
                continue
            kind = injector.next_kind()
            ev = injector.inject(kind, now - t_load)
            if not a.quiet:
                rec = f"{ev['recovery_ms']:.0f} ms" if "recovery_ms" in ev else "NOT RECOVERED"
                print(f"  t={ev['at_s']:6.1f} s  kill -9 {kind:<6} {ev.get('killed')} -> "
                      f"recovered in {rec}", flush=True)
            next_fault = time.monotonic() + a.fault_every * rng.uniform(0.5, 1.5)
        t_stop = time.monotonic()

        # graceful client stop: no new asks, in-flight ones end by their deadline, counts
        for p in clients:
            try:
                p.stdin.write(b"stop\n")  # type: ignore[union-attr]
                p.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
        reports = []
        deadline = time.monotonic() + a.ask_timeout + 10.0
        for k, r in enumerate(readers):
            line = r.readline(deadline)
            if line is None or not line.startswith("RESULT "):
                raise RuntimeError(f"client {k} did not report its counts (status {clients[k].poll()})")
            reports.append(json.loads(line[len("RESULT "):]))
        for p in clients:
            p.wait(max(deadline - time.monotonic(), 1.0))

        attempted = [sum(r["attempted"][i] for r in reports) for i in range(a.actors)]
        acked = [sum(r["acknowledged"][i] for r in reports) for i in range(a.actors)]
        errors: Counter[str] = Counter()
        for r in reports:
            errors.update(r["errors"])
        load_s = t_stop - t_load

        violations.extend(injector.problems)
        reads = read_all(injector.probe, a.actors, violations)
        lost = 0
        activations = 0
        for i, rd in reads.items():
            lost += max(0, acked[i] - rd["n"])
            activations += len(rd["acts"])
            violations.extend(check_actor(i, acked[i], attempted[i], rd))
        healthy, health = node_health(node, a.workers)
        if not healthy:
            violations.append(f"node unhealthy: {health}")

        by_kind = Counter(ev["kind"] for ev in injector.events)
        rec_all = [ev["recovery_ms"] for ev in injector.events if "recovery_ms" in ev]
        recovery = {"overall": percentiles(rec_all)}
        for kind in KINDS:
            recovery[kind] = percentiles([ev["recovery_ms"] for ev in injector.events
                                          if ev["kind"] == kind and "recovery_ms" in ev])
        total_acked, total_attempted = sum(acked), sum(attempted)
        result.update({
            "load": {"seconds": round(load_s, 3), "acknowledged": total_acked,
                     "attempted": total_attempted, "final_total": sum(rd["n"] for rd in reads.values()),
                     "acknowledged_per_s": round(total_acked / load_s, 1),
                     "attempted_per_s": round(total_attempted / load_s, 1),
                     "client_errors": dict(errors),
                     "unfinished_lanes": sum(r["unfinished_lanes"] for r in reports),
                     "client_drain_s_max": round(max(r["drain_s"] for r in reports), 3)},
            "faults": {"total": len(injector.events), "by_kind": {k: by_kind.get(k, 0) for k in KINDS},
                       "events": injector.events},
            "recovery_ms": recovery,
            "activations": {"records": activations, "actors_checked": len(reads),
                            "actors": a.actors},
            "healthy": healthy, "health": health,
            "violations": violations, "lost": lost,
        })

        print(f"load held: {total_acked / load_s:,.0f} acknowledged asks/s over {load_s:.1f} s "
              f"({total_acked:,} acknowledged of {total_attempted:,} attempted, "
              f"{total_attempted / load_s:,.0f}/s)")
        print("client errors (maybe applied): "
              + (", ".join(f"{k} {v:,}" for k, v in errors.most_common()) or "none"))
        print(f"faults injected: {len(injector.events)} ("
              + ", ".join(f"{k} {by_kind.get(k, 0)}" for k in KINDS) + ")")
        for name in ("overall", *KINDS):
            r = recovery[name]
            if r:
                print(f"recovery {name:<8} p50 {r['p50_ms']:8.1f} ms  p99 {r['p99_ms']:8.1f} ms  "
                      f"max {r['max_ms']:8.1f} ms  (n={r['n']})")
        print(f"activations seen: {activations:,}; single-activation check ran on "
              f"{len(reads)}/{a.actors} actors")
        print(f"node healthy: {'yes' if healthy else 'NO'} ({health})")
        if violations:
            print(f"violations: {len(violations)}")
            for v in violations[:MAX_VIOLATIONS_SHOWN]:
                print(f"  - {v}")
        else:
            print("violations: none")
        code = 0 if lost == 0 and not violations and healthy else 1
        result["exit_code"] = code
        print(LOST_LINE.format(lost), flush=True)
        return code
    except KeyboardInterrupt:
        print("chaos: interrupted; stopping everything", file=sys.stderr, flush=True)
        result["exit_code"] = 130
        return 130
    finally:
        for p in clients:
            if p.poll() is None:
                p.kill()
        for p in clients:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass
        if injector is not None:
            injector.close()
        if node is not None:
            node.stop()
        if own_dir is not None and not a.keep_data:
            shutil.rmtree(own_dir, ignore_errors=True)
        # every process this run started or saw in the node: all gone now (for the test)
        pids = {p.pid for p in clients}
        if injector is not None:
            pids.update(injector.worker_pids.values())
            pids.add(injector.router_pid)
            for ev in injector.events:
                pids.update(ev.get("killed", []))
                pids.update(ev.get("new", []))
        result["pids"] = sorted(pid for pid in pids if pid)
        result["wall_s"] = round(time.monotonic() - t_begin, 3)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(result, f, indent=1)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load and faults")
    p.add_argument("--actors", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument("--in-flight", type=int, default=48, help="asks in flight per client")
    p.add_argument("--durability", choices=("process", "fsync"), default="process")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--fault-every", type=float, default=2.0,
                   help="seconds between faults, randomised +-50%% (after the last recovery)")
    p.add_argument("--ask-timeout", type=float, default=5.0, help="deadline of each client ask")
    p.add_argument("--recovery-timeout", type=float, default=20.0,
                   help="a killed part not answering again by then is a violation")
    p.add_argument("--max-resident", type=int, default=None,
                   help="actors in memory per worker (small: constant eviction and reactivation)")
    p.add_argument("--idle-timeout", type=float, default=None,
                   help="seconds before an idle actor is passivated (node default if not given)")
    p.add_argument("--data-dir", default=None, help="the node's data dir (new or empty; kept)")
    p.add_argument("--tmpdir", default=None, help="where the default temp data dir is made")
    p.add_argument("--keep-data", action="store_true", help="keep the temp data dir")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--quiet", action="store_true", help="no line per fault")
    p.add_argument("--client", default=None, metavar="ENDPOINT", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.seed is None:
        a.seed = random.randrange(1 << 31)
    if a.duration <= 0 or a.actors < 1 or a.clients < 1 or a.in_flight < 1 or a.workers < 1:
        p.error("duration, actors, clients, in-flight and workers must be positive")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.client:
        return client_main(a)
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
