"""The gateway at the protocol level: a real node (router, workers, gateway processes,
ZeroMQ, LevelDB) and aiohttp's client over real TCP. The tests of the default gateway
config share one node (``gw_node``), each on actors of its own (its own keys); a test of
another config, or that needs a gateway nobody else used, owns its node.

The actors are in ``ws_actors.py``: ``Echo`` echoes frames and counts its events
durably (``counts`` over HTTP tells them), ``AsyncEcho`` replies after an ``await``.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from contextlib import nullcontext
from typing import Any, Awaitable, Callable, Iterator

import aiohttp
import pytest
from aiohttp import WSMsgType

import actorsys
from actorsys.testing.nodes import kill_worker_of, role_pid, slot_of, wait_until, workers
from helpers import make_config, module_node

WS_ACTORS = {"Echo": "ws_actors:Echo", "AsyncEcho": "ws_actors:AsyncEcho"}
RECEIVE_TIMEOUT = 10.0


@pytest.fixture
def gw_config(config) -> Callable[..., dict[str, Any]]:
    """``gw_config(gateway={...}, **node)``: the test actors plus ``ws_actors``, and a
    ``[gateway]`` table listening on a free port of 127.0.0.1."""
    def make(gateway: dict[str, Any] | None = None, **node: Any) -> dict[str, Any]:
        cfg = config(**node)
        cfg["actors"].update(WS_ACTORS)
        cfg["gateway"] = {"listen": "127.0.0.1:0", **(gateway or {})}
        return cfg
    return make


@pytest.fixture(scope="module")
def gw_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    """The node of the default gateway config, shared by the module's tests."""
    cfg = make_config(str(tmp_path_factory.mktemp("gateway") / "data"))
    cfg["actors"].update(WS_ACTORS)
    cfg["gateway"] = {"listen": "127.0.0.1:0"}
    yield from module_node(cfg)


def run(scenario: Callable[[aiohttp.ClientSession], Awaitable[Any]], timeout: float = 40) -> Any:
    """Run ``scenario(session)`` in a fresh event loop, with a deadline."""
    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            return await asyncio.wait_for(scenario(session), timeout)
    return asyncio.run(main())


async def post(session: aiohttp.ClientSession, url: str, body: Any = None, *,
               data: bytes | str | None = None, headers: dict[str, str] | None = None
               ) -> tuple[int, Any]:
    """POST ``body`` as JSON (or ``data`` as is, or nothing); returns (status, decoded JSON)."""
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    elif data is not None:
        kwargs["data"] = data
    async with session.post(url, **kwargs) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def counts(session: aiohttp.ClientSession, base: str, key: str, type_name: str = "Echo"
                 ) -> dict[str, int]:
    status, body = await post(session, f"{base}/actors/{type_name}/{key}/counts")
    assert status == 200, f"POST .../{type_name}/{key}/counts: expected 200, got {status} {body}"
    return body


async def counts_until(session: aiohttp.ClientSession, base: str, key: str,
                       want: dict[str, int], timeout: float = 10.0) -> dict[str, int]:
    """Poll the actor's counts until they include ``want`` (the events are turns that
    commit shortly after the socket's close)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await counts(session, base, key)
        if all(got.get(k) == v for k, v in want.items()):
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"Echo/{key}: expected counts to reach {want}, still {got}")
        await asyncio.sleep(0.05)


async def connect(session: aiohttp.ClientSession, base: str, path: str,
                  **kwargs: Any) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Open ``/ws/<path>`` on an Echo-like actor and read its hello message."""
    ws = await session.ws_connect(f"{base}/ws/{path}", **kwargs)
    hello = await receive(ws, WSMsgType.TEXT)
    return ws, json.loads(hello)


