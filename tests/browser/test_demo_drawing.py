"""The drawing room demo (examples/drawing/) end to end, in a real headless Chromium.

The tests share one node from a config based on examples/drawing/node.toml (its data in
a temp dir, the gateway on a free port), each drawing in a room of its own, and one
chromium, each test's pages closed at its end; they draw with the mouse on the page's
canvas. The
page's test hooks are ``window.drawing`` (``strokes`` shown, ``connected``, ``users``,
``opens``: how many times its WebSocket opened, ``parts``: snapshot parts received,
``errors``: error frames) and ``data-testid`` attributes (canvas, tool-pen, tool-eraser,
clear, swatch-RRGGBB, color-picker, size, users, status, room).
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from typing import Any, Iterator

import pytest

import actorsys
from browser import contexts_closed, screenshot
from demo_helpers import example_config, example_dir, example_node
from helpers import module_node
from demo_helpers import post as post_path
from actorsys.testing.nodes import role_pid, slot_of, wait_until, workers

EXAMPLE = example_dir("drawing")
TYPE = "DrawingRoom"
RED, BLUE, BLACK = "#ef4444", "#3b82f6", "#1f2937"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    yield from module_node(example_config(EXAMPLE, tmp_path_factory.mktemp("drawing")))


@pytest.fixture
def browser(module_browser: Any) -> Iterator[Any]:
    yield from contexts_closed(module_browser)


# -- driving the page ------------------------------------------------------------------------

def open_room(browser: Any, node: actorsys.Node, room: str, width: int = 1100,
              height: int = 760) -> Any:
    """A new page (in a context of its own) on ``room``, once it has its snapshot."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(f"{node.gateway_url}/?room={room}")
    wait_js(page, "window.drawing && window.drawing.connected",
            f"the page on room {room!r} to connect")
    return page


def wait_js(page: Any, expression: str, what: str, timeout: float = 15.0) -> Any:
    """Poll a JS expression on the page until it is truthy; fail saying what was expected."""
    return wait_until(lambda: page.evaluate(expression), what, timeout=timeout)


