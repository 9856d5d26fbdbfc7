"""One fuzzing run against a node, and its report.

:class:`Run` sends ``frames`` messages, spread at random over the router's endpoint and
every worker slot's endpoint (from the shard map), through raw peers (:mod:`.peers`),
each from a seeded generator (:mod:`.mutator`); replies are drained without blocking and
each must be well-formed. Every ``check_every`` frames the :class:`.oracle.Checker`'s
well-formed asks must answer with their counts continued; every ``odd_every`` frames a
round of odd peers; every ``churn_every`` frames a peer is replaced.

:func:`fuzz_node` runs it against a node at an endpoint and returns the report: what
was sent, what the node counted, and the checks (``passed`` only if every process kept
its pid and start time, every check ask was answered correctly, the ``bad_frames``
counters rose by at least the frames that were certainly bad and by no more than the
frames sent, every reply was well-formed, and the node printed no traceback).
:func:`fuzz_embedded` does it on an embedded node of :data:`.actors.EMBEDDED_TYPES` in a
temp dir, its output going to a log it checks for tracebacks.
"""
from __future__ import annotations

import dataclasses
import os
import random
import shutil
import tempfile
import time
from typing import Any

import zmq

from actorsys.client import Client, connect
from actorsys.errors import UnknownActorType
from actorsys.node import Node
from actorsys.testing.nodes import bad_frames, identities, process_table
from actorsys.testing.processes import start_logged

from .actors import EMBEDDED_TYPES, FUZZ_METHODS, embedded_config
from .mutator import Mutator
from .oracle import Checker, DecoderEscape, certainly_bad, reply_code, reply_problem, tracebacks
from .peers import Peer, odd_peers_round


@dataclasses.dataclass(slots=True)
class FuzzParams:
    """A run's parameters (``scripts/fuzz --help`` says what each means)."""

    frames: int = 1_000_000
    seed: int = 1
    workers: int = 2
    endpoint: str | None = None
    json: str | None = None
    check_every: int = 1000
    check_type: str = "FuzzBox"
    check_method: str = "add"
    odd_every: int = 100_000
    raw_sessions: int = 5
    churn_every: int = 5000
    send_timeout: float = 10.0
    max_seconds: float = 3600.0
    max_message_bytes: int = 1 << 20
    node_log: str | None = None
    tmpdir: str | None = None


def discover_types(client: Client) -> list[str]:
    """The node's registered actor types, read from the error a LIST of an unregistered
    type gets (the node names them)."""
    try:
        client.list_actors("\x01fuzz-no-such-type", limit=1)
    except UnknownActorType as exc:
        text = str(exc)
        if "registered:" in text:
            names = text.split("registered:", 1)[1].strip().rstrip(")")
            return [n.strip() for n in names.split(",") if n.strip() and n.strip() != "none"]
    except Exception:
        pass
    return []


