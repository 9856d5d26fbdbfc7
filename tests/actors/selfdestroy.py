"""Actors for tests/node/test_selfdestroy.py: ``self.destroy()`` and the listing of
actors that empty their own state and storage.

``Session`` writes nothing in ``on_start`` (so a read-only ask to a destroyed session
leaves it unlisted) and counts its starts in memory only (``peek`` shows them). A
``"file"`` kwarg names a side-channel file that ``on_stop`` appends a line to: it
survives the turn and the worker.
"""
from __future__ import annotations

import asyncio
from typing import Any

import actorsys


class Session(actorsys.Actor):
    """A session with state, storage and alarms that can end itself."""

    def on_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts = 1            # in memory only: a fresh instance says 1
        self.stop_file = kwargs.get("file")

    def on_stop(self) -> None:
        if self.stop_file:
            with open(self.stop_file, "a") as f:
                f.write(f"on_stop {self.key}\n")

    def open(self, data: Any, ttl: float | None = None, later: bool = True) -> str:
        """State, two storage entries, and alarms: ``expire`` in ``ttl`` seconds (it
        destroys the session) and ``later`` in an hour."""
        self.state["data"] = data
        self.storage.put({"blob": data, "other": [1, 2, 3]})
        if ttl is not None:
            self.set_alarm(ttl, "expire")
        if later:
            self.set_alarm(3600, "later")
        return "open"

    def peek(self) -> dict[str, Any]:
        """Everything this actor holds (read only)."""
        return {"state": dict(self.state), "storage": self.storage.list(),
                "alarms": sorted(self.alarms()), "fresh": self.starts == 1}

    def bump(self) -> int:
        self.starts += 1
        return self.starts

    def put(self, key: str, value: Any) -> None:
        self.storage.put(key, value)

    def set_state(self, key: str, value: Any) -> None:
        self.state[key] = value

    def end(self) -> str:
        """Destroy the session; what this turn writes is discarded with it."""
        self.state["written"] = "in the destroying turn"
        self.storage.put("late", 1)
        self.set_alarm(3600, "late")
        self.destroy()
        return "bye"

    async def end_async(self, witness: str) -> str:
        """Destroy from an async handler that awaited another actor first; the tell
        leaves with the destroying turn's commit."""
        seen = await self.ref("Session", witness).ask("peek")
        self.destroy()
        self.ref("Session", witness).tell("set_state", "told_by", self.key)
        await asyncio.sleep(0)
        return f"bye after {sorted(seen)}"

    def end_then_raise(self) -> None:
        self.destroy()
        raise RuntimeError("changed my mind after destroy()")

    def clear(self) -> None:
        """Empty the state, the storage and the alarms (without destroy())."""
        self.state.clear()
        self.storage.delete_all()
        for name in list(self.alarms()):
            self.cancel_alarm(name)

    def clear_state(self) -> None:
        self.state.clear()

    def delete(self, key: str) -> bool:
        return self.storage.delete(key)

    def on_alarm(self, name: str, payload: Any) -> None:
        if name == "expire":
            self.destroy()


class Room(actorsys.Actor):
    """A WebSocket room: counts messages in its state; "end" says bye, closes the
    socket and destroys the room (from on_message)."""

    def on_connect(self, conn: Any) -> None:
        conn.send("hello")

    def on_message(self, conn: Any, data: Any) -> None:
        if data == "end":
            conn.send("bye")
            conn.close(4001, "room ended")
            self.destroy()
            return
        self.state["n"] = self.state.get("n", 0) + 1
        conn.send(str(self.state["n"]))

    def on_disconnect(self, conn: Any) -> None:
        pass

    def count(self) -> int:
        return self.state.get("n", 0)
