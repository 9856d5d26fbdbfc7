"""The actors that the chaos run (``scripts/chaos``) keeps counting under load and faults.

``Tally`` is a durable counter that also records, in its own storage, every activation
that counted: ``act/<activation number>`` holds ``{"pid", "first_n", "last_n", "turns"}``
and is written in the same turn as the increment it describes, so it commits (or is
lost) atomically with the count. The activation number is the previous one plus one,
kept in ``self.state`` (committed with the activation's first turn).

If the runtime ever ran two activations of one actor at once, they would take the same
activation number or interleave their counts, and the records would stop tiling the
count: the audit (:mod:`.audit`) checks, per actor, that the records' ``[first_n, last_n]``
ranges are contiguous, in activation order, and cover exactly ``1 .. count``.

``Tally`` also sets alarms (:meth:`Tally.alarm`: the load schedules some, each with a
unique id as its name and payload); its ``on_alarm`` counts the firing in
``fired/<id>``, in the alarm's own turn (the turn that deletes the alarm commits the
count with it), so the audit sees how many times each alarm's turn committed: once for
every alarm whose scheduling ask was acknowledged, never twice.

``Inbox`` holds WebSockets (the chaos run gives its node(s) a gateway): each socket of
the run's WebSocket client (:mod:`.wsload`) sends numbered messages ``"m <client>
<n>"``; ``on_message`` appends ``[client, n]`` to ``self.state["got"]`` (committed with
the batch's turn) and sends ``"ack <client> <n>"`` back, which leaves only once that turn
has committed (on a replicated shard: on a quorum of its replicas). So every
acknowledged number must be in ``got`` exactly once, and no number twice (the gateway
delivers a batch again after a fault; its delivery mark makes it apply once).

``Probe`` answers with its worker's pid: the fault injector's way to see that a slot
is served by a new process.
"""
from __future__ import annotations

import os
from typing import Any

import actorsys

ACT_PREFIX = "act/"
FIRED_PREFIX = "fired/"


def act_key(number: int) -> str:
    """The storage key of activation ``number`` (zero-padded: key order = number order)."""
    return f"{ACT_PREFIX}{number:09d}"


class Tally(actorsys.Actor):
    """A counter whose every increment also updates its activation's record."""

    def on_start(self) -> None:
        self.state.setdefault("n", 0)
        self.state["acts"] = self.state.get("acts", 0) + 1
        self._number = self.state["acts"]

    def add(self) -> int:
        """Count one; returns the new count."""
        n: int = self.state["n"] + 1
        self.state["n"] = n
        key = act_key(self._number)
        rec = self.storage.get(key)
        if rec is None:
            rec = {"pid": os.getpid(), "first_n": n, "last_n": n, "turns": 0}
        rec["last_n"] = n
        rec["turns"] += 1
        self.storage.put(key, rec)
        return n

    def alarm(self, aid: str, delay: float) -> float:
        """Set an alarm named ``aid`` (unique) due in ``delay`` seconds; its due time."""
        return self.set_alarm(delay, name=aid, payload=aid)

    def on_alarm(self, name: str, payload: Any) -> None:
        """Count this firing of alarm ``payload`` (committed with the alarm's turn)."""
        key = FIRED_PREFIX + str(payload)
        self.storage.put(key, (self.storage.get(key) or 0) + 1)

    def read(self) -> dict[str, Any]:
        """``{"n": count, "acts": [[activation number, record], ...], "fired": {alarm id:
        times fired}, "pending": [alarm ids still set]}``, acts in activation order."""
        acts = self.storage.list(prefix=ACT_PREFIX)
        fired = self.storage.list(prefix=FIRED_PREFIX)
        return {"n": self.state["n"],
                "acts": [[int(k[len(ACT_PREFIX):]), v] for k, v in acts.items()],
                "fired": {k[len(FIRED_PREFIX):]: v for k, v in fired.items()},
                "pending": sorted(self.alarms())}


class Inbox(actorsys.Actor):
    """Keeps every numbered message its sockets send, acknowledging each after its commit."""

    def on_connect(self, conn: Any) -> None:
        conn.send("hello")             # the client sends only once its socket is joined

    def on_message(self, conn: Any, data: Any) -> None:
        if isinstance(data, str) and data.startswith("m "):
            _, client, n = data.split()
            self.state.setdefault("got", []).append([int(client), int(n)])
            conn.send(f"ack {client} {n}")

    def got(self) -> list[list[int]]:
        """``[[client, n], ...]``: every message applied, in the order of its turns."""
        return list(self.state.get("got", []))


class Probe(actorsys.Actor):
    """Answers with the pid of the worker process serving it."""

    def pid(self) -> int:
        return os.getpid()
