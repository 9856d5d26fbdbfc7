"""One client process of ``scripts/bench --curves`` (``scripts/bench_curves.py``).

Started by the benchmark, one OS process per client::

    python scripts/bench_curves_client.py actorsys|raw ENDPOINT --actors A --inflight W
                                          --seconds D --max-asks M --seed S

It connects (``actorsys``: the asyncio client, every slot's socket opened by a ping;
``raw``: a DEALER to the raw pyzmq + msgpack echo server of ``actorsys/testing/rawecho.py``),
then prints ``{"ready": true}`` on a line of stdout and waits for ``go`` on stdin (at
most :data:`READY_WAIT` seconds; an end of input or the wait running out: exit 2). At
``go`` it keeps ``W`` asks in flight, each ``add 1`` to a uniformly random one of ``A``
actors (keys ``bench_scale.key_of(0 .. A-1)``), until ``D`` seconds have passed or
``M`` asks were sent; the asks in flight then are awaited, never dropped. Last it
prints one line of JSON and exits 0::

    {"asks": sent, "answered": replies, "errors": {name: count}, "t0": go, "t1": done,
     "lat_ns": [each ask's send-to-reply time, ns]}

``t0``/``t1`` are ``time.monotonic()`` (one clock for every process of the machine),
so the benchmark measures the wall time of the clients running together. The raw side
is the same loop written as raw_pipelined is: ``W`` requests out, and one more sent at
each reply. Every wait has a deadline; the process dies with its parent.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import select
import sys
import time
from typing import Any

#: seconds a client waits between printing ready and its ``go``
READY_WAIT = 120.0
#: seconds past ``--seconds`` that the asks still in flight may take
DRAIN_WAIT = 60.0


def key_of(i: int) -> str:
    """The key of actor ``i``: bench_scale.key_of (repeated here so that a raw client
    loads no actorsys)."""
    return f"user-{i:07d}"


def ready_then_wait_for_go() -> None:
    print(json.dumps({"ready": True}), flush=True)
    r, _, _ = select.select([sys.stdin], [], [], READY_WAIT)
    if not r or sys.stdin.readline().strip() != "go":
        print("bench client: no 'go' from the benchmark; exiting", file=sys.stderr)
        sys.exit(2)


async def run_actorsys(args: argparse.Namespace) -> dict[str, Any]:
    from actorsys.client import connect_async
    from actorsys.protocol import wire

    type_name = args.type
    c = await connect_async(args.endpoint, timeout=30.0)
    try:
        shard_map = c.transport.map
        if shard_map is None:
            raise RuntimeError("the client has no shard map after connecting")
        for slot in range(len(shard_map.endpoints)):          # open every slot's socket
            await c.transport.call_slot(slot, wire.PING, timeout=10.0)
        await asyncio.get_running_loop().run_in_executor(None, ready_then_wait_for_go)
        rnd = random.Random(args.seed)
        pick, n_actors = rnd.randrange, args.actors
        ask, perf, now = c.ask, time.perf_counter_ns, time.monotonic
        lat: list[int] = []
        errors: dict[str, int] = {}
        budget = [args.max_asks]
        t0 = now()
        stop = t0 + args.seconds

        async def lane() -> None:
            while budget[0] > 0 and now() < stop:
                budget[0] -= 1
                key = key_of(pick(n_actors))
                t = perf()
                try:
                    await ask(type_name, key, "add", 1, timeout=30.0)
                except Exception as exc:      # counted and reported: the benchmark fails on any
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                lat.append(perf() - t)

        await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(args.inflight))),
                               args.seconds + DRAIN_WAIT)
        t1 = now()
        return {"asks": args.max_asks - budget[0], "answered": len(lat), "errors": errors,
                "t0": t0, "t1": t1, "lat_ns": lat}
    finally:
        await c.close()


def run_raw(args: argparse.Namespace) -> dict[str, Any]:
    import zmq

    from actorsys.testing.rawecho import ASK, OK, packb, raw_recv, raw_socket, raw_wait_ready

    ctx: zmq.Context[Any] = zmq.Context()
    sock = raw_socket(ctx, args.endpoint, timeout=30.0)
    try:
        raw_wait_ready(sock, time.monotonic() + 30.0)
        ready_then_wait_for_go()
        rnd = random.Random(args.seed)
        pick, n_actors, type_name = rnd.randrange, args.actors, args.type
        perf, now, send = time.perf_counter_ns, time.monotonic, sock.send
        sent_at: dict[int, int] = {}
        lat: list[int] = []
        errors: dict[str, int] = {}
        sent = 0
        t0 = now()
        stop, hard = t0 + args.seconds, t0 + args.seconds + DRAIN_WAIT

        def send_one() -> None:
            nonlocal sent
            sent += 1
            sent_at[sent] = perf()
            send(packb([ASK, sent, type_name, key_of(pick(n_actors)), "add", [1], {}]))

        while sent < min(args.inflight, args.max_asks):
            send_one()
        while sent_at:
            msg = raw_recv(sock)                       # (a TimeoutError after 30 s of silence)
            t = sent_at.pop(msg[1])
            if msg[0] == OK:
                lat.append(perf() - t)
            else:
                errors[str(msg[0])] = errors.get(str(msg[0]), 0) + 1
            now_ = now()
            if now_ > hard:
                raise TimeoutError(f"{len(sent_at)} raw asks unanswered {DRAIN_WAIT:.0f} s after the run")
            if now_ < stop and sent < args.max_asks:
                send_one()
        t1 = now()
        return {"asks": sent, "answered": len(lat), "errors": errors, "t0": t0, "t1": t1,
                "lat_ns": lat}
    finally:
        sock.close(0)
        ctx.term()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("actorsys", "raw"))
    ap.add_argument("endpoint")
    ap.add_argument("--actors", type=int, required=True)
    ap.add_argument("--inflight", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--max-asks", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--type", default="Bench")
    args = ap.parse_args(argv)
    if min(args.actors, args.inflight, args.max_asks) < 1 or args.seconds <= 0:
        ap.error("--actors, --inflight, --max-asks and --seconds must be positive")
    from actorsys.testing.rawecho import die_with_parent
    die_with_parent()
    out = asyncio.run(run_actorsys(args)) if args.mode == "actorsys" else run_raw(args)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
