"""Replicated shards: the router's decisions, as pure functions of the ownership records
(issue 16). :class:`~.replicas.Replicas` carries them out; its docstring says why each
is safe (the order of grants and transactions, the fence promise before a failover).

* :func:`quorum`: how many voters (the leader counts) a write waits for.
* :func:`desired`: a shard's desired replicas, the first ``replicas`` live, settled,
  non-leaving members in rendezvous order (the first: the desired leader).
* :func:`plan_grow`, :func:`plan_promote`, :func:`plan_transfer`, :func:`plan_surplus`:
  what the leader of each shard changes in its set, each loop, in that order.
* :func:`plan_failover`: which follower takes over a shard whose leader is not live,
  given the positions its live followers answered (never one at :data:`NO_COPY`; only
  when the voters not answering are fewer than the quorum).
* :func:`under_replicated`: shards with fewer than ``replicas`` live voters.

Pure: no I/O, no clock; tested in tests/unit/test_cluster_replica_plans.py.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping

from . import placement
from .ownership import Owned

#: ``[epoch, seq]`` of a replica's last batch of a shard
Position = tuple[int, int]
#: the position of a copy that holds nothing complete (never promoted)
NO_COPY: Position = (0, 0)


def quorum(voters: int, ack: str) -> int:
    """How many of ``voters`` voting replicas (the leader counts) must hold a write."""
    return voters if ack == "all" else voters // 2 + 1


def desired(shard: int, candidates: list[str], replicas: int) -> list[str]:
    """The nodes that should hold ``shard``: the first ``replicas`` of ``candidates`` (the
    live, settled, non-leaving members) in rendezvous order; the first should lead."""
    return placement.ranked(shard, candidates)[:replicas]


def led(owned: Mapping[int, Owned], me: str, skip: set[int]) -> dict[int, Owned]:
    return {s: r for s, r in owned.items() if r.owner == me and r.to is None and s not in skip}


def plan_grow(owned: Mapping[int, Owned], me: str, candidates: list[str], replicas: int,
              skip: set[int] = frozenset()) -> dict[int, Owned]:  # type: ignore[assignment]
    """Step 1: shard -> its new record, for the shards ``me`` leads that miss a desired
    replica (each missing one added as a learner)."""
    out = {}
    for s, r in led(owned, me, skip).items():
        missing = tuple(n for n in desired(s, candidates, replicas) if n not in r.replicas)
        if missing:
            out[s] = r._replace(revision=0, learners=r.learners + missing)
    return out


def plan_promote(owned: Mapping[int, Owned], me: str, live: set[str],
                 progress: Mapping[int, Mapping[str, Any]],
                 skip: set[int] = frozenset()) -> dict[int, Owned]:  # type: ignore[assignment]
    """Step 2: shard -> its new record, for the shards ``me`` leads with a live learner
    that holds the leader's last write (``progress[s]``: the leader worker's
    ``replication`` answer, ``{"epoch", "seq", "held": {node: seq}}``: its position and
    what each peer holds of that position's epoch). Each such learner
    becomes a follower; for each, one dead follower is dropped in the same change."""
    out = {}
    for s, r in led(owned, me, skip).items():
        p = progress.get(s)
        if not r.learners or not p:
            continue
        held = p.get("held") or {}
        ready = [n for n in r.learners if n in live and n in held and held[n] == p.get("seq")]
        if not ready:
            continue
        dead = [f for f in r.followers if f not in live]
        followers = [f for f in r.followers if f not in dead[:len(ready)]] + ready
        out[s] = r._replace(revision=0, followers=tuple(followers),
                            learners=tuple(n for n in r.learners if n not in ready))
    return out


def plan_transfer(owned: Mapping[int, Owned], me: str, live: set[str], candidates: list[str],
                  replicas: int, skip: set[int] = frozenset()  # type: ignore[assignment]
                  ) -> dict[str, list[int]]:
    """Step 3: the shards ``me`` leads whose desired leader is a live follower, by that
    follower, when the shard has at least ``replicas`` live voters (not under-replicated)
    and ``me`` is not the desired leader."""
    out: dict[str, list[int]] = defaultdict(list)
    for s, r in led(owned, me, skip).items():
        want = desired(s, candidates, replicas)
        if not want or want[0] == me or want[0] not in r.followers or want[0] not in live:
            continue
        if sum(1 for v in r.voters if v in live) >= min(replicas, len(candidates)):
            out[want[0]].append(s)
    return dict(out)


def plan_surplus(owned: Mapping[int, Owned], me: str, live: set[str], candidates: list[str],
                 replicas: int, skip: set[int] = frozenset()  # type: ignore[assignment]
                 ) -> tuple[dict[int, Owned], dict[int, tuple[str, Owned]]]:
    """Step 4: ``(now, demote)``. ``now``: shard -> new record, for removals that need
    only the transaction (learners not desired or dead; dead followers while the shard
    keeps ``replicas`` live voters). ``demote``: shard -> (live follower, new record):
    a follower not desired while more than ``replicas`` voters are live; it must leave the
    grant's voters before the transaction."""
    now: dict[int, Owned] = {}
    demote: dict[int, tuple[str, Owned]] = {}
    for s, r in led(owned, me, skip).items():
        want = set(desired(s, candidates, replicas))
        learners = tuple(n for n in r.learners if n in want and n in live)
        live_voters = [v for v in r.voters if v in live]
        followers = r.followers
        if len(live_voters) >= replicas:
            followers = tuple(f for f in followers if f in live)
        if learners != r.learners or followers != r.followers:
            now[s] = r._replace(revision=0, learners=learners, followers=followers)
            continue
        if len(live_voters) > replicas:
            extra = [f for f in reversed(r.followers) if f in live and f not in want]
            if extra:
                demote[s] = (extra[0], r._replace(
                    revision=0, followers=tuple(f for f in r.followers if f != extra[0])))
    return now, demote


