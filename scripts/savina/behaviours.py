"""The Savina workloads' actors for the peers (Pykka, Thespian, Ray): plain objects whose
methods are the messages, hosted by each runtime's adapter.

The same logic as ``scripts/savina_actors.py`` (actorsys), written once for the three
peers so that they run exactly the same program. A message is ``(method, args)``; the
adapter calls :meth:`Behaviour.receive`, which calls the method with a context first:

* ``ctx.me``: this actor's address (the runtime's own: a Pykka ``ActorRef``, a Thespian
  ``ActorAddress``, a Ray actor handle);
* ``ctx.send(to, method, *args)``: a one-way message (the runtime's tell);
* ``ctx.ask(to, method, *args)``: send and block this actor until the answer (Pykka's
  ``ask``, Ray's ``ray.get``; Thespian has no blocking ask in an actor, so its accounts are
  :class:`StashAccount`, Savina's "manual stash" version of the same transfer);
* ``ctx.exit()``: this actor stops after the message;
* ``ctx.finished(result)``: a :class:`Sink` has every report (the adapter tells the driver).

What a method returns is the answer to an ask (the driver's ``ready`` and ``balance``).
"""
from __future__ import annotations

from collections import deque
from typing import Any

from .workloads import FADED, below, complement, compute, lcg, transfers


class Behaviour:
    def receive(self, ctx: Any, method: str, args: tuple[Any, ...] | list[Any]) -> Any:
        return getattr(self, method)(ctx, *args)

    def ready(self, ctx: Any) -> bool:
        """The driver's ask before timing: the actor exists and has what it was sent."""
        return True


class Sink(Behaviour):
    def __init__(self, expected: int) -> None:
        self.expected, self.got, self.total, self.bad = expected, 0, 0, 0

    def done(self, ctx: Any, value: int = 0, bad: int = 0) -> None:
        self.got += 1
        self.total += value
        self.bad += bad
        if self.got == self.expected:
            ctx.finished({"got": self.got, "total": self.total, "bad": self.bad})


class Ping(Behaviour):
    def __init__(self, pong: Any, n: int, sink: Any) -> None:
        self.partner, self.left, self.sink = pong, n, sink

    def start(self, ctx: Any) -> None:
        self._send_ping(ctx)

    def ping(self, ctx: Any) -> None:
        self._send_ping(ctx)

    def pong(self, ctx: Any) -> None:
        if self.left > 0:
            ctx.send(ctx.me, "ping")             # Savina's PingMessage, to itself
        else:
            ctx.send(self.partner, "finish", self.sink)

    def _send_ping(self, ctx: Any) -> None:
        ctx.send(self.partner, "ping", ctx.me)
        self.left -= 1


class Pong(Behaviour):
    n = 0

    def ping(self, ctx: Any, sender: Any) -> None:
        self.n += 1
        ctx.send(sender, "pong")

    def finish(self, ctx: Any, sink: Any) -> None:
        ctx.send(sink, "done", self.n)


class Producer(Behaviour):
    def __init__(self, counter: Any, n: int, sink: Any) -> None:
        self.counter, self.n, self.sink = counter, n, sink

    def start(self, ctx: Any) -> None:
        send, counter = ctx.send, self.counter
        for _ in range(self.n):
            send(counter, "increment")
        send(counter, "retrieve", ctx.me)

    def result(self, ctx: Any, count: int) -> None:
        ctx.send(self.sink, "done", count)


class Counter(Behaviour):
    n = 0

    def increment(self, ctx: Any) -> None:
        self.n += 1

    def retrieve(self, ctx: Any, producer: Any) -> None:
        ctx.send(producer, "result", self.n)


class Worker(Behaviour):
    def __init__(self, n: int, sink: Any) -> None:
        self.n, self.sink, self.processed = n, sink, 0

    def work(self, ctx: Any) -> None:
        compute()
        self.processed += 1
        if self.processed == self.n:
            ctx.send(self.sink, "done", self.processed)


class Fork(Behaviour):
    def run(self, ctx: Any, sink: Any) -> None:
        compute()
        ctx.send(sink, "done", 1)
        ctx.exit()


class Ring(Behaviour):
    def __init__(self, sink: Any) -> None:
        self.sink, self.next = sink, None

    def link(self, ctx: Any, after: Any) -> None:
        self.next = after

    def token(self, ctx: Any, left: int, received: int) -> None:
        if left > 0:
            ctx.send(self.next, "token", left - 1, received + 1)
        else:
            ctx.send(self.sink, "done", received + 1)


