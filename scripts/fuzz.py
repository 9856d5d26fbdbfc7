"""actorsys frame fuzzer: hostile ZeroMQ traffic at a live node, then proof it is unharmed.

It sends ``--frames`` messages (default 1,000,000), spread at random over the router's
endpoint and every worker slot's endpoint (from the shard map), through raw pyzmq
DEALER, REQ (relaxed) and ROUTER peers. Each message comes from one generator, chosen
at random per frame by a seeded ``random.Random`` (the same seed makes the same frames):

==============  ===========================================================================
random_bytes    random bytes of random length (most empty to a few hundred bytes, some 4 KiB)
truncated       a well-formed request cut short
bitflip         a well-formed request with flipped bits, replaced, inserted or deleted bytes
wrong_shape     valid msgpack of the wrong shape: maps, strings, nil, nested arrays, huge,
                negative and float ids, unknown ops, every known op with wrong arity or types
ext_types       ext types and timestamps (well-formed and malformed) anywhere in a request
deep_nesting    arrays and maps nested 50..5,000 deep, as the payload or inside a request
invalid_utf8    a request whose type, key or method is invalid UTF-8, or bytes instead of str
multipart       messages of 2, 3 or many frames, empty frames, a lone empty frame
oversized       a request just over max_message_bytes (rare: they are big); beyond the
                socket's hard limit through a throwaway peer (ZeroMQ drops the connection)
valid_hostile   well-formed ASK/TELL/SPAWN/STOP/LIST/SUP/EXIT/PING/MAP/STATUS with hostile
                type names, keys and methods (dunders, on_start, _private, $history,
                $rewind and $destroy with bad arguments, very long strings) and arguments
==============  ===========================================================================

Besides, every ``--odd-every`` frames, a round of odd peers: PUSH, PUB and PAIR sockets
(ZeroMQ refuses them at the handshake), two DEALERs with the same routing id, and raw
stream connections speaking garbage, a cut ZMTP greeting, or a whole ZMTP 3.0 session
whose frames carry fuzz payloads (some with bogus flags or a 2**62-byte length).

Replies are drained without blocking, and each must be a well-formed ``[OK|ERR, id,
body]``. Every ``--check-every`` frames a well-formed ask goes to a check actor on each
worker slot through a normal actorsys client, and one through the router: each must
answer with the count continued. At the end the run passes (exit 0) only if

* every process of the node has the pid (and start time) it had at the start, and is up;
* every well-formed check ask was answered correctly;
* the status output shows ``bad_frames`` for the router and every worker, and their
  increase is at least the number of frames that were certainly bad (the fuzzer decodes
  each frame it sends with ``actorsys.wire`` as the receiver will; frames the receiver
  judges only later, such as asks to unknown types, are counted there as well, so only a
  lower bound and the upper bound "no more than the frames sent" are checked);
* every reply was well-formed, and the fuzzer's own decoding raised nothing but the
  documented rejection;
* the node printed no traceback (an embedded node's output goes to a log file).

Usage: ``scripts/fuzz [--frames N] [--seed S] [--workers 2] [--endpoint EP] [--json PATH]``.
Without ``--endpoint`` it starts an embedded node (temp data dir, ``--workers`` slots)
with the ``FuzzBox`` actor types (:mod:`actorsys.testing.fuzz.actors`); with it, it
fuzzes that running node and checks with ``--check-type`` (its ``--check-method`` takes
one integer and returns the running total, like ``FuzzBox.add``). Fuzzing changes
actors of the types it finds: run it against a node whose data you can lose.

The fuzzer is :mod:`actorsys.testing.fuzz`; this file parses the options and prints.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from actorsys.testing.fuzz.run import FuzzParams, fuzz_embedded, fuzz_remote


def print_report(rep: dict[str, Any]) -> None:
    p = print
    p(f"fuzzed {rep['endpoint']} (seed {rep['seed']})")
    p(f"frames sent: {rep['frames_sent']:,} in {rep['seconds']} s = {rep['frames_per_s']:,} frames/s "
      f"(wall time {rep['wall_seconds']} s)")
    p("per target:    " + ", ".join(f"{k} {v:,}" for k, v in rep["per_target"].items()))
    p("per peer kind: " + ", ".join(f"{k} {v:,}" for k, v in rep["per_peer_kind"].items()))
    p("per category (sent / certainly bad):")
    for k, v in rep["per_category"].items():
        p(f"  {k:<14} {v['sent']:>9,} / {v['certainly_bad']:>9,}")
    p(f"odd peers: {rep['odd_peers']}; peers churned: {rep['peers_churned']}; "
      f"sends given up: {rep['send_gave_up']}")
    p("replies by code: " + ", ".join(f"{k} {v:,}" for k, v in rep["replies"].items()))
    p(f"malformed replies: {rep['malformed_replies']}; decoder escapes: {rep['decoder_escapes']}")
    for e in rep["malformed_examples"][:5] + rep["decoder_escape_examples"][:5]:
        p(f"  {e}")
    p("bad_frames: " + ", ".join(f"{k} {rep['bad_frames_before'].get(k)} -> {v}"
                                 for k, v in rep["bad_frames_after"].items())
      + f"; rise {rep['bad_frames_delta_total']:,} (certainly bad sent: {rep['certainly_bad']:,})")
    p(f"well-formed check asks: {rep['check_asks']:,}, failures: {len(rep['check_failures'])}")
    for f in rep["check_failures"][:5]:
        p(f"  {f}")
    if rep["node_tracebacks"]:
        p(f"node tracebacks: {rep['node_tracebacks']}, of {len(rep['node_traceback_kinds'])} kinds:")
        for sig, tb in rep["node_traceback_kinds"].items():
            p(f"  {tb['count']} x {sig}")
            p("    " + tb["example"].replace("\n", "\n    "))
    cols = ["process", "pid_before", "pid", "same", "up", "rss_mb", "received", "bad_frames",
            "dropped_replies", "failures", "overloaded", "resident", "supervised", "forwarded"]
    p("processes:")
    p("  " + " ".join(f"{c:>15}" for c in cols))
    for row in rep["processes"]:
        p("  " + " ".join(f"{str(row.get(c, '')):>15}" for c in cols))
    for name, ok in rep["checks"].items():
        p(f"{'PASS' if ok else 'FAIL'}: {name}")
    p("fuzz: all checks passed" if rep["passed"] else "fuzz: CHECKS FAILED")



def parse(argv: list[str] | None = None) -> FuzzParams:
    ap = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames to send (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--workers", type=int, default=2, help="worker slots of the embedded node")
    ap.add_argument("--endpoint", default=None, help="fuzz this running node instead")
    ap.add_argument("--json", metavar="PATH", default=None, help="write the report as JSON")
    ap.add_argument("--check-every", type=int, default=1000, help="frames between check asks")
    ap.add_argument("--check-type", default="FuzzBox", help="actor type of the check asks")
    ap.add_argument("--check-method", default="add", help="method: add(1) -> the running total")
    ap.add_argument("--odd-every", type=int, default=100_000,
                    help="frames between rounds of odd peers (0: none)")
    ap.add_argument("--raw-sessions", type=int, default=5, help="raw stream sessions per target per round")
    ap.add_argument("--churn-every", type=int, default=5000, help="frames between peer replacements")
    ap.add_argument("--send-timeout", type=float, default=10.0,
                    help="seconds a frame may wait for room to send before the run gives it up")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="stop fuzzing after this long")
    ap.add_argument("--max-message-bytes", type=int, default=1 << 20,
                    help="the embedded node's max_message_bytes")
    ap.add_argument("--node-log", metavar="PATH", default=None,
                    help="keep a copy of the embedded node's output here")
    ap.add_argument("--tmpdir", default=None, help="where the embedded node's temp dir goes")
    args = FuzzParams(**vars(ap.parse_args(argv)))
    return dataclasses.replace(args, check_every=max(args.check_every, 1),
                               churn_every=max(args.churn_every, 1))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    rep = fuzz_remote(args) if args.endpoint else fuzz_embedded(args)
    print_report(rep)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=2, default=str)
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
