"""Actors for the gateway tests: WebSocket handlers, HTTP methods, failures on purpose."""
from __future__ import annotations

import asyncio
from typing import Any

import actorsys


class Echo(actorsys.Actor):
    """Echoes every frame back, counts them durably, and tells who is connected."""

    def on_connect(self, conn: Any) -> None:
        self.state["connects"] = self.state.get("connects", 0) + 1
        if conn.query.get("tag"):
            conn.tag(conn.query["tag"])
        conn.attach({"name": conn.query.get("name", "anon")})
        conn.send({"hello": conn.id, "user": conn.user})

    def on_message(self, conn: Any, data: Any) -> None:
        self.state["messages"] = self.state.get("messages", 0) + 1
        if data == "boom":
            raise ValueError("boom on purpose")
        if data == "who":
            conn.send(sorted(c.attachment["name"] for c in self.connections()))
        elif isinstance(data, str) and data.startswith("big:"):
            for i in range(int(data[4:])):       # a turn's output larger than one message
                conn.send(f"{i}:" + "x" * 600_000)
        elif data == "close":
            conn.close(4000, "asked to")
        elif isinstance(data, str) and data.startswith("all:"):
            self.broadcast(data[4:], tag=conn.query.get("to"))
        elif isinstance(data, str) and data.startswith("others:"):
            self.broadcast(data[7:], exclude=conn)
        else:
            conn.send(data)

    def on_disconnect(self, conn: Any) -> None:
        self.state["disconnects"] = self.state.get("disconnects", 0) + 1
        self.broadcast({"left": conn.attachment["name"]})

    def counts(self) -> dict[str, int]:
        return {k: self.state.get(k, 0) for k in ("connects", "messages", "disconnects")}

    def add(self, a: int, b: int = 0) -> int:
        return a + b

    def fail(self) -> None:
        raise KeyError("no such thing")

    def raw(self) -> bytes:
        return b"\x00\x01"

    def shout(self, text: str) -> int:
        """An HTTP ask that broadcasts to the actor's sockets."""
        self.broadcast(text)
        return len(self.connections())

    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"


def allow_token(request: Any) -> Any:
    """The auth hook: a request needs ?token=secret (or the header); the user is its name."""
    token = request.query.get("token") or request.headers.get("x-token")
    if token != "secret":
        return False
    return {"name": request.query.get("name", "tester")}


class AsyncEcho(actorsys.Actor):
    """Echoes every text frame after an ``await``: a turn that suspends must not let a
    later frame's reply overtake an earlier one."""

    async def on_message(self, conn: Any, data: Any) -> None:
        await asyncio.sleep(0.01)
        self.state["messages"] = self.state.get("messages", 0) + 1
        conn.send(data)

    def counts(self) -> dict[str, int]:
        return {"messages": self.state.get("messages", 0)}


class Straggler(actorsys.Actor):
    """An ``async on_message`` that sends, then awaits for long (and sends again when
    cancelled): a turn killed meanwhile never commits, so none of its sends may leave."""

    def on_connect(self, conn: Any) -> None:
        conn.send("hello")

    async def on_message(self, conn: Any, data: Any) -> None:
        conn.send(f"partial:{data}")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            conn.send(f"zombie:{data}")
            raise
        conn.send(f"done:{data}")

    def ping(self) -> str:
        return "pong"


class Quiet(actorsys.Actor):
    """Echoes frames and stores nothing (no state, no storage). ``"bye:N"`` sends N
    frames of 10 kB, then closes the socket with 4000, all in the same turn."""

    def on_connect(self, conn: Any) -> None:
        conn.send("hello")

    def on_message(self, conn: Any, data: Any) -> None:
        if isinstance(data, str) and data.startswith("bye:"):
            for i in range(int(data[4:])):
                conn.send(f"f{i}:" + "y" * 10_000)
            conn.close(4000, "bye")
        else:
            conn.send(data)


class Numbers(actorsys.Actor):
    """Keeps every number its sockets send (``"n:17"``) in the order its turns took them,
    and acknowledges each to its sender (``"ack:17"``): the acknowledgement leaves only
    once the batch that took it has committed (on a replicated shard: once a quorum of its
    replicas holds it). ``got()`` reports the numbers; ``shout`` broadcasts from an ask."""

    def on_connect(self, conn: Any) -> None:
        conn.send({"hello": conn.id})

    def on_message(self, conn: Any, data: Any) -> None:
        if isinstance(data, str) and data.startswith("n:"):
            n = int(data[2:])
            self.state.setdefault("got", []).append(n)
            conn.send(f"ack:{n}")

    def got(self) -> list[int]:
        return list(self.state.get("got", []))

    def shout(self, text: str) -> int:
        self.broadcast(text)
        return len(self.connections())


class Beat(actorsys.Actor):
    """For the auto_response tests: counts its activations durably (``on_start`` runs
    after every one), echoes text frames as ``"got DATA"`` and binary ones as they are,
    tells ``conn.auto_response_at`` on ``"when?"``, sends N frames of 4 kB on
    ``"flood:N"`` and answers ``"slow"`` half a second later."""

    def on_start(self) -> None:
        self.state["activations"] = self.state.get("activations", 0) + 1

    def on_connect(self, conn: Any) -> None:
        conn.send("hello")

    async def on_message(self, conn: Any, data: Any) -> None:
        if data == "when?":
            conn.send({"at": conn.auto_response_at, "activations": self.state["activations"]})
        elif isinstance(data, str) and data.startswith("flood:"):
            for i in range(int(data[6:])):
                conn.send(f"{i}:" + "f" * 4000)
        elif data == "slow":
            await asyncio.sleep(0.5)
            conn.send("slow done")
        elif isinstance(data, bytes):
            conn.send(data)
        else:
            conn.send(f"got {data}")