class Run:
    """One fuzzing run against a node at ``endpoint``."""

    def __init__(self, args: FuzzParams, endpoint: str, types: list[str], methods: list[str]) -> None:
        self.args, self.endpoint = args, endpoint
        self.ctx = zmq.Context()
        self.client = connect(endpoint, timeout=15.0)
        self.max_bytes = int(getattr(self.client, "max_message_bytes", 0) or args.max_message_bytes)
        self.hard_limit = max(2 * self.max_bytes, 1 << 16)
        self.mut = Mutator(args.seed, types, methods, self.max_bytes)
        self.r = random.Random(args.seed ^ 0x5EED)
        names = ["router"] + [f"worker[{i}]" for i in range(len(self.client.map.endpoints))]
        self.targets = list(zip(names, [endpoint, *self.client.map.endpoints]))
        self.peers: dict[str, list[Peer]] = {}
        for name, ep in self.targets:
            self.peers[name] = [self._peer(zmq.DEALER, name, ep) for _ in range(3)] + [
                self._peer(zmq.REQ, name, ep), self._peer(zmq.ROUTER, name, ep)]
        self.sent = {name: 0 for name, _ in self.targets}
        self.cats = {c: {"sent": 0, "certainly_bad": 0} for c in self.mut.names}
        self.peer_kinds = {"dealer": 0, "req": 0, "router": 0, "throwaway": 0}
        self.replies: dict[str, int] = {}
        self.malformed: list[str] = []
        self.malformed_n = 0
        self.escapes: list[str] = []
        self.escapes_n = 0
        self.gave_up = 0
        self.odd: dict[str, int] = {}
        self.churned = 0
        self.certain_bad = 0
        self.total_sent = 0

    def _peer(self, kind: int, name: str, ep: str) -> Peer:
        rid = None
        if kind == zmq.DEALER and self.r.random() < 0.5:   # a chosen routing id, random bytes
            rid = bytes([self.r.randrange(1, 256)]) + self.r.randbytes(self.r.randrange(0, 200))
        return Peer(self.ctx, kind, ep, name, rid)

    def _on_reply(self, frames: list[bytes]) -> None:
        why = reply_problem(frames)
        if why is not None:
            self.malformed_n += 1
            if len(self.malformed) < 20:
                self.malformed.append(why)
            return
        code = reply_code(frames)
        self.replies[code] = self.replies.get(code, 0) + 1

    def drain(self) -> int:
        """Check and count every reply waiting at any peer."""
        n = 0
        for peers in self.peers.values():
            for p in peers:
                n += p.drain(self._on_reply)
        return n

    def send(self, peer: Peer, frames: list[bytes]) -> bool:
        """Send, draining replies while the peer has no room, up to ``send_timeout``;
        False (counted as given up) if it never had room."""
        if peer.try_send(frames):
            return True
        deadline = time.monotonic() + self.args.send_timeout
        while time.monotonic() < deadline:
            self.drain()
            time.sleep(0.0005)
            if peer.try_send(frames):
                return True
        self.gave_up += 1
        return False

    def throwaway(self, ep: str, frames: list[bytes]) -> None:
        """Frames beyond the hard limit go through a fresh peer: ZeroMQ drops it."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 1000)
        s.setsockopt(zmq.SNDTIMEO, int(self.args.send_timeout * 1000))
        s.connect(ep)
        try:
            s.send_multipart(frames)
        except zmq.Again:
            self.gave_up += 1
        s.close()

    def churn(self) -> None:
        """Replace a random peer (closing it with replies possibly still on the way)."""
        name, ep = self.r.choice(self.targets)
        peers = self.peers[name]
        i = self.r.randrange(len(peers))
        old = peers[i]
        peers[i] = self._peer(old.kind, name, ep)
        old.close()
        self.churned += 1

    def odd_round(self) -> None:
        """A round of odd peers (:func:`.peers.odd_peers_round`) at every target."""
        for _name, ep in self.targets:
            res = odd_peers_round(self.ctx, ep, self.r, self.mut, self.args.raw_sessions)
            for k, v in res.items():
                self.odd[k] = self.odd.get(k, 0) + v

    def fuzz(self, checker: Checker) -> tuple[float, bool]:
        """Send the frames; returns (seconds, whether it stopped early)."""
        args, r, mut = self.args, self.r, self.mut
        names = [n for n, _ in self.targets]
        eps = dict(self.targets)
        consecutive_failures = 0
        t0 = time.monotonic()
        deadline = t0 + args.max_seconds
        n_targets = len(names)
        for i in range(args.frames):
            if i % args.check_every == 0:
                consecutive_failures = 0 if checker.round() else consecutive_failures + 1
                if consecutive_failures >= 3:
                    return time.monotonic() - t0, True
                if time.monotonic() > deadline:
                    return time.monotonic() - t0, True
            if args.odd_every and i % args.odd_every == 0:
                self.odd_round()
            if i and i % args.churn_every == 0:
                self.churn()
            cat, frames = mut.frame()
            name = names[r.randrange(n_targets)]
            if max(map(len, frames)) >= self.hard_limit - 64:
                self.throwaway(eps[name], frames)
                self.peer_kinds["throwaway"] += 1
                ok = True
                bad = False
            else:
                x = r.random()
                peers = self.peers[name]
                peer = peers[r.randrange(3)] if x < 0.80 else peers[3] if x < 0.92 else peers[4]
                try:
                    bad = certainly_bad(peer.prefix + frames, name == "router", self.max_bytes)
                except DecoderEscape as exc:
                    bad = False
                    self.escapes_n += 1
                    if len(self.escapes) < 10:
                        self.escapes.append(f"{exc} for frames {[f[:80] for f in frames]!r:.400}")
                ok = self.send(peer, frames)
                if ok:
                    self.peer_kinds["dealer" if peer.kind == zmq.DEALER else
                                    "req" if peer.kind == zmq.REQ else "router"] += 1
            if ok:
                self.sent[name] += 1
                self.total_sent += 1
                c = self.cats[cat]
                c["sent"] += 1
                if bad:
                    c["certainly_bad"] += 1
                    self.certain_bad += 1
            if i & 31 == 0:
                self.drain()
        return time.monotonic() - t0, False

    def close_peers(self) -> None:
        """Drain, then close every peer (what they queued is still delivered)."""
        self.drain()
        for peers in self.peers.values():
            for p in peers:
                p.close()       # LINGER: what is still queued is delivered
        self.peers = {}


def settle(client: Client, want_at_least: int, timeout: float = 60.0) -> dict[str, Any]:
    """Status once the bad-frame counters stop moving (and reach ``want_at_least``)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        st = client.status(timeout=15.0)
        total = sum(v or 0 for v in bad_frames(st).values())
        received = sum(p.get("received") or 0 for p in st["processes"])
        if last is not None and total == last[0] and total >= want_at_least:
            return st
        if time.monotonic() > deadline:
            return st
        last = (total, received)
        time.sleep(0.5)



