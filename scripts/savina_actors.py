"""The Savina workloads' actors on actorsys (``scripts/bench --peers``; what each workload
does is in ``scripts/savina/workloads.py``).

Written as a user of actorsys writes actors: handlers are methods, actors address each
other by ``(type, key)``, messages between them are ``self.ref(type, key).tell(...)`` (and
one ``await ...ask(...)``, in Bank Transaction), and every turn commits ``self.state`` to
LevelDB before what it sent leaves (the node's default ``durability = "process"``). An
actor learns its peers' keys in a ``setup`` ask, before the measured run. Each workload
ends with reports to a :class:`Sink`, which the benchmark's driver asks for its
``result``.
"""
from __future__ import annotations

from typing import Any

import actorsys
from savina.workloads import FADED, below, complement, compute, lcg, transfers

SINK, PING, PONG = "savina.Sink", "savina.Ping", "savina.Pong"
PRODUCER, COUNTER = "savina.Producer", "savina.Counter"
WORKER, FORK, RING = "savina.Worker", "savina.Fork", "savina.Ring"
MALL, CHAMENEO, BIG = "savina.Mall", "savina.Chameneo", "savina.Big"
TELLER, ACCOUNT = "savina.Teller", "savina.Account"


class Sink(actorsys.Actor):
    """Counts a workload's reports and sums their values (and their bad counts)."""

    def expect(self, n: int) -> None:
        self.state.update(expected=n, got=0, total=0, bad=0)

    def done(self, value: int = 0, bad: int = 0) -> None:
        st = self.state
        st["got"] += 1
        st["total"] += value
        st["bad"] += bad

    def result(self) -> dict[str, Any]:
        return dict(self.state)


class Ping(actorsys.Actor):
    def setup(self, pong: str, n: int, sink: str) -> None:
        self.state.update(pong=pong, left=n, sink=sink)

    def start(self) -> None:
        self._send_ping()

    def ping(self) -> None:
        self._send_ping()

    def pong(self) -> None:
        st = self.state
        if st["left"] > 0:
            self.self_ref.tell("ping")           # Savina's PingMessage, to itself
        else:
            self.ref(PONG, st["pong"]).tell("finish", st["sink"])   # Savina's StopMessage

    def _send_ping(self) -> None:
        st = self.state
        self.ref(PONG, st["pong"]).tell("ping", self.key)
        st["left"] -= 1


class Pong(actorsys.Actor):
    def setup(self) -> None:
        self.state["n"] = 0

    def ping(self, sender: str) -> None:
        self.state["n"] = self.state.get("n", 0) + 1
        self.ref(PING, sender).tell("pong")

    def finish(self, sink: str) -> None:
        self.ref(SINK, sink).tell("done", self.state.get("n", 0))


class Producer(actorsys.Actor):
    def setup(self, counter: str, n: int, sink: str) -> None:
        self.state.update(counter=counter, n=n, sink=sink)

    def start(self) -> None:
        counter = self.ref(COUNTER, self.state["counter"])
        for _ in range(self.state["n"]):
            counter.tell("increment")
        counter.tell("retrieve", self.key)

    def result(self, count: int) -> None:
        self.ref(SINK, self.state["sink"]).tell("done", count)


class Counter(actorsys.Actor):
    def setup(self) -> None:
        self.state["n"] = 0

    def increment(self) -> None:
        self.state["n"] = self.state.get("n", 0) + 1

    def retrieve(self, producer: str) -> None:
        self.ref(PRODUCER, producer).tell("result", self.state.get("n", 0))


class Worker(actorsys.Actor):
    """Fork-Join throughput: reports once it has processed ``n`` messages."""

    def setup(self, n: int, sink: str) -> None:
        self.state.update(n=n, sink=sink, processed=0)

    def work(self) -> None:
        compute()
        st = self.state
        st["processed"] += 1
        if st["processed"] == st["n"]:
            self.ref(SINK, st["sink"]).tell("done", st["processed"])


class Fork(actorsys.Actor):
    """Fork-Join creation: a new actor, one message, then it exits."""

    def run(self, sink: str) -> None:
        compute()
        self.ref(SINK, sink).tell("done", 1)
        self.stop()


class Ring(actorsys.Actor):
    def setup(self, after: str, sink: str) -> None:
        self.state.update(next=after, sink=sink)

    def token(self, left: int, received: int) -> None:
        st = self.state
        if left > 0:
            self.ref(RING, st["next"]).tell("token", left - 1, received + 1)
        else:
            self.ref(SINK, st["sink"]).tell("done", received + 1)


