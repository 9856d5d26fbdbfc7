"""A collaborative drawing room: one actor per room, its strokes in storage, live over WebSockets.

Browsers connect to ``/ws/DrawingRoom/{room}`` through the node's gateway. Every WebSocket
event is a turn of the room: a stroke is validated, stored and committed, then sent to the
other connections (and acknowledged to its author). The sockets live in the gateway, so a
worker crash or the room's passivation does not drop them: the next event reactivates the
room from its last commit.

Messages are JSON text frames (see README.md beside this file)::

    page -> room   {"type": "stroke", "points": [[x, y], ...], "color": "#rrggbb",
                    "size": 1..50, "erase": false, "ref": "optional-client-id"}
                   {"type": "clear"}
                   {"type": "more", "after": id}        the next part of a large snapshot
    room -> page   {"type": "snapshot", "strokes": [...], "users": n, "more": bool}
                   {"type": "more", "strokes": [...], "more": bool}
                   {"type": "stroke", "stroke": {..., "id": id, "t": ms}}
                   {"type": "ack", "id": id, "ref": ...}
                   {"type": "clear"}
                   {"type": "users", "count": n}
                   {"type": "error", "message": "...", "ref": ...}

A snapshot larger than :data:`PART_BYTES` comes in parts the page asks for one at a time,
so no turn sends more than about that much, however big the picture.
"""
from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import actorsys

KEEP = 1000                  # strokes kept per room (older ones are deleted) ...
KEEP_POINTS = 250_000        # ... and points kept in all (about 4 MB of snapshot)
MAX_POINTS = 2000            # points per stroke message (the page sends long strokes in chunks)
MIN_SIZE, MAX_SIZE = 1, 50   # brush size, in thousandths of the canvas width
PART_BYTES = 256 * 1024      # a snapshot part holds about this many bytes of strokes
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_REF = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class BadMessage(ValueError):
    """A page's message the room refuses (the sender gets an error frame)."""


def _key(seq: int) -> str:
    return f"s{seq:012d}"          # sortable: storage.list returns strokes in drawing order


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadMessage(f"{what} must be a finite number")
    return value


def parse_stroke(msg: dict[str, Any]) -> dict[str, Any]:
    """The stroke a page sent, checked and normalised (points rounded to 4 decimals)."""
    points = msg.get("points")
    if not isinstance(points, list) or not points:
        raise BadMessage("points must be a non-empty list of [x, y] pairs")
    if len(points) > MAX_POINTS:
        raise BadMessage(f"a stroke has at most {MAX_POINTS} points (got {len(points)}); "
                         f"send long strokes in chunks")
    clean = []
    for p in points:
        if not isinstance(p, list) or len(p) != 2:
            raise BadMessage("each point must be an [x, y] pair")
        x, y = _number(p[0], "x"), _number(p[1], "y")
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise BadMessage("point coordinates are normalised to 0..1")
        clean.append([round(x, 4), round(y, 4)])
    color = msg.get("color")
    if not isinstance(color, str) or not _COLOR.match(color):
        raise BadMessage("color must look like #rrggbb")
    size = _number(msg.get("size"), "size")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise BadMessage(f"size must be between {MIN_SIZE} and {MAX_SIZE}")
    erase = msg.get("erase", False)
    if not isinstance(erase, bool):
        raise BadMessage("erase must be true or false")
    stroke = {"points": clean, "color": color.lower(), "size": round(size, 2), "erase": erase}
    ref = msg.get("ref")
    if ref is not None:
        if not isinstance(ref, str) or not _REF.match(ref):
            raise BadMessage("ref must be a short string of letters, digits and _.:-")
        stroke["ref"] = ref
    return stroke


