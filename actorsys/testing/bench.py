"""What the benchmarks (``scripts/bench.py``, ``bench_scale.py``, ``bench_gateway.py``) share.

* :class:`Resources`: everything a benchmark starts (the node, raw echo servers, temp
  dirs and the processes' log); :meth:`Resources.close` removes it all.
* :func:`actorsys_pipelined` and :func:`raw_pipelined`: ``window`` asks kept in flight,
  through actorsys and against the raw echo server (:mod:`.rawecho`).
* :func:`pct`, :func:`fmt_num`: nearest-rank percentiles and the report's numbers.
* :func:`run_and_report`: the command lines' frame: run with everything cleaned up (also
  on Ctrl-C and SIGTERM), then print the report and write ``--json``. It and :func:`log`
  print: they are the benchmarks' user-facing output.
"""
from __future__ import annotations

import asyncio
import json
import sys
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import zmq

from actorsys.client import connect_async
from actorsys.node.progress import Progress
from actorsys.log import get_logger
from actorsys.node import Node
from actorsys.protocol import wire
from actorsys.protocol.shardmap import shard_of
from actorsys.testing.processes import start_logged

from .rawecho import ASK, OK, echo_command, packb, raw_recv, raw_socket, raw_wait_ready

_log = get_logger("bench")

TYPE = "Bench"   # the measured actor type on the benchmark's node (scripts/bench_actors.py)


class Resources:
    """Everything the benchmark starts; :meth:`close` removes it all (idempotent)."""

    def __init__(self, tmp_parent: str | None = None) -> None:
        # mode 0700 both: the node's data directory and the log live in tmp; the echo
        # servers' ipc sockets in a short path under the system temp dir (ipc paths are
        # limited to ~100 characters)
        self.tmp = tempfile.mkdtemp(prefix="actorsys-bench-", dir=tmp_parent)
        self.ipc_dir = tempfile.mkdtemp(prefix="actorsys-bench-ipc-")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.node: Node | None = None
        #: more nodes a benchmark runs side by side (stopped by :meth:`close` too)
        self.others: list[Node] = []
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.log_path = os.path.join(self.tmp, "processes.log")
        self.log: IO[bytes] = open(self.log_path, "ab", buffering=0)

    def spawn_echo(self, endpoint: str, *chain: str) -> subprocess.Popen[bytes]:
        """A raw echo server process bound to ``endpoint`` (killed by :meth:`close`);
        ``chain``: a link of the raw replication chain (:func:`.rawecho.echo_command`)."""
        p = subprocess.Popen(echo_command(endpoint, *chain), stdin=subprocess.DEVNULL,
                             stdout=self.log, stderr=self.log)
        self.procs.append(p)
        return p

    def kill(self, p: subprocess.Popen[bytes]) -> None:
        """SIGKILL ``p`` (if still running), reap it and forget it."""
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
        try:
            p.wait(5)
        except Exception:
            pass
        if p in self.procs:
            self.procs.remove(p)

    def start_node(self, config: dict[str, Any], another: bool = False) -> Node:
        """Start the node with its processes' stderr going to the log (restart notices);
        ``another``: a node beside :attr:`node` (in :attr:`others`)."""
        node = Node(config)
        if another:
            self.others.append(node)
        else:
            self.node = node
        start_logged(node, self.log_path, fds=(2,))
        return node

    def log_tail(self, n: int = 4000) -> str:
        """The last ``n`` bytes the node and the echo servers wrote (for an error report)."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Kill the processes, stop the node, remove the temp dirs."""
        # a second Ctrl-C (or a SIGTERM) must not cut the cleanup short
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            for p in list(self.procs):
                self.kill(p)
            for node in [*self.others, *([self.node] if self.node is not None else [])]:
                try:
                    node.stop(timeout=20)
                except Exception as exc:
                    _log.error("bench: stopping the node: %s", exc)
            self.node, self.others = None, []
            self.ctx.destroy(0)
            self.log.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            shutil.rmtree(self.ipc_dir, ignore_errors=True)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def pct(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    i = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


async def _actorsys_pipelined(endpoint: str, keys: list[str], window: int, method: str,
                              args: tuple[Any, ...], deadline: float, warm_keys: list[str],
                              type_name: str) -> float:
    """Keep ``window`` asks in flight over ``keys`` (one ask per entry); return seconds."""
    c = await connect_async(endpoint, timeout=max(deadline, 10.0))
    try:
        shard_map = c.transport.map
        assert shard_map is not None                               # connect_async fetched it
        for slot in range(len(shard_map.endpoints)):               # open every slot's socket
            await c.transport.call_slot(slot, wire.PING, timeout=10.0)
        for k in warm_keys:                                        # activate (if wanted)
            await c.ask(type_name, k, "get")
        it = iter(keys)
        ask = c.ask

        async def lane() -> None:
            for key in it:
                await ask(type_name, key, method, *args)

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(window))), deadline)
        return time.perf_counter() - t0
    finally:
        await c.close()


