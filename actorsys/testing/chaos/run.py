"""One chaos run: a node, client processes under load, faults, then the audit.

:func:`run` starts an embedded node in a fresh data dir (with a gateway, unless the run
has no WebSockets), starts the client processes (:mod:`.load`, and the WebSocket client
:mod:`.wsload` on the gateway), injects a fault every ``fault_every`` seconds
(randomised +-50%, after the last recovery; :mod:`.faults`) for ``duration`` seconds,
stops the clients, reads every actor and audits it (:mod:`.audit`). It says what happens as it goes through a
:class:`Reporter`, and returns the result as a dict (the same one ``--json`` writes).

Everything it starts (node, clients, temp dirs) is gone when it returns, also on Ctrl-C
(``KeyboardInterrupt``: exit code 130) or an error; every wait has a deadline. The node
runs with a high restart intensity limit: the kills are deliberate, and the harness tests
the data path, not the supervisor's give-up rule.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from typing import Any, Protocol

from actorsys.client import Client
from actorsys.errors import ActorError
from actorsys.node import Node
from actorsys.testing.nodes import node_config

from .audit import ACTORS, alarm_lists, check_actor, check_alarms, check_websockets, \
    gateway_counters, node_health, percentiles, read_all, read_inboxes, settle_alarms
from .faults import KINDS, Injector
from .load import GO, RESULT, STOP, LineReader, client_command
from .wsload import ws_client_command


@dataclasses.dataclass(slots=True)
class ChaosParams:
    """A run's parameters (``scripts/chaos --help`` says what each means)."""

    duration: float = 30.0
    actors: int = 1000
    clients: int = 4
    in_flight: int = 48
    durability: str = "process"
    workers: int = 2
    seed: int = 0
    fault_every: float = 2.0
    ask_timeout: float = 5.0
    recovery_timeout: float = 20.0
    max_resident: int | None = None
    idle_timeout: float | None = None
    data_dir: str | None = None       # new or empty; kept
    tmpdir: str | None = None         # where the default temp data dir is made
    keep_data: bool = False
    json: str | None = None           # write the result here
    quiet: bool = False               # no report per fault
    retry: bool = False               # every ask exactly-once: the audit checks count == acknowledged
    cluster: int = 0                  # > 0: a cluster of that many nodes (.cluster), not one node
    lease_ttl: float = 2.0            # the cluster's lease (a paused or cut node is past it)
    hosts: str | None = None          # the cluster's hosts: None (netns if possible), netns, loopback
    join_leave: bool = False          # the cluster's faults include a node joining, then leaving
    replicas: int = 1                 # the cluster's [cluster] replicas (> 1: shards fail over)
    faults: str | None = None         # the cluster's fault kinds, comma-separated (None: all)
    alarms: float = 0.02              # the fraction of asks that schedule an alarm (0: none)
    ws_sockets: int = 4               # WebSockets sending numbered messages (0: none, no gateway)
    ws_actors: int = 8                # the Inbox actors they connect to
    ws_rate: float = 10.0             # messages per second per socket


class Faults(Protocol):
    """A fault injector (:class:`.faults.Injector`, :class:`.clusterfaults.ClusterInjector`)."""

    events: list[dict[str, Any]]
    problems: list[str]
    #: the first faults still to inject, one of each kind (the run goes on until it is empty)
    deck: list[str]

    def next_kind(self) -> str:
        """The kind of the next fault."""

    def inject(self, kind: str, at: float) -> dict[str, Any]:
        """One fault, awaited until recovered or past the recovery timeout; its event."""


