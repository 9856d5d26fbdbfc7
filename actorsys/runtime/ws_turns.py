"""The ``$ws`` turn: a batch of socket events delivered to an actor's handlers, with the
delivery mark that makes a redelivered batch apply once (see
:mod:`actorsys.actor.connection` for the user's view, :mod:`actorsys.protocol.ws` for the
messages).

More than one gateway (a cluster, issue 15: every node's gateway may hold sockets of
any actor). A gateway is named by its incarnation; a cluster gateway's is
``token@endpoint`` (:func:`home`: the part after ``@``, empty on a single node), so a
restarted gateway (same endpoint, new token) replaces its predecessor:

* the actor's roster (``act.ws``) is the union of every gateway's sockets; a gateway's
  roster replaces only the sockets of that gateway (and of its predecessors), which
  ``act.ws_gateways`` tracks (incarnation -> socket ids);
* the delivery mark keeps one entry per gateway home, ``[gateway, number, effects]``,
  the newest first (at most :data:`MAX_MARKS`); with one gateway it is that one entry
  alone, as stored before clusters (both forms are read).
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Iterable, cast

from ..actor.connection import Connection
from ..protocol import wire
from ..protocol.ws import check_batch
from ..storage.keys import mark_key
from ..storage.view import Storage

if TYPE_CHECKING:
    from ..actor import Actor
    from .host import Host


#: gateways whose last batch a delivery mark remembers (a cluster has one per node)
MAX_MARKS = 16


def home(gateway: str) -> str:
    """The endpoint part of a gateway incarnation (``token@endpoint``; '' without one)."""
    return gateway.partition("@")[2]


def read_marks(raw: bytes | None) -> list[list[Any]]:
    """A stored delivery mark as entries ``[gateway, number, effects]``, newest first."""
    if raw is None:
        return []
    value = wire.unpack_stored(raw)
    return [value] if value and isinstance(value[0], str) else list(value)


def run_batch(host: Host, inst: Actor, gateway: str, number: int,
              roster: list[Any] | dict[str, Any] | None, events: list[Any]) -> Any:
    """The ``$ws`` turn: deliver a batch of socket events to the actor's handlers.

    Registered as the ``$ws`` handler of every actor type; the turn runner calls it
    with the instance's host, which names the activation at each step (a kill detaches
    it: a killed batch's output then lands in a record nobody reads).

    ``roster`` is the actor's sockets as the gateway knows them (None: the worker's copy
    will do), or one part of them (``{"n", "i", "records"}``) when they do not fit in one
    message: the parts before the last come alone and are answered ``{"more": True}``.
    Answers ``{"dup": True, "effects"}`` for a batch already committed (with the effects
    it had), ``{"need": "roster"}`` when the worker does not know the actor's sockets,
    or ``{"ok": True, "effects"}`` (after an ``async`` handler: an awaitable of it). The
    effects travel in the reply, so the gateway gets a batch's outcome and its effects
    together or not at all; ``effects`` is None when they were too large for a reply
    and went to the gateway in parts instead.
    """
    act = host.act
    check_batch(gateway, number, roster, events)
    marks = read_marks(_storage(inst).read_raw(mark_key(act.prefix)))
    for seen_gateway, seen, effects in marks:
        if seen_gateway == gateway:
            if number <= seen:
                return {"dup": True, "effects": effects if number == seen else []}
            break
    records: list[Any] | None
    if isinstance(roster, dict):
        if roster["i"] == 0:
            act.ws_parts = [0, []]                  # [the next part's index, records so far]
        elif act.ws_parts is None or roster["i"] != act.ws_parts[0]:
            return {"need": "roster"}
        act.ws_parts[0] = roster["i"] + 1
        act.ws_parts[1].extend(roster["records"])
        if roster["i"] < roster["n"] - 1:
            return {"more": True}
        records, act.ws_parts = act.ws_parts[1], None
    else:
        records = roster
    if records is not None:
        _take_roster(host, gateway, records)
    elif act.ws is None or act.ws_gateways is None or gateway not in act.ws_gateways:
        return {"need": "roster"}
    assert act.ws is not None and act.ws_gateways is not None
    act.ws_batch = [gateway, number]
    return _deliver(host, inst, (act.ws, act.ws_gateways[gateway]), iter(events), gateway,
                    number, marks)


def _take_roster(host: Host, gateway: str, records: list[Any]) -> None:
    """``gateway``'s sockets replace what the actor knew of that gateway's (and of its
    predecessors at the same endpoint); other gateways' sockets stay."""
    act = host.act
    conns, held = act.ws, act.ws_gateways
    if conns is None or held is None:
        conns, held = act.ws, act.ws_gateways = {}, {}
    where = home(gateway)
    for g in [g for g in held if home(g) == where]:
        for cid in held.pop(g):
            conns.pop(cid, None)
    for r in records:
        conns[r[0]] = Connection(host, r)
    held[gateway] = {r[0] for r in records}


