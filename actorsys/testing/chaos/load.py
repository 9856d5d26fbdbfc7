"""The chaos run's load: client processes keeping asks in flight, counting per actor.

Each client process (``python -m actorsys.testing.chaos.load ENDPOINT... ...``: a node's
router, or every router of a cluster; started by :func:`client_command`) keeps
``--in-flight`` asks of ``Tally.add`` in flight on random actors, and counts per actor what it
sent (*attempted*) and what got a successful reply (*acknowledged*); any error
(WorkerLost, AskTimeout, Overloaded, NodeUnavailable, ShardUnavailable, a remote error)
means "maybe applied". With ``--retry`` every ask is exactly-once: it is sent with
``retry=True`` and, whatever fails, sent again with the same request id until it is
acknowledged, so each attempted increment is applied exactly once and the audit can
demand count == acknowledged (an ask still unanswered when the client stops is counted
as *unresolved*). With ``--alarms F`` a fraction F of the asks is ``Tally.alarm(id,
delay)`` instead: an alarm due in 0.2-2 s with a unique id (``<pid>.<n>``), not counted
as an increment; the client reports the ids it scheduled per actor, acknowledged or not
(the audit: every acknowledged one fired exactly once, none twice). It talks to the
harness over its stdin and stdout, one line each: it says ``ready`` once connected,
starts on ``go``, stops sending on ``stop`` (or at the end of its input), waits for its
asks in flight (each has its deadline) and says ``RESULT <json>``. The harness reads
those lines with :class:`LineReader`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

from actorsys.client import AsyncClient, connect_async
from actorsys.errors import ActorError
from actorsys.testing.processes import die_with_parent

from .audit import TALLY, actor_key

READY, GO, STOP, RESULT = "ready", "go", "stop", "RESULT "


#: the delay of a scheduled alarm: uniform in this range (seconds)
ALARM_DELAY = (0.2, 2.0)


def client_command(endpoint: str | list[str], actors: int, in_flight: int, ask_timeout: float,
                   seed: int, retry: bool = False, alarms: float = 0.0) -> list[str]:
    """The command line of one client process (``endpoint``: a list for a cluster's routers)."""
    endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
    return [sys.executable, "-m", __name__, *endpoints, "--actors", str(actors),
            "--in-flight", str(in_flight), "--ask-timeout", str(ask_timeout), "--seed", str(seed),
            *(["--retry"] if retry else []), *(["--alarms", str(alarms)] if alarms else [])]


async def add_once(c: AsyncClient, key: str, timeout: float, errors: Counter[str],
                   method: str = "add", args: tuple[Any, ...] = ()) -> None:
    """One increment of ``key`` (or another ``method``), exactly once: sent with
    ``retry=True`` and, after any failure, again with the same request id until
    acknowledged."""
    ctx = {"id": os.urandom(16)}
    while True:
        try:
            await c.transport.ask(TALLY, key, method, args, {}, timeout, ctx=ctx, retry=True)
            return
        except ActorError as exc:
            errors[type(exc).__name__] += 1
        except Exception as exc:            # counted, never fatal: keep going
            errors[f"other:{type(exc).__name__}"] += 1
        await asyncio.sleep(0.05)          # no busy loop while a part is down


async def count_asks(endpoint: str | list[str], actors: int, in_flight: int, seed: int, timeout: float,
                     commands: "asyncio.Queue[str]", retry: bool = False,
                     alarms: float = 0.0) -> dict[str, Any]:
    """Connect, say ``ready``, then ask on ``go`` until ``stop``; returns the counts."""
    rng = random.Random(seed)
    attempted = [0] * actors
    acked = [0] * actors
    errors: Counter[str] = Counter()
    # [actor, alarm id] of the alarms scheduled: acknowledged, or not (maybe set)
    alarms_sent: list[list[Any]] = []
    alarms_acked: list[list[Any]] = []
    alarm_seq = 0
    pid = os.getpid()
    stopping = asyncio.Event()
    async with connect_async(endpoint, timeout=timeout, connect_timeout=30.0) as c:
        sys.stdout.write(READY + "\n")
        sys.stdout.flush()
        while (cmd := await commands.get()) not in (GO, STOP):
            pass
        started = time.monotonic()

        async def alarm(i: int) -> None:
            nonlocal alarm_seq
            alarm_seq += 1
            aid, delay = f"{pid}.{alarm_seq}", round(rng.uniform(*ALARM_DELAY), 3)
            alarms_sent.append([i, aid])
            if retry:
                await add_once(c, actor_key(i), timeout, errors, "alarm", (aid, delay))
                alarms_acked.append([i, aid])
                return
            try:
                await c.ask(TALLY, actor_key(i), "alarm", aid, delay, timeout=timeout)
            except ActorError as exc:
                errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)
            except Exception as exc:            # counted, never fatal: keep going
                errors[f"other:{type(exc).__name__}"] += 1
                await asyncio.sleep(0.01)
            else:
                alarms_acked.append([i, aid])

        async def lane() -> None:
            while not stopping.is_set():
                i = rng.randrange(actors)
                if alarms and rng.random() < alarms:
                    await alarm(i)
                    continue
                attempted[i] += 1
                if retry:
                    await add_once(c, actor_key(i), timeout, errors)
                    acked[i] += 1
                    continue
                try:
                    await c.ask(TALLY, actor_key(i), "add", timeout=timeout)
                except ActorError as exc:
                    errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.01)      # no busy loop while a part is down
                except Exception as exc:            # counted, never fatal: keep going
                    errors[f"other:{type(exc).__name__}"] += 1
                    await asyncio.sleep(0.01)
                else:
                    acked[i] += 1

        lanes = [asyncio.create_task(lane()) for _ in range(in_flight)] if cmd == GO else []
        while cmd != STOP:
            cmd = await commands.get()
        stopping.set()
        stopped = time.monotonic()
        # the asks in flight end by their own deadline (retried ones: once acknowledged,
        # or unresolved); this one is a backstop
        drain = timeout + 3.0 + (15.0 if retry else 0.0)
        pending = (await asyncio.wait(lanes, timeout=drain))[1] if lanes else set()
        for t in pending:
            t.cancel()                     # attempted, not acknowledged: "maybe applied"
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        # an alarm ask that failed, or was cancelled in flight: maybe set
        done = {aid for _, aid in alarms_acked}
        alarms_failed = [x for x in alarms_sent if x[1] not in done]
        return {"attempted": attempted, "acknowledged": acked, "errors": dict(errors),
                "alarms": {"acknowledged": alarms_acked, "failed": alarms_failed},
                "retry": retry,
                "unfinished_lanes": len(pending), "load_s": stopped - started,
                "drain_s": time.monotonic() - stopped, "pid": os.getpid()}


