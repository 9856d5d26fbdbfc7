"""The chaos run's WebSocket client: numbered messages to ``Inbox`` actors through gateways.

One process (``python -m actorsys.testing.chaos.wsload URL... --sockets K ...``, started by
:func:`ws_client_command`; the URLs are the gateways, ``http://HOST:PORT``: one node's, or
every node's of a cluster) runs ``K`` socket tasks. Socket ``k`` (its client id) picks a
random gateway and a random ``Inbox`` actor (:func:`.audit.inbox_key`), connects, waits
for the actor's ``hello`` (its ``on_connect`` committed) and sends ``"m <k> <n>"``, ``n``
= 1, 2, ... (numbering goes on across the socket's connections, so each number is sent
once, ever), about ``--rate`` per second and never more than :data:`MAX_UNACKED` not yet
acknowledged. The actor answers each message it applied with ``"ack <k> <n>"``, which
the gateway sends only after the batch's turn committed (docs/concepts/gateway.md: what a
turn does to sockets leaves after its commit; on a replicated shard, after a quorum of
replicas holds it): an acknowledged number must be in the actor's state, once.

A socket that ends (the gateway closed it, say 1011 when the actor was unreachable past
its patience; the connection was lost with its gateway's node; no ``hello`` came within
:data:`HELLO_S`, so the client closed it) is recorded with how it ended, and the task
connects again, to a random gateway and actor; its numbers not acknowledged are "maybe
applied" (never sent again). A connection refused (its node is down) is counted and
tried again elsewhere.

It talks to the harness as :mod:`.load` does: ``ready`` once every socket has been
joined once, sends from ``go``, stops sending on ``stop`` (or at the end of its input),
waits up to ``--drain`` seconds for the acknowledgements of the numbers still in
flight on open sockets, closes them (1000) and says ``RESULT <json>``: per socket
``{"client", "sent", "acked", "ack_dups", "stray_acks", "conns": [[actor, gateway
index, first n, last n, how it ended], ...]}`` (the audit's input,
:func:`.audit.check_websockets`), and the counts of connections and their endings.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

from actorsys.testing.processes import die_with_parent

from .audit import INBOX, inbox_key
from .load import GO, READY, RESULT, STOP, stdin_commands

#: messages a socket may have sent and not yet seen acknowledged; it waits past this
MAX_UNACKED = 100
#: seconds to open a socket, and to get the actor's hello on it
CONNECT_S, HELLO_S = 5.0, 20.0
#: seconds a socket's close may take
CLOSE_S = 3.0
#: seconds until every socket is joined once (the harness waits 40 s for ``ready``)
JOIN_S = 30.0


def ws_client_command(urls: list[str], sockets: int, actors: int, rate: float, seed: int,
                      drain: float) -> list[str]:
    """The command line of the WebSocket client process."""
    return [sys.executable, "-m", __name__, *urls, "--sockets", str(sockets), "--actors",
            str(actors), "--rate", str(rate), "--seed", str(seed), "--drain", str(drain)]


@dataclasses.dataclass(slots=True)
class SocketRecord:
    """What socket ``client`` sent and saw (the audit's input, as a dict)."""

    client: int
    sent: int = 0                      # numbers 1 .. sent were sent (or about to be)
    acked: list[int] = dataclasses.field(default_factory=list)
    ack_dups: int = 0                  # acknowledgements that came twice
    stray_acks: int = 0                # frames that acknowledge no number of its connection
    #: [actor, gateway index, first n, last n, how it ended] per connection
    conns: list[list[Any]] = dataclasses.field(default_factory=list)


class Sockets:
    """The socket tasks and what they saw (see the module docstring)."""

    def __init__(self, urls: list[str], sockets: int, actors: int, rate: float, seed: int) -> None:
        self.urls, self.actors, self.rate = urls, actors, rate
        self.rng = random.Random(seed)
        self.records = [SocketRecord(k) for k in range(sockets)]
        self.joined = [asyncio.Event() for _ in range(sockets)]
        self.go, self.stopping = asyncio.Event(), asyncio.Event()
        self.drain_until = 0.0
        #: how connections ended ("closed 1011", "lost", "no hello", "open at the end", ...)
        self.endings: Counter[str] = Counter()
        self.connect_failed: Counter[str] = Counter()

    async def run_socket(self, http: aiohttp.ClientSession, k: int) -> None:
        """Socket ``k``: connect, send, connect again, until stopped."""
        while not self.stopping.is_set():
            node, actor = self.rng.randrange(len(self.urls)), self.rng.randrange(self.actors)
            url = f"{self.urls[node]}/ws/{INBOX}/{inbox_key(actor)}"
            try:
                ws = await asyncio.wait_for(http.ws_connect(url, autoping=True), CONNECT_S)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                self.connect_failed[type(exc).__name__] += 1
                await asyncio.sleep(self.rng.uniform(0.1, 0.4))     # its node may be down
                continue
            try:
                await self._connection(ws, k, actor, node)
            finally:
                if not ws.closed:
                    try:
                        await asyncio.wait_for(ws.close(), CLOSE_S)
                    except (asyncio.TimeoutError, aiohttp.ClientError, OSError):
                        pass

    async def _connection(self, ws: aiohttp.ClientWebSocketResponse, k: int, actor: int,
                          node: int) -> None:
        """One connection of socket ``k``: the hello, then numbers until it ends."""
        rec = self.records[k]
        try:
            msg = await asyncio.wait_for(ws.receive(), HELLO_S)
        except asyncio.TimeoutError:
            self.endings["no hello"] += 1
            return
        if msg.type != aiohttp.WSMsgType.TEXT or msg.data != "hello":
            self.endings[self._ending(ws, msg)] += 1
            return
        self.joined[k].set()
        await self.go.wait()
        n0 = rec.sent
        conn: list[Any] = [actor, node, n0 + 1, n0, "open"]
        rec.conns.append(conn)
        acked: set[int] = set()
        reader = asyncio.create_task(self._read(ws, k, conn, acked))
        loop = asyncio.get_running_loop()
        try:
            while not self.stopping.is_set() and not reader.done():
                if conn[3] - conn[2] + 1 - len(acked) >= MAX_UNACKED:
                    await asyncio.sleep(0.05)
                    continue
                n = rec.sent + 1
                rec.sent = conn[3] = n
                try:
                    await ws.send_str(f"m {k} {n}")
                except (aiohttp.ClientError, ConnectionError, RuntimeError):
                    break                  # closed under it: the reader says how
                await asyncio.sleep(self.rng.uniform(0.5, 1.5) / self.rate)
            # stopped: wait (bounded) for what is in flight on this socket
            while (not reader.done() and len(acked) < conn[3] - conn[2] + 1
                   and loop.time() < self.drain_until):
                await asyncio.sleep(0.02)
        finally:
            open_at_end = not reader.done()
            if open_at_end:                # the client closes it (the reader sees that close)
                try:
                    await asyncio.wait_for(ws.close(), CLOSE_S)
                except (asyncio.TimeoutError, aiohttp.ClientError, OSError):
                    pass
                reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass
            if open_at_end:
                conn[4] = "open at the end"
            self.endings[str(conn[4])] += 1

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, k: int, conn: list[Any],
                    acked: set[int]) -> None:
        """The acknowledgements of one connection, until it ends (``conn[4]``: how)."""
        rec = self.records[k]
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                parts = msg.data.split()
                if len(parts) == 3 and parts[0] == "ack":
                    c, n = int(parts[1]), int(parts[2])
                    if c != k or not conn[2] <= n <= conn[3]:
                        rec.stray_acks += 1
                    elif n in acked:
                        rec.ack_dups += 1
                    else:
                        acked.add(n)
                        rec.acked.append(n)
                    continue
                rec.stray_acks += 1            # no other frame is expected
                continue
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                conn[4] = self._ending(ws, msg)
                return

    @staticmethod
    def _ending(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> str:
        """How a connection ended, from its last message."""
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return f"closed {msg.data}"                  # by the gateway, with this code
        if msg.type == aiohttp.WSMsgType.CLOSING and ws.close_code not in (None, 1006):
            return f"closed {ws.close_code}"
        return "lost"                                    # no close frame: its gateway died


async def run_sockets(urls: list[str], sockets: int, actors: int, rate: float, seed: int,
                      drain: float, commands: "asyncio.Queue[str]") -> dict[str, Any]:
    """Connect every socket, say ``ready``, send from ``go`` until ``stop``; the records."""
    loop = asyncio.get_running_loop()
    s = Sockets(urls, sockets, actors, rate, seed)
    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(s.run_socket(http, k)) for k in range(sockets)]
        waiting = asyncio.gather(*(e.wait() for e in s.joined))
        try:
            await asyncio.wait_for(waiting, JOIN_S)
        except asyncio.TimeoutError:
            sys.stderr.write(f"wsload: not every socket was joined within {JOIN_S:g} s "
                             f"(connects failed: {dict(s.connect_failed)})\n")
            return {}
        sys.stdout.write(READY + "\n")
        sys.stdout.flush()
        while (cmd := await commands.get()) not in (GO, STOP):
            pass
        started = time.monotonic()
        if cmd == GO:
            s.go.set()
            while await commands.get() != STOP:
                pass
        stopped = time.monotonic()
        s.drain_until = loop.time() + drain
        s.stopping.set()
        s.go.set()
        pending = (await asyncio.wait(tasks, timeout=drain + CLOSE_S + 1.0))[1]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
    conns = sum(len(r.conns) for r in s.records)
    return {"ws": True, "sockets": [dataclasses.asdict(r) for r in s.records], "connections": conns,
            "reconnects": conns - sum(1 for r in s.records if r.conns),
            "endings": dict(s.endings), "connect_failed": dict(s.connect_failed),
            "unfinished": len(pending), "load_s": stopped - started,
            "drain_s": time.monotonic() - stopped, "pid": os.getpid()}


def main(argv: list[str] | None = None) -> int:
    """The WebSocket client process: commands from stdin, ``RESULT <json>`` on stdout."""
    p = argparse.ArgumentParser(prog="python -m actorsys.testing.chaos.wsload")
    p.add_argument("url", nargs="+", help="the gateways (http://HOST:PORT)")
    p.add_argument("--sockets", type=int, required=True)
    p.add_argument("--actors", type=int, required=True)
    p.add_argument("--rate", type=float, required=True, help="messages per second per socket")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--drain", type=float, required=True,
                   help="seconds to wait for the acknowledgements in flight at the stop")
    a = p.parse_args(argv)
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the harness's to handle

    async def run() -> dict[str, Any]:
        return await run_sockets(a.url, a.sockets, a.actors, a.rate, a.seed, a.drain,
                                 stdin_commands())

    result = asyncio.run(run())
    if not result:
        return 1
    sys.stdout.write(RESULT + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
