"""Catch-up of a peer's copies (issue 16; one task per peer, started by
:class:`~.replication.Replication`): a copy that does not follow the leader's stream is
asked its position, then sent the batches after it from the leader's log, or (its
position is not in the log, is ``[0, 0]``, a batch is larger than a message, or the copy
was fenced above the log's epoch by a failover that promoted no one, the shard since
taken back above that fence) a snapshot: pages of about :data:`SNAPSHOT_PAGE` bytes of
a plyvel snapshot taken between two flushes (exactly the leader's position then), the
position key in the last page, then the log from there. Once at the tip the copy
follows the stream again. Up to :data:`AT_ONCE` copies of a peer are brought at once,
each with its own round trips."""
from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from ..errors import ActorError
from ..log import get_logger
from ..storage.handoff import export_page
from ..storage.keys import position_key
from ..storage.replica import NO_POSITION, Position
from .repl_state import Gone, Peer, ShardLog, Track

if TYPE_CHECKING:
    from .replication import Replication

log = get_logger("worker")

#: bytes of keys and values per snapshot page
SNAPSHOT_PAGE = 512 << 10
#: seconds between catch-up attempts of a peer that failed
RETRY = 0.5
#: seconds after which an idle peer's positions are asked again (it may have restarted
#: with its copies lost: the leader's record of what it holds must not outlive them)
IDLE = 5.0
#: copies of one peer brought at once (each its own round trips; one after the other, a
#: node back from a pause or a cut took 30-60 s to have its ~700 copies per leader
#: worker streamed again at 20-50 ms a round trip, and the hand-back of their
#: leadership waited on it)
AT_ONCE = 8


async def catch_up(r: Replication, p: Peer) -> None:
    """The catch-up task of peer ``p`` (until the replication closes or drops the peer)."""
    while not r.closed:
        try:
            await _round(r, p)
        except asyncio.CancelledError:
            raise
        except Exception:       # a bug or a malformed reply must not end the task
            log.exception("worker slot %d: catching up node %s", r.grants.slot, p.node)
            await asyncio.sleep(RETRY)


async def _round(r: Replication, p: Peer) -> None:
    """One round: wait for lagging copies, ask their positions, bring them, AT_ONCE at a
    time."""
    lag = [s for s, tr in p.tracks.items() if tr.sent is None and not tr.catching]
    if len(lag) > 1:                   # shards that held groups wait for go first
        waited = {s for g in r.held for s in g.need}
        lag.sort(key=lambda s: s not in waited)
    if not lag:
        p.wake.clear()
        try:
            await asyncio.wait_for(p.wake.wait(), IDLE)
        except asyncio.TimeoutError:
            await _recheck(r, p)
        return
    positions = await _positions(r, p, lag)
    if not positions:
        await asyncio.sleep(RETRY)
        return
    for s in lag:            # (what it holds now, not the most it ever held), all at once:
        tr = p.tracks.get(s)     # a batch in doubt that the copy holds is no longer in
        raw = positions.get(s)   # doubt, nor does it wait behind the copies brought first
        if tr is not None and tr.sent is None and raw is not None:
            tr.holds = (raw[0], raw[1])
    r.check()
    limit = asyncio.Semaphore(AT_ONCE)
    failed: list[BaseException] = []

    async def one(s: int) -> int:
        async with limit:
            tr = p.tracks.get(s)
            if failed or tr is None or tr.sent is not None or s not in positions or tr.catching:
                return 0
            tr.catching = True
            try:
                await _bring(r, p, s, tr, (positions[s][0], positions[s][1]))
                return 1
            except Gone:
                return 0
            except ActorError as exc:
                failed.append(exc)
                r.say(p, f"catching up node {p.node} on shard {s} failed: {exc}")
                return 0
            except Exception as exc:
                failed.append(exc)
                log.exception("worker slot %d: catching up node %s on shard %d",
                              r.grants.slot, p.node, s)
                return 0
            finally:
                tr.catching = False

    brought = sum(await asyncio.gather(*(one(s) for s in lag)))
    if failed:                   # (the shards not begun wait for the next round)
        await asyncio.sleep(RETRY)
    elif brought:
        p.said = ""
    else:                        # (every answer left the lagging copies out: no busy loop)
        await asyncio.sleep(RETRY)


async def _recheck(r: Replication, p: Peer) -> None:
    """Ask an idle peer (no request in flight) what it holds of the copies it follows;
    one that no longer holds what was sent to it is caught up again."""
    if p.outq or p.link.room < p.link.window:
        return
    sent = {s: tr.sent for s, tr in p.tracks.items() if tr.sent is not None and not tr.catching}
    if not sent:
        return
    got = await _positions(r, p, list(sent))
    for s, raw in (got or {}).items():
        tr = p.tracks.get(s)
        if tr is None or tr.catching:
            continue
        tr.holds = pos = (raw[0], raw[1])
        if tr.sent == sent[s] and pos != sent[s]:
            tr.sent = None                  # (lost its copy, or restarted behind)
            p.wake.set()
    r.check()