def stdin_commands() -> asyncio.Queue[str]:
    """The harness's commands on stdin, one a line (``go``, then ``stop``; the end of
    input also stops), as a queue of the running loop, read by a daemon thread."""
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, STOP)

    threading.Thread(target=read_stdin, daemon=True).start()
    return commands


def main(argv: list[str] | None = None) -> int:
    """One client process: commands from stdin, ``RESULT <json>`` on stdout at the end."""
    p = argparse.ArgumentParser(prog="python -m actorsys.testing.chaos.load")
    p.add_argument("endpoint", nargs="+", help="the router (a cluster: every router)")
    p.add_argument("--actors", type=int, required=True)
    p.add_argument("--in-flight", type=int, required=True)
    p.add_argument("--ask-timeout", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--retry", action="store_true", help="exactly-once asks (see the docstring)")
    p.add_argument("--alarms", type=float, default=0.0,
                   help="the fraction of asks that schedule an alarm (see the docstring)")
    a = p.parse_args(argv)
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the harness's to handle

    async def run() -> dict[str, Any]:
        commands = stdin_commands()
        endpoint = a.endpoint[0] if len(a.endpoint) == 1 else a.endpoint
        return await count_asks(endpoint, a.actors, a.in_flight, a.seed, a.ask_timeout, commands,
                                a.retry, a.alarms)

    result = asyncio.run(run())
    sys.stdout.write(RESULT + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


class LineReader:
    """Lines from a child's stdout, each read with a deadline (no thread, no blocking)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc, self.buf = proc, b""

    def readline(self, deadline: float) -> str | None:
        """The next line, or None if none came by ``deadline`` or the child exited."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
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


if __name__ == "__main__":
    sys.exit(main())