def actorsys_pipelined(endpoint: str, keys: list[str], window: int, method: str = "add",
                       args: tuple[Any, ...] = (1,), warm_keys: Sequence[str] = (),
                       type_name: str = TYPE) -> float:
    """Asks to ``keys`` (one per entry), ``window`` in flight, through the asyncio client;
    the seconds they took (``warm_keys`` are activated first, untimed)."""
    deadline = 60.0 + len(keys) / 500.0
    return asyncio.run(_actorsys_pipelined(endpoint, keys, window, method, args, deadline,
                                           list(warm_keys), type_name))


async def _async_tells(endpoint: str, n: int) -> float:
    """``n`` tells from the asyncio client in one turn of its loop (coalesced: one frame
    per slot per batch), then one ask; the seconds they took."""
    async with connect_async(endpoint, timeout=30) as c:
        ref = c.ref(TYPE, "async-tells")
        base = await ref.ask("get")
        tell = ref.tell
        t0 = time.perf_counter()
        for _ in range(n):
            tell("add", 1)
        final = await ref.ask("get", timeout=60.0)
        el = time.perf_counter() - t0
        if final - base != n:
            raise RuntimeError(f"{n} tells sent, {final - base} processed")
        return el


def bench_async_tells(node: Node, n: int, rounds: int, raw_rate: float) -> dict[str, Any]:
    """Tells from the asyncio client (coalesced), beside the raw per-message pump's rate
    measured by :func:`bench_tells` in the same run."""
    a_s = [n / asyncio.run(_async_tells(node.endpoint, n)) for _ in range(rounds)]
    a = max(a_s)
    return {"actorsys": {"per_s": a, "rounds_per_s": a_s}, "raw": {"per_s": raw_rate},
            "ratio": a / raw_rate, "n": n, "target": ">= 1.0x raw", "meets_target": a >= raw_rate}


def raw_pipelined(res: Resources, raw_ep: str, keys: list[str], window: int) -> float:
    """Keep ``window`` raw asks in flight against the echo server; return seconds."""
    sock = raw_socket(res.ctx, raw_ep)
    try:
        raw_wait_ready(sock, time.monotonic() + 10)
        n = len(keys)
        deadline = time.monotonic() + 60.0 + n / 500.0
        send = sock.send
        sent = got = 0
        t0 = time.perf_counter()
        while sent < min(window, n):
            send(packb([ASK, sent + 1, TYPE, keys[sent], "add", [1], {}]))
            sent += 1
        while got < n:
            msg = raw_recv(sock)
            if msg[0] != OK:
                raise RuntimeError(f"raw echo error reply {msg!r}")
            got += 1
            if sent < n:
                send(packb([ASK, sent + 1, TYPE, keys[sent], "add", [1], {}]))
                sent += 1
            if not got & 1023 and time.monotonic() > deadline:
                raise TimeoutError("raw pipelined echo did not finish before its deadline")
        return time.perf_counter() - t0
    finally:
        sock.close(0)


# -- the command lines' frame --------------------------------------------------------------


def keys_on(client: Any, node_id: str, n: int, tag: str) -> list[str]:
    """``n`` keys of the benchmark type whose shard is owned by ``node_id``."""
    m = client.map
    nodes = m.nodes or []
    k = next(i for i, x in enumerate(nodes) if x["id"] == node_id)
    first, count = nodes[k]["slots"]
    out: list[str] = []
    i = 0
    while len(out) < n and i < 1_000_000:
        key = f"{tag}-{i}"
        slot = m.owner[shard_of(TYPE, key, m.shards)]
        if first <= slot < first + count:
            out.append(key)
        i += 1
    return out


def fmt_num(v: float, unit: str) -> str:
    """A rate as ``12,345/s``, anything else with one decimal and its unit."""
    if unit == "/s":
        return f"{v:,.0f}/s"
    return f"{v:,.1f} {unit}"


_phases: Progress | None = None


@contextmanager
def phases(total: int) -> Iterator[None]:
    """The benchmark's ``total`` phases: on a terminal a bar that each ``log("... done")``
    advances (other lines above it); elsewhere :func:`log` prints each line as it comes."""
    global _phases
    bar = Progress("bench", total=total, stream=sys.stdout)
    if not bar.bar:
        yield
        return
    with bar:
        _phases = bar
        try:
            yield
        finally:
            _phases = None


def log(msg: str) -> None:
    """A progress line of the benchmark, on stdout (see :func:`phases`)."""
    if _phases is None:
        print(f"bench: {msg}", flush=True)
    elif msg.endswith(" done"):
        _phases.advance(1, note=msg)
    else:
        _phases.say(f"bench: {msg}")


def run_and_report(args: Any, run: Callable[[Any, Resources], dict[str, Any]],
                   report: Callable[[dict[str, Any], dict[str, Any]], None],
                   what: str = "node/echo process") -> int:
    """Run a benchmark with its Resources always cleaned up (also on SIGTERM, SIGHUP and
    Ctrl-C: exit status 130), then print its report and write ``--json``."""
    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    res = Resources(args.tmpdir)
    try:
        out = run(args, res)
    except KeyboardInterrupt:
        _log.warning("bench: interrupted; cleaning up")
        return 130
    except BaseException:
        tail = res.log_tail()
        if tail:
            _log.error("bench: %s messages:\n%s", what, tail)
        raise
    finally:
        res.close()
    report(out["results"], out["meta"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nresults written to {args.json}")
    return 0
