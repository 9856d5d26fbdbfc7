"""The Savina workloads on Pykka: every actor a thread in the benchmark's own process
(``pykka.ThreadingActor``), messages Python objects passed by reference through a queue,
nothing durable. A message is ``(method, args)`` for :mod:`.behaviours`; the Sink sets
a ``threading.Event`` the driver waits on (with the workload's deadline).
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pykka

from . import behaviours as b
from .peer import PeerRunner

#: seconds an ask (the driver's, or an account's ask of another) may wait
ASK_TIMEOUT = 60.0


class _Ctx:
    __slots__ = ("actor", "me")

    def __init__(self, actor: "_Host") -> None:
        self.actor, self.me = actor, actor.actor_ref

    def send(self, to: Any, method: str, *args: Any) -> None:
        to.tell((method, args))

    def ask(self, to: Any, method: str, *args: Any) -> Any:
        return to.ask((method, args), timeout=ASK_TIMEOUT)

    def exit(self) -> None:
        self.actor.stop()

    def finished(self, result: dict[str, Any]) -> None:
        self.actor.on_finished(result)


class _Host(pykka.ThreadingActor):
    use_daemon_thread = True      # a driver that fails never hangs on a thread at exit

    def __init__(self, behaviour: b.Behaviour, on_finished: Any = None) -> None:
        super().__init__()
        self.behaviour, self.on_finished = behaviour, on_finished
        self.ctx = _Ctx(self)

    def on_receive(self, message: Any) -> Any:
        method, args = message
        return self.behaviour.receive(self.ctx, method, args)


class _Finished:
    """What the Sink calls with its result: it wakes the driver."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: dict[str, Any] | None = None

    def __call__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.event.set()


class PykkaRunner(PeerRunner):
    name = "pykka"

    def describe(self) -> str:
        return "Pykka: threads in one process (ThreadingActor), nothing durable"

    def stop(self) -> None:
        pykka.ActorRegistry.stop_all(timeout=10)

    def spawn(self, behaviour: b.Behaviour) -> Any:
        return _Host.start(behaviour)

    def spawn_sink(self, expected: int) -> Any:
        self.finished = _Finished()
        return _Host.start(b.Sink(expected), self.finished)

    def tell(self, to: Any, method: str, *args: Any) -> None:
        to.tell((method, args))

    def ask(self, to: Any, method: str, *args: Any) -> Any:
        return to.ask((method, args), timeout=ASK_TIMEOUT)

    def wait(self, sink: Any, deadline: float) -> dict[str, Any]:
        done = self.finished
        if not done.event.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError("the Sink did not get every report before the deadline")
        assert done.result is not None
        return done.result

    def teardown(self, actors: list[Any]) -> None:
        for a in actors:
            a.stop(block=False)
        end = time.monotonic() + 30.0
        for a in actors:
            a.actor_stopped.wait(max(0.0, end - time.monotonic()))
