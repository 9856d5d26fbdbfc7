"""Worker-to-worker links of replication (issue 16): one DEALER per peer worker.

A :class:`PeerLink` sends SHARDS requests (``append``, ``snapshot``, ``position``) to
one peer worker and hands each reply to the callback of its request id. At most
``window`` requests are in flight; a request not answered within its timeout is failed
(its callback gets a :class:`ShardUnavailable`) and frees its place, and a reply
arriving after that is ignored. With CURVE (tcp) the link is a CURVE client of the
peer's public key and, as :class:`~.ws_routes.RemoteLink` does for gateways, connects
anew after a refused handshake (the peer may learn this node's key a moment after the
first connect): checked at every send and every :meth:`check`.
"""
from __future__ import annotations

import asyncio
import heapq
import math
from typing import TYPE_CHECKING, Any, Callable

import zmq

from ..errors import ActorError, ShardUnavailable, error_from_wire
from ..log import get_logger
from ..net.keys import uses_curve
from ..net.sockets import SocketPump, dealer
from ..protocol import wire
from ..protocol.messages import Shards

if TYPE_CHECKING:
    from ..net.keys import CurveKeys

log = get_logger("worker")

_REFUSED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_NOBLOCK = int(zmq.NOBLOCK)

#: a request's outcome: (True, result) or (False, the error)
Callback = Callable[[bool, Any], None]
#: deadline entries kept before the answered ones are pruned
PRUNE_AT = 4096


class PeerLink:
    """One peer worker (see the module docstring). ``node`` names it in errors."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: zmq.Context[Any], node: str,
                 endpoint: str, keys: CurveKeys | None, window: int) -> None:
        self.loop, self.ctx, self.node, self.endpoint, self.keys = loop, ctx, node, endpoint, keys
        self.window = window
        self.rid = 0
        #: request id -> its callback, of the requests in flight
        self.calls: dict[int, Callback] = {}
        #: (deadline in loop time, request id, timeout), a heap; an answered request's
        #: entry stays until it reaches the top (one timer for them all, armed at the
        #: earliest: a timer armed and cancelled per request cost every append a heap
        #: push and a cancel)
        self.deadlines: list[tuple[float, int, float]] = []
        self.sweep: asyncio.TimerHandle | None = None
        self.sweep_at = math.inf
        self.sock: zmq.Socket[Any] | None = None
        self.pump: SocketPump | None = None
        self.monitor: zmq.Socket[Any] | None = None
        self._open()

    def _open(self) -> None:
        sock = self.sock = dealer(self.ctx, self.endpoint, self.keys, connect=False)
        if self.keys is not None and uses_curve(self.endpoint):
            self.monitor = sock.get_monitor_socket(_REFUSED)
        self.pump = SocketPump(self.loop, sock, self._on_frames)
        sock.connect(self.endpoint)

    def _close_socket(self) -> None:
        if self.pump is not None:
            self.pump.close()
            self.pump = None
        if self.monitor is not None and self.sock is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self.monitor.close(0)
            self.monitor = None
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def check(self) -> None:
        """Connect anew if the peer refused our CURVE handshake."""
        mon = self.monitor
        if mon is None or not int(mon.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            return
        log.info("the worker at %s (node %s) refused this node's CURVE key (not told of it "
                 "yet?): connecting again", self.endpoint, self.node)
        self._close_socket()
        self._open()

    @property
    def room(self) -> int:
        """Requests that may be sent now."""
        return self.window - len(self.calls)

    def request(self, cmd: str, args: dict[str, Any], timeout: float, cb: Callback) -> None:
        """Send one SHARDS request (even past the window: callers check :attr:`room`);
        ``cb`` gets its outcome exactly once."""
        self.check()
        self.rid += 1
        rid = self.rid
        assert self.sock is not None
        try:
            self.sock.send(Shards(rid, cmd, args).encode(), _NOBLOCK)
        except zmq.ZMQError as exc:
            cb(False, ShardUnavailable(f"cannot send to node {self.node}'s worker at "
                                       f"{self.endpoint}: {exc}"))
            return
        self.calls[rid] = cb
        deadline = self.loop.time() + timeout
        heap = self.deadlines
        if len(heap) > PRUNE_AT:    # (answered entries below a long request's)
            heap[:] = [e for e in heap if e[1] in self.calls]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, rid, timeout))
        if deadline < self.sweep_at:
            self._arm(deadline)
        if self.pump is not None:
            self.pump.kick()

    def _arm(self, at: float) -> None:
        if self.sweep is not None:
            self.sweep.cancel()
        self.sweep_at = at
        self.sweep = self.loop.call_at(at, self._sweep)

    def _sweep(self) -> None:
        """Fail the requests past their deadline; arm the timer for the next one."""
        self.sweep, self.sweep_at = None, math.inf
        now, heap, calls = self.loop.time(), self.deadlines, self.calls
        while heap and (heap[0][0] <= now or heap[0][1] not in calls):
            _deadline, rid, timeout = heapq.heappop(heap)
            cb = calls.pop(rid, None)
            if cb is not None:
                cb(False, ShardUnavailable(f"node {self.node}'s worker at {self.endpoint} did "
                                           f"not answer within {timeout:g} s"))
        if heap:
            self._arm(heap[0][0])

    def send_call(self, cmd: str, args: dict[str, Any], timeout: float) -> asyncio.Future[Any]:
        """:meth:`request`, sent now; the future gets its result or its error."""
        fut: asyncio.Future[Any] = self.loop.create_future()

        def done(ok: bool, body: Any) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(body)
            else:
                fut.set_exception(body)
        self.request(cmd, args, timeout, done)
        return fut

    async def call(self, cmd: str, args: dict[str, Any], timeout: float) -> Any:
        """:meth:`request`, awaited: its result, or its error raised."""
        return await self.send_call(cmd, args, timeout)

    def _on_frames(self, frames: list[bytes]) -> None:
        try:
            msg = wire.unpack(frames[-1])
            status, rid, body = msg[0], msg[1], msg[2]
        except Exception:
            log.warning("a malformed reply from node %s's worker at %s was ignored",
                        self.node, self.endpoint)
            return
        cb = self.calls.pop(rid, None)
        if cb is None:
            return             # timed out already (its callback was told)
        if status == wire.OK:
            cb(True, body)
        else:
            cb(False, error_from_wire(body) if isinstance(body, dict) else ActorError(str(body)))

    def close(self) -> None:
        calls, self.calls = self.calls, {}
        if self.sweep is not None:
            self.sweep.cancel()
            self.sweep, self.sweep_at = None, math.inf
        self.deadlines.clear()
        for cb in calls.values():
            cb(False, ShardUnavailable(f"the link to node {self.node} was closed"))
        self._close_socket()
