"""A worker slot's runtime without a process or a socket, for tests/unit/test_runtime_*.

:func:`slot_runtime` wires the real collaborators (:class:`actorsys.runtime.assembly.Runtime`)
over a LevelDB store in a temporary directory, an asyncio loop that is not running (the
test runs it when a turn awaits), an :class:`Output` that records what leaves, and a
client transport stub that records tells. :meth:`Slot.ask` and :meth:`Slot.tell` put a
request in an actor's mailbox exactly as the worker's dispatch does.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any, Callable

import plyvel
from loops import run_until

from actorsys import Actor
from actorsys.actor import handlers_of
from actorsys.config import NodeConfig
from actorsys.errors import ActorError
from actorsys.protocol import wire
from actorsys.protocol.messages import Exit, Tell, WsEffects
from actorsys.protocol.shardmap import ShardMap
from actorsys.protocol.ws import METHOD as WS_METHOD
from actorsys.runtime import ws_turns
from actorsys.runtime.activation import Activation, Call, Waiting
from actorsys.runtime.assembly import Runtime
from actorsys.storage.slot import SlotStore

SHARDS = 16


class Output:
    """Records what the group commit releases (the worker's Sockets in production)."""

    def __init__(self) -> None:
        self.replies: list[tuple[Any, list[Any]]] = []     # (envelope, decoded reply)
        self.tells: list[Tell] = []
        self.ws: list[WsEffects] = []
        self.exits: list[Exit] = []
        self.kicks = 0
        #: a follower's deliveries of its leader's replies, and the peers it may reach
        self.forwarded: list[tuple[bytes, list[Any]]] = []
        self.reachable: set[bytes] = set()

    def send(self, to: Any, payload: bytes) -> None:
        self.replies.append((to, wire.unpack(payload)))

    def forward(self, to: bytes, payload: bytes) -> bool:
        """A follower's delivery: to a known peer (``reachable``) only."""
        if to not in self.reachable:
            return False
        self.forwarded.append((to, wire.unpack(payload)))
        return True

    def tell(self, msg: Tell) -> None:
        self.tells.append(msg)

    def effects(self, msg: WsEffects) -> None:
        self.ws.append(msg)

    def exit(self, msg: Exit) -> None:
        self.exits.append(msg)

    def kick(self) -> None:
        self.kicks += 1

    def reply_to(self, rid: int) -> list[Any]:
        """The decoded reply ``[OK|ERR, rid, body]`` to request ``rid`` (it must exist)."""
        found = [r for _to, r in self.replies if r[1] == rid]
        assert len(found) == 1, f"{len(found)} replies to request {rid}: {self.replies}"
        return found[0]


class Transport:
    """Stands in for the worker's client transport: records tells sent outside a turn."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, Any, Any]] = []

    def tell(self, type_name: str, key: str, method: str, args: Any = (), kwargs: Any = None) -> None:
        self.sent.append((type_name, key, method, list(args), kwargs or {}))

    def ask(self, *args: Any, **kwargs: Any) -> Any:
        raise ActorError("no asks in these tests")


class Slot:
    """One slot's runtime in-process (see the module docstring)."""

    def __init__(self, path: str, actors: dict[str, type[Actor]], **node: Any) -> None:
        self.cfg = NodeConfig(data_dir=path, shards=SHARDS,
                              actors={name: f"tests:{name}" for name in actors}, **node)
        os.makedirs(path, exist_ok=True)
        self.loop = asyncio.new_event_loop()
        self.store = SlotStore(f"{path}/slot-0", fsync=False,
                               max_value_bytes=self.cfg.max_value_bytes, what="test slot")
        self.out = Output()
        self.transport = Transport()
        self.counters: dict[str, int] = {}
        for name in ("received", "bad_frames", "turns", "failures", "activations", "passivations",
                     "evictions", "dropped_replies", "dropped_ws", "overloaded", "storage_errors",
                     "exits", "turn_timeouts", "alarms_fired", "alarms_failed", "alarms_dropped"):
            self.counters[name] = 0
        handlers = {}
        for name, cls in actors.items():
            handlers[name] = dict(handlers_of(cls), **{WS_METHOD: ws_turns.run_batch})
        self.map = ShardMap(epoch=1, shards=SHARDS, owner=[0] * SHARDS, endpoints=["ipc://unused"])
        self.rt = Runtime(self.cfg, 0, self.map, self.store, self.loop, self.out,
                          self.transport, dict(actors), handlers, self.counters,  # type: ignore[arg-type]
                          supervised=True)
        self.catalog, self.turns, self.commit = self.rt.catalog, self.rt.turns, self.rt.commit
        self._rid = 0

    def deliver(self, op: int, type_name: str, key: str, method: str, *args: Any,
                queued_as_bytes: bool = False, **kwargs: Any) -> int:
        """Queue an ASK or TELL in its actor's mailbox (as bytes, if it has to wait and
        ``queued_as_bytes``) and run it if the actor is idle; returns the request id."""
        self._rid += 1
        rid = self._rid if op == wire.ASK else 0
        reply_to = (b"peer-%d" % self._rid,) if op == wire.ASK else None
        act = self.catalog.resident(type_name, key)
        if queued_as_bytes and (act.running or act.mailbox):
            raw = wire.pack([op, rid, type_name, key, method, list(args), kwargs])
            self.catalog.queue(act, Waiting(op, reply_to, rid, method, raw))
        else:
            act.mail().append(Call(op, reply_to, rid, method, list(args), kwargs))
        if not act.running:
            self.turns.pump(act)
        return rid

    def ask(self, type_name: str, key: str, method: str, *args: Any, **kwargs: Any) -> int:
        return self.deliver(wire.ASK, type_name, key, method, *args, **kwargs)

    def tell(self, type_name: str, key: str, method: str, *args: Any, **kwargs: Any) -> None:
        self.deliver(wire.TELL, type_name, key, method, *args, **kwargs)

    def call(self, type_name: str, key: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Ask, commit, and return the result (raise AssertionError on an error reply)."""
        rid = self.ask(type_name, key, method, *args, **kwargs)
        reply = self.wait_reply(rid)
        assert reply[0] == wire.OK, reply
        return reply[2]

    def settle(self, until: Callable[[], bool] | None = None, timeout: float = 2.0) -> None:
        """Commit, and run the loop until ``until()`` holds (by default: until no turn
        awaits), committing after every step; bounded by ``timeout``."""
        def done() -> bool:
            self.commit.flush()
            if until is not None:
                return until()
            return not any(a.task is not None for a in self.catalog.acts.values())
        run_until(self.loop, done, timeout)

    def wait_reply(self, rid: int) -> list[Any]:
        """Run the loop (committing) until request ``rid`` is answered; its reply."""
        self.settle(until=lambda: any(r[1] == rid for _to, r in self.out.replies))
        return self.out.reply_to(rid)

    def act(self, type_name: str, key: str) -> Activation:
        return self.catalog.acts[(type_name, key)]

    def close(self) -> None:
        """Cancel the turns still awaiting (as a worker's shutdown does), then close."""
        self.turns.stopping = True
        tasks = [a.task for a in self.catalog.acts.values() if a.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.rt.close()
        self.loop.close()
        self.store.close()


class FullDisk:
    """A LevelDB database whose batches fail to write, as on a full disk."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def write_batch(self, **kwargs: Any) -> "FailingBatch":
        return FailingBatch()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


class FailingBatch:
    def __enter__(self) -> "FailingBatch":
        return self

    def put(self, k: bytes, v: bytes) -> None:
        pass

    def delete(self, k: bytes) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        raise plyvel.IOError(b"IO error: No space left on device")
