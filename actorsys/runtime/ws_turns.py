"""The ``$ws`` turn: a batch of socket events delivered to an actor's handlers, with the
delivery mark that makes a redelivered batch apply once (see
:mod:`actorsys.actor.connection` for the user's view, :mod:`actorsys.protocol.ws` for the
messages)."""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Iterable

from ..actor.connection import Connection
from ..protocol import wire
from ..protocol.ws import check_batch
from ..storage.keys import mark_key

if TYPE_CHECKING:
    from ..actor import Actor

def run_batch(inst: "Actor", gateway: str, number: int, roster: "list | dict | None",
              events: list) -> Any:
    """The ``$ws`` turn: deliver a batch of socket events to the actor's handlers.

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
    act = inst._act
    check_batch(gateway, number, roster, events)
    raw = inst.storage.read_raw(mark_key(act.prefix))
    if raw is not None:
        seen_gateway, seen, effects = wire.unpack_stored(raw)
        if seen_gateway == gateway and number <= seen:
            return {"dup": True, "effects": effects if number == seen else []}
    if isinstance(roster, dict):
        if roster["i"] == 0:
            act.ws_parts = [0, []]                  # [the next part's index, records so far]
        elif act.ws_parts is None or roster["i"] != act.ws_parts[0]:
            return {"need": "roster"}
        act.ws_parts[0] = roster["i"] + 1
        act.ws_parts[1].extend(roster["records"])
        if roster["i"] < roster["n"] - 1:
            return {"more": True}
        roster, act.ws_parts = act.ws_parts[1], None
    if roster is not None:
        act.ws = {r[0]: Connection(act, r) for r in roster}
        act.ws_gateway = gateway
    elif act.ws is None or act.ws_gateway != gateway:
        return {"need": "roster"}
    act.ws_batch = [gateway, number]
    return _deliver(inst, act.ws, iter(events), gateway, number)


def _deliver(inst: "Actor", conns: dict[str, Connection], events: Iterable[list],
             gateway: str, number: int) -> Any:
    for ev in events:
        pending = _one(inst, conns, ev)
        if pending is not None:
            return _deliver_async(inst, conns, pending, events, gateway, number)
    return _done(inst, gateway, number)


async def _deliver_async(inst: "Actor", conns: dict[str, Connection], pending: Awaitable[Any],
                         events: Iterable[list], gateway: str, number: int) -> dict:
    await pending
    for ev in events:
        more = _one(inst, conns, ev)
        if more is not None:
            await more
    return _done(inst, gateway, number)


def _done(inst: "Actor", gateway: str, number: int) -> dict:
    """End a batch's turn: write its delivery mark (with its effects, when they fit in
    a stored value) and put the effects in the reply (when they fit in one)."""
    act = inst._act
    effects = act.ws_out
    cfg = inst._worker.cfg
    mark = wire.pack([gateway, number, effects])
    size = len(mark)
    if size > min(inst.storage.store.max_value_bytes, cfg.max_message_bytes // 2):
        mark = wire.pack([gateway, number, None])   # too large to keep: sent once, at most
    inst.storage.write_raw(mark_key(act.prefix), mark)
    if size > cfg.max_message_bytes // 2:
        return {"ok": True, "effects": None}        # they go in parts, after the commit
    act.ws_out = []
    return {"ok": True, "effects": effects}


def _one(inst: "Actor", conns: dict[str, Connection], ev: list) -> Awaitable[Any] | None:
    kind = ev[0]
    if kind == "c":
        conn = conns[ev[1][0]] = Connection(inst._act, ev[1])
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
