"""Fuzzed input at a live node (issue 5, "Bad input"): hostile frames kill nothing, every
well-formed request after them is still answered correctly, and bad frames are counted.

* scripts/fuzz.py end to end, short (the recorded run is a million frames);
* hypothesis-generated frames (random bytes, msgpack of any shape, mutated requests,
  multipart messages) at the router and a worker, each followed by a well-formed ask and
  a check of every process's pid;
* the bad_frames counters rise by at least the frames that are certainly bad.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import msgpack
import pytest
import zmq
from helpers import ROOT, SCRIPTS_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actorsys
from actorsys.protocol import wire
from actorsys.testing.fuzz.actors import EMBEDDED_TYPES, FUZZ_METHODS
from actorsys.testing.fuzz.hostile import HOSTILE_KEYS, HOSTILE_NAMES, KNOWN_OPS, SYSTEM
from actorsys.testing.fuzz.oracle import reply_problem, tracebacks
from actorsys.testing.nodes import bad_frames, identities
from actorsys.testing.processes import start_logged

REQUIRED_CHECKS = [
    "no process died or restarted",
    "every process up",
    "every well-formed request answered correctly",
    "bad_frames counters in status",
    "bad_frames rose by at least the certainly-bad frames",
    "every reply well-formed",
    "no traceback from the node",
]


def fuzz_config(config) -> dict:
    """The test config plus the fuzzer's FuzzBox types."""
    cfg = config()
    cfg["actors"].update(EMBEDDED_TYPES)
    return cfg


def pids(node: actorsys.Node) -> dict:
    return {name: v[:2] for name, v in identities(node.status()).items()}


def dealer(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDTIMEO, 5000)
    s.connect(endpoint)
    return s


def check_key(client: actorsys.Client, slot: int) -> str:
    """A FuzzBox key on ``slot`` that no generator produces."""
    return next(k for k in (f"check-{slot}-{i}" for i in range(10_000))
                if client.map.slot_of("FuzzBox", k) == slot)


# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_fuzz_script_short_run_passes_every_check(tmp_path):
    out = tmp_path / "fuzz.json"
    run_tmp = tmp_path / "t"
    run_tmp.mkdir()
    proc = subprocess.run(
        [sys.executable, os.path.join(SCRIPTS_DIR, "fuzz.py"), "--frames", "30000", "--seed", "7",
         "--odd-every", "10000", "--churn-every", "2000", "--json", str(out), "--tmpdir", str(run_tmp)],
        cwd=ROOT, capture_output=True, text=True, timeout=200, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, \
        f"expected every check to pass:\n{proc.stdout}\nstderr:\n{proc.stderr[-5000:]}"
    for name in REQUIRED_CHECKS:
        assert f"PASS: {name}" in proc.stdout, \
            f"expected the check '{name}' printed as passed:\n{proc.stdout}"
    assert "fuzz: all checks passed" in proc.stdout
    rep = json.loads(out.read_text())
    assert rep["frames_sent"] == 30000, rep["frames_sent"]
    assert set(rep["per_target"]) == {"router", "worker[0]", "worker[1]"}
    assert all(n > 5000 for n in rep["per_target"].values()), \
        f"expected the frames spread over the router and both workers: {rep['per_target']}"
    assert all(c["sent"] > 0 for name, c in rep["per_category"].items() if name != "oversized"), \
        f"expected every generator used: {rep['per_category']}"
    assert rep["certainly_bad"] > 10_000, "most fuzz frames are bad"
    assert rep["bad_frames_delta_total"] >= rep["certainly_bad"]
    assert rep["check_asks"] >= 3 * 30 and rep["check_failures"] == []
    assert rep["odd_peers"]["raw_sessions"] > 0 and rep["peers_churned"] > 0
    assert list(run_tmp.iterdir()) == [], "expected the run's temp dir removed"


# ---------------------------------------------------------------------------------------
# hypothesis: any frames, then a well-formed ask and the same pids

_leaf = (st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats()
         | st.text(max_size=20) | st.binary(max_size=20)
         | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=16))
         | st.builds(msgpack.Timestamp, st.integers(-2 ** 40, 2 ** 40), st.integers(0, 10 ** 9 - 1)))
_data = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), inner, max_size=4),
                     max_leaves=20)
_names = st.sampled_from(["FuzzBox", "FuzzPlain", "Counter", *FUZZ_METHODS, *SYSTEM,
                          *HOSTILE_NAMES[:40]]) | st.text(max_size=30)
_keys = st.sampled_from([f"f-{i}" for i in range(8)] + HOSTILE_KEYS) | st.text(max_size=20)
_ids = st.integers(-2 ** 63, 2 ** 64 - 1)
_ask = st.tuples(st.sampled_from([wire.ASK, wire.TELL]), _ids, _names, _keys, _names,
                 st.lists(_data, max_size=3), st.dictionaries(st.text(max_size=10), _data, max_size=3)
                 ).map(list)
_any_request = st.tuples(st.sampled_from(KNOWN_OPS) | _data, _ids | _data,
                         st.lists(_data, max_size=7)).map(lambda t: [t[0], t[1], *t[2]])
_request = (_ask | _any_request).map(wire.pack)


def _mutate(args: tuple) -> bytes:
    payload, flips, cut = args
    b = bytearray(payload)
    for pos, value in flips:
        if b:
            b[pos % len(b)] = value
    return bytes(b[:cut % (len(b) + 1)] if cut is not None else b)


_mutated = st.tuples(_request, st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=4),
                     st.none() | st.integers(0, 10 ** 6)).map(_mutate)