def draw(page: Any, points: list[tuple[float, float]], color: str | None = None,
         erase: bool = False, size: int | None = None, steps: int = 6) -> None:
    """Draw one stroke with the mouse through ``points`` (0..1 canvas coordinates), with
    ``steps`` mouse moves (a frame each) from one point to the next."""
    if erase:
        page.click("[data-testid=tool-eraser]")
    elif color is not None:
        page.click(f"[data-testid=swatch-{color[1:]}]")
    else:
        page.click("[data-testid=tool-pen]")
    if size is not None:                      # the slider, as a drag would set it
        page.eval_on_selector("[data-testid=size]", "(el, v) => { el.value = v; "
                              "el.dispatchEvent(new Event('input', {bubbles: true})); }", size)
    box = page.locator("[data-testid=canvas]").bounding_box()

    def at(p: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + p[0] * box["width"], box["y"] + p[1] * box["height"]

    page.mouse.move(*at(points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*at(p), steps=steps)
    page.mouse.up()


def swipe(page: Any, points: list[tuple[float, float]]) -> None:
    """One long stroke through ``points`` at once, as pointer events dispatched on the
    canvas (page.mouse waits a frame per move: too slow for a thousand points)."""
    page.evaluate("""(points) => {
        const c = document.querySelector('[data-testid=canvas]'), r = c.getBoundingClientRect();
        const ev = (type, [x, y]) => c.dispatchEvent(new PointerEvent(type, {pointerId: 7,
            pointerType: 'mouse', button: 0, bubbles: true, cancelable: true,
            clientX: r.left + x * r.width, clientY: r.top + y * r.height}));
        ev('pointerdown', points[0]);
        for (const p of points.slice(1)) ev('pointermove', p);
        ev('pointerup', points[points.length - 1]);
    }""", [list(p) for p in points])


def shown(page: Any) -> list[dict[str, Any]]:
    """The strokes the page shows (window.drawing.strokes; as JSON text: big pictures
    cross much faster than as Playwright's structured values)."""
    return json.loads(page.evaluate("JSON.stringify(window.drawing.strokes)"))


def ids_shown(page: Any) -> list[int | None]:
    return page.evaluate("window.drawing.strokes.map(s => s.id)")


def wait_strokes(page: Any, n: int, who: str) -> None:
    """Wait until ``page`` shows ``n`` strokes, all stored by the room (they have ids)."""
    js = f"window.drawing.strokes.length === {n} && window.drawing.strokes.every(s => s.id != null)"
    try:
        wait_js(page, js, f"{who} to show {n} stored strokes")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it shows ids {ids_shown(page)}") from None


def pixel(page: Any, x: float, y: float) -> list[int]:
    """The canvas's RGBA at (x, y) in 0..1 coordinates."""
    return page.evaluate("""([x, y]) => {
        const c = document.querySelector('[data-testid=canvas]');
        return Array.from(c.getContext('2d').getImageData(Math.floor(x * c.width),
                                                          Math.floor(y * c.height), 1, 1).data);
    }""", [x, y])


def rgb(color: str) -> list[int]:
    return [int(color[i:i + 2], 16) for i in (1, 3, 5)]


def post(node: actorsys.Node, room: str, method: str, body: Any = None) -> Any:
    """POST /actors/DrawingRoom/{room}/{method} through the gateway; the JSON result."""
    return post_path(node, f"/actors/{TYPE}/{room}/{method}", body)


def same_strokes(page_strokes: list[dict], stored: list[dict]) -> bool:
    key = lambda s: (s["id"], s["color"], s["erase"], [list(p) for p in s["points"]])  # noqa: E731
    return [key(s) for s in page_strokes] == [key(s) for s in stored]


# -- the tests ----------------------------------------------------------------------------------

def test_two_pages_see_each_others_strokes_and_a_reload_shows_the_picture(node, browser):
    alice, bob = open_room(browser, node, "meet"), open_room(browser, node, "meet")
    wait_js(alice, "window.drawing.users === 2", "alice's page to count 2 users online")
    draw(alice, [(0.1, 0.2), (0.5, 0.2), (0.9, 0.2)], color=RED, size=12)
    draw(bob, [(0.2, 0.8), (0.5, 0.5), (0.8, 0.8)], color=BLUE, size=12)
    for page, who in ((alice, "alice's page"), (bob, "bob's page")):
        wait_strokes(page, 2, who)
    stored = post(node, "meet", "strokes")
    assert [s["color"] for s in stored] == [RED, BLUE], f"the room stores both strokes: {stored}"
    for page, who in ((alice, "alice"), (bob, "bob")):
        assert same_strokes(sorted(shown(page), key=lambda s: s["id"]), stored), \
            f"{who}'s page shows the strokes the room stored"
        assert pixel(page, 0.5, 0.2)[:3] == rgb(RED), f"{who}'s canvas has alice's red line"
        assert pixel(page, 0.5, 0.5)[:3] == rgb(BLUE), f"{who}'s canvas has bob's blue line"

    alice.reload()
    wait_js(alice, "window.drawing.connected", "alice's page to reconnect after the reload")
    assert same_strokes(shown(alice), stored), "the reloaded page shows the persisted picture"
    assert pixel(alice, 0.5, 0.2)[:3] == rgb(RED) and pixel(alice, 0.5, 0.5)[:3] == rgb(BLUE), \
        "the reloaded canvas is drawn from the snapshot"
    assert post(node, "meet", "stats")["users"] == 2, "the reload left two sockets, not three"
    wait_js(bob, "window.drawing.users === 2", "bob's page to count 2 users after alice's reload")

    bob.set_viewport_size({"width": 640, "height": 520})     # normalised points: same picture
    wait_js(bob, "document.querySelector('[data-testid=canvas]').clientWidth < 640",
            "bob's canvas to shrink with the window")
    assert pixel(bob, 0.5, 0.2)[:3] == rgb(RED) and pixel(bob, 0.5, 0.5)[:3] == rgb(BLUE), \
        "the resized canvas is redrawn with the same picture"


def test_sockets_and_strokes_survive_a_kill_9_of_the_rooms_worker(node, browser):
    room = "crash"
    alice, bob = open_room(browser, node, room), open_room(browser, node, room)
    for i in range(3):
        draw(alice, [(0.1, 0.1 + i * 0.1), (0.4, 0.1 + i * 0.1)], color=RED)
        draw(bob, [(0.6, 0.1 + i * 0.1), (0.9, 0.1 + i * 0.1)], color=BLUE)
    wait_strokes(alice, 6, "alice's page")
    wait_strokes(bob, 6, "bob's page")
    before = post(node, room, "strokes")
    assert len(before) == 6, f"6 strokes stored before the crash, got {len(before)}"

    slot = slot_of(node.client(), TYPE, room)
    old = workers(node)[slot]["pid"]
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    draw(alice, [(0.1, 0.6), (0.4, 0.6)], color=RED)       # while the worker is dead
    wait_until(lambda: workers(node)[slot]["up"] and workers(node)[slot]["pid"] != old,
               f"worker slot {slot} to be restarted after kill -9", timeout=30)
    draw(bob, [(0.6, 0.6), (0.9, 0.6)], color=BLUE)
    draw(alice, [(0.1, 0.7), (0.4, 0.7)], color=RED)
    wait_strokes(alice, 9, "alice's page")
    wait_strokes(bob, 9, "bob's page")
    recovered = time.monotonic() - t0

    after = post(node, room, "strokes")
    assert after[:6] == before, "nothing drawn before the crash is lost"
    assert len(after) == 9, f"the 3 strokes drawn across the crash are stored: {after[6:]}"
    for page, who in ((alice, "alice"), (bob, "bob")):
        assert same_strokes(sorted(shown(page), key=lambda s: s["id"]), after), \
            f"{who}'s page shows exactly the stored strokes"
    for page, who in ((alice, "alice"), (bob, "bob")):
        opens = page.evaluate("window.drawing.opens")
        assert opens == 1, f"{who}'s socket stayed open through the crash (opened {opens} times)"
        assert page.evaluate("window.drawing.connected"), f"{who}'s page still says connected"
    print(f"strokes flowed again {recovered:.2f} s after the kill -9")


def test_the_room_hibernates_with_its_sockets_open(tmp_path, browser):
    with example_node(EXAMPLE, tmp_path, idle_timeout=0.5) as node:
        alice, bob = open_room(browser, node, "nap"), open_room(browser, node, "nap")
        draw(alice, [(0.2, 0.2), (0.8, 0.2)], color=RED)
        wait_strokes(bob, 1, "bob's page")
        slot = slot_of(node.client(), TYPE, "nap")
        passivated = workers(node)[slot]["passivations"]
        wait_until(lambda: workers(node)[slot]["passivations"] > passivated
                   and workers(node)[slot]["resident"] == 0,
                   "the idle room to be passivated with both sockets open")
        activated = workers(node)[slot]["activations"]
        draw(bob, [(0.2, 0.8), (0.8, 0.8)], color=BLUE)
        wait_strokes(alice, 2, "alice's page (a stroke after the room hibernated)")
        assert workers(node)[slot]["activations"] > activated, "the stroke woke the room up"
        assert [s["color"] for s in post(node, "nap", "strokes")] == [RED, BLUE]
        for page, who in ((alice, "alice"), (bob, "bob")):
            opens = page.evaluate("window.drawing.opens")
            assert opens == 1, \
                f"{who}'s socket stayed open while the room slept (opened {opens} times)"


def test_long_strokes_go_in_chunks_and_a_big_picture_loads_in_parts(node, browser):
    alice = open_room(browser, node, "big")
    zigzag = [(0.05 + i * 0.0009, 0.3 if i % 2 else 0.7) for i in range(1000)]
    swipe(alice, zigzag)
    wait_strokes(alice, 3, "alice's page (a stroke of 1000 points in chunks of 400)")
    chunks = post(node, "big", "strokes")
    assert len(chunks) == 3, f"a stroke of 1000 points was sent in 3 chunks, got {len(chunks)}"
    assert all(len(c["points"]) <= 400 for c in chunks), "chunks of at most 400 points"
    for a, b in zip(chunks, chunks[1:]):
        assert a["points"][-1] == b["points"][0], "each chunk starts where the previous one ended"
    # 100 strokes of 2000 points each (about 3 MB): more than one turn should send at once
    sent = alice.evaluate("""async (url) => {
        const ws = new WebSocket(url);
        await new Promise((ok) => { ws.onopen = ok; });
        let acks = 0;
        ws.onmessage = (e) => { if (JSON.parse(e.data).type === 'ack') acks++; };
        const points = Array.from({length: 2000}, (_, i) => [i / 2000, (i * 7 % 2000) / 2000]);
        for (let i = 0; i < 100; i++)
            ws.send(JSON.stringify({type: 'stroke', points, color: '#8b5cf6', size: 1}));
        const deadline = Date.now() + 60000;
        while (acks < 100 && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 20));
        ws.close();
        return acks;
    }""", f"{node.gateway_url.replace('http', 'ws', 1)}/ws/{TYPE}/big")
    assert sent == 100, f"the room acknowledged all 100 big strokes, got {sent} acks"
    n = len(chunks) + 100
    wait_strokes(alice, n, "alice's page (the big strokes arrived live)")
    bob = open_room(browser, node, "big")
    bobs = shown(bob)
    assert len(bobs) == n, f"a new page loads all {n} strokes, got {len(bobs)}"
    parts = bob.evaluate("window.drawing.parts")
    assert parts >= 10, f"the 3 MB snapshot came in parts of about 256 KB, got {parts} parts"
    assert post(node, "big", "stats")["points_kept"] == sum(len(s["points"]) for s in bobs)
    assert [s["id"] for s in bobs] == list(range(1, n + 1)), "in drawing order, none twice"


def test_the_page_reconnects_when_the_gateway_restarts(node, browser):
    alice = open_room(browser, node, "again")
    draw(alice, [(0.2, 0.2), (0.8, 0.2)], color=RED)
    wait_strokes(alice, 1, "alice's page")
    os.kill(role_pid(node, "gateway"), signal.SIGKILL)
    wait_js(alice, "!window.drawing.connected", "the page to notice its socket closed")
    status = alice.locator("[data-testid=status]").inner_text()
    assert "Offline" in status or "onnecting" in status, \
        f"the status shows the lost connection: {status!r}"
    draw(alice, [(0.2, 0.8), (0.8, 0.8)], color=BLUE)    # drawn offline: sent after reconnecting
    wait_js(alice, "window.drawing.connected && window.drawing.opens === 2",
            "the page to reconnect once the gateway is back", timeout=30)
    wait_strokes(alice, 2, "alice's page (the offline stroke stored after the reconnect)")
    assert [s["color"] for s in post(node, "again", "strokes")] == [RED, BLUE]
    assert alice.locator("[data-testid=status]").inner_text().strip() == "Connected"


def test_clear_all_empties_every_page_and_the_room(node, browser):
    alice, bob = open_room(browser, node, "clear"), open_room(browser, node, "clear")
    draw(alice, [(0.2, 0.5), (0.8, 0.5)], color=RED, size=20)
    draw(bob, [(0.5, 0.2), (0.5, 0.8)], color=BLUE, size=20)
    wait_strokes(bob, 2, "bob's page")
    alice.click("[data-testid=clear]")
    for page, who in ((alice, "alice"), (bob, "bob")):
        wait_js(page, "window.drawing.strokes.length === 0", f"{who}'s page to be cleared")
        assert pixel(page, 0.5, 0.5)[3] == 0, f"{who}'s canvas is blank after clear-all"
    assert post(node, "clear", "strokes") == [], "the room deleted its strokes"
    draw(bob, [(0.3, 0.3), (0.6, 0.3)], color=BLUE)
    wait_strokes(alice, 1, "alice's page (a stroke after the clear)")
    assert post(node, "clear", "stats")["strokes_kept"] == 1
    assert post(node, "clear", "clear") == 1, "clear over HTTP deletes the one stroke"
    for page, who in ((alice, "alice"), (bob, "bob")):
        wait_js(page, "window.drawing.strokes.length === 0", f"{who}'s page to clear (HTTP clear)")


def test_the_eraser_erases_on_every_page_and_after_a_reload(node, browser):
    alice, bob = open_room(browser, node, "erase"), open_room(browser, node, "erase")
    draw(alice, [(0.1, 0.5), (0.9, 0.5)], color=BLACK, size=30)
    wait_strokes(bob, 1, "bob's page")
    assert pixel(bob, 0.5, 0.5)[:3] == rgb(BLACK), "bob sees alice's black line"
    draw(bob, [(0.5, 0.2), (0.5, 0.8)], erase=True, size=50)
    wait_strokes(alice, 2, "alice's page")
    stored = post(node, "erase", "strokes")
    assert [s["erase"] for s in stored] == [False, True], \
        f"the second stroke is an eraser: {stored}"
    alice.reload()
    wait_js(alice, "window.drawing.connected", "alice's page to reconnect after the reload")
    for page, who in ((alice, "alice"), (bob, "bob")):
        assert pixel(page, 0.5, 0.5)[3] == 0, f"{who}'s line is erased where the eraser crossed it"
        assert pixel(page, 0.2, 0.5)[:3] == rgb(BLACK), f"{who}'s line is intact elsewhere"


def test_bad_messages_get_an_error_frame_and_change_nothing(node, browser):
    page, other = open_room(browser, node, "bad"), open_room(browser, node, "bad")
    frames = page.evaluate("""async (url) => {
        const ws = new WebSocket(url), got = [];
        await new Promise((ok) => { ws.onopen = ok; });
        ws.onmessage = (e) => got.push(JSON.parse(e.data));
        const bad = ['not json', '[1, 2]', '{"type": "dance"}',
            JSON.stringify({type: 'stroke', points: [], color: '#000000', size: 3}),
            JSON.stringify({type: 'stroke', points: [[2, 0]], color: '#000000', size: 3}),
            JSON.stringify({type: 'stroke', points: [[0, 0]], color: 'red', size: 3}),
            JSON.stringify({type: 'stroke', points: [[0, 0]], color: '#000000', size: 99}),
            JSON.stringify({type: 'stroke', points: Array(2001).fill([0.5, 0.5]),
                            color: '#000000', size: 3}),
            JSON.stringify({type: 'stroke', points: [[0, 0]], color: '#000000', size: 3,
                            erase: 'yes', ref: 'r1'})];
        for (const m of bad) ws.send(m);
        ws.send(new Uint8Array([1, 2, 3]));
        const deadline = Date.now() + 10000;
        while (got.filter((m) => m.type === 'error').length < 10 && Date.now() < deadline)
            await new Promise((ok) => setTimeout(ok, 20));
        ws.close();
        return got;
    }""", f"{node.gateway_url.replace('http', 'ws', 1)}/ws/{TYPE}/bad")
    errors = [f for f in frames if f["type"] == "error"]
    assert len(errors) == 10, f"one error frame per bad message (10), got {frames}"
    assert errors[-2]["ref"] == "r1" and "erase" in errors[-2]["message"], errors[-2]
    assert post(node, "bad", "strokes") == [], "no bad message was stored"
    draw(page, [(0.2, 0.2), (0.3, 0.3)], color=RED)
    wait_strokes(other, 1, "the other page (the room still works)")
    assert other.evaluate("window.drawing.errors") == [], "error frames go to their sender only"


def test_screenshot(node, browser):
    """A recognisable picture, a house under the sun, for docs/screenshots/drawing.png."""
    alice = open_room(browser, node, "lobby", width=1280, height=800)
    bob = open_room(browser, node, "lobby")

    def ring(cx: float, cy: float, r: float, deg: float) -> tuple[float, float]:
        return cx + r * math.cos(math.radians(deg)), cy + r * 1.6 * math.sin(math.radians(deg))

    walls = [(0.30, 0.85), (0.30, 0.50), (0.50, 0.50), (0.50, 0.85), (0.30, 0.85)]
    draw(alice, walls, color="#92400e", size=8, steps=1)
    draw(alice, [(0.27, 0.52), (0.40, 0.30), (0.53, 0.52)], color=RED, size=10, steps=1)
    draw(alice, [(0.37, 0.85), (0.37, 0.70), (0.43, 0.70), (0.43, 0.85)], color=BLACK, size=6,
         steps=1)
    draw(bob, [ring(0.80, 0.22, 0.07, a) for a in range(0, 361, 20)], color="#eab308", size=14,
         steps=1)
    for a in range(0, 360, 45):
        draw(bob, [ring(0.80, 0.22, 0.10, a), ring(0.80, 0.22, 0.13, a)], color="#f97316", size=6,
             steps=1)
    draw(alice, [(0.05, 0.88), (0.25, 0.86), (0.6, 0.88), (0.95, 0.86)], color="#22c55e", size=16,
         steps=1)
    wait_strokes(alice, 13, "alice's page")
    alice.click("[data-testid=swatch-3b82f6]")
    alice.mouse.move(5, 5)                      # the brush cursor off the canvas
    path = screenshot(alice, "drawing")
    assert os.path.getsize(path) > 10_000, f"{path} looks empty"
