"""A login session, one actor per session id: what ``test_session.py`` tests with
actorsys's pytest plugin (see README.md beside this file).

``login`` starts the session and sets its expiry alarm; ``touch`` (or any message on one
of its WebSockets) pushes the expiry back; the alarm ends it: the sockets are told and
closed, and the actor deletes itself. Every login and touch is logged in storage.
"""
from __future__ import annotations

from typing import Any

import actorsys

TTL = 1800.0      # seconds of inactivity before a session expires


class Session(actorsys.Actor):
    """One user's session (see the module docstring)."""

    def login(self, user: str, ttl: float = TTL) -> str:
        self.state["user"] = user
        self._log({"login": user})
        self.set_alarm(ttl, "expire")
        return user

    def touch(self, ttl: float = TTL) -> bool:
        """Push the expiry back; False if nobody is logged in."""
        if "user" not in self.state:
            return False
        self._log("touch")
        self.set_alarm(ttl, "expire")
        return True

    def whoami(self) -> str | None:
        return self.state.get("user")

    def on_alarm(self, name: str, payload: Any) -> None:
        if name == "expire":
            self.broadcast({"expired": self.state.get("user")})
            for conn in self.connections():
                conn.close(4001, "session expired")
            self.destroy()

    def on_connect(self, conn: actorsys.Connection) -> None:
        conn.send({"user": self.state.get("user")})
        if "user" not in self.state:
            conn.close(4003, "not logged in")

    def on_message(self, conn: actorsys.Connection, data: str | bytes) -> None:
        conn.send({"ok": self.touch()})

    def _log(self, event: Any) -> None:
        n = self.state["events"] = self.state.get("events", 0) + 1
        self.storage.put(f"event/{n:06d}", event)
