"""The Savina workloads on Ray: every actor an OS process (a Ray worker), each message a
Ray actor task (``handle.msg.remote(...)``, arguments serialized), nothing durable.

The runner starts a local Ray instance of its own (``address="local"``: never joining a
running cluster) on 127.0.0.1, with 2 CPUs, no dashboard, usage statistics off, token
authentication with a random token of the run's (in the environment, set before Ray is
imported and restored after: nothing is written to ``~/.ray``), and its session files
in a temporary directory that :meth:`RayRunner.stop` removes after ``ray.shutdown()``;
any process Ray started that is still there 10 s after the shutdown is killed (by its
id, recorded as Ray's own).

A message is ``(method, *args)`` to the actor's one method ``msg``, which hands it to its
:mod:`.behaviours` object; an ask is ``ray.get`` of that call (the accounts of Bank
Transaction ``ray.get`` inside the actor, Savina's Await version). Actors are created with
``num_cpus=0`` so that more of them than CPUs can exist (each still a process). The Sink
is an async actor whose ``wait`` returns once it has every report; Fork-Join creation's
actors are killed after the run rather than exiting themselves.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import tempfile
import time
from typing import Any

#: what this module sets in the environment for Ray (restored by :meth:`RayRunner.stop`)
ENV = ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "PYTHONPATH")
_ENV_BEFORE = {k: os.environ.get(k) for k in ENV}
# Ray reads its authentication mode when it is imported, so before that: token
# authentication with a token of this run's, in the environment Ray's processes inherit
# (they import this module too, and keep the token they were given); usage statistics off
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

import ray  # noqa: E402  (after the environment above)

from . import behaviours as b  # noqa: E402
from .peer import PeerRunner  # noqa: E402

#: seconds an ask (the driver's ``ray.get``, or an account's) may wait
ASK_TIMEOUT = 60.0
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # scripts/


class _Ctx:
    __slots__ = ("_me",)

    def __init__(self) -> None:
        self._me: Any = None

    @property
    def me(self) -> Any:
        if self._me is None:
            self._me = ray.get_runtime_context().current_actor
        return self._me

    def send(self, to: Any, method: str, *args: Any) -> None:
        to.msg.remote(method, *args)

    def ask(self, to: Any, method: str, *args: Any) -> Any:
        return ray.get(to.msg.remote(method, *args), timeout=ASK_TIMEOUT)

    def exit(self) -> None:
        """(killed by the driver after the run)"""


@ray.remote
class RayHost:
    def __init__(self, behaviour: b.Behaviour) -> None:
        self.behaviour, self.ctx = behaviour, _Ctx()

    def msg(self, method: str, *args: Any) -> Any:
        return self.behaviour.receive(self.ctx, method, args)


@ray.remote
class RaySink:
    def __init__(self, expected: int) -> None:
        self.behaviour = b.Sink(expected)
        self.event = asyncio.Event()
        self.result: dict[str, Any] | None = None

    async def msg(self, method: str, *args: Any) -> Any:
        return self.behaviour.receive(self, method, args)

    def finished(self, result: dict[str, Any]) -> None:
        self.result = result
        self.event.set()

    async def wait(self) -> dict[str, Any] | None:
        await self.event.wait()
        return self.result


class RayRunner(PeerRunner):
    name = "ray"

    def __init__(self) -> None:
        self.temp: str | None = None
        self.started: list[int] = []

    def describe(self) -> str:
        return ("Ray: every actor an OS process, each message a Ray actor task, nothing "
                f"durable (Ray {ray.__version__}, local instance, 2 CPUs)")

    def start(self) -> None:
        import psutil
        # the workers import this package (savina.*) by name
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [HERE, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
        me = psutil.Process()
        before = {p.pid for p in me.children(recursive=True)}
        self.temp = tempfile.mkdtemp(prefix="rb-", dir="/tmp")     # (short: unix socket paths)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=100 * 1024 * 1024, _temp_dir=self.temp,
                 _node_ip_address="127.0.0.1", logging_level="ERROR")
        for s, h in handlers.items():       # (ray.init sets its own: the driver's clean-up first)
            signal.signal(s, h)
        self.started = [p.pid for p in me.children(recursive=True) if p.pid not in before]

    def stop(self) -> None:
        import psutil
        procs = []
        for pid in self.started:
            try:
                p = psutil.Process(pid)
                procs += [p, *p.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        if ray.is_initialized():
            try:
                ray.shutdown()
            except Exception as exc:       # the kill below still runs
                print(f"ray: shutdown failed: {exc}")
        _gone, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        self.started = []
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None
        for k, v in _ENV_BEFORE.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def spawn(self, behaviour: b.Behaviour) -> Any:
        return RayHost.options(num_cpus=0).remote(behaviour)

    def spawn_sink(self, expected: int) -> Any:
        return RaySink.options(num_cpus=0).remote(expected)

    def tell(self, to: Any, method: str, *args: Any) -> None:
        to.msg.remote(method, *args)

    def ask(self, to: Any, method: str, *args: Any) -> Any:
        return ray.get(to.msg.remote(method, *args), timeout=ASK_TIMEOUT)

    def ready(self, actors: list[Any]) -> None:
        """(all at once: each actor's process starts in parallel)"""
        got = ray.get([a.msg.remote("ready") for a in actors], timeout=ASK_TIMEOUT + len(actors))
        if not all(x is True for x in got):
            raise RuntimeError("ray: an actor did not answer 'ready'")

    def wait(self, sink: Any, deadline: float) -> dict[str, Any]:
        try:
            out = ray.get(sink.wait.remote(), timeout=max(0.1, deadline - time.monotonic()))
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError("the Sink did not get every report before the deadline") from None
        assert isinstance(out, dict)
        return out

    def teardown(self, actors: list[Any]) -> None:
        for a in actors:
            ray.kill(a)
