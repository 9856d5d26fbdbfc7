"""The Savina workloads on Thespian's ``multiprocTCPBase``: every actor an OS process
(forked by Thespian's admin process), messages pickled over TCP on the loopback
interface, nothing durable.

Thespian's admin daemonizes (it leaves the benchmark's process tree), so the runner starts
it on a free port of its own (never joining an admin someone else runs), finds its process
by that port, and at :meth:`ThespianRunner.stop` asks the system to shut down (for at
most 10 s) and then kills whatever is still there 5 s later of the admin, its
descendants and its session (it calls setsid; its actors are in that session). Its
addresses are bound to 127.0.0.1 (``THESPIAN_BASE_IPADDR``) and its log goes to the
benchmark's temporary directory (``THESPLOG_FILE``).

A message is ``(method, args)`` for :mod:`.behaviours`; an actor is given its behaviour in
a first ``("$init", behaviour)`` message (Thespian makes actors from a class alone), and
answers an ask by sending its return value to the asker. Thespian has no blocking ask
inside an actor, so Bank Transaction runs Savina's manual-stash account
(:class:`.behaviours.StashAccount`). The driver waits for the Sink with an ask
(``"$wait"``) that the Sink answers once it has every report.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import psutil
from thespian.actors import Actor, ActorExitRequest, ActorSystem, ActorSystemFailure

from . import behaviours as b
from .peer import PeerRunner

#: seconds the driver's ask (``ready``, ``balance``) may wait
ASK_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThespianHost(Actor):  # type: ignore[misc]
    """Hosts one behaviour; answers an ask with its method's return value."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if not isinstance(message, tuple):
            return                           # Thespian's own (ActorExitRequest, ...)
        method, args = message
        if method == "$init":
            self.behaviour, self.ctx = args, _Ctx(self)
            self.result, self.waiter = None, None
            return
        if method == "$wait":
            if self.result is not None:
                self.send(sender, self.result)
            else:
                self.waiter = sender
            return
        out = self.behaviour.receive(self.ctx, method, args)
        if out is not None:
            self.send(sender, out)

    def finished(self, result: dict[str, Any]) -> None:
        self.result = result
        if self.waiter is not None:
            self.send(self.waiter, result)


class _Ctx:
    __slots__ = ("actor", "me")

    def __init__(self, actor: Any) -> None:
        self.actor, self.me = actor, actor.myAddress

    def send(self, to: Any, method: str, *args: Any) -> None:
        self.actor.send(to, (method, args))

    def ask(self, to: Any, method: str, *args: Any) -> Any:
        raise NotImplementedError("Thespian has no blocking ask inside an actor")

    def exit(self) -> None:
        self.actor.send(self.me, ActorExitRequest())

    def finished(self, result: dict[str, Any]) -> None:
        self.actor.finished(result)


class ThespianRunner(PeerRunner):
    name = "thespian"
    account = b.StashAccount

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.asys: Any = None
        self.admin_pid: int | None = None
        self.session: int | None = None
        self.port = 0

    def describe(self) -> str:
        return ("Thespian multiprocTCPBase: every actor an OS process, pickled messages over "
                "TCP (loopback), nothing durable")

    def start(self) -> None:
        os.environ["THESPIAN_BASE_IPADDR"] = "127.0.0.1"
        os.environ["THESPLOG_FILE"] = os.path.join(self.tmp, "thespian.log")
        self.port = _free_port()
        self.asys = ActorSystem("multiprocTCPBase", capabilities={"Admin Port": self.port})
        self.admin_pid = _admin_pid(self.port)
        if self.admin_pid is None:
            raise RuntimeError(f"no process listens on Thespian's admin port {self.port}")
        # the admin made a session of its own (setsid) and its actors are in it; never ours
        sid = os.getsid(self.admin_pid)
        self.session = sid if sid != os.getsid(0) else None

    def stop(self) -> None:
        procs = self._processes()
        if self.asys is not None:
            # (in a thread, given 10 s: a busy system can take longer, and the kill below
            # ends it anyway)
            asys, self.asys = self.asys, None
            t = threading.Thread(target=_shutdown, args=(asys,), daemon=True)
            t.start()
            t.join(10)
        procs += [p for p in self._processes() if p not in procs]   # (any made meanwhile)
        _gone, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        self.admin_pid = self.session = None

    def _processes(self) -> list[psutil.Process]:
        """The admin, its descendants and whatever else is in its session."""
        out: dict[int, psutil.Process] = {}
        if self.admin_pid is not None:
            try:
                admin = psutil.Process(self.admin_pid)
                out.update((p.pid, p) for p in [admin, *admin.children(recursive=True)])
            except psutil.NoSuchProcess:
                pass
        if self.session is not None:
            for p in psutil.process_iter():
                try:
                    if os.getsid(p.pid) == self.session:
                        out.setdefault(p.pid, p)
                except (OSError, psutil.Error):
                    pass
        return list(out.values())

    def spawn(self, behaviour: b.Behaviour) -> Any:
        addr = self.asys.createActor(ThespianHost)
        self.asys.tell(addr, ("$init", behaviour))
        return addr

    def spawn_sink(self, expected: int) -> Any:
        return self.spawn(b.Sink(expected))

    def tell(self, to: Any, method: str, *args: Any) -> None:
        self.asys.tell(to, (method, args))

    def ask(self, to: Any, method: str, *args: Any) -> Any:
        out = self.asys.ask(to, (method, args), ASK_TIMEOUT)
        if out is None:
            raise TimeoutError(f"thespian: no answer to {method!r} within {ASK_TIMEOUT:g} s")
        return out

    def wait(self, sink: Any, deadline: float) -> dict[str, Any]:
        out = self.asys.ask(sink, ("$wait", ()), max(0.1, deadline - time.monotonic()))
        if not isinstance(out, dict):
            raise TimeoutError("the Sink did not get every report before the deadline")
        return out

    def teardown(self, actors: list[Any]) -> None:
        for a in actors:
            try:
                self.asys.tell(a, ActorExitRequest())
            except ActorSystemFailure:
                pass                        # (it has exited already: Fork-Join creation's)


def _shutdown(asys: Any) -> None:
    try:
        asys.shutdown()
    except Exception as exc:                 # the kill after it still runs
        print(f"thespian: shutdown failed: {exc}")


def _admin_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` (Thespian's admin, on the port we chose): of
    those that hold the listening socket (its actors, forked from it, may too), the one
    whose parent does not."""
    holders = {int(c.pid) for c in psutil.net_connections(kind="tcp")
               if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    for pid in holders:
        try:
            if psutil.Process(pid).ppid() not in holders:
                return pid
        except psutil.NoSuchProcess:
            pass
    return None