class Mall(Behaviour):
    def __init__(self, meetings: int, sink: Any) -> None:
        self.left, self.sink, self.waiting = meetings, sink, None
        self.chameneos: list[Any] = []
        self.faded = self.total = 0

    def link(self, ctx: Any, chameneos: list[Any]) -> None:
        self.chameneos = chameneos

    def start(self, ctx: Any) -> None:
        for c in self.chameneos:
            ctx.send(c, "go")

    def meet(self, ctx: Any, color: int, sender: Any) -> None:
        if self.left > 0:
            if self.waiting is None:
                self.waiting = sender
            else:
                self.left -= 1
                ctx.send(self.waiting, "meet", color, sender)
                self.waiting = None
        else:
            ctx.send(sender, "exit")

    def count(self, ctx: Any, meetings: int) -> None:
        self.faded += 1
        self.total += meetings
        if self.faded == len(self.chameneos):
            ctx.send(self.sink, "done", self.total)


class Chameneo(Behaviour):
    def __init__(self, mall: Any, color: int) -> None:
        self.mall, self.color, self.meetings = mall, color, 0

    def go(self, ctx: Any) -> None:
        ctx.send(self.mall, "meet", self.color, ctx.me)

    def meet(self, ctx: Any, other_color: int, other: Any) -> None:
        self.color = complement(self.color, other_color)
        self.meetings += 1
        ctx.send(other, "change", self.color)
        ctx.send(self.mall, "meet", self.color, ctx.me)

    def change(self, ctx: Any, color: int) -> None:
        self.color = color
        self.meetings += 1
        ctx.send(self.mall, "meet", color, ctx.me)

    def exit(self, ctx: Any) -> None:
        self.color = FADED
        ctx.send(self.mall, "count", self.meetings)


class Big(Behaviour):
    def __init__(self, me: int, w: int, n: int, sink: Any) -> None:
        self.me, self.w, self.n, self.sink = me, w, n, sink
        self.pings, self.expect, self.x, self.bad = 0, -1, lcg(me), 0
        self.neighbours: list[Any] = []

    def link(self, ctx: Any, neighbours: list[Any]) -> None:
        self.neighbours = neighbours

    def ping(self, ctx: Any, sender: int) -> None:
        ctx.send(self.neighbours[sender], "pong", self.me)

    def pong(self, ctx: Any, sender: int) -> None:
        if sender != self.expect:
            self.bad += 1
        if self.pings == self.n:
            ctx.send(self.sink, "done", self.pings, self.bad)
            return
        self.x = lcg(self.x)
        self.expect = target = below(self.x, self.w)
        ctx.send(self.neighbours[target], "ping", self.me)
        self.pings += 1


class Teller(Behaviour):
    def __init__(self, accounts: int, n: int, sink: Any) -> None:
        self.accounts, self.n, self.sink, self.done = accounts, n, sink, 0
        self.refs: list[Any] = []

    def link(self, ctx: Any, accounts: list[Any]) -> None:
        self.refs = accounts

    def start(self, ctx: Any) -> None:
        refs = self.refs
        for src, dst, amount in transfers(self.accounts, self.n):
            ctx.send(refs[src], "credit", amount, refs[dst], ctx.me)

    def reply(self, ctx: Any) -> None:
        self.done += 1
        if self.done == self.n:
            ctx.send(self.sink, "done", self.done)


class Account(Behaviour):
    """Savina's Await version: the source blocks on its ask to the destination."""

    def __init__(self, balance: int) -> None:
        self.amount = balance

    def credit(self, ctx: Any, amount: int, destination: Any, teller: Any) -> None:
        self.amount -= amount
        ctx.ask(destination, "debit", amount)
        ctx.send(teller, "reply")

    def debit(self, ctx: Any, amount: int) -> bool:
        self.amount += amount
        return True                              # (the answer the source waits for)

    def balance(self, ctx: Any) -> int:
        return self.amount


class StashAccount(Account):
    """Savina's "manual stash" version, for a runtime without a blocking ask in an actor:
    after sending ``debit`` the source keeps every other message aside until the
    destination's ``debited`` comes back, then tells the teller and takes the next
    message kept aside (sent to itself, as Savina does)."""

    def __init__(self, balance: int) -> None:
        super().__init__(balance)
        self.teller: Any = None
        self.stash: deque[tuple[str, Any]] = deque()

    def receive(self, ctx: Any, method: str, args: tuple[Any, ...] | list[Any]) -> Any:
        if self.teller is not None and method != "debited":
            self.stash.append((method, tuple(args)))
            return None
        out = super().receive(ctx, method, args)
        if self.teller is None and self.stash:
            m, a = self.stash.popleft()
            ctx.send(ctx.me, m, *a)
        return out

    def credit(self, ctx: Any, amount: int, destination: Any, teller: Any) -> None:
        self.amount -= amount
        self.teller = teller
        ctx.send(destination, "debit", amount, ctx.me)

    def debit(self, ctx: Any, amount: int, creditor: Any = None) -> None:  # type: ignore[override]
        self.amount += amount
        ctx.send(creditor, "debited")

    def debited(self, ctx: Any) -> None:
        teller, self.teller = self.teller, None
        ctx.send(teller, "reply")
