"""The supervision tree of a cluster node (``[cluster]``): one tree for the whole cluster.
(:class:`TreeSeat` here: its election, record and link to the holder; the tree process
that uses it: ``clustertree.py``.)

Every cluster node with ``[supervisors]`` runs a tree process; they campaign in the
election ``/actorsys/<cluster>/tree`` (``actorsys/cluster/election.py``), and only the
holder supervises. In the user's words:

* **The holder** runs the supervisors exactly as a tree process restarted on one node
  does (``Boot.HOST_RESTART``): it builds them from the config and the tree's record,
  and SPAWNs each child; a SPAWN of a child whose supervision record says it runs (same
  supervisor and child id, still in memory) *adopts* it (``runtime/children.py``): it is
  neither started twice nor lost. A child that exited while no tree held the election
  (its EXIT went nowhere) is not running, so the same SPAWN starts it again. Children
  live wherever their shards are: the tree reaches them through its node's router's
  shard map.
* **The tree's record** (dynamic children, run-time stops and deletions, supervised
  addresses, the incarnation floor) lives in etcd, ``supervisors/etcdstore.py``, so it
  moves with the tree. A cluster has no "node start" of its tree: run-time stops,
  deletions and temporary children are kept while the record is (a node start of one
  node does not reset the cluster's tree).
* **A standby** tree (another node holds the election) supervises nothing. Its
  STATUS says ``standby`` and who holds the tree; the EXITs its node's workers send it
  (workers always report to their own node's tree) are forwarded to the holder's tree;
  a runtime-API request (``actorsys supervisors ...``) is forwarded to the holder and
  its answer relayed (or, if nobody holds the tree now, refused naming that).
* **Losing the election** (the lease not renewed within 90% of ``lease_ttl``, or a
  write to the record refused): the holder's process exits with status
  ``tree.EXIT_DEPOSED`` (5) without stopping any child; the node supervisor restarts it and
  it stands by (the new holder adopts the children).
* **Following the shards**: the holder watches the shards' owners
  (``/actorsys/<cluster>/shards/``, ``cluster/ownership.py``); when a shard's move ends
  (its record has a new owner or epoch and no ``to``: the flip, or a rollback), it
  SPAWNs each of the shard's running children again with the same incarnation, where
  the shard is now: adopted if it still runs, started (``on_start``) if the move ended
  its activation. That is not a restart (no restart intensity). A SPAWN refused (the
  new owner not granted yet) is tried again :data:`FOLLOW_TRIES` times, 0.25 s apart
  and doubling; then the child counts as ``killed``.
* **SIGTERM** (the node stops): the tree hands over without stopping its children: it
  waits (bounded) for its record's writes, resigns, and exits; another node's tree
  takes the election at once and adopts them. (A cluster's children stop when their
  shards' nodes stop, not when the tree moves.)
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Callable

import zmq

from actorsys.cluster.election import RETRY, WATCH_CANCEL_TIMEOUT, Election, Holder, tree_key
from actorsys.cluster.membership import connect
from actorsys.cluster.membership import prefix
from actorsys.config import NodeConfig
from actorsys.config.cluster import ClusterConfig
from actorsys.errors import ActorError, NodeUnavailable, SupervisorError
from actorsys.log import get_logger
from actorsys.net.members import apply_member_keys, member_keys
from actorsys.net.keys import CurveKeys, NodeKeys
from actorsys.net.sockets import dealer
from actorsys.protocol.messages import Sup
from actorsys.client.requests import no_answer
from actorsys.client.transport import AsyncTransport

from .etcdstore import EtcdTreeStore

log = get_logger("supervisors.cluster")

#: SPAWNs of a child whose shard moved, before it counts as killed
FOLLOW_TRIES = 5
#: seconds a tree stopping waits for its record's writes before it resigns
FLUSH_GRACE = 5.0


class TreeSeat:
    """A tree process's place in its cluster: the election, the record in etcd, and the
    link to the holder while on standby (see the module docstring).

    ``on_elected(revision)`` is called once, when this tree wins; ``on_deposed()`` when
    it loses what it won; ``on_standby()`` whenever another node holds the tree while
    this one has not won it."""

    def __init__(self, cfg: NodeConfig, endpoint: str, keys: NodeKeys | None,
                 on_elected: Callable[[int], None], on_deposed: Callable[[], None],
                 on_standby: Callable[[], None]) -> None:
        assert cfg.cluster is not None
        self.ccfg = ClusterConfig(**cfg.cluster)
        self.endpoint, self.keys = endpoint, keys
        self.on_elected, self.on_deposed, self.on_standby = on_elected, on_deposed, on_standby
        self.elected = False
        self.counters = {"exits_forwarded": 0, "exits_dropped": 0, "sup_forwarded": 0}
        self._client: Any = None
        self.election: Election | None = None
        #: the tree's record (connected to etcd by :meth:`start`, loaded when this tree wins)
        self.store = EtcdTreeStore(None, prefix(self.ccfg.name) + b"treestore/",
                                   tree_key(self.ccfg.name), self._fenced)
        self._fwd: zmq.Socket[Any] | None = None
        self._fwd_to: str | None = None
        self._sup: AsyncTransport | None = None
        self._sup_to: str | None = None
        self.ctx: zmq.Context[Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def node_id(self) -> str:
        return self.ccfg.node_id

    async def start(self, ctx: zmq.Context[Any]) -> None:
        """Connect to etcd (NodeUnavailable if no etcd answers) and campaign."""
        self.ctx = ctx
        c, _target = await connect(self.ccfg)
        self._client = self.store.client = c
        public = self.keys.public.decode() if self.keys is not None else None
        self.election = Election(c, self.ccfg.name, self.node_id, self.endpoint, public,
                                 self.ccfg.lease_ttl, on_change=self._changed)
        await self.election.start()

    @property
    def holder(self) -> Holder | None:
        return self.election.holder if self.election is not None else None

    def _changed(self, holder: Holder | None, leader: bool) -> None:
        if leader and not self.elected:
            self.elected = True
            assert holder is not None
            self.on_elected(holder.revision)
        elif self.elected and not leader:
            self.on_deposed()
        elif not self.elected and holder is not None:
            self.on_standby()

    def _fenced(self) -> None:
        if self.elected:
            self.on_deposed()

    # -- the holder ---------------------------------------------------------------------
    def follow_shards(self, on_moved: Callable[[int], None]) -> None:
        """Call ``on_moved(shard)`` after each change of a shard's owner or epoch."""
        self._tasks.append(asyncio.get_running_loop().create_task(self._watch_shards(on_moved)))

    async def _watch_shards(self, on_moved: Callable[[int], None]) -> None:
        pfx = prefix(self.ccfg.name) + b"shards/"
        seen: dict[bytes, tuple[Any, Any] | None] = {}

        def record(value: bytes) -> tuple[Any, Any] | None:
            """(owner, epoch); None while the shard is being handed off ("to")."""
            try:
                d = json.loads(value)
                return None if d.get("to") is not None else (d.get("owner"), d.get("epoch"))
            except (ValueError, AttributeError):
                return (None, None)
        while True:
            try:
                watch = await self._client.watch_prefix(pfx)      # first, then the baseline
                seen = {kv.key: record(kv.value) for kv in await self._client.get_prefix(pfx)}
                try:
                    async for ev in watch:
                        rec = record(ev.kv.value) if ev.kind == "PUT" else (None, None)
                        if rec is not None and seen.get(ev.kv.key) != rec:
                            seen[ev.kv.key] = rec
                            with contextlib.suppress(ValueError):
                                on_moved(int(ev.kv.key[len(pfx):]))
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(watch.cancel(), WATCH_CANCEL_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching the shards' owners: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(RETRY)

    # -- the members' keys -----------------------------------------------------------------
    def follow_members(self, guard: Any) -> None:
        """Let in the CURVE keys of the cluster's live members (``net/members.py``): the
        trees of the other nodes forward EXITs and admin requests to this one."""
        if guard is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._watch_members(guard)))

    async def _watch_members(self, guard: Any) -> None:
        pfx = prefix(self.ccfg.name) + b"nodes/"

        async def apply() -> None:
            keys = []
            for kv in await self._client.get_prefix(pfx):
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    keys.append(json.loads(kv.value).get("public_key"))
            apply_member_keys(guard, member_keys(keys))
        while True:
            try:
                watch = await self._client.watch_prefix(pfx)      # first, then the baseline
                await apply()
                try:
                    async for _ev in watch:
                        await apply()
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(watch.cancel(), WATCH_CANCEL_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching the members' keys: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(RETRY)

    # -- standby ------------------------------------------------------------------------
    def _holder_keys(self, h: Holder) -> CurveKeys | None:
        if self.keys is None or not h.endpoint.startswith("tcp://"):
            return None
        server = h.public_key.encode() if h.public_key else self.keys.public
        return CurveKeys(self.keys.public, self.keys.secret, server)

    def forward_exit(self, payload: bytes) -> None:
        """An EXIT from this node's worker: on to the holder's tree (dropped if nobody
        holds it: the next holder's adoption restarts the child)."""
        h = self.holder
        if h is None or h.node_id == self.node_id or self.ctx is None:
            self.counters["exits_dropped"] += 1
            log.warning("an EXIT arrived while no tree holds the election: dropped (the "
                        "next holder restarts the child when it adopts the children)")
            return
        if self._fwd_to != h.endpoint:
            if self._fwd is not None:
                self._fwd.close(0)
            self._fwd = dealer(self.ctx, h.endpoint, self._holder_keys(h))
            self._fwd_to = h.endpoint
        try:
            assert self._fwd is not None
            self._fwd.send(payload, zmq.NOBLOCK)
            self.counters["exits_forwarded"] += 1
        except zmq.ZMQError as exc:
            self.counters["exits_dropped"] += 1
            log.warning("could not forward an EXIT to the tree on node %s: %s", h.node_id, exc)

    def _to_holder(self, h: Holder, max_message_bytes: int) -> AsyncTransport:
        """A transport to the holder's tree (CURVE with the holder's public key)."""
        if self._sup is None or self._sup_to != h.endpoint:
            if self._sup is not None:
                self._sup.close()
            assert self.ctx is not None
            self._sup = AsyncTransport(self.ctx, None, max_message_bytes=max_message_bytes,
                                       keys=self._holder_keys(h))
            self._sup_to = h.endpoint
        return self._sup

    async def forward_sup(self, max_message_bytes: int, name: str, command: str, arg: Any,
                          deadline: float | None, timeout: float) -> Any:
        """A runtime-API request made to this standby tree, carried out by the holder."""
        h = self.holder
        if h is None or h.node_id == self.node_id:
            raise NodeUnavailable(f"no node holds the supervision tree of cluster "
                                  f"{self.ccfg.name!r} now (an election is under way): try again")
        self.counters["sup_forwarded"] += 1
        transport = self._to_holder(h, max_message_bytes)
        who = f"the supervision tree on node {h.node_id} ({h.endpoint})"
        try:
            return await transport.request_peer(
                h.endpoint, lambda rid: Sup(rid, name, command, arg, deadline), timeout,
                no_answer(who, timeout))
        except ActorError:
            raise
        except Exception as exc:
            raise SupervisorError(f"forwarding {command} to {who}: {type(exc).__name__}: {exc}") from None

    def status(self) -> dict[str, Any]:
        h = self.holder
        return {"cluster": self.ccfg.name, "node_id": self.node_id, "holder": None if h is None else
                {"node_id": h.node_id, "endpoint": h.endpoint}, **self.counters}

    # -- leaving ------------------------------------------------------------------------
    async def resign(self) -> None:
        """Hand the tree over (its record's writes first, bounded) and disconnect."""
        if self.elected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.flushed(), FLUSH_GRACE)
        for t in self._tasks:
            t.cancel()
        if self.election is not None:
            await self.election.resign()
        self.close_link()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

    def close_link(self) -> None:
        if self._fwd is not None:
            self._fwd.close(0)
            self._fwd = None
        if self._sup is not None:
            self._sup.close()
            self._sup = None
        self.store.close()
