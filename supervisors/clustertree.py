"""The tree process of a cluster node: a :class:`~supervisors.tree.Tree` that holds the
cluster's one tree only while it holds the election (``cluster.py`` has the semantics).

``starting`` (campaigning) -> ``standby`` (another node holds the tree: EXITs and
runtime-API requests go on to the holder) or -> ``starting`` (won: the record is loaded
from etcd, the supervisors boot as after a restart of the tree process, adopting the
children that run) -> ``running``. SIGTERM hands the tree over (children run on); losing
the election ends the process with ``EXIT_DEPOSED``.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from actorsys.cluster.clustermap import UNCLAIMED
from actorsys.config import NodeConfig
from actorsys.errors import ActorError, StartFailed
from actorsys.net.keys import NodeKeys
from actorsys.protocol import wire
from actorsys.protocol.messages import Exit
from actorsys.protocol.shardmap import shard_of

from .child import ChildState
from .cluster import FOLLOW_TRIES, TreeSeat
from .etcdstore import EtcdTreeStore
from .store import TreeStore
from .tree import EXIT_DEPOSED, Tree, TreeState, log
from .treehost import Held


class ClusterTree(Tree):
    """A cluster node's tree process (see the module docstring)."""

    def __init__(self, cfg: NodeConfig, meta: dict[str, Any], endpoint: str,
                 worker_endpoints: list[str], restarted: bool, router: str) -> None:
        super().__init__(cfg, meta, endpoint, worker_endpoints, restarted)
        self.router = router
        self.forwarding: set[asyncio.Task[None]] = set()   # runtime-API requests to the holder
        #: the holder waits for a forming cluster's shards to have owners (``_wait_formed``)
        self.forming = False

    # -- process ------------------------------------------------------------------------
    def _open_store(self, keys: NodeKeys | None) -> TreeStore | EtcdTreeStore:
        self.seat = TreeSeat(self.cfg, self.endpoint, keys, self._elected, self._deposed,
                             self._standby)
        return self.seat.store

    async def _begin(self) -> None:
        await self.seat.start(self.ctx)       # starting until the election says who holds it
        self.seat.follow_members(self.listener.guard)

    def _closing(self) -> None:
        self.seat.close_link()

    async def _shutdown(self) -> None:
        """SIGTERM: hand the tree over; the children run on."""
        await self.seat.resign()
        log.info("supervision tree handed over (its children run on)")
        self._finish(self.code)

    def status(self) -> dict[str, Any]:
        out = {**super().status(), "cluster": self.seat.status()}
        if self.forming:
            out["state"] = "forming"
        return out

    # -- the election -------------------------------------------------------------------
    def _elected(self, revision: int) -> None:
        self.post(self._take_over, revision)

    def _standby(self) -> None:
        if self.state is TreeState.STARTING:
            self.state = TreeState.STANDBY

    def _deposed(self) -> None:
        log.error("this node lost the cluster's supervision tree; the tree process exits "
                  "(its children run on, for the new holder to adopt)")
        self._finish(EXIT_DEPOSED)

    async def _take_over(self, revision: int) -> None:
        """This node won the election: the tree starts as a restarted tree does (adopting
        the children that run), from its record in etcd."""
        if self.state not in (TreeState.STARTING, TreeState.STANDBY):
            return
        self.host.resume_incarnations(await self.seat.store.load(revision, self.host.incarnation))
        self.restarted, self.state = True, TreeState.STARTING
        log.info("this node holds the cluster's supervision tree: adopting its children")
        try:            # the cluster's map, not this node's own
            await self.transport.refresh_map(self.cfg.ask_timeout)
        except ActorError as exc:
            log.warning("could not fetch the cluster's map from the router (%s): the tree "
                        "learns it at its first wrong_shard", exc)
        await self._wait_formed()
        self.seat.follow_shards(lambda shard: self.post(self._follow, shard))
        await self._boot()

    async def _wait_formed(self) -> None:
        """A cluster still forming (``[cluster] bootstrap_expect``: its shards not claimed
        yet) has no worker to start a child on: the supervisors boot once every shard has
        an owner, fetching the map every 0.5 s, or, past the forming wait's own bound (and
        30 s more), as they are: a child they cannot start then fails its supervisor,
        loudly, as before."""
        limit = time.monotonic() + float((self.cfg.cluster or {}).get("bootstrap_timeout", 60.0)) + 30.0
        try:
            while UNCLAIMED in (self.transport.map.down_nodes() if self.transport.map
                                else {UNCLAIMED: 1}):
                if self.state is not TreeState.STARTING:       # stopping meanwhile
                    return
                if time.monotonic() > limit:
                    log.error("the cluster has shards with no owner yet; the supervisors start anyway")
                    return
                if not self.forming:
                    self.forming = True     # (status says "forming": the node is up, waiting)
                    log.info("the cluster is forming: its supervisors start once every shard "
                             "has an owner")
                await asyncio.sleep(0.5)
                try:
                    await self.transport.refresh_map(self.cfg.ask_timeout)
                except ActorError as exc:
                    log.warning("could not fetch the cluster's map from the router (%s)", exc)
        finally:
            self.forming = False

    # -- the holder: following the shards -----------------------------------------------
    async def _follow(self, shard: int) -> None:
        """A shard moved: its running children are SPAWNed where it is now, with the
        same incarnation (adopted, or started if the move ended them): no restart."""
        for held in [h for h in self.host.index.values() if h.child.state is ChildState.RUNNING
                     and shard_of(*h.child.addr, self.map.shards) == shard]:
            await self._follow_child(held, held.child.inc, 1)

    async def _follow_child(self, held: Held, inc: int, attempt: int) -> None:
        if held.child.state is not ChildState.RUNNING or held.child.inc != inc:
            return          # it exited, was stopped or restarted meanwhile
        self.counters["followed"] = self.counters.get("followed", 0) + 1
        try:
            await self.host.start_actor(held.sup.name, held.child)
        except StartFailed as exc:
            if attempt < FOLLOW_TRIES:
                self.later(0.25 * 2 ** (attempt - 1), self._follow_child, held, inc, attempt + 1)
                return
            log.warning("child '%s' of '%s' could not follow its shard: %s", held.child.id,
                        held.sup.name, exc)
            await held.sup.on_exit(held.child, "killed", inc)

    # -- a standby: on to the holder ----------------------------------------------------
    async def _on_exit(self, sup_name: str, cid: str, type_name: str, key: str, inc: int,
                       reason: str, detail: str) -> None:
        if self.state is TreeState.STANDBY:
            self.seat.forward_exit(Exit(0, sup_name, cid, type_name, key, inc, reason,
                                        detail).encode())
            return
        await super()._on_exit(sup_name, cid, type_name, key, inc, reason, detail)

    async def _admin(self, envelope: tuple[bytes, ...], rid: int, name: str, command: str, arg: Any,
                     deadline: float | None = None) -> None:
        if self.state is not TreeState.STANDBY:
            return await super()._admin(envelope, rid, name, command, arg, deadline)
        # forwarded at once, answered when the holder answers: the queue does not wait
        task = self.loop.create_task(self._forward_sup(envelope, rid, name, command, arg, deadline))
        self.forwarding.add(task)
        task.add_done_callback(self.forwarding.discard)

    async def _forward_sup(self, envelope: tuple[bytes, ...], rid: int, name: str, command: str,
                           arg: Any, deadline: float | None) -> None:
        timeout = (deadline - time.time()) if deadline is not None else self.cfg.ask_timeout
        try:
            result = await self.seat.forward_sup(self.cfg.max_message_bytes, name, command, arg,
                                                 deadline, max(timeout, 0.001))
        except ActorError as exc:
            self._reply_err(envelope, rid, exc)
            return
        self._reply(envelope, wire.ok(rid, result))
