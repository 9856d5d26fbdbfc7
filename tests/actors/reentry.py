"""Test actors for call-chain reentrancy (tests/node/test_reentry.py): actors that ask
each other back along the call chain."""
from __future__ import annotations

from typing import Any

import actorsys


class Ping(actorsys.Actor):
    """A ping-pong player: ``ping_pong`` asks a peer to ``bounce``, which asks back."""

    async def ping_pong(self, peer_type: str, peer: str, depth: int = 1) -> dict[str, Any]:
        """Write, ask the peer (which comes back here ``depth`` times), write again."""
        self.state["outer"] = self.state.get("outer", 0) + 1
        self.storage.put("before", depth)
        answer = await self.ref(peer_type, peer).ask("bounce", self.type_name, self.key, depth)
        self.state["after"] = answer
        self.storage.put("after", depth)
        return {"answer": answer, "state": dict(self.state)}

    async def bounce(self, back_type: str, back: str, depth: int) -> list[Any]:
        """Asked by a peer's ping_pong: ask the peer back (``pong``), or go deeper."""
        self.state["bounces"] = self.state.get("bounces", 0) + 1
        if depth <= 1:
            return ["bounced", await self.ref(back_type, back).ask("pong")]
        return ["bounced", await self.ref(back_type, back).ask(
            "ping_pong", self.type_name, self.key, depth - 1)]

    def pong(self) -> dict[str, Any]:
        """The nested turn: sees the outer turn's uncommitted write, and writes its own."""
        self.state["pongs"] = self.state.get("pongs", 0) + 1
        self.storage.put("pong", self.state["pongs"])
        return {"outer_seen": self.state.get("outer"), "before_seen": self.storage.get("before")}

    def fail_pong(self) -> None:
        self.state["failed_write"] = True
        raise ValueError("nested boom")

    async def ask_back(self, peer: str, method: str) -> Any:
        """Ask the peer to ask ``method`` back here."""
        return await self.ref("Ping", peer).ask("relay", self.type_name, self.key, method)

    async def ask_fail(self, peer: str) -> dict[str, Any]:
        """The nested turn raises: the caller in between gets RemoteError; this turn goes on."""
        self.state["outer"] = self.state.get("outer", 0) + 1
        answer = await self.ref("Ping", peer).ask("relay", self.type_name, self.key, "fail_pong")
        self.state["after"] = answer
        return {"answer": answer, "state": dict(self.state)}

    async def relay(self, back_type: str, back: str, method: str) -> str:
        try:
            await self.ref(back_type, back).ask(method)
        except actorsys.Deadlock as exc:
            return f"Deadlock: {exc}"
        except actorsys.RemoteError as exc:
            return f"caught {exc.remote_type}: {exc.remote_message}"
        return "no error"

    async def ask_then_raise(self, peer: str) -> None:
        """A nested turn commits; then this outer turn raises."""
        self.state["outer_uncommitted"] = "seen by the nested turn"
        await self.ref("Ping", peer).ask("bounce", self.type_name, self.key, 1)
        self.state["lost"] = True
        raise RuntimeError("outer boom")

    def read(self) -> dict[str, Any]:
        return {"state": dict(self.state), "storage": self.storage.list()}

    def sync_asks(self, peer: str) -> Any:
        """A synchronous handler that asks: the ask raises TypeError at the call."""
        return self.ref("Ping", peer).ask("read")

    def sync_tells(self, peer: str) -> str:
        self.ref("Ping", peer).tell("note", "told")
        return "told"

    def note(self, what: str) -> None:
        self.state["note"] = what

    async def async_asks(self, peer: str) -> Any:
        return await self.ref("Ping", peer).ask("read")

    async def on_alarm(self, name: str, payload: Any) -> None:
        self.state["alarm_read"] = await self.ref("Ping", payload).ask("read")

    def arm(self, peer: str) -> None:
        self.set_alarm(0.01, "ask", peer)


class Stubborn(Ping):
    """Refuses reentrant calls."""

    reentrant = False


class Starter(actorsys.Actor):
    """Asks from an async on_start."""

    async def on_start(self) -> None:
        self.state["started_with"] = await self.ref("Ping", "started-peer").ask("read")

    def get(self) -> Any:
        return self.state.get("started_with")