_payload = st.binary(max_size=512) | _data.map(wire.pack) | _request | _mutated | st.just(b"")
_frames = st.lists(_payload, min_size=1, max_size=5)


def _expected_rejection(frames: list[bytes], max_bytes: int) -> list | None:
    """[ERR, id, code] that the receiver must answer when it refuses the frames at decoding."""
    try:
        wire.decode_frames([b"peer", *frames], max_bytes)
    except wire.Rejected as r:
        return [wire.ERR, r.rid, r.error.code]
    return None


@pytest.mark.timeout(180)
def test_hypothesis_frames_at_router_and_worker_leave_the_node_serving(config, tmp_path):
    log = str(tmp_path / "node.log")
    node = actorsys.Node(fuzz_config(config))
    start_logged(node, log)
    ctx = zmq.Context()
    try:
        c = node.client()
        max_bytes = c.max_message_bytes
        targets = {"router": dealer(ctx, node.endpoint)}
        targets.update({i: dealer(ctx, ep) for i, ep in enumerate(c.map.endpoints)})
        keys = [check_key(c, slot) for slot in range(len(c.map.endpoints))]
        counts = {k: 0 for k in keys}
        before = pids(node)
        examples = []

        def drain(sock: zmq.Socket) -> None:
            while sock.poll(0):
                reply = sock.recv_multipart()
                assert reply_problem(reply) is None, f"malformed reply {reply!r:.300}"

        @settings(max_examples=300, deadline=None, database=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(frames=_frames, worker=st.sampled_from(sorted(k for k in targets if k != "router")))
        def one(frames: list[bytes], worker: int) -> None:
            want = _expected_rejection(frames, max_bytes)
            examples.append(want is not None)
            for name in ("router", worker):
                sock = targets[name]
                drain(sock)
                sock.send_multipart(frames)
                if want is not None:       # refused at decoding: this exact error comes back
                    deadline = time.monotonic() + 5.0
                    while True:
                        assert sock.poll(max(deadline - time.monotonic(), 0) * 1000), \
                            f"expected {want} from {name} for {frames!r:.300}, got no reply"
                        reply = sock.recv_multipart()
                        assert reply_problem(reply) is None, f"malformed reply {reply!r:.300}"
                        msg = msgpack.unpackb(reply[-1], raw=False, strict_map_key=False)
                        if [msg[0], msg[1], msg[2]["code"]] == want:
                            break
            for k in keys:                 # well-formed asks are still answered, correctly
                counts[k] += 1
                got = c.ask("FuzzBox", k, "add", 1, timeout=10.0)
                assert got == counts[k], f"expected FuzzBox/{k}.add to answer {counts[k]}, got {got!r}"
            assert pids(node) == before, "expected no process of the node to die or restart"

        one()
        assert len(examples) >= 250, f"expected at least 250 examples run, ran {len(examples)}"
        assert 10 <= sum(examples) <= len(examples) - 10, \
            f"expected both refused and accepted frames among the examples: {sum(examples)} refused"
        for sock in targets.values():
            drain(sock)
        assert bad_frames(node.status())["router"] > 0, "expected the router to count bad frames"
    finally:
        ctx.destroy(linger=0)
        node.stop()
    tbs = tracebacks(log)
    assert not tbs, "expected no traceback from the node:\n" + "\n".join(
        f"{t['count']} x {sig}\n{t['example']}" for sig, t in tbs.items())


# ---------------------------------------------------------------------------------------


def _deep_op(depth: int, rid: int) -> bytes:
    """[<an array nested ``depth`` deep>, rid]: its repr in an error message once raised
    RecursionError (no reply, not counted)."""
    return b"\x92" + b"\x91" * depth + b"\xc0" + wire.pack(rid)


def test_bad_frames_counters_rise_by_at_least_the_certainly_bad_frames(config):
    """Frames starting with 0xc1 (a byte msgpack never uses) cannot be decoded, and an op
    nested a thousand arrays deep is no op: each is answered bad_request and counted by
    the process that received it."""
    n = 500
    r = random.Random(5)
    with actorsys.Node(fuzz_config(config)) as node:
        c = node.client()
        ctx = zmq.Context()
        try:
            targets = {"router": node.endpoint}
            targets.update({f"worker[{i}]": ep for i, ep in enumerate(c.map.endpoints)})
            before = bad_frames(node.status())
            ids_before = pids(node)
            for name, ep in targets.items():
                sock = dealer(ctx, ep)
                for _ in range(n - 5):
                    sock.send(b"\xc1" + r.randbytes(r.randrange(0, 200)))
                for i, depth in enumerate((900, 990, 1000, 1010, 1022)):
                    sock.send(_deep_op(depth, 7000 + i))
                replies = []
                for _ in range(n):
                    assert sock.poll(10_000), f"expected {n} replies from {name}, got {len(replies)}"
                    msg = msgpack.unpackb(sock.recv(), raw=False, strict_map_key=False)
                    replies.append((msg[1], msg[2]["code"] if msg[0] == wire.ERR else "ok"))
                assert [code for _rid, code in replies] == ["bad_request"] * n, \
                    f"expected every frame refused as bad_request by {name}: {replies[-5:]}"
                assert [rid for rid, _code in replies[-5:]] == [7000, 7001, 7002, 7003, 7004], \
                    "expected the deeply nested ops' errors to carry their request ids"
            after = bad_frames(node.status())
            for name in targets:
                assert after[name] - before[name] >= n, \
                    f"expected {name}'s bad_frames to rise by at least {n}: {before[name]} -> {after[name]}"
            assert pids(node) == ids_before, "expected no process restarted"
            assert c.ask("FuzzBox", check_key(c, 0), "add", 1) == 1
        finally:
            ctx.destroy(linger=0)
