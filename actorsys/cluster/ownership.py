"""Shard ownership in etcd.

Each shard has one key, ``/actorsys/<cluster>/shards/<shard, 5 digits>`` = JSON
``{"owner": node_id, "epoch": n, "to": node_id?, "followers": [ids]?, "learners": [ids]?}``,
with no lease: ownership outlives a dead node (its shards answer ``ShardUnavailable``
until it returns, or, replicated, until a follower takes over: ``cluster/replicas.py``).
Every change of owner is one etcd transaction that compares the key's ``mod_revision``
with the one the changer read and bumps ``epoch``: of two nodes changing the same shard,
one wins, and the epoch is the fencing token a worker checks (a turn from a stale epoch
is refused). A change of ``followers`` or ``learners`` alone (``[cluster] replicas`` > 1)
compares the revision the same way but keeps the epoch: only a change of owner bumps it.

``followers`` (voters: their acknowledgements count toward a write's quorum; failover
promotes one) and ``learners`` (being filled: they receive the stream, their
acknowledgements do not count, they are never promoted) never name the owner, nor each
other; absent = empty (the records of an unreplicated cluster do not change).

``to`` marks a handoff under way (``cluster/handoff.py``): the owner is moving the shard's
data to that node and still owns it; the owner's next change either completes the move
(``owner = to``) or rolls it back (``to`` removed), each with the next epoch.

Claims of unowned shards (a new cluster's first node) go in transactions of
:data:`BATCH` shards (etcd's default limit is 128 operations per transaction).
"""
from __future__ import annotations

import json
from typing import Any, NamedTuple

from .membership import prefix

#: shards claimed per etcd transaction
BATCH = 64


class Owned(NamedTuple):
    """A shard's ownership record, with the revision a change must compare against."""
    owner: str
    epoch: int
    revision: int
    #: the node a handoff is moving it to (None: none under way)
    to: str | None = None
    #: the voting replicas besides the owner, in the order they were added
    followers: tuple[str, ...] = ()
    #: replicas being filled (not voting, never promoted)
    learners: tuple[str, ...] = ()

    @property
    def voters(self) -> tuple[str, ...]:
        """The owner and its followers: the replicas whose acknowledgements count."""
        return (self.owner,) + self.followers

    @property
    def replicas(self) -> tuple[str, ...]:
        """Every node holding (or filling) a copy: owner, followers, learners."""
        return (self.owner,) + self.followers + self.learners


def parse(value: bytes, revision: int) -> Owned:
    """A record as stored (JSON) -> :class:`Owned`; ValueError if malformed."""
    try:
        d = json.loads(value)
        followers, learners = d.get("followers") or [], d.get("learners") or []
        if not isinstance(followers, list) or not isinstance(learners, list):
            raise TypeError("followers and learners are lists")
        return Owned(str(d["owner"]), int(d["epoch"]), revision,
                     None if d.get("to") is None else str(d["to"]),
                     tuple(str(n) for n in followers), tuple(str(n) for n in learners))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"malformed shard record {value[:200]!r}") from exc


def encode(owner: str, epoch: int, to: str | None = None, followers: tuple[str, ...] = (),
           learners: tuple[str, ...] = ()) -> bytes:
    """A record as stored (empty ``followers`` / ``learners`` are left out)."""
    d: dict[str, object] = {"owner": owner, "epoch": epoch}
    if to is not None:
        d["to"] = to
    if followers:
        d["followers"] = list(followers)
    if learners:
        d["learners"] = list(learners)
    return json.dumps(d).encode()


def record(r: Owned) -> bytes:
    """:func:`encode` of a whole :class:`Owned`."""
    return encode(r.owner, r.epoch, r.to, r.followers, r.learners)


