"""Fail fast when a client's node is unreachable (the clients' transports only).

A client (``actorsys.connect``, ``actorsys.connect_async``) watches its connection to
the node's router with a ZeroMQ socket monitor, and each worker slot's connection with
the monitor that already reports worker loss; the node's own processes do not watch.

* The router's connection dropping (``EVENT_DISCONNECTED``) starts a grace period of
  ``connect_timeout`` (:attr:`Phase.LOST`). During it everything goes on as before:
  requests are queued by ZeroMQ for a node that is restarting, a request in flight on a
  worker that went away fails with ``WorkerLost``.
* If the router is not back when the grace period ends, the node is unreachable
  (:attr:`Phase.DOWN`): every request still pending fails with
  :class:`~actorsys.errors.NodeUnavailable` saying since when and what is disconnected;
  the connections to the worker slots are closed, discarding what was queued for them
  (an ask already failed must not run later, nor a tell arrive minutes late); from then
  on an ask, spawn or tell raises ``NodeUnavailable`` at the call.
* When the router's connection is back (``EVENT_HANDSHAKE_SUCCEEDED``: the connection
  is usable, CURVE or not) the client fetches the shard map again and works again: at
  once if it was only :attr:`Phase.LOST` (the map is fetched in the background, since a
  node restarted on the same endpoint may have moved its workers), once the map is in
  if it was :attr:`Phase.DOWN`.
* A watch starts :attr:`Phase.LOST` at its creation: a connection that never comes up
  is the same as one that went down then.

Several routers (a cluster: ``connect([ep1, ep2, ...])``): the node is the cluster, and
it is unreachable only when none of its routers answers. A transport talks to one
router at a time; when that connection drops it moves to the next router of its list at
once (:meth:`AsyncTransport.next_router`), and on to the next every
``connect_timeout / len(routers)`` (at least :data:`ROTATE_MIN_S`) while none comes up,
round and round; the first that comes up ends the grace period as above (its map is
fetched). The grace period is not restarted by a move: ``NodeUnavailable`` comes when no
router has been up for ``connect_timeout``, and names them all. The connections to the
worker slots of other nodes are not concerned by a router's loss, but they are closed
with the rest when the cluster is DOWN. (At connect time each router gets its own
``connect_timeout``: :meth:`AsyncTransport.connect`.)

A node of a cluster that goes away takes its worker slots with it, while the router in
use stays up: asks in flight there fail with ``WorkerLost`` as always, and the shards'
owner in the map changes only when the cluster has noticed (its etcd lease expired) and
the map then marks them ``ShardUnavailable``. So a client of a cluster
(:attr:`ShardMap.nodes` set) with a worker endpoint disconnected fetches the map again
every :data:`~.cluster_refresh.CLUSTER_REFRESH_S` until that endpoint is back or gone
from the map, and so does one whose map has a node down (its shards
``ShardUnavailable``), until the map has it back: nothing else would tell the client
that the node returned; a map without it fails what was queued for it with
``WorkerLost`` at once (not at the asks' deadline) and sends nothing there any more
(:mod:`.maps`). The blocking client does it at its calls and while a call waits for its
reply. That schedule is :mod:`.cluster_refresh`'s.

A worker restart alone (router up) is not unavailability: asks there get ``WorkerLost``
and later ones wait in ZeroMQ's queue for the restarted worker, as always.

A node whose processes end (stop, crash, ``kill -9``) closes their connections, which
the kernel reports at once. To tell a node that is gone without closing them (its host
lost, a partition, a frozen router) from an idle one, the router connection carries
libzmq's ZMTP heartbeats (:meth:`NodeWatch.heartbeat`: three pings per grace period,
answered by the router's libzmq I/O thread, no message of ours, one small frame per
client thread): a router silent for the grace period is dropped, which starts the
grace period above, so such a node is unreachable after about twice
``connect_timeout``.

Timing: the asyncio client reads the monitors from its loop, with one timer for the
grace deadline. The blocking client reads them when it is called: the router's monitor
at a call (at most every :data:`GLANCE_S`) and, while a call waits for its reply, every
quarter of the grace period, or together with the slot's socket once the node is in
doubt (:meth:`NodeWatch.poll`). Its threads share one :class:`Reachability`. A blocking
client idle on every thread when the node went away notices it at its next call, which
then gets the full grace period.

:class:`Reachability` is the state machine (no sockets, no clock: the time is passed
in); :class:`NodeWatch` ties it to a transport's sockets and loop, with a
:class:`~.cluster_refresh.ClusterRefresh` for a cluster's map.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

import zmq

from ..errors import ActorError, NodeUnavailable
from ..log import get_logger
from .cluster_refresh import CLUSTER_REFRESH_S as CLUSTER_REFRESH_S
from .cluster_refresh import ClusterRefresh

if TYPE_CHECKING:
    from ..net.sockets import Conn
    from ..protocol.shardmap import ShardMap
    from .transport import AsyncTransport

log = get_logger("client")

#: the events a watched connection's monitor reports (besides the CURVE failures)
WATCH_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
_DISCONNECTED, _UP = int(zmq.EVENT_DISCONNECTED), int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
#: a blocking call reads the router's monitor if this long has passed since the last did
#: (calls in a tight loop would otherwise pay a getsockopt each, ~3% of a round trip)
GLANCE_S = 0.01
#: with several routers, the shortest time given to one to come up before the next is tried
ROTATE_MIN_S = 0.25


class Phase(Enum):
    """How the client sees its node."""
    UP = "up"        # the router's connection is up
    LOST = "lost"    # it is down, for less than the grace period: requests go on
    DOWN = "down"    # down for the grace period or more (or back, its map not yet fetched)


@dataclass(slots=True)
class Reachability:
    """The state machine of one client's view of its node (shared by the transports of
    a blocking client's threads: each thread's router connection feeds it).

    Invariants: ``since`` is when the router's connection was last lost (or the watch
    began), meaningful outside UP; DOWN is left only by :meth:`map_fetched` with the
    router up; ``downs`` counts the entries into DOWN (a transport that has not yet
    handled the latest drops its slots' connections); ``map_due`` is set when a router
    connection came back after having been up, or while DOWN (a node restarted on the
    same endpoint may have other worker endpoints). Methods are called from one thread
    at a time per transport; between a blocking client's threads a race can at worst
    count one entry into DOWN twice, which only makes a transport drop nothing twice."""
    endpoint: str
    grace: float                  # seconds the router may be gone before the node is DOWN
    since: float
    phase: Phase = Phase.LOST
    router_up: bool = False
    map_due: bool = False
    seen_up: bool = False         # the router's connection has been up at least once
    downs: int = 0                # entries into DOWN so far
    slots_down: set[int] = field(default_factory=set)   # slot connections that dropped
    others: tuple[str, ...] = ()  # a cluster's other routers (named in the error)

    @property
    def deadline(self) -> float | None:
        """When a LOST router makes the node DOWN (None: not LOST)."""
        return self.since + self.grace if self.phase is Phase.LOST else None

    def router_lost(self, now: float) -> None:
        self.router_up = False
        self.lost(now)

    def lost(self, since: float) -> None:
        """The node is not reachable since ``since`` (a router connection that never came
        up within the grace period)."""
        if self.phase is Phase.UP:
            self.phase, self.since = Phase.LOST, since

    def router_back(self, again: bool) -> None:
        """A router connection is up: ``again`` if that connection had been up before."""
        self.router_up = True
        if again or self.phase is Phase.DOWN:
            self.map_due = True
        self.seen_up = True
        if self.phase is Phase.LOST:
            self.phase = Phase.UP

    def slot_lost(self, slot: int) -> None:
        self.slots_down.add(slot)

    def slot_back(self, slot: int) -> None:
        self.slots_down.discard(slot)

    def expire(self, now: float) -> bool:
        """LOST past its grace period becomes DOWN: True when it did just now."""
        if self.phase is Phase.LOST and now >= self.since + self.grace:
            self.phase = Phase.DOWN
            self.downs += 1
            self.router_up = False    # only a connection that comes up from now on is "back"
            return True
        return False

    def restart(self, now: float) -> None:
        """A new connect to another router: its own grace period, from ``now``."""
        self.phase, self.since, self.router_up, self.seen_up = Phase.LOST, now, False, False

    def map_fetched(self) -> None:
        """The map was fetched again: a DOWN node whose router is back is UP."""
        self.map_due = False
        if self.phase is Phase.DOWN and self.router_up:
            self.phase = Phase.UP
            self.slots_down.clear()      # their connections were closed; new ones are made

    def why(self, now: float) -> str:
        """The text of the NodeUnavailable a DOWN node raises."""
        gone = round(max(now - self.since, 0.0), 1)
        where = f"the node at {self.endpoint}" if not self.others else \
            f"the cluster (routers {', '.join((self.endpoint, *self.others))})"
        if self.router_up:
            return (f"{where} was unreachable for {gone:g} s; its router "
                    f"is back and the client is fetching its shard map: try again")
        what = "router not connected" if not self.seen_up else "router"
        if self.slots_down:
            many = len(self.slots_down) > 1
            slots = ", ".join(str(s) for s in sorted(self.slots_down))
            what += f" and worker slot{'s' if many else ''} {slots}"
        if self.seen_up:
            what += " disconnected"
        if self.others:
            what = what.replace("router", "every router", 1)
        return (f"{where} has been unreachable for {gone:g} s ({what}); "
                f"the client reconnects by itself when the node is back")


class NodeWatch:
    """One transport's router connection and slots, feeding a :class:`Reachability` and
    acting on it (see the module docstring). Made by :meth:`AsyncTransport.watch_node`."""

    __slots__ = ("transport", "loop", "state", "router", "_born", "_was_up", "_downs",
                 "_timer", "_fetch", "_glance_at", "tells_in_doubt", "_rotate_at", "cluster")

    def __init__(self, transport: "AsyncTransport", grace: float,
                 state: Reachability | None = None) -> None:
        self.transport = transport
        self.loop = transport.loop
        self._born = now = self.loop.time()       # loop time is time.monotonic()
        self.state = Reachability(str(transport.router_endpoint), grace, now,
                                  others=tuple(transport.routers[1:])) \
            if state is None else state
        self.router: Conn | None = None            # the watched router connection
        self._was_up = False                       # this router connection has been up
        self._downs = self.state.downs             # the entries into DOWN handled here
        self._timer: asyncio.TimerHandle | None = None
        self._fetch: asyncio.Task[None] | None = None
        self._glance_at = 0.0                      # monotonic time of on_call's next glance
        #: tells sent while the router was lost: discarded if the node goes DOWN (logged)
        self.tells_in_doubt = 0
        #: when to move on to the next router (None: one router, or this one is up)
        self._rotate_at: float | None = None
        #: when a cluster's map is fetched again (a worker endpoint down, a node down)
        self.cluster = ClusterRefresh(transport, self._fetch_now)
        self._arm()

    def heartbeat(self) -> tuple[int, int]:
        """ZMTP heartbeats of the router connection, ``(interval, timeout)`` in ms: a
        router silent for the grace period (frozen, or its host gone without closing the
        connection) is dropped, after three pings; answered by the router's libzmq, no
        message of ours."""
        timeout = max(self.state.grace, 0.3)
        return int(timeout * 1000 / 3), int(timeout * 1000)

    @property
    def deadline(self) -> float | None:
        """When this transport must look again: the state's grace deadline, or the end of
        the grace period for this router connection's first coming up."""
        deadline = self.state.deadline
        if not self._was_up:
            first = self._born + self.state.grace
            deadline = first if deadline is None else min(deadline, first)
        if self._rotate_at is not None:
            deadline = self._rotate_at if deadline is None else min(deadline, self._rotate_at)
        return deadline

    # -- events ------------------------------------------------------------------------
    def on_router_event(self, event: int) -> None:
        if event == _DISCONNECTED:
            self.state.router_lost(self.loop.time())
            if len(self.transport.routers) > 1:    # move on at once (not from its own monitor)
                self._rotate_at = self.loop.time()
                self._disarm()
            self._arm()
        elif event == _UP:
            was, again = self.state.phase, self._was_up
            self._was_up = True
            self._rotate_at = None
            self.state.router_back(again)
            self.tells_in_doubt = 0                # queued, and delivered on reconnecting
            self._disarm()
            if was is Phase.DOWN:
                log.info("the router at %s is back: fetching the shard map", self.state.endpoint)
            if self.state.map_due:
                self._start_fetch()

    def on_slot_event(self, slot: int, event: int) -> None:
        if event == _DISCONNECTED:
            self.state.slot_lost(slot)
        elif event == _UP:
            self.state.slot_back(slot)
        self.cluster.slot_event(slot, event)

    def map_installed(self, m: ShardMap) -> None:
        """A new map is in use (see :meth:`~.cluster_refresh.ClusterRefresh.map_installed`)."""
        self.cluster.map_installed(m)

    @property
    def fetching(self) -> bool:
        """A map fetch is under way (a blocking wait returns to run the loop for it)."""
        return self._fetch is not None and not self._fetch.done()

    def _arm(self) -> None:
        deadline = self.deadline
        if deadline is not None and self._timer is None:
            self._timer = self.loop.call_at(deadline, self._on_deadline)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_deadline(self) -> None:
        self._timer = None
        self.expire()
        self._arm()          # lost again after the timer was armed: its own deadline

    def use_router(self, router: "Conn", fresh: bool) -> None:
        """The transport talks to another router now (:meth:`AsyncTransport.use_router`):
        watch its connection. ``fresh`` (a connect): a grace period of its own from now;
        else (a move after a loss) the next move is due if it does not come up in its
        share of the grace period."""
        self.router = router
        now = self.loop.time()
        if fresh:
            self._born, self._was_up, self._rotate_at = now, False, None
            self.state.restart(now)
        else:
            share = self.state.grace / max(len(self.transport.routers), 1)
            self._rotate_at = now + max(share, ROTATE_MIN_S)
        self._disarm()
        self._arm()

    def connected(self) -> None:
        """A connect got the map from this router: the node is reachable."""
        if self.state.phase is Phase.DOWN:      # its monitor's news may come after the reply
            self.state.router_up = True
        self.state.map_fetched()

    def expire(self) -> None:
        """If the grace period is over, the node is DOWN; once the node has gone DOWN,
        fail what is pending here and drop the slots' connections (with what is queued
        on them)."""
        state, now = self.state, self.loop.time()
        if self._rotate_at is not None and now >= self._rotate_at:
            self._rotate_at = None
            self.transport.next_router()      # sets the next _rotate_at
        if not self._was_up and now >= self._born + state.grace:
            state.lost(self._born)          # never came up: as if lost when it was made
        made = state.expire(now)
        if state.downs == self._downs:
            return
        self._downs = state.downs
        why = state.why(now)
        n = self.transport.drop_node(lambda _p: NodeUnavailable(why))
        tells, self.tells_in_doubt = self.tells_in_doubt, 0
        if made or n or tells:
            # (a client that never had the map loses nothing but the map's own fetch, and
            # its connect raises NodeUnavailable saying so: a warning as well would only
            # repeat it, e.g. at every probe of an embedded node that is still starting)
            level = logging.WARNING if self.transport.map is not None else logging.DEBUG
            log.log(level, "%s (%d pending request(s) failed with NodeUnavailable; %d tell(s) "
                    "sent since the router was lost were discarded)", why, n, tells)

    # -- calls -------------------------------------------------------------------------
    def check(self) -> None:
        """Before an ask or tell: NodeUnavailable if the node is DOWN."""
        state = self.state
        if state.phase is Phase.UP and self._was_up and state.downs == self._downs:
            return
        self.expire()
        if state.phase is Phase.DOWN:
            if state.router_up:
                self._start_fetch()
            raise NodeUnavailable(state.why(self.loop.time()))

    def sent_tell(self) -> None:
        """A tell was sent: counted if the router is lost (it may be discarded)."""
        if self.state.phase is not Phase.UP:
            self.tells_in_doubt += 1

    def on_call(self) -> bool:
        """A blocking call begins: read the router's monitor (at most every
        :data:`GLANCE_S`: a call after a pause always does); True if the map must be
        fetched first (:meth:`fetch_map`)."""
        now = time.monotonic()
        if now >= self._glance_at:
            self._glance_at = now + GLANCE_S
            self.glance()
        return (self.state.map_due and self.state.router_up) or (
            self.cluster.watching and self.cluster.due())

    def glance(self) -> None:
        """Handle what the router's monitor reported (nothing to do costs a getsockopt)."""
        router = self.router
        if router is not None and router.monitor is not None \
                and cast(int, router.monitor.getsockopt(_EVENTS)) & _POLLIN:
            router.drain_monitor()

    def poll(self, c: "Conn", timeout_ms: int) -> dict[Any, int]:
        """The transport's :meth:`~.transport.AsyncTransport.poll_slots` for a blocking
        wait, also woken by the router's monitor and by the grace deadline. Nothing is
        ready if the node just went DOWN (``c`` is closed then, its request failed).
        While all is well it polls the slots alone (cheaper on the hot path), glancing at
        the router's monitor every quarter of the grace period (a node that stops drops
        the slot's connection too, and then this watches both; a frozen one only the
        router's, by its heartbeats)."""
        state = self.state
        if state.phase is Phase.UP and self._was_up and not state.slots_down \
                and not self.cluster.watching:
            ready = self.transport.poll_slots(c, min(timeout_ms, max(int(state.grace * 250), 50)))
            if not ready:
                self.glance()
            return ready
        deadline = self.deadline
        if self.cluster.watching:   # wake to fetch the cluster's map
            refresh_at = self.cluster.refresh_at
            deadline = refresh_at if deadline is None else min(deadline, refresh_at)
        if deadline is not None:
            timeout_ms = min(timeout_ms, max(math.ceil((deadline - self.loop.time()) * 1000), 0))
        downs = self._downs
        ready = self.transport.poll_slots(c, timeout_ms, self.router.monitor if self.router else None)
        if self.router is not None and self.router.monitor in ready:
            self.router.drain_monitor()
        if self.state.phase is not Phase.UP or not self._was_up:
            self.expire()
        if not ready and self.cluster.watching:
            self.cluster.tick()      # started on this loop, run when the waiting call returns to it
        return {} if self._downs != downs else ready

    # -- the map -----------------------------------------------------------------------
    def _start_fetch(self) -> None:
        """In the background, on a running loop (a blocking lane's is run by its next
        call: :meth:`on_call`)."""
        if self.loop.is_running():
            self._fetch_now()

    def _fetch_now(self) -> None:
        """In the background, unless a fetch is under way (on a loop not running, it runs
        when a blocking call returns to it)."""
        if self._fetch is None or self._fetch.done():
            self._fetch = self.loop.create_task(self._fetch_map())

    async def fetch_map(self) -> None:
        """Fetch the map now (or wait for the fetch under way); failures are logged, and
        the next call tries again."""
        if self._fetch is not None and not self._fetch.done():
            await asyncio.shield(self._fetch)
        else:
            await self._fetch_map()

    async def _fetch_map(self) -> None:
        try:
            await self.transport.refresh_map(timeout=max(self.state.grace, 1.0))
        except ActorError as exc:
            log.info("fetching the shard map from %s again failed: %s", self.state.endpoint, exc)
            return
        if self.state.phase is Phase.DOWN:
            log.info("the node at %s is reachable again", self.state.endpoint)
        self.state.map_fetched()

    def close(self) -> None:
        """The transport is closing (its sockets with it)."""
        self.router = None
        self._disarm()
        self.cluster.close()
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()
