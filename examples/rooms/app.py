"""A chat room per actor: messages in storage, a digest alarm, history to undo a bad post."""
from __future__ import annotations

from typing import Any

import actorsys

KEEP = 100          # messages kept per room


class Room(actorsys.Actor):
    def on_start(self) -> None:
        self.state.setdefault("posted", 0)

    def post(self, user: str, text: str) -> int:
        n: int = self.state["posted"] + 1
        self.state["posted"] = n
        self.storage.put(f"msg/{n:08d}", {"user": user, "text": text})
        if n > KEEP:                                  # bounded history: drop the oldest
            self.storage.delete(f"msg/{n - KEEP:08d}")
        if "digest" not in self.alarms():
            self.set_alarm(0.5, name="digest")        # one digest per quiet half second
        return n

    def recent(self, limit: int = 10) -> list[str]:
        msgs = self.storage.list(prefix="msg/", reverse=True, limit=limit)
        return [f"{m['user']}: {m['text']}" for m in reversed(msgs.values())]

    def on_alarm(self, name: str, payload: Any) -> None:
        users = {m["user"] for m in self.storage.list(prefix="msg/").values()}
        n = self.state["posted"]
        self.storage.put("digest", f"{n} message{'s' * (n != 1)} from {len(users)} "
                                   f"{'person' if len(users) == 1 else 'people'}")

    def digest(self) -> str | None:
        digest: str | None = self.storage.get("digest")
        return digest
