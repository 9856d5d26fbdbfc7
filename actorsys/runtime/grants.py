"""Shard grants: which shards a worker of a cluster node may serve, and the SHARDS
commands (wire op ``SHARDS``) through which its router grants them and moves their data.

Every shard has a *home slot* on a node (``node.meta``'s ``owner``): the worker slot
whose LevelDB holds its data. A single node serves every shard homed on each slot. A
cluster node serves only what etcd says it owns, and its router tells each worker so:

* **grant** ``{"shards": {shard: epoch}, "epoch": map epoch, "until": monotonic deadline
  or nil, "why": str, "node": str, "keys": [member keys]}``: the FULL set of shards this
  slot may serve from now on (shards homed on other slots are ignored; a shard granted
  with an epoch lower than one this worker was granted it with before, or than a newer
  leader's fence that refused its batches (replication), is not served: the reply's
  ``"stale": {shard: that epoch}`` tells the router, which reads the record again, or
  takes the leadership back at a newer epoch when it is still the recorded owner
  (``cluster/replica_repair.py``, ``Repairs.reclaim``); each set is logged once). The first
  grant puts the worker in
  *cluster mode* (a worker whose config has a ``[cluster]`` table starts in it, with
  nothing granted: it serves nothing until its router grants). In cluster mode an
  address is admitted only if its shard is homed here and granted: a new activation, a
  message to a resident one, a due alarm (the alarm clock skips the others, and rescans
  at every grant, so an alarm of a shard granted or imported later fires then). The
  refusal is ``WrongShard`` carrying the grant's map ``epoch``. Past ``until``
  (``time.monotonic()``, shared by the router and its workers on one host) every
  admission is refused with ``ShardUnavailable`` naming the node and ``why``, and the
  group commit writes nothing: the turns of a group committed past ``until`` fail with
  it, rolled back (their actors reload their last commit), their output never sent.
  Reply ``{"granted": n, "revoked": [shards]}`` once every revoked shard is *drained*
  (``shard_drain.py``): its queued messages answered ``WrongShard``, its running turns
  finished and committed, its activations passivated; a drain not done within
  ``turn_timeout + 1`` s is cut short and the reply is an error naming the actors left.
  Either way no actor of a revoked shard stays resident.
  A grant may carry a ``token`` (bytes, the router's name for its contents).
* **renew** ``{"token": bytes, "until": monotonic deadline}`` -> ``{"renewed": bool}``:
  the router's periodic grant when nothing in it but ``until`` changed since the grant
  named ``token``. Applied (the new ``until``, nothing else) only if ``token`` names the
  last grant applied here, nothing was stopped here since (a newer leader's refusal:
  the next full grant reports it as ``stale``) and the slot was not lost; else
  ``renewed`` is false and the router sends the full grant. A worker told its whole
  grant ten times a second spent more time on it than on a sequential writer's asks.
* **export**, **import**, **drop**: a shard's data moved between slots, refused for a
  shard this slot serves or one still draining: see :mod:`.shard_moves`.

A worker whose slot lost its database (``storage/lost.py``: deleted, or damaged and set
aside; replicated clusters only) never serves a granted shard whose copy here is not
complete (position ``[0, 0]``): it leaves it out of the grant, and every grant reply says
``"lost": true, "refused": [shards]`` (``"lost": false`` otherwise); the router then
hands those shards to a follower (``cluster/replica_repair.py``, ``Repairs.resign``).

Replication (issue 16, present only when the cluster's replicas > 1): a grant's
``peers``, ``replicas``, ``ack`` and ``ack_timeout``, and the commands ``append``,
``snapshot``, ``position`` and ``replication``: see :mod:`.repl_commands`.

Bad arguments (unknown keys, wrong types, shards out of range) are ``BadRequest``.

:class:`Grants` is what this slot may serve (the hot path's check); :class:`ShardCommands`
serves the SHARDS commands, with a :class:`~.shard_drain.Drains` (revoked shards'
actors out of memory) and a :class:`~.shard_moves.ShardMoves` (export, import, drop).
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable

import plyvel

from ..errors import ActorError, BadRequest, ShardUnavailable, StorageError, WrongShard
from ..log import get_logger
from ..protocol import wire
from ..storage import replica
from ..storage import lost as lost_slot
from ..storage.slot import error_text
from . import repl_commands
from .replication import parse_grant
from .shard_drain import Drains
from .shard_moves import ShardMoves

if TYPE_CHECKING:
    from .activation import Envelope
    from .assembly import Runtime
    from .commit import Output
    from .replication import Replication

log = get_logger("worker")

_GRANT_KEYS = {"shards", "epoch", "until", "why", "node", "keys", "gateways", "token", "peers",
               "replicas", "ack", "ack_timeout"}
_ARGS = {"export": {"shards", "after", "max_bytes"},
         "import": {"shards", "clear", "items", "epochs"}, "drop": {"shards", "epochs"},
         "renew": {"token", "until"}, "append": {"batches", "replies"},
         "snapshot": {"shard", "epoch", "first", "last", "items", "id"},
         "position": {"shards", "fence"}, "replication": {"shards"}}


class Grants:
    """What this slot may serve (see the module docstring). ``active`` is False until
    cluster mode: the one attribute the hot path tests."""

    __slots__ = ("slot", "home", "active", "shards", "epoch", "until", "why", "node", "highest")

    def __init__(self, slot: int, home: list[int], active: bool, node: str) -> None:
        self.slot, self.home = slot, home
        #: cluster mode: admissions are checked against the grant
        self.active = active
        #: shard -> its epoch, of the shards granted and homed on this slot
        self.shards: dict[int, int] = {}
        #: the map epoch of the last grant (what a WrongShard reply carries)
        self.epoch = 0
        #: time.monotonic() past which nothing is admitted or written (None: no deadline)
        self.until: float | None = None
        self.why = ""
        self.node = node
        #: shard -> the highest epoch this worker was ever granted it with: a grant of
        #: a lower one comes from a stale view and is not served (never decreases)
        self.highest: dict[int, int] = {}

    def refuse(self, shard: int) -> ActorError | None:
        """Why an address of ``shard`` is not admitted now, or None (cluster mode only)."""
        until = self.until
        if until is not None and time.monotonic() >= until:
            return self.unavailable(f"shard {shard}")
        if shard not in self.shards:
            return WrongShard(f"shard {shard} is not granted to worker slot {self.slot} of "
                              f"node {self.node}")
        return None

    def admits(self, shard: int) -> bool:
        """Whether an alarm of ``shard`` may fire now."""
        if not self.active:
            return True
        return shard in self.shards and (self.until is None or time.monotonic() < self.until)

    def unavailable(self, what: str) -> ShardUnavailable:
        return ShardUnavailable(f"node {self.node} cannot serve {what} now: {self.why or 'fenced'}")

    def fence(self) -> ActorError | None:
        """The group commit's check: an error once past ``until``."""
        until = self.until
        if until is not None and time.monotonic() >= until:
            return self.unavailable("its shards (the turn was not applied)")
        return None

    def fenced(self) -> str | None:
        """Why nothing is served (past ``until``), or None."""
        if self.active and self.until is not None and time.monotonic() >= self.until:
            return self.why or "fenced"
        return None

    def served(self, shard: int) -> bool:
        """This slot serves ``shard`` now (or will, once no longer fenced)."""
        return shard in self.shards if self.active else self.home[shard] == self.slot