def fuzz_node(args: FuzzParams, endpoint: str, types: list[str], methods: list[str],
              check_type: str, log_path: str | None) -> dict[str, Any]:
    """Fuzz the node at ``endpoint`` and check it; returns the report."""
    wall0 = time.monotonic()
    run = Run(args, endpoint, types, methods)
    checker = Checker(run.ctx, run.client, endpoint, check_type, args.check_method,
                      f"{args.seed}-{os.getpid()}-{time.time_ns() % 10 ** 9}")
    report: dict[str, Any] = {"endpoint": endpoint, "seed": args.seed, "frames_requested": args.frames}
    try:
        st0 = run.client.status(timeout=15.0)
        ids0, bad0 = identities(st0), bad_frames(st0)
        seconds, stopped = run.fuzz(checker)
        if args.odd_every:
            run.odd_round()
        run.close_peers()
        st1 = settle(run.client, sum(v or 0 for v in bad0.values()) + run.certain_bad)
        final_ok = checker.round()        # and well-formed requests after it all
        st1 = run.client.status(timeout=15.0)
        ids1, bad1 = identities(st1), bad_frames(st1)
    finally:
        checker.close()
        run.client.close()
        for peers in run.peers.values():
            for p in peers:
                p.close(0)
        run.ctx.destroy(linger=0)
    delta = {k: (bad1.get(k) or 0) - (bad0.get(k) or 0) for k in bad1}
    total_delta = sum(delta.values())
    table: list[dict[str, Any]] = []
    for (role, slot), proc in process_table(st1).items():
        name = role if slot is None else f"{role}[{slot}]"
        before = ids0.get(name)
        table.append({"process": name, "pid": proc.get("pid"), "pid_before": before and before[0],
                      "same": before is not None and before[:2] == ids1[name][:2],
                      "up": bool(proc.get("up")), "rss_mb": round((proc.get("rss") or 0) / 2 ** 20, 1),
                      **{k: proc.get(k) for k in ("received", "bad_frames", "dropped_replies", "failures",
                                                  "overloaded", "resident", "supervised", "forwarded")
                         if k in proc}})
    tbs = tracebacks(log_path)
    checks = {
        "no process died or restarted": set(ids0) == set(ids1) and all(
            ids0[k][:2] == ids1[k][:2] for k in ids0),
        "every process up": all(v[2] for v in ids1.values()),
        "every well-formed request answered correctly": not checker.failures and final_ok,
        "bad_frames counters in status": all(v is not None for v in bad1.values()) and "router" in bad1
        and len(bad1) == len(run.targets),
        "bad_frames rose by at least the certainly-bad frames": total_delta >= run.certain_bad,
        "bad_frames rose by no more than the frames sent": total_delta <= run.total_sent
        + run.odd.get("raw_frames", 0) + 10 * run.odd.get("raw_sessions", 0),
        "every reply well-formed": run.malformed_n == 0,
        "decoding raised only Rejected": run.escapes_n == 0,
        "all frames sent": not stopped and run.total_sent + run.gave_up >= args.frames and run.gave_up == 0,
    }
    if log_path is not None:         # (a node started elsewhere keeps its own output)
        checks["no traceback from the node"] = not tbs
    report.update({
        "frames_sent": run.total_sent, "seconds": round(seconds, 2),
        "frames_per_s": round(run.total_sent / seconds) if seconds else None,
        "wall_seconds": round(time.monotonic() - wall0, 2),
        "per_target": run.sent, "per_peer_kind": run.peer_kinds, "per_category": run.cats,
        "certainly_bad": run.certain_bad, "bad_frames_before": bad0, "bad_frames_after": bad1,
        "bad_frames_delta": delta, "bad_frames_delta_total": total_delta,
        "replies": dict(sorted(run.replies.items(), key=lambda kv: -kv[1])),
        "malformed_replies": run.malformed_n, "malformed_examples": run.malformed,
        "decoder_escapes": run.escapes_n, "decoder_escape_examples": run.escapes,
        "send_gave_up": run.gave_up, "peers_churned": run.churned, "odd_peers": run.odd,
        "check_asks": checker.asks, "check_failures": checker.failures[:20],
        "check_counts": checker.counts, "stopped_early": stopped,
        "node_tracebacks": sum(t["count"] for t in tbs.values()), "node_traceback_kinds": tbs,
        "processes": table, "checks": checks, "passed": all(checks.values()),
    })
    return report



