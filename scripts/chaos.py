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
    storage, in the same turn as the count (see ``actorsys/testing/chaos/actors.py``);
    the records' ``[first_n, last_n]`` ranges must tile ``1 .. count`` in activation
    order (contiguous, disjoint, increasing, turns summing to the count). Two
    activations of one actor at once would break this;
  - the node is healthy: its supervisor runs, the status shows every process up, and
    every actor answers a read.

A fraction ``--alarms`` (default 0.02) of the asks schedules an alarm instead (``Tally.alarm``:
due in 0.2-2 s, a unique id as its name; its ``on_alarm`` counts the firing in the actor's
storage, in the alarm's turn). After the load the run waits (bounded by
``--recovery-timeout``) for the due alarms, and the audit checks every alarm whose
scheduling ask was acknowledged fired exactly once, and none (acknowledged or not) twice;
it prints ``alarms: scheduled N, fired N, duplicates 0, missing 0`` (scheduled and fired:
acknowledged alarms), and a duplicate or a missing alarm is a violation.

WebSockets: the node (every node of a cluster) has a gateway, and a WebSocket client
process holds ``--ws-sockets`` sockets (default 4; 0: none, and no gateway) to
``--ws-actors`` ``Inbox`` actors (default 8) on random gateways, each sending numbered
messages (``--ws-rate`` per second, default 10) through the faults. The actor appends
each message it takes to its state and answers ``ack <socket> <n>``, which the gateway
sends only after the batch's turn committed: the client records those as acknowledged.
A socket the gateway closes (1011: its actor unreachable for too long), or whose
gateway died with its node, connects again to a random gateway and actor and goes on
with new numbers (the reconnects are counted, by how the socket ended). The audit reads
every ``Inbox`` actor and checks each acknowledged number is in its actor's state exactly
once and no number (acknowledged or not) is there twice, as well as none that was not
sent and one connection's numbers in order; it prints ``websocket messages: sent N,
acknowledged N, applied N, duplicates 0, missing 0`` (applied: the numbers sent that
are in a state), and a duplicate or a missing acknowledged number is a violation.

With ``--retry`` every ask is exactly-once: sent with ``retry=True`` and, after any
failure, again with the same request id until acknowledged; the audit then also checks
count == acknowledged for every actor whose asks were all acknowledged (an ask applied
twice is a violation), and reports the asks left unresolved when the clients stopped.

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

With ``--cluster N`` the same load and audit run against a cluster of N nodes on one
machine (real etcd; network-namespace hosts when run as root, else loopback addresses),
and the faults are a node's: kill -9 a worker of a random node, its router, or every
process of it (started again a moment later; its shards answer ``ShardUnavailable``
meanwhile, which the load counts as failed, not lost), SIGSTOP it past its lease then
SIGCONT, cut its network past its lease then heal it (namespace hosts only; on loopback
the run says it skipped that kind); with ``--join-leave`` a new node also joins under
the load, then leaves (its shards move to it and back). A node's recovery time runs
from its restart, SIGCONT or heal until every one of its slots answers again. The audit
adds: every node healthy (status over its router) and every shard owned by exactly one
node (:mod:`actorsys.testing.chaos.cluster`). Every node has a gateway, and the sockets
connect to random nodes' gateways (a killed node's sockets connect again elsewhere).

