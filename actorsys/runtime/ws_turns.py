"""The ``$ws`` turn: a batch of socket events delivered to an actor's handlers, with the
delivery mark that makes a redelivered batch apply once (see
:mod:`actorsys.actor.connection` for the user's view, :mod:`actorsys.protocol.ws` for the
messages)."""
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
    raw = _storage(inst).read_raw(mark_key(act.prefix))
    if raw is not None:
        seen_gateway, seen, effects = wire.unpack_stored(raw)
        if seen_gateway == gateway and number <= seen:
            return {"dup": True, "effects": effects if number == seen else []}
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
        act.ws = {r[0]: Connection(host, r) for r in records}
        act.ws_gateway = gateway
    elif act.ws is None or act.ws_gateway != gateway:
        return {"need": "roster"}
    act.ws_batch = [gateway, number]
    return _deliver(host, inst, act.ws, iter(events), gateway, number)


def _storage(inst: Actor) -> Storage:
    return cast(Storage, inst.storage)


def _deliver(host: Host, inst: Actor, conns: dict[str, Connection], events: Iterable[list[Any]],
             gateway: str, number: int) -> Any:
    for ev in events:
        pending = _one(host, inst, conns, ev)
        if pending is not None:
            return _deliver_async(host, inst, conns, pending, events, gateway, number)
    return _done(host, inst, gateway, number)


async def _deliver_async(host: Host, inst: Actor, conns: dict[str, Connection],
                         pending: Awaitable[Any], events: Iterable[list[Any]], gateway: str,
                         number: int) -> dict[str, Any]:
    await pending
    for ev in events:
        more = _one(host, inst, conns, ev)
        if more is not None:
            await more
    return _done(host, inst, gateway, number)


def _done(host: Host, inst: Actor, gateway: str, number: int) -> dict[str, Any]:
    """End a batch's turn: write its delivery mark (with its effects, when they fit in
    a stored value) and put the effects in the reply (when they fit in one)."""
    act = host.act
    effects = act.ws_out
    max_message_bytes = host.services.max_message_bytes
    storage = _storage(inst)
    mark = wire.pack([gateway, number, effects])
    size = len(mark)
    if size > min(storage.store.max_value_bytes, max_message_bytes // 2):
        mark = wire.pack([gateway, number, None])   # too large to keep: sent once, at most
    storage.write_raw(mark_key(act.prefix), mark)
    if size > max_message_bytes // 2:
        return {"ok": True, "effects": None}        # they go in parts, after the commit
    act.ws_out = ()
    return {"ok": True, "effects": effects}


def _one(host: Host, inst: Actor, conns: dict[str, Connection],
         ev: list[Any]) -> Awaitable[Any] | None:
    kind = ev[0]
    conn: Connection | None
    if kind == "c":
        conn = conns[ev[1][0]] = Connection(host, ev[1])
        r = inst.on_connect(conn)
    elif kind == "m":
        conn = conns.get(ev[1])
        if conn is None:
            return None          # closed before its message's turn (it was in the roster sent)
        r = inst.on_message(conn, ev[2])
    else:
        conn = conns.pop(ev[1], None)
        if conn is None:
            return None
        r = inst.on_disconnect(conn)
    return r if inspect.isawaitable(r) else None