async def receive(ws: aiohttp.ClientWebSocketResponse, kind: WSMsgType = WSMsgType.TEXT) -> Any:
    """The next frame's data, which must be of ``kind``."""
    msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type == kind, f"expected a {kind.name} frame, got {msg.type.name} {msg.data!r:.200}"
    return msg.data


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    """Read until the server closes the socket; returns (close code, reason)."""
    while True:
        msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
        if msg.type == WSMsgType.CLOSE:
            return msg.data, msg.extra or ""
        if msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
            return ws.close_code, ""


async def refused_status(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int | None:
    """The HTTP status that refused a WebSocket handshake, or None if it was accepted."""
    try:
        ws = await session.ws_connect(url, **kwargs)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return None


# -- HTTP ------------------------------------------------------------------------------
def test_http_positional_keyword_and_no_arguments(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            assert await post(s, f"{base}/actors/Echo/h/add", [2, 3]) == (200, 5), \
                "a JSON array body is the positional arguments: add(2, 3) == 5"
            assert await post(s, f"{base}/actors/Echo/h/add", {"a": 4, "b": 6}) == (200, 10), \
                "a JSON object body is the keyword arguments: add(a=4, b=6) == 10"
            assert await post(s, f"{base}/actors/Echo/h/counts") == (
                200, {"connects": 0, "messages": 0, "disconnects": 0}), \
                "an empty body calls with no arguments"
            async with s.post(f"{base}/actors/Echo/h/add", json=[1]) as r:
                assert r.content_type == "application/json", \
                    f"a result is answered as application/json, got {r.content_type}"
        run(scenario)


def test_http_unknown_hidden_and_unexposed_names_are_404(gw_config):
    with actorsys.Node(gw_config({"expose": ["Echo"]})) as node:
        base = node.gateway_url

        async def scenario(s):
            cases = [
                ("Nope/k/add", "unknown_type"),
                ("Counter/k/incr", "unknown_type"),           # a type outside expose
                ("Echo/k/nope", "unknown_method"),
                ("Echo/k/_private", "unknown_method"),
                ("Echo/k/$ws", "unknown_method"),
                ("Echo/k/$destroy", "unknown_method"),
                ("Echo/k/on_message", "unknown_method"),     # hooks are not handlers
            ]
            for path, code in cases:
                status, body = await post(s, f"{base}/actors/{path}", ["x"])
                assert (status, body.get("error") if isinstance(body, dict) else body) == (404, code), \
                    f"POST /actors/{path}: expected 404 {code!r}, got {status} {body}"
                assert isinstance(body.get("message"), str) and body["message"], \
                    f"POST /actors/{path}: expected an error message, got {body}"
            for path in ("Nope/k", "Counter/k"):
                assert await refused_status(s, f"{base}/ws/{path}") == 404, \
                    f"a WebSocket to /ws/{path} (no such type, or not exposed): expected 404"
            status, body = await post(s, f"{base}/actors/Echo/k/counts")
            assert status == 200 and body["messages"] == 0, \
                f"none of the refused calls may reach the actor; counts {status} {body}"
        run(scenario)


def test_http_handler_errors_are_500(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            status, body = await post(s, f"{base}/actors/Echo/e/fail")
            assert status == 500 and body.get("error") == "remote" and body.get("type") == "KeyError", \
                f"a handler that raised KeyError: expected 500 remote with type KeyError, got {status} {body}"
            assert "traceback" not in body, f"tracebacks stay in the server's log, got {body}"
            status, body = await post(s, f"{base}/actors/Echo/e/raw")
            assert status == 500 and body.get("error") == "not_json", \
                f"a result that is bytes: expected 500 not_json, got {status} {body}"
            status, body = await post(s, f"{base}/actors/Echo/e/add", ["1", 2])
            assert status == 500 and body.get("type") == "TypeError", \
                f"add('1', 2) raises TypeError: expected 500 with type TypeError, got {status} {body}"
        run(scenario)


def test_http_bad_bodies_are_400_and_413(gw_config):
    with actorsys.Node(gw_config({"max_message_bytes": 2048})) as node:
        base = node.gateway_url
        url = f"{base}/actors/Echo/b/add"

        async def scenario(s):
            for data, what in [(b"[1, 2", "truncated JSON"), (b"\xff\xfe", "not UTF-8"),
                               (b'"a string"', "a JSON string"), (b"42", "a JSON number")]:
                status, body = await post(s, url, data=data)
                assert status == 400 and body.get("error") == "bad_request", \
                    f"a body that is {what}: expected 400 bad_request, got {status} {body}"
            status, body = await post(s, url, data=b"[" + b"1," * 2000 + b"1]")
            assert status == 413 and body.get("error") == "too_large", \
                f"a body over max_message_bytes (2048): expected 413 too_large, got {status} {body}"
            assert await post(s, url, [1, 1]) == (200, 2), "a small body still works after a 413"
            status, body = await post(s, f"{base}/actors/Echo/{'k' * 1100}/add", [1])
            assert status == 400 and body.get("error") == "bad_request", \
                f"an actor key over 1024 bytes: expected 400 bad_request, got {status} {body}"
        run(scenario)


def test_http_ask_past_ask_timeout_is_504(gw_config):
    with actorsys.Node(gw_config(ask_timeout=1)) as node:
        base = node.gateway_url

        async def scenario(s):
            status, body = await post(s, f"{base}/actors/Echo/slowpoke/slow", [2])
            assert status == 504 and body.get("error") == "timeout", \
                f"slow(2) with ask_timeout = 1: expected 504 timeout, got {status} {body}"
        run(scenario)


# -- static files -------------------------------------------------------------------------
def _raw_get(base: str, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client-side normalisation of ``..``)."""
    host, port = base[len("http://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_static_files_and_no_path_traversal(gw_config, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<h1>INDEX-PAGE</h1>")
    (static / "app.js").write_text("console.log('APP-JS')")
    (tmp_path / "node.toml").write_text("# SECRET-MARKER\n")
    with actorsys.Node(gw_config({"static": str(static)})) as node:
        base = node.gateway_url

        async def scenario(s):
            async with s.get(base + "/") as r:
                text = await r.text()
                assert r.status == 200 and "INDEX-PAGE" in text, \
                    f"GET / serves static/index.html: got {r.status} {text[:200]!r}"
                assert r.content_type == "text/html", f"index.html as text/html, got {r.content_type}"
            async with s.get(base + "/app.js") as r:
                text = await r.text()
                assert r.status == 200 and "APP-JS" in text, \
                    f"GET /app.js serves static/app.js: got {r.status} {text[:200]!r}"
            async with s.get(base + "/missing.js") as r:
                assert r.status == 404, f"a missing file: expected 404, got {r.status}"
        run(scenario)
        for target in ["/../node.toml", "/%2e%2e/node.toml", "/%2E%2E/node.toml",
                       "/..%2fnode.toml", "/%2e%2e%2fnode.toml", "/app.js/../../node.toml",
                       "/static/../../node.toml", "//../node.toml", "/..\\node.toml"]:
            status, data = _raw_get(base, target)
            assert b"SECRET-MARKER" not in data and status != 200, \
                f"GET {target} must not serve the file beside the static directory: got {status}"


# -- WebSockets ---------------------------------------------------------------------------
def test_ws_text_binary_and_json_frames(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            ws = await s.ws_connect(f"{base}/ws/Echo/frames")
            msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
            assert msg.type == WSMsgType.TEXT, f"conn.send(dict) is a text frame, got {msg.type.name}"
            hello = json.loads(msg.data)
            assert set(hello) == {"hello", "user"} and hello["user"] is None and hello["hello"], \
                f"the hello is the dict as JSON, with no auth hook user None; got {hello}"
            await ws.send_str("héllo ✓")
            assert await receive(ws, WSMsgType.TEXT) == "héllo ✓", "a text frame comes back as text"
            await ws.send_bytes(b"\x00\xffbin")
            assert await receive(ws, WSMsgType.BINARY) == b"\x00\xffbin", \
                "a binary frame reaches on_message as bytes and comes back binary"
            await ws.send_str("")
            assert await receive(ws, WSMsgType.TEXT) == "", "an empty text frame is a message too"
            await ws.close()
            assert await counts_until(s, base, "frames", {"connects": 1, "messages": 3, "disconnects": 1})
        run(scenario)


def test_ws_broadcast_all_by_tag_and_excluding(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            a, _ = await connect(s, base, "Echo/room?name=a&tag=red&to=red")
            b, _ = await connect(s, base, "Echo/room?name=b&tag=blue")
            c, _ = await connect(s, base, "Echo/room?name=c&tag=red")
            socks = {"a": a, "b": b, "c": c}

            async def next_frames() -> dict[str, str]:
                """Each socket's next frame, once a marker was echoed to each: a frame
                that arrives before the marker was sent to that socket."""
                for name, ws in socks.items():
                    await ws.send_str("mark-" + name)
                out = {}
                for name, ws in socks.items():
                    first = await receive(ws)
                    out[name] = first
                    if first != "mark-" + name:
                        assert await receive(ws) == "mark-" + name, f"{name}: marker after {first!r}"
                return out

            await b.send_str("all:to everyone")
            assert await next_frames() == {n: "to everyone" for n in socks}, \
                "broadcast() with no tag reaches every socket, the sender too"
            await a.send_str("all:to red")
            got = await next_frames()
            assert got == {"a": "to red", "b": "mark-b", "c": "to red"}, \
                f"broadcast(tag='red') reaches only the sockets tagged red: got {got}"
            await c.send_str("others:not to c")
            got = await next_frames()
            assert got == {"a": "not to c", "b": "not to c", "c": "mark-c"}, \
                f"broadcast(exclude=conn) reaches every socket but the sender: got {got}"
            for ws in socks.values():
                await ws.close()
        run(scenario)


def test_ws_connections_lists_open_sockets(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            al, _ = await connect(s, base, "Echo/who?name=al")
            bo, _ = await connect(s, base, "Echo/who?name=bo")
            await al.send_str("who")
            assert json.loads(await receive(al)) == ["al", "bo"], \
                "connections() lists both open sockets (their attachments)"
            await bo.close()
            assert json.loads(await receive(al)) == {"left": "bo"}, \
                "on_disconnect's broadcast reaches the remaining socket"
            await al.send_str("who")
            assert json.loads(await receive(al)) == ["al"], \
                "after bo's on_disconnect, connections() lists only al"
            await al.close()
        run(scenario)


def test_broadcast_does_not_reach_a_socket_before_its_on_connect(gw_node):
    """A broadcast made in a turn before a socket's ``on_connect`` must not reach that
    socket (the actor did not know it yet): its first frame is its hello. The actor is
    kept busy (an HTTP ``slow`` ask) so that the broadcast and the new socket's connect
    wait for it together and go to the actor in one batch."""
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            a, _ = await connect(s, base, "Echo/late?name=a")
            busy = asyncio.create_task(post(s, f"{base}/actors/Echo/late/slow", [0.5]))
            await asyncio.sleep(0.1)
            await a.send_str("first")              # a batch that waits behind slow()
            await asyncio.sleep(0.1)
            await a.send_str("all:news")          # waits for that batch to return
            b = await s.ws_connect(f"{base}/ws/Echo/late?name=b")
            await asyncio.sleep(0.1)
            assert await busy == (200, "done")
            frames = [await receive(b)]
            if "hello" not in frames[0]:
                frames.append(await receive(b))
            assert "hello" in frames[0], \
                (f"socket b's first frame must be its hello (on_connect ran after the "
                 f"broadcast's turn, so the broadcast is not b's), got {frames}")
            await a.close()
            await b.close()
        run(scenario)


def test_ws_close_by_actor_reaches_client_with_its_code(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            ws, _ = await connect(s, base, "Echo/closer")
            await ws.send_str("close")
            code, reason = await closed_with(ws)
            assert (code, reason) == (4000, "asked to"), \
                f"conn.close(4000, 'asked to'): expected the client to see 4000 'asked to', " \
                f"got {code} {reason!r}"
            await counts_until(s, base, "closer", {"connects": 1, "messages": 1, "disconnects": 1})
        run(scenario)


def test_ws_on_disconnect_runs_for_client_closes(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            for i in range(3):
                ws, _ = await connect(s, base, f"Echo/bye?name=n{i}")
                await ws.send_str("x")
                assert await receive(ws) == "x"
                await ws.close()
                await counts_until(s, base, "bye", {"connects": i + 1, "messages": i + 1,
                                                    "disconnects": i + 1})
        run(scenario)


def test_http_ask_broadcasts_to_open_sockets(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            a, _ = await connect(s, base, "Echo/stage?name=a")
            b, _ = await connect(s, base, "Echo/stage?name=b")
            status, body = await post(s, f"{base}/actors/Echo/stage/shout", ["hear ye"])
            assert (status, body) == (200, 2), \
                f"shout over HTTP answers the number of sockets (2), got {status} {body}"
            assert await receive(a) == "hear ye" and await receive(b) == "hear ye", \
                "a broadcast from an HTTP ask's turn reaches every open socket"
            await a.close()
            await b.close()
        run(scenario)


# -- sockets outlive activations and workers ---------------------------------------------
def test_hibernation_keeps_sockets_and_state(gw_config):
    with actorsys.Node(gw_config(idle_timeout=0.3)) as node:
        base, client = node.gateway_url, node.client()
        slot = slot_of(client, "Echo", "sleepy")

        async def scenario(s):
            ws, _ = await connect(s, base, "Echo/sleepy?name=zz")
            await ws.send_str("before")
            assert await receive(ws) == "before"
            before = workers(node)[slot]["passivations"]
            await asyncio.to_thread(wait_until, lambda: workers(node)[slot]["passivations"] > before,
                                    "the idle Echo/sleepy to be passivated with its socket open")
            await ws.send_str("after")
            assert await receive(ws) == "after", "the hibernated actor is woken by the next frame"
            await ws.send_str("who")
            assert json.loads(await receive(ws)) == ["zz"], \
                "a new activation knows its open sockets (and their attachments)"
            got = await counts(s, base, "sleepy")
            assert got == {"connects": 1, "messages": 3, "disconnects": 0}, \
                f"the state came back from storage and continued: expected 1 connect, 3 messages, got {got}"
            await ws.close()
        run(scenario)


def test_socket_survives_worker_kill(gw_node):
    with nullcontext(gw_node) as node:
        base, client = node.gateway_url, node.client()

        async def scenario(s):
            ws, _ = await connect(s, base, "Echo/crashy?name=c")
            for i in range(5):
                await ws.send_str(f"pre{i}")
                assert await receive(ws) == f"pre{i}"
            await asyncio.to_thread(kill_worker_of, node, client, "Echo", "crashy")
            for i in range(5):
                await ws.send_str(f"post{i}")
                assert await receive(ws) == f"post{i}", \
                    "after kill -9 of its actor's worker, the same socket still gets its echoes"
            await ws.send_str("who")
            assert json.loads(await receive(ws)) == ["c"], \
                "the actor's new activation knows the socket that stayed open"
            got = await counts(s, base, "crashy")
            assert got == {"connects": 1, "messages": 11, "disconnects": 0}, \
                f"every event applied exactly once across the crash: expected 1/11/0, got {got}"
            await ws.close()
            await counts_until(s, base, "crashy", {"disconnects": 1})
        run(scenario)


def test_stream_across_worker_kill_is_applied_exactly_once(gw_node):
    total, pause_at = 500, 300
    with nullcontext(gw_node) as node:
        base, client = node.gateway_url, node.client()

        async def scenario(s):
            ws, _ = await connect(s, base, "Echo/stream")
            back = asyncio.Event()

            async def kill() -> None:
                await asyncio.to_thread(kill_worker_of, node, client, "Echo", "stream")
                back.set()

            async def sender() -> None:
                for i in range(total):
                    if i == pause_at:
                        await back.wait()         # the rest is sent to the restarted worker
                    await ws.send_str(f"m{i}")
                    await asyncio.sleep(0.002)

            sending = asyncio.create_task(sender())
            killing = None
            echoed: list[int] = []
            while not echoed or echoed[-1] != total - 1:
                i = int((await receive(ws))[1:])
                assert not echoed or i > echoed[-1], \
                    f"echoes in order with no duplicates: m{i} arrived after m{echoed[-1]}"
                echoed.append(i)
                if len(echoed) == 100:
                    killing = asyncio.create_task(kill())
            await sending
            assert killing is not None
            await killing
            missing = sorted(set(range(total)) - set(echoed))
            assert not missing, (f"every message is echoed once, those of the batch the kill "
                                 f"hit too (its effects are kept with its delivery mark); "
                                 f"missing {missing}")
            got = await counts(s, base, "stream")
            assert got["messages"] == total, \
                f"{total} messages sent across a kill -9: expected exactly {total} applied, got {got}"
            await ws.close()

        run(scenario, timeout=60)
        gw = next(p for p in node.status()["processes"] if p["role"] == "gateway")
        print(f"gateway redeliveries {gw['redeliveries']}, duplicates {gw['duplicates']}, "
              f"duplicate effects {gw['duplicate_effects']}")


def test_a_turn_may_send_more_than_one_message_holds(gw_node):
    """Three 600 kB frames from one turn (1.8 MB, more than max_message_bytes) all arrive,
    in order: the worker hands them to the gateway in parts."""
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            ws, _ = await connect(s, base, "Echo/big", max_msg_size=4 << 20)
            await ws.send_str("big:3")
            got = [(await receive(ws)).split(":", 1) for _ in range(3)]
            assert [g[0] for g in got] == ["0", "1", "2"], f"three frames in order, got {[g[0] for g in got]}"
            assert all(len(g[1]) == 600_000 for g in got), "each frame whole"
            await ws.send_str("after")
            assert await receive(ws) == "after"
            await ws.close()

        run(scenario)


def test_redelivered_batch_runs_once_and_answers_with_its_effects(gw_config):
    """A batch delivered again (as after a lost reply) is answered "dup" without running,
    and the answer carries the effects the batch had (kept with its delivery mark), so
    a gateway that never got them can still apply them once."""
    with actorsys.Node(gw_config()) as node:
        base, client = node.gateway_url, node.client()

        def gateway() -> dict[str, Any]:
            return next(p for p in node.status()["processes"] if p["role"] == "gateway")

        async def scenario(s):
            ws, hello = await connect(s, base, "Echo/again")
            gw = gateway()       # the on_connect batch is the only one this gateway sent
            batch = [gw["incarnation"], gw["last_batch"], None, [["m", hello["hello"], "x"]]]
            again = await asyncio.to_thread(client.ask, "Echo", "again", "$ws", *batch)
            assert again.get("dup") is True, f"a batch number already committed: expected dup, got {again!r}"
            sent = [e for e in again["effects"] if e[0] == "s"]
            assert sent and json.loads(sent[0][2]) == hello, \
                f"the dup answer carries the batch's effects (the hello), got {again['effects']!r}"
            await ws.send_str("next")
            assert await receive(ws) == "next", "nothing reached the socket twice"
            got = await counts(s, base, "again")
            assert got["messages"] == 1, f"the redelivered batch did not run: expected 1, got {got}"
            await ws.close()

        run(scenario)


# -- failures and limits ---------------------------------------------------------------------
def test_failed_message_is_dropped_and_socket_stays(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            ws, _ = await connect(s, base, "Echo/fragile")
            for data in ("a", "boom", "b"):
                await ws.send_str(data)
            assert await receive(ws) == "a"
            assert await receive(ws) == "b", "a message whose handler raised is dropped; the next is echoed"
            await ws.send_str("c")
            assert await receive(ws) == "c", "the socket stays open after a handler failure"
            got = await counts(s, base, "fragile")
            assert got["messages"] == 3, \
                f"the failed turn is rolled back: expected 3 messages counted (a, b, c), got {got}"
            await ws.close()
        run(scenario)


def test_message_over_limit_closes_1009(gw_config):
    with actorsys.Node(gw_config({"max_message_bytes": 2048})) as node:
        base = node.gateway_url

        async def scenario(s):
            ws, _ = await connect(s, base, "Echo/big")
            await ws.send_str("x" * 2000)
            assert await receive(ws) == "x" * 2000, "a message under max_message_bytes is echoed"
            await ws.send_str("y" * 5000)
            code, _ = await closed_with(ws)
            assert code == 1009, f"a message over max_message_bytes closes the socket with 1009, got {code}"
            await counts_until(s, base, "big", {"messages": 1, "disconnects": 1})
        run(scenario)


def test_max_connections_per_actor_refuses_503(gw_config):
    with actorsys.Node(gw_config({"max_connections_per_actor": 2})) as node:
        base = node.gateway_url

        async def scenario(s):
            a, _ = await connect(s, base, "Echo/full")
            b, _ = await connect(s, base, "Echo/full")
            assert await refused_status(s, f"{base}/ws/Echo/full") == 503, \
                "a third socket on an actor with max_connections_per_actor = 2 is refused with 503"
            other, _ = await connect(s, base, "Echo/roomy")
            await other.close()
            await a.close()
            deadline = asyncio.get_running_loop().time() + 5
            while (status := await refused_status(s, f"{base}/ws/Echo/full")) is not None:
                assert asyncio.get_running_loop().time() < deadline, \
                    f"after one of the two sockets closed, a new one is accepted; still {status}"
                await asyncio.sleep(0.05)
            await b.close()
        run(scenario)


def test_origins_own_and_listed_allowed_others_403(gw_config):
    with actorsys.Node(gw_config({"allowed_origins": ["https://app.example"]})) as node:
        base = node.gateway_url

        async def scenario(s):
            for origin, allowed in [("http://evil.example", False), (base, True),
                                    ("https://app.example", True), ("https://app.example:444", False),
                                    ("null", False)]:
                ws_status = await refused_status(s, f"{base}/ws/Echo/o", headers={"Origin": origin})
                http_status, body = await post(s, f"{base}/actors/Echo/o/add", [1],
                                               headers={"Origin": origin})
                if allowed:
                    assert (ws_status, http_status) == (None, 200), \
                        f"Origin {origin}: expected WS accepted and HTTP 200, " \
                        f"got {ws_status} {http_status} {body}"
                else:
                    assert (ws_status, http_status) == (403, 403) and body.get("error") == "forbidden", \
                        f"Origin {origin}: expected 403 for WS and HTTP, got {ws_status} {http_status} {body}"
        run(scenario)


def test_origins_star_allows_any(gw_config):
    with actorsys.Node(gw_config({"allowed_origins": ["*"]})) as node:
        base = node.gateway_url

        async def scenario(s):
            for origin in ("http://evil.example", "https://anything.test:8443", "null"):
                assert await refused_status(s, f"{base}/ws/Echo/o", headers={"Origin": origin}) is None, \
                    f"allowed_origins = ['*']: a WebSocket from {origin} is accepted"
                status, _ = await post(s, f"{base}/actors/Echo/o/add", [1], headers={"Origin": origin})
                assert status == 200, \
                    f"allowed_origins = ['*']: HTTP from {origin} expected 200, got {status}"
        run(scenario)


def test_auth_hook_refuses_and_names_the_user(gw_config):
    with actorsys.Node(gw_config({"auth": "ws_actors:allow_token"})) as node:
        base = node.gateway_url

        async def scenario(s):
            assert await refused_status(s, f"{base}/ws/Echo/vault") == 403, \
                "a WebSocket without the token is refused by the auth hook with 403"
            assert await refused_status(s, f"{base}/ws/Echo/vault?token=wrong") == 403, \
                "a WebSocket with a wrong token is refused with 403"
            status, body = await post(s, f"{base}/actors/Echo/vault/add", [1])
            assert status == 403 and body.get("error") == "forbidden", \
                f"HTTP without the token: expected 403 forbidden, got {status} {body}"
            assert await post(s, f"{base}/actors/Echo/vault/add?token=secret", [1, 2]) == (200, 3), \
                "HTTP with ?token=secret is let in"
            assert await post(s, f"{base}/actors/Echo/vault/add", [1, 2],
                              headers={"X-Token": "secret"}) == (200, 3), \
                "HTTP with the X-Token header is let in"
            ws, hello = await connect(s, base, "Echo/vault?token=secret&name=ada")
            assert hello["user"] == {"name": "ada"}, \
                f"conn.user is what the auth hook returned ({{'name': 'ada'}}), got {hello['user']}"
            await ws.close()
            status, got = await post(s, f"{base}/actors/Echo/vault/counts?token=secret")
            assert got["connects"] == 1, f"only the admitted socket reached the actor, got {got}"
        run(scenario)


# -- the gateway process and the node -------------------------------------------------------
def test_gateway_kill_is_restarted_by_the_supervisor(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url
        old = role_pid(node, "gateway")

        async def scenario(s):
            ws, _ = await connect(s, base, "Echo/phoenix?name=old")
            os.kill(old, signal.SIGKILL)
            msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
            assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR), \
                f"the socket of a killed gateway is gone, got {msg.type.name} {msg.data!r}"
            await asyncio.to_thread(
                wait_until, lambda: any(p["role"] == "gateway" and p["up"] and p["pid"] != old
                                        for p in node.status()["processes"]),
                "the node supervisor to restart the gateway after kill -9", 20)
            ws, _ = await connect(s, base, "Echo/phoenix?name=new")
            await ws.send_str("again")
            assert await receive(ws) == "again", "a new socket works with the restarted gateway"
            await ws.send_str("who")
            assert json.loads(await receive(ws)) == ["new"], \
                "the actor lists only the new gateway's socket, not the dead one's"
            await ws.close()

        run(scenario)
        assert role_pid(node, "gateway") != old, "node.status() shows the new gateway pid"


def test_node_stop_closes_sockets_1001_and_runs_on_disconnect(gw_config):
    cfg = gw_config()
    node = actorsys.Node(cfg).start()
    try:
        base = node.gateway_url

        async def scenario(s):
            ws, _ = await connect(s, base, "Echo/leaving")
            await ws.send_str("x")
            assert await receive(ws) == "x"
            closing = asyncio.create_task(closed_with(ws))
            await asyncio.to_thread(node.stop)
            return await closing

        code, _ = run(scenario)
        assert code == 1001, f"a node stopping closes its sockets with 1001 (going away), got {code}"
    finally:
        node.stop()
    with actorsys.Node(cfg) as node:
        got = node.client().ask("Echo", "leaving", "counts")
        assert got == {"connects": 1, "messages": 1, "disconnects": 1}, \
            f"on_disconnect of the socket closed by the stop committed before the node stopped, got {got}"


def test_async_on_message_keeps_reply_order(gw_node):
    with nullcontext(gw_node) as node:
        base = node.gateway_url

        async def scenario(s):
            ws = await s.ws_connect(f"{base}/ws/AsyncEcho/slowly")
            for i in range(50):
                await ws.send_str(f"n{i}")
            got = [await receive(ws) for _ in range(50)]
            assert got == [f"n{i}" for i in range(50)], \
                f"an async on_message's replies keep the frames' order, got {got}"
            got = await counts(s, base, "slowly", "AsyncEcho")
            assert got == {"messages": 50}, f"expected 50 messages applied, got {got}"
            await ws.close()
        run(scenario)
