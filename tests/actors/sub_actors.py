"""Actors for the subscription tests (``tests/node/test_subscriptions.py``): a feed that
Python subscribers (``client.subscribe``) connect to, as browsers would."""
from __future__ import annotations

from typing import Any

import actorsys


class Feed(actorsys.Actor):
    """Greets each connection with what it knows of it, broadcasts what it is told to,
    numbers what its subscribers send (``"n"``, committed with each turn) and counts its
    connects and disconnects durably."""

    def on_start(self) -> None:
        for k in ("n", "connects", "disconnects"):
            self.state.setdefault(k, 0)

    def on_connect(self, conn: Any) -> None:
        self.state["connects"] += 1
        conn.send({"hello": conn.id, "kind": conn.kind, "tags": sorted(conn.tags),
                   "query": conn.query, "user": conn.user, "remote": conn.remote})

    def on_message(self, conn: Any, data: Any) -> None:
        if data == "close":
            conn.close(4001, "asked to")
        elif data == "bye":
            conn.close()
        elif isinstance(data, str) and data.startswith("echo:"):
            conn.send(data[5:])
        elif isinstance(data, bytes):
            conn.send(data[::-1])
        else:
            self.state["n"] += 1
            self.broadcast({"n": self.state["n"], "data": data})
            if data == "boom":
                raise ValueError("boom on purpose: this turn's broadcast never leaves")

    def on_disconnect(self, conn: Any) -> None:
        self.state["disconnects"] += 1

    def publish(self, data: Any, tag: str | None = None) -> int:
        """An ask that broadcasts (to the connections with ``tag``, if given)."""
        self.broadcast(data, tag=tag)
        return len(self.connections(tag))

    def kinds(self) -> list[list[Any]]:
        return [[c.kind, sorted(c.tags)] for c in self.connections()]

    def counts(self) -> dict[str, int]:
        return {k: self.state[k] for k in ("n", "connects", "disconnects")}


class Shy(actorsys.Actor):
    """Refuses every connection in its on_connect."""

    def on_connect(self, conn: Any) -> None:
        conn.close(4003, "no subscribers here")