async def _positions(r: Replication, p: Peer, lag: list[int]) -> dict[int, Any] | None:
    """``p``'s positions of ``lag``; None if it cannot be asked. A shard the peer
    serves is left out: a revoked one is done with (the peer serves it now); one it
    serves with a newer epoch than this leader's has a newer leader (this worker stops
    serving it, :meth:`~.replication.Replication.refused`); one it serves with an older
    grant is asked again later (that leader learns of the newer one from the fences)."""
    try:
        res = await p.link.call("position", {"shards": lag}, r.ack_timeout)
    except ActorError as exc:         # (BadRequest: not in cluster mode yet, say)
        r.say(p, f"node {p.node} cannot be asked its positions: {exc}")
        return None
    older = 0
    for s, epoch in dict(res.get("served") or {}).items():
        sl = r.shards.get(s)
        if sl is None or type(epoch) is not int:
            continue
        if sl.retired:
            p.tracks.pop(s, None)
        elif epoch > sl.epoch:
            r.refused(s, epoch, p)
        else:
            older += 1
    if older:            # (one line per peer, not per shard and round)
        r.say(p, f"node {p.node} still serves shards this worker leads, with older grants: "
                 f"asked again later")
    return dict(res.get("positions", {}))


def _still(r: Replication, p: Peer, s: int, tr: Track) -> ShardLog:
    sl = r.shards.get(s)
    if sl is None or p.tracks.get(s) is not tr or r.peers.get(p.link.endpoint) is not p:
        raise Gone()
    return sl


def _answer(r: Replication, p: Peer, s: int, res: Any) -> None:
    if s in res.get("refused", {}):
        r.refused(s, res["refused"][s], p)
        raise Gone()


async def _bring(r: Replication, p: Peer, s: int, tr: Track, pos: Position) -> None:
    """Bring ``p``'s copy of ``s`` from ``pos`` to the stream (log or snapshot)."""
    snapped = fenced = False
    while True:
        sl = _still(r, p, s, tr)
        if pos == sl.pos and (pos != NO_POSITION or snapped):
            tr.holds = tr.sent = pos
            r.check()
            return
        chunk = sl.after(pos, r.limit) if pos != NO_POSITION and not fenced else None
        if chunk is None:
            pos = await _snapshot(r, p, s, sl, tr)
            snapped, fenced = True, False
            tr.holds = pos
            continue
        batches = [[s, e.pos[0], e.prev[0], e.prev[1], e.pos[1], e.items] for e in chunk]
        fut = p.link.send_call("append", {"batches": batches}, r.ack_timeout)
        if chunk[-1].pos == sl.pos:
            tr.sent = sl.pos               # the stream goes on behind it
        res = await fut
        fence = res.get("refused", {}).get(s)
        if type(fence) is int and fence <= sl.epoch and chunk[0].pos[0] < fence:
            # fenced above these batches' epoch but not above ours: a failover that
            # promoted no one raised the fence, and we took the shard back above it. The
            # copy takes no batch of the older epoch from anyone now; only a full copy
            # at our epoch brings it (else the same batches were refused again forever)
            tr.sent = None
            fenced = True
            continue
        _answer(r, p, s, res)
        if s in res.get("behind", {}):
            tr.sent = None
            raw = res["behind"][s]
            tr.holds = (raw[0], raw[1])
            if (raw[0], raw[1]) == pos:       # (not applied from where it said it was)
                pos = await _snapshot(r, p, s, sl, tr)
                snapped = True
            else:
                pos = (raw[0], raw[1])
            continue
        raw = res.get("held", {}).get(s, [0, 0])
        tr.holds = pos = (raw[0], raw[1])
        r.check()
        if tr.sent is not None and tr.sent == _still(r, p, s, tr).pos:
            return
        # (groups flushed during the round trip were not streamed to it: send them too)


async def _snapshot(r: Replication, p: Peer, s: int, sl: ShardLog, tr: Track) -> Position:
    """Send ``p`` a full copy of ``s`` as of now; the copy's position."""
    r.snapshots += 1
    sid = secrets.randbits(62)          # (every page names it: pages never mix)
    snap = r.store.db.snapshot()        # between two flushes: exactly sl.pos
    epoch = max(sl.epoch, sl.pos[0])
    pkey = position_key(s)
    try:
        after: bytes | None = None
        first, posv = True, None
        while True:
            items, after = export_page(snap, [s], after, min(SNAPSHOT_PAGE, r.limit // 2))
            page = []
            for k, v in items:
                if k == pkey:
                    posv = v
                else:
                    page.append([k, v])
            last = after is None
            if last and posv is not None:
                page.append([pkey, posv])
            res = await p.link.call("snapshot", {"shard": s, "epoch": epoch, "id": sid, "first": first,
                                                 "last": last, "items": page}, r.ack_timeout)
            if "refused" in res:
                _answer(r, p, s, {"refused": {s: res["refused"]}})
            _still(r, p, s, tr)
            first = False
            if last:
                raw = res["position"]
                log.debug("worker slot %d: node %s got a snapshot of shard %d at [%d, %d]",
                         r.grants.slot, p.node, s, raw[0], raw[1])
                return raw[0], raw[1]
    finally:
        snap.close()