class ShardCommands:
    """Serves the SHARDS commands of a worker (see the module docstring): applies grants
    and renewals itself, and hands draining and data moves to :attr:`drains` and
    :attr:`moves`."""

    def __init__(self, grants: Grants, rt: Runtime, output: Output, turn_timeout: float) -> None:
        self.grants, self.rt, self.output = grants, rt, output
        #: revoked shards' actors, drained out of memory before a grant is answered
        self.drains = Drains(grants, rt, output, turn_timeout)
        #: export, import and drop
        self.moves = moves = ShardMoves(grants, rt)
        #: lets the members' CURVE keys of a grant in (the worker's guard; net/members.py)
        self.on_keys: Callable[[Any], object] | None = None
        #: the members' gateways of a grant, for WebSocket effects (ws_routes.py)
        self.on_gateways: Callable[[Any], object] | None = None
        #: the worker's replication (replication.py; None: this worker replicates nothing)
        self.replication: Replication | None = None
        #: the slot's path if its database was lost at start (storage/lost.py): granted
        #: shards without a complete copy here are refused (see the module docstring)
        self.lost_path: str | None = None
        #: the shards refused as lost at the last grant (each set logged once)
        self.lost_refused: list[int] = []
        self._lost_marked = True
        self._lost_check = 0.0
        #: granted shards of a lost slot known complete (served since: they stay so)
        self._complete: set[int] = set()
        #: the shards last refused as granted with a stale epoch (each set logged once)
        self.stale_logged: list[int] = []
        #: the ``token`` of the last grant applied (what a ``renew`` must name)
        self.grant_token: bytes | None = None
        #: a shard stopped here since that grant (stop_serving): the next is a full one
        self.changed = False
        #: the commands other than grant, by name (their arguments checked first: _ARGS)
        self._commands: dict[str, Callable[[dict[str, Any]], Any]] = {
            "renew": self._renew, "export": moves.export, "import": moves.import_page,
            "drop": moves.drop, "append": self._append, "snapshot": self._snapshot,
            "position": self._position, "replication": self._replication}

    def activate(self) -> None:
        """Cluster mode from now on: the commit's fence and the alarm clock's filter."""
        g = self.grants
        g.active = True
        self.rt.commit.fence = g.fence
        clock = self.rt.alarms.clock
        if clock is not None:
            clock.admits = g.admits

    def serve(self, envelope: Envelope, rid: int, cmd: str, args: dict[str, Any]) -> None:
        """Carry out one SHARDS request; its reply (or error) goes to ``envelope``."""
        try:
            if cmd == "grant":
                return self._grant(envelope, rid, args)
            if cmd not in _ARGS:
                raise BadRequest(f"unknown shards command {cmd[:50]!r}; known: grant, renew, "
                                 f"export, import, drop, append, snapshot, position, replication")
            _check_keys(cmd, args, _ARGS[cmd])
            result = self._commands[cmd](args)
        except plyvel.Error as exc:
            self.output.send(envelope, wire.err(rid, StorageError(
                f"worker slot {self.grants.slot}: shards {cmd} failed: {error_text(exc)}").to_wire()))
        except ActorError as exc:
            self.output.send(envelope, wire.err(rid, exc.to_wire()))
        else:
            self.output.send(envelope, wire.ok(rid, result))

    # -- grant ------------------------------------------------------------------
    def _grant(self, envelope: Envelope, rid: int, args: dict[str, Any]) -> None:
        _check_keys("grant", args, _GRANT_KEYS, required={"shards", "epoch"})
        shards, epoch, until = args["shards"], args["epoch"], args.get("until")
        why, node = args.get("why", ""), args.get("node", self.grants.node)
        n = len(self.grants.home)
        if (not isinstance(shards, dict) or not all(type(s) is int and 0 <= s < n and type(e) is int
                                                    for s, e in shards.items())):
            raise BadRequest(f"grant shards must be a map of shard (0..{n - 1}) -> epoch (integer)")
        if type(epoch) is not int:
            raise BadRequest("grant epoch must be an integer")
        if until is not None and (type(until) not in (int, float) or not math.isfinite(until)):
            raise BadRequest("grant until must be a time.monotonic() deadline or nil")
        if not isinstance(why, str) or not isinstance(node, str):
            raise BadRequest("grant why and node must be strings")
        replicas = parse_grant(args, n)
        if self.on_keys is not None and args.get("keys") is not None:
            self.on_keys(args["keys"])       # (checked whole first: BadRequest changes nothing)
        if self.on_gateways is not None and args.get("gateways") is not None:
            self.on_gateways(args["gateways"])
        g = self.grants
        slot, home = g.slot, g.home
        before = set(g.shards) if g.active else {s for s in range(n) if home[s] == slot}
        # a grant from a view older than one already applied, or below a newer leader's
        # fence: not served; the router is told (every grant: it may act later)
        stale = sorted(s for s, e in shards.items()
                       if home[s] == slot and e < g.highest.get(s, 0))
        if stale != self.stale_logged:      # (granted every 0.1 s: each set logged once)
            self.stale_logged = stale
            if stale:
                log.error("worker slot %d does not serve %d shard(s) (%s) granted with an "
                          "epoch below one it was granted or fenced with before (a stale view "
                          "of their owners, or a newer leader's fence)", slot, len(stale),
                          stale[:10])
        g.shards = {s: e for s, e in shards.items() if home[s] == slot and e >= g.highest.get(s, 0)}
        refused = self._refuse_lost(g.shards) if self.lost_path is not None else []
        for s, e in g.shards.items():
            if e > g.highest.get(s, 0):
                g.highest[s] = e
        g.epoch, g.until, g.why, g.node = epoch, None if until is None else float(until), why, node
        token = args.get("token")
        self.grant_token = token if type(token) is bytes else None
        self.changed = False
        if not g.active:
            self.activate()
        if self.replication is not None:
            self.replication.configure(replicas, g.shards)
        elif replicas is not None:
            log.error("worker slot %d: a grant with replication arguments, but this worker "
                      "has no replication: nothing is replicated", slot)
        revoked = sorted(before - g.shards.keys())
        if revoked:
            self.drains.revoke(set(revoked))
        if self.rt.alarms.clock is not None:
            self.rt.alarms.clock.rescan()      # alarms of shards granted now fire
        reply = {"granted": len(g.shards), "revoked": revoked, "lost": self.lost_path is not None}
        if stale:
            reply["stale"] = {s: g.highest[s] for s in stale}
        if self.lost_path is not None:
            reply["refused"] = refused
        # every grant waits for the drains still under way (an earlier grant's too): once
        # any grant is answered, nothing of a shard it does not grant is resident
        self.drains.reply_when_drained(envelope, rid, reply)

    def _renew(self, args: dict[str, Any]) -> dict[str, bool]:
        token, until = args.get("token"), args.get("until")
        if type(token) is not bytes or not isinstance(until, (int, float)) \
                or not math.isfinite(until):
            raise BadRequest("renew needs token (bytes) and until (a time.monotonic() deadline)")
        g = self.grants
        if (not g.active or token != self.grant_token or self.changed
                or self.lost_path is not None):
            return {"renewed": False}
        fenced = g.fenced() is not None
        g.until = float(until)
        if fenced and g.fenced() is None and self.rt.alarms.clock is not None:
            self.rt.alarms.clock.rescan()     # (alarms skipped while fenced fire now)
        return {"renewed": True}

    def _refuse_lost(self, granted: dict[int, int]) -> list[int]:
        """A lost slot: take out of ``granted`` (in place) the shards whose copy here is
        not complete (position ``[0, 0]``; a read that fails counts as not complete);
        returns them. Once every shard homed here has a complete copy, the slot's lost
        marker goes (a later start is not lost), though this worker still says lost."""
        db = self.rt.commit.store.db

        def complete(shard: int) -> bool:
            try:
                return replica.read_position(db, shard) != replica.NO_POSITION
            except (StorageError, plyvel.Error):
                return False
        # (a shard served since the last grant stays complete: only the others are read)
        refused = sorted(s for s in granted if s not in self._complete and not complete(s))
        for s in refused:
            del granted[s]
        self._complete = set(granted)
        if refused != self.lost_refused and refused:
            log.error("worker slot %d lost its database: it does not serve %d granted shards "
                      "(%s) whose copy here is empty; their router hands them to a replica",
                      self.grants.slot, len(refused), refused[:10])
        self.lost_refused = refused
        if self._lost_marked and not refused and self.lost_path is not None and \
                time.monotonic() >= self._lost_check:
            self._lost_check = time.monotonic() + 1.0
            g = self.grants
            if all(complete(s) for s in range(len(g.home)) if g.home[s] == g.slot):
                lost_slot.clear_marker(self.lost_path)
                self._lost_marked = False
                log.info("worker slot %d: every shard homed here has a complete copy again",
                         g.slot)
        return refused

    # replication's SHARDS commands and a refusal's revocation (repl_commands.py)
    stop_serving = repl_commands.stop_serving
    _append = repl_commands.append
    _snapshot = repl_commands.snapshot
    _position = repl_commands.position
    _replication = repl_commands.replication


def _check_keys(cmd: str, args: dict[str, Any], known: set[str],
                required: set[str] | None = None) -> None:
    unknown = [k for k in args if k not in known]
    if unknown:
        raise BadRequest(f"unknown {cmd} argument {unknown[0][:50]!r}; known: "
                         f"{', '.join(sorted(known))}")
    missing = sorted((required if required is not None else set()) - args.keys())
    if missing:
        raise BadRequest(f"{cmd} needs {', '.join(missing)}")