def plan_failover(owned: Mapping[int, Owned], live: set[str],
                  positions: Mapping[int, Mapping[str, Position]], ack: str
                  ) -> tuple[dict[int, Owned], list[int]]:
    """Failover: ``(new records, stuck shards)``. For each shard whose owner is not live
    and that has followers, ``positions[s]``: the followers that answered (and promised
    the fence ``epoch + 1``) -> their ``[epoch, seq]``. The shard fails over to the one
    with the highest position (ties: rendezvous order) iff the voters not answering are
    fewer than the quorum; else it is stuck (waits for more of its voters).

    A follower at ``[0, 0]`` holds no complete copy (a snapshot writes its position with
    its last page only; a shard ever replicated is at ``[epoch >= 1, seq]`` on its leader):
    it counts as answering (it promised the fence) but is never promoted. A shard whose
    answering followers are all at ``[0, 0]`` is stuck too: it waits for its leader."""
    out: dict[int, Owned] = {}
    stuck: list[int] = []
    for s, r in sorted(owned.items()):
        if r.owner in live or not r.followers:
            continue
        answered = {f: tuple(p) for f, p in (positions.get(s) or {}).items()
                    if f in r.followers and f in live}
        u = len(r.voters) - len(answered)
        copies = {f: p for f, p in answered.items() if p != NO_COPY}
        if not copies or u >= quorum(len(r.voters), ack):
            stuck.append(s)
            continue
        order = {n: i for i, n in enumerate(placement.ranked(s, list(copies)))}
        best = max(copies, key=lambda n: (copies[n], -order[n]))
        out[s] = Owned(best, r.epoch + 1, 0, None,
                       tuple(f for f in r.followers if f != best) + (r.owner,),
                       tuple(n for n in r.learners if n != best and n != r.owner))
    return out, stuck


def under_replicated(owned: Mapping[int, Owned], live: set[str], replicas: int) -> int:
    """Shards with fewer than ``replicas`` live voters."""
    return sum(1 for r in owned.values() if sum(1 for v in r.voters if v in live) < replicas)