class DrawingRoom(actorsys.Actor):
    """One drawing room. ``state``: ``seq`` (last stroke id), ``first`` (oldest id kept),
    ``points`` (points kept), ``strokes`` and ``clears`` (counters); ``storage``:
    ``s{id:012d}`` -> stroke."""

    def on_start(self) -> None:
        for name, start in (("seq", 0), ("first", 1), ("points", 0), ("strokes", 0), ("clears", 0)):
            self.state.setdefault(name, start)

    # -- WebSocket events --------------------------------------------------------------
    def on_connect(self, conn: actorsys.Connection) -> None:
        users = len(self.connections())
        strokes, more = self._part(0)
        conn.send(_json({"type": "snapshot", "strokes": strokes, "users": users, "more": more}))
        self.broadcast({"type": "users", "count": users}, exclude=conn)

    def on_disconnect(self, conn: actorsys.Connection) -> None:
        self.broadcast({"type": "users", "count": len(self.connections())})

    def on_message(self, conn: actorsys.Connection, data: str | bytes) -> None:
        msg: Any = None
        try:
            if not isinstance(data, str):
                raise BadMessage("messages are JSON text frames")
            try:
                msg = json.loads(data)
            except ValueError:
                raise BadMessage("not valid JSON") from None
            if not isinstance(msg, dict):
                raise BadMessage("a message is a JSON object with a type")
            kind = msg.get("type")
            if kind == "stroke":
                stroke = self._add(parse_stroke(msg))
                ack = {"type": "ack", "id": stroke["id"]}
                if "ref" in stroke:
                    ack["ref"] = stroke["ref"]
                conn.send(ack)
                self.broadcast(_json({"type": "stroke", "stroke": stroke}), exclude=conn)
            elif kind == "clear":
                self.clear()
            elif kind == "more":
                after = msg.get("after")
                if type(after) is not int or after < 0:
                    raise BadMessage("after must be a stroke id")
                strokes, more = self._part(after)
                conn.send(_json({"type": "more", "strokes": strokes, "more": more}))
            else:
                raise BadMessage(f"unknown message type {str(kind)[:40]!r} "
                                 f"(expected 'stroke', 'clear' or 'more')")
        except BadMessage as exc:
            error = {"type": "error", "message": str(exc)}
            ref = msg.get("ref") if isinstance(msg, dict) else None
            if isinstance(ref, str) and _REF.match(ref):
                error["ref"] = ref         # which of its strokes the page should drop
            conn.send(error)

    # -- the room's data ---------------------------------------------------------------
    def _add(self, stroke: dict[str, Any]) -> dict[str, Any]:
        """Store a checked stroke as the newest one; returns it with its ``id`` and ``t``."""
        seq = self.state["seq"] = self.state["seq"] + 1
        stroke = {**stroke, "id": seq, "t": int(time.time() * 1000)}
        self.storage.put(_key(seq), stroke)
        self.state["strokes"] += 1
        self.state["points"] += len(stroke["points"])
        st = self.state                                   # bounded: drop the oldest
        while seq - st["first"] + 1 > KEEP or (st["points"] > KEEP_POINTS and st["first"] < seq):
            old = self.storage.get(_key(st["first"]))
            if old is not None:
                self.storage.delete(_key(st["first"]))
                st["points"] -= len(old["points"])
            st["first"] += 1
        return stroke

    def _part(self, after: int) -> tuple[list[Any], bool]:
        """Strokes with ids above ``after``, about :data:`PART_BYTES` of them, and whether
        more follow."""
        out: list[Any] = []
        size = 0
        after = max(after, self.state["first"] - 1)
        while True:
            page = self.storage.list(prefix="s", start_after=_key(after), limit=100)
            for s in page.values():
                n = len(_json(s)) + 1
                if out and size + n > PART_BYTES:
                    return out, True
                out.append(s)
                size += n
                after = s["id"]
            if len(page) < 100:
                return out, False

    # -- plain handlers (also over HTTP: POST /actors/DrawingRoom/{room}/{method}) --------
    def clear(self) -> int:
        """Delete every stroke and tell every page; returns how many strokes there were."""
        gone = list(self.storage.list(prefix="s"))
        self.storage.delete(gone)
        self.state["first"] = self.state["seq"] + 1
        self.state["points"] = 0
        self.state["clears"] += 1
        self.broadcast({"type": "clear"})
        return len(gone)

    def strokes(self, after: int = 0, limit: int = KEEP) -> list[Any]:
        """The kept strokes in drawing order: those with ``id > after``, at most ``limit``
        (a reply is at most the node's max_message_bytes: page through a big room)."""
        if type(after) is not int or type(limit) is not int or limit < 0:
            raise ValueError("after and limit are integers (limit >= 0)")
        start = _key(max(after + 1, self.state["first"], 0))
        return list(self.storage.list(prefix="s", start=start, limit=limit).values())

    def stats(self) -> dict[str, Any]:
        """Counters: strokes drawn, kept and cleared, points kept, who is connected now."""
        st = self.state
        return {"strokes_drawn": st["strokes"], "strokes_kept": st["seq"] - st["first"] + 1,
                "points_kept": st["points"], "last_id": st["seq"], "clears": st["clears"],
                "users": len(self.connections())}