def fuzz_remote(args: FuzzParams) -> dict[str, Any]:
    """Fuzz the running node at ``args.endpoint``; checks with ``args.check_type``."""
    assert args.endpoint
    with connect(args.endpoint, timeout=15.0) as c:
        types = discover_types(c) or [args.check_type]
    return fuzz_node(args, args.endpoint, types, FUZZ_METHODS + [args.check_method],
                     args.check_type, None)


def fuzz_embedded(args: FuzzParams) -> dict[str, Any]:
    """Start an embedded node (temp dir, ``args.workers`` slots) with the fuzzer's actor
    types, its output going to a log, fuzz it, stop it; everything it made is removed
    (a copy of the log is kept at ``args.node_log`` if given)."""
    tmp = tempfile.mkdtemp(prefix="actorsys-fuzz-", dir=args.tmpdir)
    log_path = os.path.join(tmp, "node.log")
    try:
        node = Node(embedded_config(os.path.join(tmp, "data"), args.workers,
                                    max_message_bytes=args.max_message_bytes))
        start_logged(node, log_path)
        try:
            rep = fuzz_node(args, node.endpoint, list(EMBEDDED_TYPES), FUZZ_METHODS,
                            args.check_type, log_path)
        finally:
            node.stop()
        with open(log_path, errors="replace") as log:
            rep["node_log_lines"] = sum(1 for _ in log)
        if args.node_log:
            shutil.copyfile(log_path, args.node_log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rep
