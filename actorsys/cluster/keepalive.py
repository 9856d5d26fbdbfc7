"""The renewal of a node's etcd lease, on a thread of its own.

Why a thread: the router's event loop also plans and carries out moves, failovers and
grants of thousands of shards; on a busy host it can be late by a second or more.
Renewals made on that loop were late with it, the node fenced itself, its lease
expired, its shards failed over, and it took them back once it rejoined: the extra
work made the next renewal late again (the third 30-minute chaos run). A thread gets
the interpreter every few milliseconds however busy the loop is (Python switches
threads every 5 ms), and waits for etcd outside it (gRPC releases the GIL).

What it does: every ``period`` seconds, one ``LeaseKeepAlive`` round trip to etcd
(aetcd's generated stubs on a blocking gRPC channel: the same call aetcd's
``refresh_lease`` makes on the loop), bounded by ``timeout``. Each renewal that succeeded
reports the time it was *sent* (``on_renewed``, from the thread: a float assignment on
the :class:`~.fence.Fence`); a lease etcd no longer knows (TTL 0: it expired) is handed
to the loop (``on_expired``, through ``call_soon_threadsafe``), which joins again under
a new lease and :meth:`LeaseKeeper.use`\\ s it. A failed or slow renewal is logged (at
most once per :data:`SAY_EVERY` s), with how late it was sent and how long etcd took.

Safety does not depend on it: the node serves only until its last renewal's send time
plus the lease's ttl less a margin (``fence.py``), and the loop still has to push that
deadline to the workers.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable

import grpc
from aetcd.rpc import rpc_pb2, rpc_pb2_grpc

from ..log import get_logger

log = get_logger("cluster")

#: seconds between two log lines of failed or slow renewals
SAY_EVERY = 10.0


class LeaseKeeper:
    """Renews lease ``lease_id`` at ``target`` (``host:port``) every ``period`` s on a
    daemon thread (see the module docstring), until :meth:`stop`."""

    def __init__(self, target: str, lease_id: int, ttl: float, period: float, timeout: float,
                 loop: asyncio.AbstractEventLoop, on_renewed: Callable[[float], None],
                 on_expired: Callable[[], None]) -> None:
        self.target, self.ttl, self.period, self.timeout = target, ttl, period, timeout
        self.loop, self.on_renewed, self.on_expired = loop, on_renewed, on_expired
        self._lease_id = lease_id
        self._stop = threading.Event()
        #: kind of line -> when it was last logged (a failure is never hidden by a slow one)
        self._said: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="etcd-lease", daemon=True)
        self._thread.start()

    def use(self, lease_id: int) -> None:
        """Renew ``lease_id`` from now on (the node joined again under a new lease)."""
        self._lease_id = lease_id

    def stop(self) -> None:
        """Stop renewing; returns once the thread ended (at most ``timeout`` s: a renewal
        under way is not cut short)."""
        self._stop.set()
        self._thread.join(self.timeout + 1.0)

    def _say(self, kind: str, what: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._said.get(kind, float("-inf")) >= SAY_EVERY:
            self._said[kind] = now
            log.warning(what, *args)

    def _run(self) -> None:
        channel = grpc.insecure_channel(self.target)
        stub = rpc_pb2_grpc.LeaseStub(channel)
        due = time.monotonic() + self.period
        try:
            while not self._stop.wait(max(0.0, due - time.monotonic())):
                sent = time.monotonic()
                due = sent + self.period      # (the next from this send, not its answer)
                lease_id = self._lease_id
                call = stub.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]),
                                           timeout=self.timeout)
                try:
                    reply = next(call)
                except Exception as exc:       # (an RpcError; anything else is said too)
                    code = exc.code() if isinstance(exc, grpc.RpcError) else repr(exc)
                    self._say("failed", "could not renew this node's etcd lease (%s): "
                              "after %g s without renewal it loses its membership", code, self.ttl)
                    continue
                finally:
                    call.cancel()          # (one answer is all it is asked for)
                took = time.monotonic() - sent
                if took > self.period / 2:
                    self._say("slow", "this node's etcd lease renewal was slow: etcd "
                              "answered in %.2f s", took)
                if self._stop.is_set() or lease_id != self._lease_id:
                    continue
                if reply.TTL > 0:
                    self.on_renewed(sent)
                else:
                    self.loop.call_soon_threadsafe(self.on_expired)
                    # (the loop joins again and calls use(); until then nothing to renew)
                    while not self._stop.is_set() and lease_id == self._lease_id:
                        self._stop.wait(0.05)
                    due = time.monotonic()
        except RuntimeError:          # (the loop closed under us: the node is stopping)
            pass
        finally:
            channel.close()