class Reporter(Protocol):
    """What a run says as it goes (the command line prints it)."""

    def load_started(self, params: ChaosParams) -> None:
        """The clients are connected and counting."""

    def fault(self, event: dict[str, Any]) -> None:
        """A fault was injected and recovered from (``"recovery_ms"`` in it) or not."""

    def finished(self, result: dict[str, Any]) -> None:
        """The audit is done (the node and the clients are still to be stopped)."""

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM: everything is being stopped."""


def config(p: ChaosParams, data_dir: str) -> dict[str, Any]:
    """The node's config: the chaos actors, and no restart-intensity limit in practice."""
    node: dict[str, Any] = {"workers": p.workers, "durability": p.durability, "ask_timeout": p.ask_timeout}
    if p.max_resident:
        node["max_resident"] = p.max_resident
    if p.idle_timeout:
        node["idle_timeout"] = p.idle_timeout
    # the kills are deliberate: do not let the restart-intensity rule stop the node
    node.update(max_restarts=1_000_000, max_seconds=1.0)
    cfg = node_config(data_dir, ACTORS, **node)
    if p.ws_sockets:
        cfg["gateway"] = {"listen": "127.0.0.1:0"}     # Node.gateway_url: the port it got
    return cfg


def run(p: ChaosParams, reporter: Reporter) -> dict[str, Any]:
    """One run; the result (``exit_code`` in it: 0 only if no acknowledged write was lost,
    there was no other violation and the node was healthy; 130 if interrupted)."""
    rng = random.Random(p.seed)
    own_dir = None
    if p.data_dir:
        data_dir = p.data_dir
    else:
        own_dir = tempfile.mkdtemp(prefix="actorsys-chaos-", dir=p.tmpdir)
        data_dir = os.path.join(own_dir, "data")
    node: Node | None = None
    clients: list[subprocess.Popen[bytes]] = []
    injector: Injector | None = None
    result: dict[str, Any] = {"params": dataclasses.asdict(p)}
    t_begin = time.monotonic()
    try:
        node = Node(config(p, data_dir)).start()
        result["node_endpoint"] = node.endpoint
        result["node_pid"] = node.pid
        result["data_dir"] = data_dir
        injector = Injector(node, rng, p.recovery_timeout)
        injector.learn_pids()
        readers = start_clients(p, node.endpoint, rng, clients,
                                [node.gateway_url] if p.ws_sockets else None)
        for c in clients:
            send(c, GO)
        t_load = time.monotonic()
        reporter.load_started(p)
        inject_until(p, injector, clients, rng, t_load, reporter)
        t_stop = time.monotonic()
        reports, ws_report = split_reports(stop_clients(p, clients, readers))
        result.update(_audit(p, node, injector, reports, ws_report, t_stop - t_load))
        reporter.finished(result)
        return result
    except KeyboardInterrupt:
        reporter.interrupted()
        result["exit_code"] = 130
        return result
    finally:
        _cleanup(clients, injector, node)
        if own_dir is not None and not p.keep_data:
            shutil.rmtree(own_dir, ignore_errors=True)
        # every process this run started or saw in the node: all gone now (for the test)
        pids = {c.pid for c in clients}
        if injector is not None:
            pids.update(injector.worker_pids.values())
            pids.add(injector.router_pid)
            for ev in injector.events:
                pids.update(ev.get("killed", []))
                pids.update(ev.get("new", []))
        result["pids"] = sorted(pid for pid in pids if pid)
        result["wall_s"] = round(time.monotonic() - t_begin, 3)
        if p.json:
            with open(p.json, "w") as f:
                json.dump(result, f, indent=1)


def send(client: subprocess.Popen[bytes], command: str) -> None:
    assert client.stdin is not None
    client.stdin.write(command.encode() + b"\n")