class Mall(actorsys.Actor):
    def setup(self, meetings: int, chameneos: list[str], sink: str) -> None:
        self.state.update(left=meetings, chameneos=chameneos, sink=sink, waiting=None,
                          faded=0, total=0)

    def start(self) -> None:
        for key in self.state["chameneos"]:
            self.ref(CHAMENEO, key).tell("go")

    def meet(self, color: int, sender: str) -> None:
        st = self.state
        if st["left"] > 0:
            if st["waiting"] is None:
                st["waiting"] = sender
            else:
                st["left"] -= 1
                self.ref(CHAMENEO, st["waiting"]).tell("meet", color, sender)
                st["waiting"] = None
        else:
            self.ref(CHAMENEO, sender).tell("exit")

    def count(self, meetings: int) -> None:
        st = self.state
        st["faded"] += 1
        st["total"] += meetings
        if st["faded"] == len(st["chameneos"]):
            self.ref(SINK, st["sink"]).tell("done", st["total"])


class Chameneo(actorsys.Actor):
    def setup(self, mall: str, color: int) -> None:
        self.state.update(mall=mall, color=color, meetings=0)

    def go(self) -> None:
        self.ref(MALL, self.state["mall"]).tell("meet", self.state["color"], self.key)

    def meet(self, other_color: int, other: str) -> None:
        st = self.state
        st["color"] = complement(st["color"], other_color)
        st["meetings"] += 1
        self.ref(CHAMENEO, other).tell("change", st["color"])
        self.ref(MALL, st["mall"]).tell("meet", st["color"], self.key)

    def change(self, color: int) -> None:
        st = self.state
        st["color"] = color
        st["meetings"] += 1
        self.ref(MALL, st["mall"]).tell("meet", color, self.key)

    def exit(self) -> None:
        self.state["color"] = FADED
        self.ref(MALL, self.state["mall"]).tell("count", self.state["meetings"])


class Big(actorsys.Actor):
    """Sends ``n`` pings, one at a time, to random neighbours (``prefix`` + index)."""

    def setup(self, me: int, w: int, n: int, prefix: str, sink: str) -> None:
        self.state.update(me=me, w=w, n=n, prefix=prefix, sink=sink, pings=0, expect=-1,
                          x=lcg(me), bad=0)

    def ping(self, sender: int) -> None:
        self.ref(BIG, f"{self.state['prefix']}{sender}").tell("pong", self.state["me"])

    def pong(self, sender: int) -> None:
        st = self.state
        if sender != st["expect"]:
            st["bad"] += 1
        if st["pings"] == st["n"]:
            self.ref(SINK, st["sink"]).tell("done", st["pings"], st["bad"])
            return
        st["x"] = x = lcg(st["x"])
        st["expect"] = target = below(x, st["w"])
        self.ref(BIG, f"{st['prefix']}{target}").tell("ping", st["me"])
        st["pings"] += 1


class Teller(actorsys.Actor):
    def setup(self, accounts: int, n: int, prefix: str, sink: str) -> None:
        self.state.update(accounts=accounts, n=n, prefix=prefix, sink=sink, done=0)

    def start(self) -> None:
        st = self.state
        for src, dst, amount in transfers(st["accounts"], st["n"]):
            self.ref(ACCOUNT, f"{st['prefix']}{src}").tell(
                "credit", amount, f"{st['prefix']}{dst}", self.key)

    def reply(self) -> None:
        st = self.state
        st["done"] += 1
        if st["done"] == st["n"]:
            self.ref(SINK, st["sink"]).tell("done", st["done"])


class Account(actorsys.Actor):
    def setup(self, balance: int) -> None:
        self.state["balance"] = balance

    async def credit(self, amount: int, destination: str, teller: str) -> None:
        """Take ``amount`` off, have ``destination`` add it (waiting for its answer), then
        tell the teller."""
        self.state["balance"] -= amount
        await self.ref(ACCOUNT, destination).ask("debit", amount)
        self.ref(TELLER, teller).tell("reply")

    def debit(self, amount: int) -> None:
        self.state["balance"] += amount

    def balance(self) -> int:
        b: int = self.state["balance"]
        return b


#: registered type name -> "module:Class", for the benchmark node's config
TYPES = {name: f"savina_actors:{name.split('.')[1]}" for name in (
    SINK, PING, PONG, PRODUCER, COUNTER, WORKER, FORK, RING, MALL, CHAMENEO, BIG, TELLER,
    ACCOUNT)}
