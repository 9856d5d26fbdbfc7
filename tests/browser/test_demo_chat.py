"""The chat demo end to end in a real headless Chromium: two pages exchange messages,
presence follows who has the room open, history survives a reload and stays bounded,
and the keep-alive waits out a room too busy to read its pings."""
from __future__ import annotations

import re
import time
from typing import Callable

import pytest

from browser import screenshot
from demo_helpers import example_dir, example_node, post

EXAMPLE = example_dir("chat")


def open_chat(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("() => window.chat && chat.connected", timeout=15_000)
    return page


def expect_users(page, users: list[str], who: str) -> None:
    try:
        page.wait_for_function("(users) => JSON.stringify(chat.users) === JSON.stringify(users)",
                               arg=users, timeout=15_000)
    except Exception:
        raise AssertionError(f"{who} should show {users} online; it shows "
                             f"{page.evaluate('chat.users')}") from None
    shown = page.locator('[data-testid="user-name"]').all_inner_texts()
    assert shown == users, \
        f"{who}'s online list should read {users}, it reads {shown}"


def expect_messages(page, messages: list[tuple[str, str]], who: str) -> None:
    """Wait until the page shows exactly ``messages`` ((name, text), oldest first)."""
    want = [list(m) for m in messages]
    try:
        page.wait_for_function(
            "(want) => JSON.stringify(chat.messages.map(m => [m.name, m.text])) === JSON.stringify(want)",
            arg=want, timeout=15_000)
    except Exception:
        raise AssertionError(f"{who} should show the messages {messages}; it shows "
                             f"{page.evaluate('chat.messages.map(m => [m.name, m.text])')}") from None
    names = page.locator('[data-testid="message-name"]').all_inner_texts()
    texts = page.locator('[data-testid="message-text"]').all_inner_texts()
    assert list(zip(names, texts)) == messages, \
        f"{who}'s message list should read {messages}, it reads {list(zip(names, texts))}"


def say(page, text: str, press_enter: bool = True) -> None:
    page.locator('[data-testid="input"]').fill(text)
    if press_enter:
        page.locator('[data-testid="input"]').press("Enter")
    else:
        page.locator('[data-testid="send"]').click()


@pytest.mark.timeout(150)
def test_chat_messages_presence_and_history(tmp_path, browser):
    with example_node(EXAMPLE, tmp_path) as node:
        base = node.gateway_url
        ctx_a, ctx_b = browser.new_context(), browser.new_context()
        a = open_chat(ctx_a, f"{base}/?room=lobby&name=ada")
        expect_users(a, ["ada"], "ada's page")
        b = open_chat(ctx_b, f"{base}/?room=lobby&name=bob")
        expect_users(b, ["ada", "bob"], "bob's page")
        expect_users(a, ["ada", "bob"], "ada's page once bob joined")

        # two pages exchange messages, in order, on both sides
        say(a, "hello bob")
        expect_messages(b, [("ada", "hello bob")], "bob's page")
        say(b, "hi ada, how are you?", press_enter=False)
        say(a, "great: the room is an actor")
        chat = [("ada", "hello bob"), ("bob", "hi ada, how are you?"),
                ("ada", "great: the room is an actor")]
        expect_messages(a, chat, "ada's page")
        expect_messages(b, chat, "bob's page")
        assert a.locator('[data-testid="input"]').input_value() == "", "sending should clear the input"

        # the room validates what it is sent: a message over 2000 characters is refused
        a.evaluate("""() => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/ChatRoom/lobby?name=mallory`);
            ws.onopen = () => ws.send(JSON.stringify({type: "say", text: "x".repeat(2001)}));
            ws.onmessage = (ev) => { if (JSON.parse(ev.data).type === "error") { ws.close(); resolve(); } };
        })""")
        expect_users(a, ["ada", "bob"], "ada's page after mallory's socket closed")

        # presence drops bob when his page closes
        ctx_b.close()
        expect_users(a, ["ada"], "ada's page after bob's page closed")

        # history survives a reload (and the HTTP method reads it)
        a.reload()
        a.wait_for_function("() => window.chat && chat.connected")
        expect_messages(a, chat, "ada's page after a reload")
        expect_users(a, ["ada"], "ada's page after a reload")
        last = post(node, "/actors/ChatRoom/lobby/history", {"limit": 1})
        assert [(m["name"], m["text"]) for m in last] == chat[-1:], \
            f"history(limit=1) should return the last message, got {last}"

        # a guest on another device joins and the room looks lived-in for the screenshot
        ctx_c = browser.new_context()
        c = open_chat(ctx_c, f"{base}/?room=lobby&name=carol")
        expect_users(a, ["ada", "carol"], "ada's page once carol joined")
        say(c, "hi both! can I join?")
        expect_messages(a, chat + [("carol", "hi both! can I join?")], "ada's page")
        screenshot(a, "chat")
        ctx_c.close()
        ctx_a.close()


@pytest.mark.timeout(120)
def test_chat_history_keeps_the_latest_200(tmp_path, browser):
    with example_node(EXAMPLE, tmp_path) as node:
        context = browser.new_context()
        page = open_chat(context, f"{node.gateway_url}/?room=busy&name=ada")
        page.evaluate("() => { for (let i = 1; i <= 205; i++) chat.send(`message ${i}`); }")
        page.wait_for_function("() => chat.messages.length === 200"
                               " && chat.messages[199].text === 'message 205'", timeout=30_000)
        kept = post(node, "/actors/ChatRoom/busy/history", {"limit": 200})
        assert [m["text"] for m in kept] == [f"message {i}" for i in range(6, 206)], \
            f"the room should keep messages 6..205, it keeps {kept[0]['text']}..{kept[-1]['text']}"
        page.reload()
        page.wait_for_function("() => window.chat && chat.connected && chat.messages.length === 200",
                               timeout=15_000)
        assert page.evaluate("chat.messages[0].text") == "message 6"
        context.close()


def wait_for(page, check: "str | Callable[[], bool]", what: str = "", seconds: float = 15.0) -> None:
    """Poll ``check`` (a JavaScript expression, or a function) from here: with the page's
    clock installed, the page's own timers, which ``wait_for_function`` polls with, run
    only when the test moves the clock. Playwright runs the WebSocket route's callbacks
    while it waits."""
    deadline = time.monotonic() + seconds
    while not (page.evaluate(check) if isinstance(check, str) else check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what or check}")
        page.wait_for_timeout(50)


@pytest.mark.timeout(120)
def test_the_keep_alive_waits_out_a_room_too_busy_to_read_its_pings(tmp_path, browser):
    """A room with too much waiting is not read, pings included, until it catches up
    (docs/concepts/gateway.md, back-pressure): one unanswered ping must not drop the
    connection. Here the pings are held back on their way to the gateway (Playwright's
    WebSocket route) and the page's clock is moved by hand: the page reconnects only
    after three pings in a row brought nothing back."""
    with example_node(EXAMPLE, tmp_path) as node:
        context = browser.new_context()
        page = context.new_page()
        held: list[str] = []

        def route(ws) -> None:
            server = ws.connect_to_server()     # the room's frames reach the page as ever
            ws.on_message(lambda m: held.append(m) if m == "ping" else server.send(m))

        page.route_web_socket(re.compile(r"/ws/ChatRoom/"), route)
        page.clock.install()
        page.goto(f"{node.gateway_url}/?room=busy&name=ada")
        wait_for(page, "window.chat && chat.connected && chat.users.length === 1")

        page.clock.run_for(60_000)              # pings at 25 s and 50 s, both unanswered
        wait_for(page, lambda: len(held) >= 2, "two pings from the page")
        page.wait_for_timeout(500)              # (a reconnect would have opened by now)
        assert len(held) == 2, f"the page should have pinged twice in 60 s, it pinged {len(held)}"
        assert page.evaluate("chat.opens") == 1 and page.evaluate("chat.connected"), \
            "two unanswered pings should not make the page reconnect"

        page.clock.run_for(45_000)              # a third at 75 s; at 100 s, three unanswered
        wait_for(page, "chat.opens === 2 && chat.connected")
        assert len(held) == 3, f"the page should reconnect after three pings, it sent {len(held)}"
        context.close()
