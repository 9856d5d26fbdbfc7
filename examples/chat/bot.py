"""A Python program in a chat room: it subscribes to the room as a browser's page
connects to it, reads what everyone says, and answers.

``python examples/chat/bot.py`` starts the chat demo's node (its ``node.toml``, with the
data in a temporary directory and the gateway on a free port), puts ``echo-bot`` in
``ChatRoom/lobby``, and has ``ada`` (a second subscription, standing in for a page) say
two things; the bot answers each. To put the bot in a running demo (``scripts/demo
chat``, whose log names its router's endpoint) and chat with it from the page, give
that endpoint: ``python examples/chat/bot.py ipc:///tmp/actorsys-.../router.sock``.

The room sees the bot as one more connection (``conn.kind == "python"``): it is listed in
the presence, gets the history on connect, and its ``send`` is a message like a page's.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import actorsys  # noqa: E402

BOT = "echo-bot"


async def bot(client: actorsys.AsyncClient, room: str, ready: asyncio.Event,
              answers: int | None = None) -> None:
    """Be in ``room`` and answer everyone else's messages (``answers`` of them, or forever)."""
    async with client.subscribe(("ChatRoom", room), query={"name": BOT}, decode=json.loads) as sub:
        answered = 0
        async for event in sub:                      # the room's JSON frames, decoded
            if event["type"] == "history":
                print(f"[{BOT}] in {room}, {len(event['messages'])} earlier messages")
                ready.set()
            elif event["type"] == "presence":
                print(f"[{BOT}] here now: {', '.join(event['users'])}")
            elif event["type"] == "message" and event["name"] != BOT:
                text = event["text"]
                sub.send({"type": "say", "text": f"{event['name']}, you said {text!r} "
                                                 f"({len(text.split())} words)"})
                answered += 1
                if answers is not None and answered == answers:
                    return                           # leaving the with: on_disconnect


async def chat(client: actorsys.AsyncClient, room: str, name: str, lines: list[str]) -> None:
    """Say each of ``lines`` in ``room`` as ``name`` and wait for the bot's answer."""
    async with client.subscribe(("ChatRoom", room), query={"name": name}, decode=json.loads) as sub:
        for line in lines:
            sub.send({"type": "say", "text": line})
            print(f"[{name}] says: {line}")
            event: Any
            async for event in sub:
                if event["type"] == "message" and event["name"] == BOT:
                    print(f"[{name}] {BOT} answers: {event['text']}")
                    break


async def demo(endpoint: str) -> None:
    async with actorsys.connect_async(endpoint) as client:
        ready = asyncio.Event()
        in_room = asyncio.create_task(bot(client, "lobby", ready, answers=2))
        await asyncio.wait_for(ready.wait(), 30)
        await chat(client, "lobby", "ada", ["hello bot", "what can you do?"])
        await asyncio.wait_for(in_room, 30)
        history = await client.ref("ChatRoom", "lobby").ask("history", 10)
        print("the room kept:", [f"{m['name']}: {m['text']}" for m in history])


async def stay(endpoint: str) -> None:
    async with actorsys.connect_async(endpoint) as client:
        print(f"{BOT} joins ChatRoom/lobby at {endpoint}; Ctrl-C to leave")
        await bot(client, "lobby", asyncio.Event())


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(stay(sys.argv[1]))
        return
    cfg = actorsys.load_config(os.path.join(HERE, "node.toml"))
    assert cfg.gateway is not None
    cfg.gateway["listen"] = "127.0.0.1:0"             # (beside a demo that may be running)
    with tempfile.TemporaryDirectory(prefix="actorsys-chat-bot-") as tmp:
        cfg.data_dir = os.path.join(tmp, "data")
        with actorsys.Node(cfg) as node:
            asyncio.run(demo(node.endpoint))
    print("node stopped")


if __name__ == "__main__":
    main()
