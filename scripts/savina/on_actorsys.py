"""The Savina workloads on actorsys: a real embedded node (router and worker processes,
LevelDB, ``durability = "process"``), its actors those of ``scripts/savina_actors.py``.

The driver is a blocking client in the benchmark's process. It sets a workload's actors
up with asks (untimed: each ask also activates its actor), then sends the first message
(tells) and asks the workload's Sink for its ``result`` every :data:`POLL` seconds until
every report has arrived; the time is from the first message to the answer that shows the
last report. Each run uses fresh keys, so its actors start from nothing. The node's
``mailbox_limit`` is raised (Counting Actor queues N messages at one actor at once, as
Savina does; the default bound is 10,000).
"""
from __future__ import annotations

import os
import time
from typing import Any

from actorsys.testing.bench import Resources

from .workloads import OPENING_BALANCE, reports

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # scripts/
ROOT = os.path.dirname(HERE)
#: seconds between the driver's asks for the Sink's result
POLL = 0.005
#: the benchmark node's mailbox bound (above any workload's N)
MAILBOX_LIMIT = 1_000_000


class ActorsysRunner:
    name = "actorsys"

    def __init__(self, res: Resources, workers: int = 2) -> None:
        self.res, self.workers = res, workers
        self.client: Any = None
        self.runs = 0

    def describe(self) -> str:
        return (f"actorsys: an embedded node, {self.workers} worker processes, every turn "
                f"committed to LevelDB (durability=process)")

    def start(self) -> None:
        from savina_actors import TYPES
        config = {"node": {"data_dir": os.path.join(self.res.tmp, "data"), "workers": self.workers,
                           "python_path": [HERE], "shutdown_timeout": 10.0, "start_timeout": 60.0,
                           "ask_timeout": 60.0, "idle_timeout": 3600.0,
                           "mailbox_limit": MAILBOX_LIMIT},
                  "actors": dict(TYPES)}
        node = self.res.start_node(config)
        self.client = node.client()

    def stop(self) -> None:
        """Stop the node (the peers run after it, on a quiet machine)."""
        self.client = None
        node, self.res.node = self.res.node, None
        if node is not None:
            node.stop(timeout=20)

    def run(self, name: str, p: dict[str, int], deadline: float) -> dict[str, Any]:
        """One run of workload ``name``: ``{"seconds", "facts"}``."""
        import savina_actors as sa
        self.runs += 1
        pre = f"{name}{self.runs}/"
        c = self.client
        sink = pre + "sink"
        c.ask(sa.SINK, sink, "expect", reports(name, p))
        kick = getattr(self, "_" + name)(c, sa, pre, sink, p)
        t0 = time.perf_counter()
        kick()
        result = self._wait(c, sa.SINK, sink, deadline)
        seconds = time.perf_counter() - t0
        facts = {"total": result["total"], "bad": result["bad"]}
        if name == "banking":
            facts["balance_sum"] = sum(c.ask(sa.ACCOUNT, f"{pre}{i}", "balance")
                                       for i in range(p["A"]))
        return {"seconds": seconds, "facts": facts}

    @staticmethod
    def _wait(c: Any, sink_type: str, sink: str, deadline: float) -> dict[str, Any]:
        while True:
            r: dict[str, Any] = c.ask(sink_type, sink, "result")
            if r["got"] >= r["expected"]:
                return r
            if time.monotonic() > deadline:
                raise TimeoutError(f"{r['got']} of {r['expected']} reports before the deadline")
            time.sleep(POLL)

    # -- each workload's setup (asks); it returns the kick-off (the timed part's start) ----

    def _pingpong(self, c: Any, sa: Any, pre: str, sink: str, p: dict[str, int]) -> Any:
        ping, pong = pre + "ping", pre + "pong"
        c.ask(sa.PONG, pong, "setup")
        c.ask(sa.PING, ping, "setup", pong, p["N"], sink)
        return lambda: c.tell(sa.PING, ping, "start")

    def _count(self, c: Any, sa: Any, pre: str, sink: str, p: dict[str, int]) -> Any:
        producer, counter = pre + "producer", pre + "counter"
        c.ask(sa.COUNTER, counter, "setup")
        c.ask(sa.PRODUCER, producer, "setup", counter, p["N"], sink)
        return lambda: c.tell(sa.PRODUCER, producer, "start")

    def _fjthrput(self, c: Any, sa: Any, pre: str, sink: str, p: dict[str, int]) -> Any:
        keys = [f"{pre}{i}" for i in range(p["A"])]
        for k in keys:
            c.ask(sa.WORKER, k, "setup", p["N"], sink)

        def kick() -> None:
            tell = c.tell
            for _ in range(p["N"]):
                for k in keys:
                    tell(sa.WORKER, k, "work")
        return kick

    def _fjcreate(self, c: Any, sa: Any, pre: str, sink: str, p: dict[str, int]) -> Any:
        def kick() -> None:
            tell = c.tell
            for i in range(p["N"]):
                tell(sa.FORK, f"{pre}{i}", "run", sink)
        return kick

    def _threadring(self, c: Any, sa: Any, pre: str, sink: str, p: dict[str, int]) -> Any:
        n = p["N"]
        for i in range(n):
            c.ask(sa.RING, f"{pre}{i}", "setup", f"{pre}{(i + 1) % n}", sink)
        return lambda: c.tell(sa.RING, f"{pre}0", "token", p["R"], 0)

    def _chameneos(self, c: Any, sa: Any, pre: str, sink: str, p: dict[str, int]) -> Any:
        mall, keys = pre + "mall", [f"{pre}{i}" for i in range(p["C"])]
        for i, k in enumerate(keys):
            c.ask(sa.CHAMENEO, k, "setup", mall, i % 3)
        c.ask(sa.MALL, mall, "setup", p["M"], keys, sink)
        return lambda: c.tell(sa.MALL, mall, "start")

    def _big(self, c: Any, sa: Any, pre: str, sink: str, p: dict[str, int]) -> Any:
        for i in range(p["W"]):
            c.ask(sa.BIG, f"{pre}{i}", "setup", i, p["W"], p["N"], pre, sink)

        def kick() -> None:
            for i in range(p["W"]):
                c.tell(sa.BIG, f"{pre}{i}", "pong", -1)
        return kick

    def _banking(self, c: Any, sa: Any, pre: str, sink: str, p: dict[str, int]) -> Any:
        teller = pre + "teller"
        for i in range(p["A"]):
            c.ask(sa.ACCOUNT, f"{pre}{i}", "setup", OPENING_BALANCE)
        c.ask(sa.TELLER, teller, "setup", p["A"], p["N"], pre, sink)
        return lambda: c.tell(sa.TELLER, teller, "start")