class Ownership:
    """The shard keys of one cluster in etcd (``client``: a connected ``aetcd.Client``)."""

    def __init__(self, client: Any, cluster: str) -> None:
        self.client = client
        self.shards_prefix = prefix(cluster) + b"shards/"

    def key(self, shard: int) -> bytes:
        return self.shards_prefix + b"%05d" % shard

    async def read(self) -> dict[int, Owned]:
        """Every owned shard's record."""
        out = {}
        for kv in await self.client.get_prefix(self.shards_prefix):
            shard = self.shard_of(kv.key)
            if shard is not None:
                out[shard] = parse(kv.value, kv.mod_revision)
        return out

    def shard_of(self, key: bytes) -> int | None:
        """The shard a key of this prefix is about (None: not a shard key)."""
        tail = key[len(self.shards_prefix):]
        return int(tail) if key.startswith(self.shards_prefix) and tail.isdigit() else None

    async def claim(self, shards: list[int], node_id: str,
                    member_key: bytes | None = None) -> list[int]:
        """Make ``node_id`` the owner (epoch 1) of those of ``shards`` nobody owns yet;
        the shards it got. ``member_key``: ``node_id``'s membership record, which each
        transaction requires to exist (a claim for another member is not written once
        that member is gone)."""
        c, got = self.client, []
        value = encode(node_id, 1)
        alive = [c.transactions.version(member_key) > 0] if member_key is not None else []
        for i in range(0, len(shards), BATCH):
            batch = shards[i:i + BATCH]
            ok, _ = await c.transaction(
                compare=[*alive, *(c.transactions.version(self.key(s)) == 0 for s in batch)],
                success=[c.transactions.put(self.key(s), value) for s in batch], failure=[])
            if ok:
                got.extend(batch)
                continue
            for s in batch:          # some were taken meanwhile (or the member left): one at a time
                ok, _ = await c.transaction(
                    compare=[*alive, c.transactions.version(self.key(s)) == 0],
                    success=[c.transactions.put(self.key(s), value)], failure=[])
                if ok:
                    got.append(s)
        return got

    async def transfer(self, shard: int, seen: Owned, to: str) -> Owned | None:
        """Give ``shard`` to ``to`` with the next epoch, if its record is still ``seen``
        (None if it changed meanwhile: someone else won)."""
        c = self.client
        epoch = seen.epoch + 1
        key = self.key(shard)
        ok, _ = await c.transaction(
            compare=[c.transactions.mod(key) == seen.revision],
            success=[c.transactions.put(key, record(seen._replace(
                owner=to, epoch=epoch, to=None,
                followers=tuple(n for n in seen.followers if n != to),
                learners=tuple(n for n in seen.learners if n != to))))],
            failure=[])
        if not ok:
            return None
        kv = await c.get(key)         # (its revision; a later change shows as it is)
        return parse(kv.value, kv.mod_revision)

    async def change(self, changes: dict[int, tuple[Owned, Owned]]) -> dict[int, Owned] | None:
        """Set every shard of ``changes`` (shard -> (record seen, new record)) in one
        transaction that holds only if none of them changed since it was seen (each new
        record's epoch should be the seen one's + 1 when its owner changes or a move is
        marked or ended; the same when only its followers or learners change). The new
        records are written whole, followers and learners included. Returns the new records with their
        revisions, or None if any had changed (nothing was written). At most
        :data:`BATCH` shards."""
        c = self.client
        if len(changes) > BATCH:
            raise ValueError(f"at most {BATCH} shards per ownership transaction")
        keys = {s: self.key(s) for s in changes}
        ok, responses = await c.transaction(
            compare=[c.transactions.mod(keys[s]) == seen.revision
                     for s, (seen, _new) in changes.items()],
            success=[c.transactions.put(keys[s], record(new))
                     for s, (_seen, new) in changes.items()],
            failure=[])
        if not ok:
            return None
        # one transaction, one revision: its puts' mod_revision
        revision = responses[0].response_put.header.revision if responses else 0
        return {s: new._replace(revision=revision) for s, (_seen, new) in changes.items()}