With ``--replicas R`` (``--cluster`` only, 1..N) every node's config has ``[cluster]
replicas = R``: each shard has a leader and R - 1 followers, and a killed, paused or cut
node's shards fail over to a follower instead of waiting for it (a killed node stays
down until they did). The audit is the same (``acknowledged writes lost: 0``: with
replicas that now includes what a failed-over node had acknowledged), plus no shard
under-replicated or unavailable at the end, and the WebSocket audit now covers batches
delivered again to a shard's new leader; each node fault reports its failover time
(from the fault until that node's shards answer from another node) besides its recovery
(until the node caught up as a follower and got its shards back). ``--faults
node,pause,cut`` restricts the fault kinds.

Usage: ``scripts/chaos [--duration 30] [--durability process|fsync] [--cluster 3 [--join-leave]
[--replicas 3] [--faults KINDS]] [--ws-sockets 4] [--json FILE] ...``
(``scripts/chaos.py --help``). The harness is :mod:`actorsys.testing.chaos`; this file parses
the options and prints.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from collections import Counter
from typing import Any

from actorsys.testing.chaos.faults import KINDS
from actorsys.node.progress import Progress
from actorsys.testing.chaos.run import ChaosParams, run

LOST_LINE = "acknowledged writes lost: {}"
MAX_VIOLATIONS_SHOWN = 20


class Printer:
    """The run's progress on stdout (and an interruption on stderr): on a terminal a bar of
    the run's time with each fault's line above it; elsewhere the lines alone."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Progress | None = None

    def load_started(self, p: ChaosParams) -> None:
        where = f"{p.cluster} nodes x {p.workers} workers" if p.cluster else f"{p.workers} workers"
        if p.cluster and p.replicas > 1:
            where += f", {p.replicas} replicas"
        print(f"chaos: {p.duration:g} s, {p.actors} actors, {p.clients} clients x {p.in_flight} "
              f"asks in flight, {where}, durability {p.durability}, seed {p.seed}",
              flush=True)
        bar = Progress("chaos", total=p.duration, stream=sys.stdout, unit=" s")
        if bar.bar:
            self.bar = bar.__enter__()

    def fault(self, ev: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set(ev["at_s"], note=f"{ev.get('kind', '')} fault")
        if not self.quiet:
            rec = f"{ev['recovery_ms']:.0f} ms" if "recovery_ms" in ev else "NOT RECOVERED"
            what = ev.get("what") or f"kill -9 {ev['kind']:<6} {ev.get('killed')}"
            line = f"  t={ev['at_s']:6.1f} s  {what} -> recovered in {rec}"
            if self.bar is not None:
                self.bar.say(line)
            else:
                print(line, flush=True)

    def stop_bar(self) -> None:
        if self.bar is not None:
            bar, self.bar = self.bar, None
            bar.__exit__(None, None, None)

    def interrupted(self) -> None:
        self.stop_bar()
        print("chaos: interrupted; stopping everything", file=sys.stderr, flush=True)

    def finished(self, result: dict[str, Any]) -> None:
        self.stop_bar()
        for node, tail in result.get("node_logs", {}).items():     # a cluster run that failed
            print(f"--- the end of {node}'s log ---\n{tail}", file=sys.stderr, flush=True)
        print_summary(result)


def print_summary(r: dict[str, Any]) -> None:
    """What the run found; the last line says how many acknowledged writes were lost."""
    load = r["load"]
    kinds = r.get("kinds", KINDS)
    for note in r.get("notes", ()):
        print(note)
    print(f"load held: {load['acknowledged_per_s']:,.0f} acknowledged asks/s over {load['seconds']:.1f} s "
          f"({load['acknowledged']:,} acknowledged of {load['attempted']:,} attempted, "
          f"{load['attempted_per_s']:,.0f}/s)")
    if load.get("exact"):
        print(f"exactly-once asks: final count {load['final_total']:,} == acknowledged "
              f"{load['acknowledged']:,}: {'yes' if load['final_total'] == load['acknowledged'] else 'NO'}"
              f" ({load['unresolved']} unresolved when the clients stopped)")
    errors = Counter(load["client_errors"])
    print("client errors (retried or maybe applied): "
          + (", ".join(f"{k} {v:,}" for k, v in errors.most_common()) or "none"))
    by_kind = r["faults"]["by_kind"]
    print(f"faults injected: {r['faults']['total']} ("
          + ", ".join(f"{k} {by_kind.get(k, 0)}" for k in kinds) + ")")
    for name in ("overall", *kinds):
        rec = r["recovery_ms"][name]
        if rec:
            print(f"recovery {name:<8} p50 {rec['p50_ms']:8.1f} ms  p99 {rec['p99_ms']:8.1f} ms  "
                  f"max {rec['max_ms']:8.1f} ms  (n={rec['n']})")
    for name, rec in (r.get("failover_ms") or {}).items():
        if rec:
            print(f"failover {name:<8} p50 {rec['p50_ms']:8.1f} ms  p99 {rec['p99_ms']:8.1f} ms  "
                  f"max {rec['max_ms']:8.1f} ms  (n={rec['n']}; the fault to its shards "
                  f"answering elsewhere)")
    ws = r.get("websockets")
    if ws:
        endings = Counter(ws["endings"])       # "closed 1011" (by the gateway), "lost", "no hello"
        names = {"lost": "connection lost"}
        ended = ", ".join(f"{names.get(k, k)} x{v:,}" for k, v in endings.most_common()
                          if k != "open at the end")
        refused = sum(ws["connect_failed"].values())
        print(f"websocket messages: sent {ws['sent']:,}, acknowledged {ws['acknowledged']:,}, "
              f"applied {ws['applied']:,}, duplicates {ws['duplicates']}, missing {ws['missing']} "
              f"({ws['sockets']} sockets to {ws['actors']} actors; {ws['reconnects']:,} reconnects"
              + (f" after: {ended}" if ended else "") + f"; {refused:,} connects failed)")
        gw = ws.get("gateways")
        if gw:
            print(f"  gateways at the end: {gw['batches']:,} batches, {gw['redeliveries']:,} "
                  f"redeliveries, {gw['duplicates']:,} answered as already applied, "
                  f"{gw['dropped_events']:,} events given up")
    al = r.get("alarms")
    if al and (al["scheduled"] or al["maybe_scheduled"]):
        print(f"alarms: scheduled {al['scheduled']:,}, fired {al['fired']:,}, duplicates "
              f"{al['duplicates']}, missing {al['missing']} (and {al['maybe_fired']:,} of the "
              f"{al['maybe_scheduled']:,} whose ask failed fired; waited {al['settle_s']:.1f} s "
              f"for the last ones)")
    acts = r["activations"]
    print(f"activations seen: {acts['records']:,}; single-activation check ran on "
          f"{acts['actors_checked']}/{acts['actors']} actors")
    print(f"{'cluster' if r['params'].get('cluster') else 'node'} healthy: "
          f"{'yes' if r['healthy'] else 'NO'} ({r['health']})")
    violations = r["violations"]
    if violations:
        print(f"violations: {len(violations)}")
        for v in violations[:MAX_VIOLATIONS_SHOWN]:
            print(f"  - {v}")
    else:
        print("violations: none")
    print(LOST_LINE.format(r["lost"]), flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load and faults")
    p.add_argument("--actors", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument("--in-flight", type=int, default=48, help="asks in flight per client")
    p.add_argument("--durability", choices=("process", "fsync"), default="process")
    p.add_argument("--workers", type=int, default=2, help="workers per node")
    p.add_argument("--cluster", type=int, default=0, metavar="N",
                   help="a cluster of N nodes (real etcd) and node faults, not one node")
    p.add_argument("--lease-ttl", type=float, default=2.0,
                   help="the cluster's lease in seconds (a paused or cut node is past it)")
    p.add_argument("--join-leave", action="store_true",
                   help="with --cluster: a node also joins, then leaves, under the load")
    p.add_argument("--replicas", type=int, default=1, metavar="R",
                   help="with --cluster: [cluster] replicas = R (each shard on R nodes; a failed "
                        "node's shards fail over)")
    p.add_argument("--faults", default=None, metavar="KINDS",
                   help="with --cluster: only these fault kinds, comma-separated (of "
                        "worker,router,node,pause,cut,move)")
    p.add_argument("--hosts", choices=("netns", "loopback"), default=None,
                   help="the cluster's hosts (default: network namespaces if root, else loopback)")
    p.add_argument("--alarms", type=float, default=0.02, metavar="F",
                   help="the fraction of asks that schedule an alarm, audited as fired "
                        "exactly once (0: none)")
    p.add_argument("--ws-sockets", type=int, default=4, metavar="K",
                   help="WebSockets sending numbered messages through the gateways, audited as "
                        "applied exactly once (0: none, and no gateway)")
    p.add_argument("--ws-actors", type=int, default=8, help="the Inbox actors the sockets connect to")
    p.add_argument("--ws-rate", type=float, default=10.0, help="messages per second per socket")
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
    p.add_argument("--retry", action="store_true",
                   help="exactly-once asks: every ask retried with its request id until "
                        "acknowledged; the audit checks count == acknowledged")
    a = p.parse_args(argv)
    if a.seed is None:
        a.seed = random.randrange(1 << 31)
    if not 0.0 <= a.alarms <= 1.0:
        p.error("--alarms is a fraction from 0 to 1")
    if a.duration <= 0 or a.actors < 1 or a.clients < 1 or a.in_flight < 1 or a.workers < 1:
        p.error("duration, actors, clients, in-flight and workers must be positive")
    if a.ws_sockets < 0 or a.ws_actors < 1 or a.ws_rate <= 0:
        p.error("--ws-sockets must be 0 or more, --ws-actors and --ws-rate positive")
    if (a.join_leave or a.hosts or a.replicas != 1 or a.faults) and not a.cluster:
        p.error("--join-leave, --hosts, --replicas and --faults go with --cluster N")
    if a.cluster and not 1 <= a.replicas <= min(a.cluster, 7):
        p.error(f"--replicas must be from 1 to the cluster's nodes ({a.cluster}, at most 7)")
    if a.faults is not None:
        from actorsys.testing.chaos.cluster import chosen_kinds
        try:
            chosen_kinds(a.faults)
        except ValueError as exc:
            p.error(str(exc))
    if a.cluster and (a.cluster < 2 or a.data_dir or a.keep_data):
        p.error("--cluster needs at least 2 nodes, and makes its own data dirs (no --data-dir, --keep-data)")
    return a


def _terminate(sig: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {sig}")


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    if a.data_dir and os.path.isdir(a.data_dir) and os.listdir(a.data_dir):
        print(f"chaos: --data-dir {a.data_dir} is not empty; give a new or empty directory",
              file=sys.stderr)
        return 2
    if a.cluster:
        from actorsys.testing.chaos.cluster import run_cluster
        return run_cluster(ChaosParams(**vars(a)), Printer(a.quiet))["exit_code"]
    return run(ChaosParams(**vars(a)), Printer(a.quiet))["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