def start_clients(p: ChaosParams, endpoint: str | list[str], rng: random.Random,
                  clients: list[subprocess.Popen[bytes]],
                  ws_urls: list[str] | None = None) -> list[LineReader]:
    """Start the client processes (appended to ``clients``; with ``ws_urls``, the
    gateways, the WebSocket client last) and wait until all are ready."""
    cmds = [client_command(endpoint, p.actors, p.in_flight, p.ask_timeout, rng.randrange(1 << 30),
                           p.retry, p.alarms) for _ in range(p.clients)]
    if ws_urls:
        # its drain (the acknowledgements in flight at the stop) ends within stop_clients' wait
        cmds.append(ws_client_command(ws_urls, p.ws_sockets, p.ws_actors, p.ws_rate,
                                      rng.randrange(1 << 30), drain=p.ask_timeout))
    for cmd in cmds:
        clients.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0))
    readers = [LineReader(c) for c in clients]
    deadline = time.monotonic() + 40.0
    for k, r in enumerate(readers):
        line = r.readline(deadline)
        if line != "ready":
            raise RuntimeError(f"client {k} did not start (said {line!r}, status {clients[k].poll()})")
    return readers


def inject_until(p: ChaosParams, injector: Faults, clients: list[subprocess.Popen[bytes]],
                  rng: random.Random, t_load: float, reporter: Reporter) -> None:
    """Faults until ``duration`` seconds after ``t_load`` and one of each kind (a shorter
    run goes on until the first faults, one of each kind, were injected); a client
    exiting is an error."""
    end = t_load + p.duration
    next_fault = t_load + p.fault_every * rng.uniform(0.5, 1.5)
    while True:
        now = time.monotonic()
        if now >= end and not injector.deck:
            break
        dead = [k for k, c in enumerate(clients) if c.poll() is not None]
        if dead:
            raise RuntimeError(f"client process(es) {dead} exited during the run")
        if now < next_fault:
            time.sleep(max(min(next_fault, max(end, now), now + 0.25) - now, 0.0))
            continue
        ev = injector.inject(injector.next_kind(), now - t_load)
        reporter.fault(ev)
        next_fault = time.monotonic() + p.fault_every * rng.uniform(0.5, 1.5)


def stop_clients(p: ChaosParams, clients: list[subprocess.Popen[bytes]],
                  readers: list[LineReader]) -> list[dict[str, Any]]:
    """Graceful stop: no new asks, in-flight ones end by their deadline; their counts."""
    for c in clients:
        try:
            send(c, STOP)
            if c.stdin is not None:
                c.stdin.close()
        except OSError:
            pass
    reports = []
    deadline = time.monotonic() + p.ask_timeout + (25.0 if p.retry else 10.0)
    for k, r in enumerate(readers):
        line = r.readline(deadline)
        if line is None or not line.startswith(RESULT):
            raise RuntimeError(f"client {k} did not report its counts (status {clients[k].poll()})")
        reports.append(json.loads(line[len(RESULT):]))
    for c in clients:
        c.wait(max(deadline - time.monotonic(), 1.0))
    return reports


