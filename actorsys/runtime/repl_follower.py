"""A follower's SHARDS commands (issue 16): ``append``, ``snapshot`` and ``position``
on a worker's own slot database (the storage side: ``storage/replica.py``). Any
authorized peer may send them: the epoch fence, not the sender, decides. Refused
(BadRequest) for shards homed on another slot and by a worker not in cluster mode (a
restarted single node's, say). For a shard served here, ``position`` answers its epoch
in ``served`` instead of its position; ``append`` and ``snapshot`` answer ``refused``
with the fence, and are refused (BadRequest: the leader retries) for a shard whose
actors are still draining here (revoked, their last turns committing), so no stale turn
writes over a copy.

An ``append`` may carry ``replies``: ``[[routing_id, reply], ...]``, the leader's
replies to the asks of the group whose batches it carries (and nothing else). Once
every batch of the append is held here, so that the leader and this copy hold the
group's writes (a quorum of 2), they are sent on to their askers' connections to this
worker (:meth:`~.commit.Output.forward`): one hop fewer than the leader waiting for this
answer. The answer says which left (``delivered``) and which found no such connection
here (``unreachable``); the leader sends those itself."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

import plyvel

from ..errors import BadRequest, StorageError
from ..log import get_logger
from ..storage import replica
from ..storage.slot import error_text

if TYPE_CHECKING:
    from ..storage.slot import SlotStore
    from .commit import Output
    from .grants import Grants

log = get_logger("worker")
T = TypeVar("T")
#: replies one ``append`` may carry (a group's asks)
MAX_REPLIES = 65536


def check_replies(raw: Any) -> list[tuple[bytes, bytes]]:
    """An append's ``replies``, checked (BadRequest naming what is wrong); [] if none."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_REPLIES or not all(
            isinstance(r, list) and len(r) == 2 and type(r[0]) is bytes and 0 < len(r[0]) < 256
            and r[0][0] != 0 and type(r[1]) is bytes for r in raw):
        raise BadRequest(f"append replies must be an array (at most {MAX_REPLIES}) of "
                         f"[routing_id (1..255 bytes, not starting with a zero byte), reply "
                         f"(bytes)]")
    return [(r[0], r[1]) for r in raw]


