"""The gateway <-> worker sub-protocol for WebSockets (see :mod:`actorsys.actor.connection`
for what the actor sees).

The gateway asks an actor ``$ws(gateway, batch_number, roster_or_None, events)``; a
socket event is ``["c", record]`` (connect), ``["m", id, data]`` (a frame) or
``["d", id]`` (disconnect); a socket record is ``[id, tags, attachment, info]``. A batch
may begin with ``["r", [[id, time], ...]]``: when the gateway last answered those
sockets' frames itself (``auto_response``; ``info["auto_response_at"]`` in a record), no
handler's event.

A turn's effects, in order, go back in its batch's reply (or, for a turn that is not a
socket event's, and for output too large for a reply, in ``wire.WS`` frames)::

    ["s", conn_id, data]              send data (str: a text frame, bytes: binary)
    ["b", tag, exclude_id, data, ids, gateways]
                                      to every socket of the actor (with the tag): ``ids``
                                      are the sockets the actor knew at that point of
                                      the turn; None when it knew none (a turn that is
                                      not a socket event's, after a restart): then the
                                      sockets whose on_connect had committed.
                                      ``gateways`` (with ``ids``; may be absent): the
                                      gateway incarnations whose sockets the actor knew;
                                      any other gateway takes ``ids`` as None
    ["x", conn_id, code, reason]      close
    ["t", conn_id, [tag, ...]]        add tags
    ["a", conn_id, value]             keep a value with the socket (conn.attachment)
"""
from __future__ import annotations

import json
from typing import Any

from ..errors import BadRequest
from . import wire

#: the ask the gateway sends: ``$ws(gateway, batch_number, roster_or_None, events)``
METHOD = "$ws"
#: how many tags a socket may carry, and how long one may be
MAX_TAGS, MAX_TAG_CHARS = 16, 256


#: the largest attachment (msgpack bytes), as Durable Objects' serializeAttachment
MAX_ATTACHMENT_BYTES = 2048


def frame_of(data: Any, what: str) -> "str | bytes":
    """A WebSocket frame of ``data``: ``str`` as text, ``bytes`` as binary, anything else
    as its JSON text; else TypeError naming ``what`` sends it. The one rule for
    ``conn.send``, ``self.broadcast`` and a Python subscription's ``send``."""
    if isinstance(data, (str, bytes)):
        return data
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} sends str, bytes or JSON-able data, got "
                        f"{type(data).__name__}: {exc}") from None


def check_batch(gateway: Any, number: Any, roster: Any, events: Any) -> None:
    if not isinstance(gateway, str) or type(number) is not int or not isinstance(events, list):
        raise BadRequest("$ws takes (gateway, batch_number, roster, events)")
    if isinstance(roster, dict):
        if not (type(roster.get("n")) is int and type(roster.get("i")) is int
                and 0 <= roster["i"] < roster["n"] and isinstance(roster.get("records"), list)):
            raise BadRequest("a roster part is {n, i, records}")
        records = roster["records"]
    elif roster is None or isinstance(roster, list):
        records = roster or ()
    else:
        raise BadRequest("a roster is a list of socket records, a part of one, or nil")
    for r in records:
        check_record(r)
    for ev in events:
        if not isinstance(ev, list) or not ev or ev[0] not in ("c", "m", "d", "r"):
            raise BadRequest("a socket event is ['c', record], ['m', id, data] or ['d', id]")
        if ev[0] == "c" and len(ev) == 2:
            check_record(ev[1])
        elif ev[0] == "r":
            if not (len(ev) == 2 and isinstance(ev[1], list) and all(
                    isinstance(t, list) and len(t) == 2 and isinstance(t[0], str)
                    and type(t[1]) in (int, float) for t in ev[1])):
                raise BadRequest("auto-response times are ['r', [[id, time], ...]]")
        elif not ((ev[0] == "m" and len(ev) == 3 and isinstance(ev[1], str)
                   and isinstance(ev[2], (str, bytes)))
                  or (ev[0] == "d" and len(ev) == 2 and isinstance(ev[1], str))):
            raise BadRequest("a socket event is ['c', record], ['m', id, data] or ['d', id]")


def check_record(r: Any) -> None:
    if not (isinstance(r, list) and len(r) == 4 and isinstance(r[0], str)
            and isinstance(r[1], list) and all(isinstance(t, str) for t in r[1])
            and isinstance(r[3], dict)):
        raise BadRequest("a socket record is [id, tags, attachment, info]")


def split(items: list[Any], limit: int) -> list[list[Any]]:
    """Items (effects, roster records) in order, in parts whose encoding stays within
    about ``limit`` bytes (at least one part; an item larger than ``limit`` is a part of
    its own: each effect alone fits in a message, see _effect)."""
    parts: list[list[Any]] = [[]]
    size = 0
    for item in items:
        n = len(wire.pack(item)) + 16
        if parts[-1] and size + n > limit:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += n
    return parts
