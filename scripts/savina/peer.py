"""What the peers' runners share: each workload's setup and its timed run, over a few
operations that each runtime's adapter provides (:class:`PeerRunner`).

A run makes its actors (the runtime's own spawn, each hosting a
:mod:`.behaviours` object), sends them what they need to know, asks each ``ready``
(so that every actor exists and has taken its setup), then times from the first message
to the moment the driver learns the Sink has every report (``fjcreate``'s clock starts
before the first spawn: creating actors is what it measures). Every actor the run made is
stopped after it (:meth:`PeerRunner.teardown`), also when it failed or ran out of time;
after Ctrl-C or SIGTERM the runtime's :meth:`~PeerRunner.stop` ends them all instead.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from . import behaviours as b
from .workloads import OPENING_BALANCE, reports


class PeerRunner:
    """A peer runtime; subclasses define the operations below."""

    name = "?"
    #: the Bank Transaction account's behaviour (Thespian: the stash version)
    account: type[b.Account] = b.Account

    def describe(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        """Start the runtime (its processes, if any)."""

    def stop(self) -> None:
        """Stop everything :meth:`start` started (idempotent)."""

    def spawn(self, behaviour: b.Behaviour) -> Any:
        """A new actor hosting ``behaviour``; its address."""
        raise NotImplementedError

    def spawn_sink(self, expected: int) -> Any:
        raise NotImplementedError

    def tell(self, to: Any, method: str, *args: Any) -> None:
        """A one-way message from the driver."""
        raise NotImplementedError

    def ask(self, to: Any, method: str, *args: Any) -> Any:
        """A message from the driver, and its answer (within the runtime's timeout)."""
        raise NotImplementedError

    def ready(self, actors: list[Any]) -> None:
        for a in actors:
            if self.ask(a, "ready") is not True:
                raise RuntimeError(f"{self.name}: an actor did not answer 'ready'")

    def wait(self, sink: Any, deadline: float) -> dict[str, Any]:
        """The Sink's result once it has every report; TimeoutError at ``deadline``."""
        raise NotImplementedError

    def teardown(self, actors: list[Any]) -> None:
        raise NotImplementedError

    # -- the workloads ----------------------------------------------------------------------

    def run(self, name: str, p: dict[str, int], deadline: float) -> dict[str, Any]:
        """One run of workload ``name``: ``{"seconds", "facts"}``."""
        self.made: list[Any] = []
        try:
            sink = self._spawn_sink(reports(name, p))
            kick: Callable[[], None] = getattr(self, "_" + name)(sink, p)
            t0 = time.perf_counter()
            kick()
            result = self.wait(sink, deadline)
            seconds = time.perf_counter() - t0
            facts = {"total": result["total"], "bad": result["bad"]}
            if name == "banking":
                facts["balance_sum"] = sum(self.ask(a, "balance") for a in self.accounts)
            return {"seconds": seconds, "facts": facts}
        except KeyboardInterrupt:
            self.made = []           # (stop() follows at once: it ends them all)
            raise
        finally:
            made, self.made = self.made, []
            if made:
                self.teardown(made)

    def _spawn(self, behaviour: b.Behaviour) -> Any:
        a = self.spawn(behaviour)
        self.made.append(a)
        return a

    def _spawn_sink(self, expected: int) -> Any:
        a = self.spawn_sink(expected)
        self.made.append(a)
        return a

    def _pingpong(self, sink: Any, p: dict[str, int]) -> Callable[[], None]:
        pong = self._spawn(b.Pong())
        ping = self._spawn(b.Ping(pong, p["N"], sink))
        self.ready([pong, ping])
        return lambda: self.tell(ping, "start")

    def _count(self, sink: Any, p: dict[str, int]) -> Callable[[], None]:
        counter = self._spawn(b.Counter())
        producer = self._spawn(b.Producer(counter, p["N"], sink))
        self.ready([counter, producer])
        return lambda: self.tell(producer, "start")

    def _fjthrput(self, sink: Any, p: dict[str, int]) -> Callable[[], None]:
        workers = [self._spawn(b.Worker(p["N"], sink)) for _ in range(p["A"])]
        self.ready(workers)

        def kick() -> None:
            tell = self.tell
            for _ in range(p["N"]):
                for w in workers:
                    tell(w, "work")
        return kick

    def _fjcreate(self, sink: Any, p: dict[str, int]) -> Callable[[], None]:
        def kick() -> None:
            for _ in range(p["N"]):
                self.tell(self._spawn(b.Fork()), "run", sink)
        return kick

    def _threadring(self, sink: Any, p: dict[str, int]) -> Callable[[], None]:
        ring = [self._spawn(b.Ring(sink)) for _ in range(p["N"])]
        for i, r in enumerate(ring):
            self.tell(r, "link", ring[(i + 1) % len(ring)])
        self.ready(ring)
        return lambda: self.tell(ring[0], "token", p["R"], 0)

    def _chameneos(self, sink: Any, p: dict[str, int]) -> Callable[[], None]:
        mall = self._spawn(b.Mall(p["M"], sink))
        chameneos = [self._spawn(b.Chameneo(mall, i % 3)) for i in range(p["C"])]
        self.tell(mall, "link", chameneos)
        self.ready([mall, *chameneos])
        return lambda: self.tell(mall, "start")

    def _big(self, sink: Any, p: dict[str, int]) -> Callable[[], None]:
        bigs = [self._spawn(b.Big(i, p["W"], p["N"], sink)) for i in range(p["W"])]
        for a in bigs:
            self.tell(a, "link", bigs)
        self.ready(bigs)

        def kick() -> None:
            for a in bigs:
                self.tell(a, "pong", -1)
        return kick

    def _banking(self, sink: Any, p: dict[str, int]) -> Callable[[], None]:
        self.accounts = [self._spawn(self.account(OPENING_BALANCE)) for _ in range(p["A"])]
        teller = self._spawn(b.Teller(p["A"], p["N"], sink))
        self.tell(teller, "link", self.accounts)
        self.ready([*self.accounts, teller])
        return lambda: self.tell(teller, "start")