def split_reports(reports: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The load clients' reports, and the WebSocket client's (None: the run had none)."""
    ws = [r for r in reports if r.get("ws")]
    return [r for r in reports if not r.get("ws")], (ws[0] if ws else None)


def _audit(p: ChaosParams, node: Node, injector: Injector, reports: list[dict[str, Any]],
           ws_report: dict[str, Any] | None, load_s: float) -> dict[str, Any]:
    """The clients' counts against every actor's read, the node's health, the faults."""
    out = audit_counts(p, injector.probe, injector, KINDS, reports, load_s, ws_report)
    if out["websockets"] is not None:
        try:
            out["websockets"]["gateways"] = gateway_counters([node.status()])
        except ActorError:
            pass
    healthy, health = node_health(node, p.workers)
    if not healthy:
        out["violations"].append(f"node unhealthy: {health}")
    out.update(healthy=healthy, health=health,
               exit_code=0 if out["lost"] == 0 and not out["violations"] and healthy else 1)
    return out


def audit_counts(p: ChaosParams, probe: Client, injector: Faults, kinds: tuple[str, ...],
                 reports: list[dict[str, Any]], load_s: float,
                 ws_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The clients' counts against every actor's read (through ``probe``), the WebSocket
    client's record against every ``Inbox`` actor's (``ws_report``: None, no WebSockets),
    and the faults: the result without the health of the node(s) (``violations`` is to
    be appended to)."""
    attempted = [sum(r["attempted"][i] for r in reports) for i in range(p.actors)]
    acked = [sum(r["acknowledged"][i] for r in reports) for i in range(p.actors)]
    errors: Counter[str] = Counter()
    for r in reports:
        errors.update(r["errors"])
    violations = list(injector.problems)
    alarms_acked, alarms_maybe = alarm_lists(reports)
    # the alarms set last are due up to 2 s after the stop: give them (bounded) time
    settle_s = settle_alarms(probe, alarms_acked, p.recovery_timeout) if alarms_acked else 0.0
    reads = read_all(probe, p.actors, violations)
    lost = 0
    activations = 0
    for i, rd in reads.items():
        lost += max(0, acked[i] - rd["n"])
        activations += len(rd["acts"])
        violations.extend(check_actor(i, acked[i], attempted[i], rd, exact=p.retry))
    alarm_stats, alarm_violations = check_alarms(alarms_acked, alarms_maybe, reads)
    violations.extend(alarm_violations)
    alarms_out: dict[str, Any] = {**alarm_stats, "settle_s": round(settle_s, 3)}
    websockets: dict[str, Any] | None = None
    if ws_report is not None:
        inboxes = read_inboxes(probe, p.ws_actors, violations)
        ws_stats, ws_violations = check_websockets(ws_report["sockets"], inboxes)
        violations.extend(ws_violations)
        websockets = {**ws_stats, "sockets": len(ws_report["sockets"]), "actors": p.ws_actors,
                      "actors_read": len(inboxes),
                      **{k: ws_report[k] for k in ("connections", "reconnects", "endings",
                                                   "connect_failed", "unfinished")}}
        if ws_violations:              # what was sent and applied, to find out what happened
            websockets["detail"] = {"sockets": ws_report["sockets"], "inboxes": inboxes}

    by_kind = Counter(ev["kind"] for ev in injector.events)
    rec_all = [ev["recovery_ms"] for ev in injector.events if "recovery_ms" in ev]
    recovery = {"overall": percentiles(rec_all)}
    for kind in kinds:
        recovery[kind] = percentiles([ev["recovery_ms"] for ev in injector.events
                                      if ev["kind"] == kind and "recovery_ms" in ev])
    total_acked, total_attempted = sum(acked), sum(attempted)
    return {
        "kinds": list(kinds),
        "load": {"seconds": round(load_s, 3), "acknowledged": total_acked,
                 "attempted": total_attempted, "final_total": sum(rd["n"] for rd in reads.values()),
                 # exactly-once runs: asks still unacknowledged when the clients stopped
                 "exact": p.retry, "unresolved": total_attempted - total_acked if p.retry else None,
                 "acknowledged_per_s": round(total_acked / load_s, 1),
                 "attempted_per_s": round(total_attempted / load_s, 1),
                 "client_errors": dict(errors),
                 "unfinished_lanes": sum(r["unfinished_lanes"] for r in reports),
                 "client_drain_s_max": round(max(r["drain_s"] for r in reports), 3)},
        "faults": {"total": len(injector.events), "by_kind": {k: by_kind.get(k, 0) for k in kinds},
                   "events": injector.events},
        "recovery_ms": recovery,
        "activations": {"records": activations, "actors_checked": len(reads), "actors": p.actors},
        "alarms": alarms_out,
        "websockets": websockets,
        "violations": violations, "lost": lost,
    }


def _cleanup(clients: list[subprocess.Popen[bytes]], injector: Injector | None,
             node: Node | None) -> None:
    end_clients(clients)
    if injector is not None:
        injector.close()
    if node is not None:
        node.stop()


def end_clients(clients: list[subprocess.Popen[bytes]]) -> None:
    """Kill the client processes still running and close their pipes."""
    for c in clients:
        if c.poll() is None:
            c.kill()
    for c in clients:
        try:
            c.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (c.stdin, c.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
