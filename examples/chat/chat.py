"""A chat room per actor, reached over WebSocket through the node's gateway.

``/ws/ChatRoom/<room>?name=<you>`` attaches a browser to the room ``<room>``. The room
keeps its latest :data:`KEEP` messages in ``self.storage`` under sortable keys
(``msg/000000000042``); the turn that stores a new message deletes the one that fell
out of the window, so the history stays bounded. Who is online comes from the gateway
(``self.connections()``), so presence survives passivation and worker crashes.

Messages, as JSON text frames:

* client -> room: ``{"type": "say", "text": "..."}``
* room -> client on connect: ``{"type": "history", "messages": [...]}``
* room -> everyone: ``{"type": "message", "id", "name", "text", "t"}`` (``t``: epoch ms)
  and ``{"type": "presence", "users": [...]}`` when someone joins or leaves
* room -> one client: ``{"type": "error", "message": "..."}`` for a bad request
"""
from __future__ import annotations

import json
import time
from typing import Any

import actorsys

KEEP = 200                  # messages kept per room
MAX_TEXT = 2000             # characters per message
MAX_NAME = 40               # characters per name
HISTORY_BYTES = 256 * 1024  # the history frame sent on connect stays under this


def clean_name(value: Any) -> str | None:
    """A display name (1-40 printable characters, trimmed), or None if it is not one."""
    if not isinstance(value, str):
        return None
    name = " ".join(value.split())
    if not 0 < len(name) <= MAX_NAME or not name.isprintable():
        return None
    return name


def clean_text(value: Any) -> str | None:
    """A message text (1-2000 characters once trimmed), or None if it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not 0 < len(text) <= MAX_TEXT:
        return None
    return text


class ChatRoom(actorsys.Actor):
    def on_start(self) -> None:
        self.state.setdefault("seq", 0)

    # -- WebSocket events --------------------------------------------------------
    def on_connect(self, conn: actorsys.Connection) -> None:
        name = clean_name(conn.query.get("name"))
        if name is None:                       # 4008: the page does not retry
            conn.close(4008, f"?name= must be 1-{MAX_NAME} printable characters")
            return
        conn.attach({"name": name})
        conn.send({"type": "history", "messages": self._recent_within(HISTORY_BYTES)})
        self._presence()

    def on_message(self, conn: actorsys.Connection, data: str | bytes) -> None:
        if not conn.attachment:                # refused in on_connect, closing
            return
        try:
            msg = json.loads(data)
        except (TypeError, ValueError):
            return self._error(conn, "send JSON text frames")
        if not isinstance(msg, dict) or msg.get("type") != "say":
            return self._error(conn, 'expected {"type": "say", "text": ...}')
        text = clean_text(msg.get("text"))
        if text is None:
            return self._error(conn, f"a message is 1-{MAX_TEXT} characters")
        self.broadcast({"type": "message", **self._store(conn.attachment["name"], text)})

    def on_disconnect(self, conn: actorsys.Connection) -> None:
        self._presence(leaving=conn)

    # -- HTTP: POST /actors/ChatRoom/<room>/history ------------------------------
    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest ``limit`` messages (1-200), oldest first."""
        if type(limit) is not int or not 0 < limit <= KEEP:
            raise ValueError(f"limit is an integer from 1 to {KEEP}")
        return list(reversed(self.storage.list(prefix="msg/", reverse=True, limit=limit).values()))

    # -- internals ---------------------------------------------------------------
    def _store(self, name: str, text: str) -> dict[str, Any]:
        seq = self.state["seq"] = self.state["seq"] + 1
        message = {"id": seq, "name": name, "text": text, "t": int(time.time() * 1000)}
        self.storage.put(f"msg/{seq:012d}", message)
        # everything older than the window goes in this same turn (normally one message)
        if seq > KEEP:
            old = self.storage.list(prefix="msg/", end=f"msg/{seq - KEEP + 1:012d}")
            self.storage.delete(list(old))
        return message

    def _recent_within(self, budget: int) -> list[dict[str, Any]]:
        """The newest kept messages whose JSON fits in ``budget`` bytes, oldest first."""
        out, used = [], 0
        for message in self.storage.list(prefix="msg/", reverse=True).values():
            used += len(json.dumps(message).encode()) + 1
            if used > budget:
                break
            out.append(message)
        return out[::-1]

    def _presence(self, leaving: actorsys.Connection | None = None) -> None:
        """Tell everyone who is here: the names kept with the open sockets (a socket
        refused in on_connect has none). A closing socket is no longer listed."""
        names = {c.attachment["name"] for c in self.connections() if c.attachment}
        self.broadcast({"type": "presence", "users": sorted(names, key=str.casefold)},
                       exclude=leaving)

    @staticmethod
    def _error(conn: actorsys.Connection, message: str) -> None:
        conn.send({"type": "error", "message": message})
