"""A fake node for the client's unit tests: a router and worker slots on ipc, served by one
thread of the test process (no node processes, no LevelDB).

The router answers MAP (a map over the fake workers) and STATUS; each worker answers a
request with ``serve(slot, request)``: the reply's bytes, ``(other_slot, bytes)`` (sent
from that slot's socket, as a replicated shard's follower delivers its leader's reply),
:data:`HOLD` (kept unanswered until :meth:`FakeNode.release`) or None (never answered).
With ``hold_maps`` set, the router keeps MAP requests unanswered until
:meth:`FakeNode.release`, which answers them with the map of that moment. :meth:`FakeNode.drop` closes a
worker's socket (its clients see the connection drop) and :meth:`FakeNode.restore` binds
it again. Every request that arrives is recorded, decoded, in ``received``.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

import zmq

from actorsys.errors import ActorError
from actorsys.protocol import wire
from actorsys.protocol.shardmap import ShardMap

HOLD = object()
ROUTER = -1

Serve = Callable[[int, list], Any]


def ok(rid: int, result: Any) -> bytes:
    return wire.ok(rid, result)


def err(rid: int, exc: ActorError) -> bytes:
    return wire.err(rid, exc.to_wire())


def echo(slot: int, req: list) -> Any:
    """Asks answer ``[slot, method, args, kwargs]``; PING ``pong``; anything else ``None``."""
    if req[0] == wire.ASK:
        return ok(req[1], [slot, req[4], req[5], req[6]])
    if req[0] == wire.PING:
        return ok(req[1], "pong")
    if req[0] in (wire.SPAWN, wire.LIST):
        return ok(req[1], None if req[0] == wire.SPAWN else [])
    return None


class FakeNode:
    """A router and ``workers`` slots at ``ipc://{directory}/...``, until :meth:`close`."""

    def __init__(self, directory: str, workers: int = 2, serve: Serve = echo, shards: int = 16,
                 max_message_bytes: int = 1 << 20) -> None:
        self.endpoint = f"ipc://{directory}/router.sock"
        self.worker_endpoints = [f"ipc://{directory}/w{i}.sock" for i in range(workers)]
        self.map = ShardMap(epoch=1, shards=shards, owner=[i % workers for i in range(shards)],
                            endpoints=self.worker_endpoints)
        self.serve = serve
        self.max_message_bytes = max_message_bytes
        self.router_silent = False          # True: the router answers nothing
        self.hold_maps = False              # True: MAP requests wait for release()
        self.received: list[tuple[int, list]] = []   # (slot or ROUTER, request), in order
        #: (slot, messages) of every BATCH frame a worker slot received, in order
        self.batches: list[tuple[int, int]] = []
        self._held: list[tuple[int, list[bytes], list]] = []
        self._ctx = zmq.Context()
        self._commands: queue.Queue[tuple[str, int, threading.Event]] = queue.Queue()
        self._socks: dict[int, zmq.Socket] = {}
        self._stopped = threading.Event()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="fake-node")
        self._thread.start()
        assert ready.wait(10), "the fake node did not start"

    # -- the test's side ---------------------------------------------------------------
    def requests(self, slot: int, op: int | None = None) -> list[list]:
        """The requests ``slot`` (or ROUTER) received, of ``op`` if given."""
        return [r for s, r in list(self.received) if s == slot and (op is None or r[0] == op)]

    def drop(self, slot: int) -> None:
        """Close worker ``slot``'s socket (as a killed worker's goes)."""
        self._command("drop", slot)

    def restore(self, slot: int) -> None:
        """Bind worker ``slot`` again (as its restarted worker does)."""
        self._command("restore", slot)

    def release(self) -> None:
        """Answer every held request: a worker's with ``"late"``, a MAP with the map."""
        self._command("release", 0)

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.005)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(10)
        self._ctx.term()

    def __enter__(self) -> "FakeNode":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _command(self, what: str, slot: int) -> None:
        done = threading.Event()
        self._commands.put((what, slot, done))
        assert done.wait(10), f"the fake node did not {what}"

    # -- the fake node's thread ---------------------------------------------------------
    def _bind(self, slot: int) -> zmq.Socket:
        s = self._ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)     # (a burst of replies is never dropped by the fake)
        s.bind(self.endpoint if slot == ROUTER else self.worker_endpoints[slot])
        self._socks[slot] = s
        return s

    def _run(self, ready: threading.Event) -> None:
        self._bind(ROUTER)
        for i in range(len(self.worker_endpoints)):
            self._bind(i)
        ready.set()
        try:
            while not self._stopped.is_set():
                self._obey()
                poller = zmq.Poller()
                for s in self._socks.values():
                    poller.register(s, zmq.POLLIN)
                for sock, _ in poller.poll(5):
                    slot = next(k for k, v in self._socks.items() if v is sock)
                    while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        self._handle(slot, sock.recv_multipart(zmq.NOBLOCK))
        finally:
            for s in self._socks.values():
                s.close(0)

    def _obey(self) -> None:
        while True:
            try:
                what, slot, done = self._commands.get_nowait()
            except queue.Empty:
                return
            if what == "drop":
                self._socks.pop(slot).close(0)
            elif what == "restore":
                self._bind(slot)
            elif what == "release":
                for held_slot, envelope, req in self._held:
                    if held_slot in self._socks:
                        reply = self._map_reply(req) if held_slot == ROUTER else ok(req[1], "late")
                        self._socks[held_slot].send_multipart([*envelope, reply])
                self._held.clear()
            done.set()

    def _handle(self, slot: int, frames: list[bytes]) -> None:
        envelope, req = frames[:-1], wire.unpack(frames[-1])
        if slot != ROUTER and req[0] == wire.BATCH:     # each as if alone, as a worker does
            self.batches.append((slot, len(req[2])))
            for payload in req[2]:
                self._handle(slot, [*envelope, payload])
            return
        self.received.append((slot, req))
        if slot == ROUTER:
            if self.router_silent:
                return
            if req[0] == wire.MAP and self.hold_maps:
                self._held.append((slot, envelope, req))
                return
            if req[0] == wire.MAP:
                reply = self._map_reply(req)
            else:
                reply = ok(req[1], {"processes": [], "op": req[0]})
        else:
            reply = self.serve(slot, req)
            if reply is HOLD:
                self._held.append((slot, envelope, req))
                return
        if isinstance(reply, tuple):         # (another worker delivers it: a follower)
            slot, reply = reply
        if reply is not None:
            self._socks[slot].send_multipart([*envelope, reply])

    def _map_reply(self, req: list) -> bytes:
        return ok(req[1], self.map.to_wire(max_message_bytes=self.max_message_bytes, tree=None))