def _storage(inst: Actor) -> Storage:
    return cast(Storage, inst.storage)


#: the actor's sockets, and the ids of those the batch's gateway holds
Sockets = tuple[dict[str, Connection], set[str]]


def _deliver(host: Host, inst: Actor, conns: Sockets, events: Iterable[list[Any]],
             gateway: str, number: int, marks: list[list[Any]]) -> Any:
    for ev in events:
        pending = _one(host, inst, conns, ev)
        if pending is not None:
            return _deliver_async(host, inst, conns, pending, events, gateway, number, marks)
    return _done(host, inst, gateway, number, marks)


async def _deliver_async(host: Host, inst: Actor, conns: Sockets,
                         pending: Awaitable[Any], events: Iterable[list[Any]], gateway: str,
                         number: int, marks: list[list[Any]]) -> dict[str, Any]:
    await pending
    for ev in events:
        more = _one(host, inst, conns, ev)
        if more is not None:
            await more
    return _done(host, inst, gateway, number, marks)


def _done(host: Host, inst: Actor, gateway: str, number: int,
          marks: list[list[Any]]) -> dict[str, Any]:
    """End a batch's turn: write its delivery mark (with its effects, when they fit in
    a stored value) and put the effects in the reply (when they fit in one); with more
    than one gateway they also leave for the others (ws_routes.py)."""
    act = host.act
    effects = act.ws_out
    max_message_bytes = host.services.max_message_bytes
    storage = _storage(inst)
    mark = wire.pack([gateway, number, effects])
    size = len(mark)
    limit = min(storage.store.max_value_bytes, max_message_bytes // 2)
    if size > limit:
        mark = wire.pack([gateway, number, None])   # too large to keep: sent once, at most
    where = home(gateway)
    others = [m for m in marks if home(m[0]) != where][:MAX_MARKS - 1]
    if others:
        entry = [gateway, number, effects if size <= limit else None]
        mark = wire.pack([entry, *others])
        if len(mark) > limit:      # the others' effects go first (theirs: at most once)
            mark = wire.pack([entry, *([g, n, None] for g, n, _e in others)])
    storage.write_raw(mark_key(act.prefix), mark)
    if size > max_message_bytes // 2:
        return {"ok": True, "effects": None}        # they go in parts, after the commit
    if not host.services.ws_fanout:
        act.ws_out = ()
    return {"ok": True, "effects": effects}


def _one(host: Host, inst: Actor, sockets: Sockets, ev: list[Any]) -> Awaitable[Any] | None:
    kind = ev[0]
    conns, held = sockets
    conn: Connection | None
    if kind == "c":
        conn = conns[ev[1][0]] = Connection(host, ev[1])
        held.add(conn.id)
        r = inst.on_connect(conn)
    elif kind == "m":
        conn = conns.get(ev[1])
        if conn is None:
            return None          # closed before its message's turn (it was in the roster sent)
        r = inst.on_message(conn, ev[2])
    elif kind == "r":            # the gateway's auto-responses: no handler runs
        for cid, at in ev[1]:
            if (conn := conns.get(cid)) is not None:
                conn.auto_response_at = float(at)
        return None
    else:
        conn = conns.pop(ev[1], None)
        held.discard(ev[1])
        if conn is None:
            return None
        r = inst.on_disconnect(conn)
    return r if inspect.isawaitable(r) else None