class Follower:
    """The follower commands of one worker slot."""

    def __init__(self, store: SlotStore, grants: Grants,
                 on_failure: Callable[[StorageError], None] | None = None,
                 output: Output | None = None) -> None:
        self.store, self.grants, self.output = store, grants, output
        #: the leader's replies delivered from here (status)
        self.forwarded = 0
        #: told when a write failed (the store turned read-only: the worker's recovery)
        self.on_failure = on_failure
        self.nshards = len(grants.home)
        #: whether a shard's actors are still draining here (grants.py)
        self.busy: Callable[[int], bool] = lambda _s: False
        #: shard -> the id of the snapshot being received (from its first page): a page
        #: of another snapshot (one cut short, a reconnect) is refused, never mixed in
        self.snaps: dict[int, int] = {}
        #: told of the shards an append or snapshot is about to write (replication.py)
        self.on_write: Callable[[list[int]], None] | None = None

    def homed(self, shards: Any, what: str) -> list[int]:
        g, n = self.grants, self.nshards
        if not g.active:       # (a single node serves every shard homed here: no leader's claim)
            raise BadRequest(f"worker slot {g.slot} is not in cluster mode: it follows no shard")
        if not isinstance(shards, list) or not all(type(s) is int and 0 <= s < n for s in shards):
            raise BadRequest(f"{what} shards must be an array of shards (0..{n - 1})")
        if any(g.home[s] != g.slot for s in shards):
            raise BadRequest(f"cannot {what} shards homed on another worker slot: "
                             f"{[s for s in shards if g.home[s] != g.slot][:10]}")
        return shards

    def writable(self) -> None:
        if self.store.broken is not None:
            raise self.store.broken

    def writing(self, write: Callable[[], T]) -> T:
        """Run a write to the slot's database; a LevelDB failure turns the store read-only
        as a failed group commit does (the worker's recovery reopens it), and is raised
        as a StorageError."""
        try:
            return write()
        except plyvel.Error as exc:
            store = self.store
            store.broken = StorageError(f"{store.what} cannot write to {store.path} "
                                        f"({error_text(exc)}); until it can, replicated batches "
                                        f"are refused")
            log.error("%s", store.broken)
            if self.on_failure is not None:
                self.on_failure(store.broken)
            raise store.broken from None

    def quiet(self, shards: list[int], what: str) -> None:
        busy = sorted({s for s in shards if self.busy(s)})
        if busy:
            raise BadRequest(f"cannot {what} shard(s) {busy[:10]}: still draining")

    def append(self, args: dict[str, Any]) -> dict[str, Any]:
        batches = replica.check_batches(args.get("batches"), self.nshards)
        replies = check_replies(args.get("replies"))
        self.homed([b[0] for b in batches], "append")
        self.writable()
        self.quiet([b[0] for b in batches], "append")
        if self.on_write is not None:
            self.on_write([b[0] for b in batches if not self.grants.served(b[0])])
        got: dict[str, Any] = self.writing(lambda: replica.apply_batches(
            self.store.db, batches, self.grants.served, self.store.fsync, self._granted))
        if replies and self.output is not None:
            held = got["held"]
            if all(held.get(b[0], [-1, -1]) >= [b[1], b[4]] for b in batches):
                forward = self.output.forward
                sent = [forward(to, reply) for to, reply in replies]
                got["delivered"] = [i for i, ok in enumerate(sent) if ok]
                got["unreachable"] = [i for i, ok in enumerate(sent) if not ok]
                self.forwarded += len(got["delivered"])
        return got

    def snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        s, epoch, sid = args.get("shard"), args.get("epoch"), args.get("id")
        first, last = args.get("first"), args.get("last")
        if type(sid) is not int or not 0 <= sid < replica.MAX_INT:
            raise BadRequest("snapshot needs id (integer, 0 <= n < 2**63): the same in every page")
        if (type(epoch) is not int or not 0 <= epoch < replica.MAX_INT or type(first) is not bool
                or type(last) is not bool):
            raise BadRequest("snapshot needs epoch (integer, 0 <= n < 2**63), first and last "
                             "(booleans)")
        self.homed([s], "snapshot")
        self.writable()
        assert type(s) is int
        self.quiet([s], "snapshot")
        if self.on_write is not None and not self.grants.served(s):
            self.on_write([s])
        if not first and self.snaps.get(s) != sid:
            raise BadRequest(f"snapshot page of shard {s} is not of the snapshot being received "
                             f"here (cut short, or this worker restarted): start it again")
        items = args.get("items", [])
        got = self.writing(lambda: replica.apply_snapshot_page(self.store.db, s, epoch, first, last,
                                                               items, self.grants.served,
                                                               self._granted))
        if "refused" in got or last:
            self.snaps.pop(s, None)
        elif first:
            self.snaps[s] = sid
        return got

    def _granted(self, s: int) -> int:
        """The epoch this slot serves ``s`` with (what a refusal of a served shard says)."""
        return self.grants.shards.get(s, 0)

    def position(self, args: dict[str, Any]) -> dict[str, Any]:
        """Each shard's position and fence (raised first to ``fence``'s epochs, fsynced
        with the slot's durability). A shard served here is answered in ``served``, with
        the epoch it is served with, and nothing else of it is read or fenced: the
        asker decides per shard (a leader with an older grant stops serving it; a
        failover counts this copy as not answering), and the other shards' answers are
        not held back by it."""
        shards = self.homed(args.get("shards"), "position")
        fence = args.get("fence")
        if fence is not None and not (isinstance(fence, dict) and all(
                type(s) is int and s in shards and type(e) is int and 0 <= e < replica.MAX_INT
                for s, e in fence.items())):
            raise BadRequest("position fence must map shards named -> epoch (integer, "
                             "0 <= n < 2**63)")
        served = {s: self._granted(s) for s in shards if self.grants.served(s)}
        if served:
            shards = [s for s in shards if s not in served]
            if fence:
                fence = {s: e for s, e in fence.items() if s not in served}
        db = self.store.db
        if fence:
            self.writable()
            fences = self.writing(lambda: replica.raise_fences(db, fence))
        else:
            fences = {}
        return {"positions": {s: list(replica.read_position(db, s)) for s in shards},
                "fences": {s: fences.get(s, replica.read_fence(db, s)) for s in shards},
                "served": served}
