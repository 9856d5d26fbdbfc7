"""The gateway's resource bounds (issue 20), against a real node whose gateway runs at the
common soft limit of 1,024 file descriptors (lowered with ``prlimit`` once it started):
floods of slow connections from one address (or a few) over real TCP, other clients'
requests meanwhile, the early 413 and the deadlines, and the bytes its log writes.

Client addresses are distinct loopback addresses (127.0.0.2, ...: all of 127/8 routes to
``lo`` on Linux). Every socket a test opens is closed by the test.
"""
from __future__ import annotations

import os
import resource
import selectors
import socket
import time
from typing import Any, Iterator

import pytest

import actorsys
from actorsys.testing.nodes import role_pid, wait_until
from helpers import make_config, module_node

#: the gateway's soft descriptor limit in these tests (the common default)
NOFILE = 1024
#: ... while a flood from several addresses meets the descriptor reserve
LOW_NOFILE = 512
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
#: slow connections of a flood
FLOOD = 1100
#: stderr bytes the whole node may write during a flood (a few rate-limited lines)
MAX_LOG_BYTES = 20_000


class Logged:
    """A node whose stderr (every process of it) goes to a file of its own."""

    def __init__(self, node: actorsys.Node, log: str) -> None:
        self.node, self.log = node, log

    def size(self) -> int:
        return os.path.getsize(self.log)

    def since(self, offset: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """A node whose gateway has short deadlines, default caps, and 1,024 descriptors;
    its stderr goes to a file."""
    tmp = tmp_path_factory.mktemp("bounds")
    cfg = make_config(str(tmp / "data"))
    cfg["actors"]["Echo"] = "ws_actors:Echo"
    cfg["gateway"] = {"listen": "127.0.0.1:0", "header_timeout": HEADER_TIMEOUT,
                      "body_timeout": BODY_TIMEOUT}
    log = str(tmp / "node.stderr")
    nodes = module_node(cfg)
    fd, saved = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND), os.dup(2)
    try:
        os.dup2(fd, 2)           # (the node's processes inherit it)
        n = next(nodes)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    pid = role_pid(n, "gateway")
    hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (NOFILE, hard))
    yield Logged(n, log)
    for _ in nodes:
        pass


@pytest.fixture
def bounded(logged: Logged) -> actorsys.Node:
    return logged.node


def gateway(node: actorsys.Node) -> dict[str, Any]:
    return next(p for p in node.status()["processes"] if p["role"] == "gateway")


def address(node: actorsys.Node) -> tuple[str, int]:
    host, port = node.gateway_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def request(node: actorsys.Node, source: str, raw: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send ``raw`` from ``source`` (``{host}`` replaced by the gateway's host:port) and
    read the answer until the gateway closes; returns (status, whole answer)."""
    host, port = address(node)
    with socket.create_connection((host, port), timeout=timeout, source_address=(source, 0)) as s:
        s.sendall(raw.replace(b"{host}", f"{host}:{port}".encode()))
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    answer = b"".join(chunks)
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0, answer


def ask(node: actorsys.Node, source: str, key: str) -> int:
    """``POST /actors/Echo/{key}/add`` [2, 3] from ``source``; returns the status (the body checked)."""
    body = b"[2, 3]"
    status, answer = request(node, source, b"POST /actors/Echo/%s/add HTTP/1.1\r\nHost: {host}\r\n"
                             b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (key.encode(), len(body), body))
    assert status != 200 or answer.endswith(b"5"), f"expected the result 5, got {answer[-200:]!r}"
    return status


def flood(node: actorsys.Node, sources: list[str], per_source: int) -> list[socket.socket]:
    """Connections from each of ``sources`` that send the start of a request's headers
    and never finish them."""
    host, port = address(node)
    held = []
    try:
        for source in sources:
            for _ in range(per_source):
                s = socket.socket()
                held.append(s)
                s.settimeout(5.0)     # (a SYN dropped by a full queue is sent again after 1 s)
                s.bind((source, 0))
                try:
                    s.connect((host, port))
                    s.send(b"POST /actors/Echo/x/add HTTP/1.1\r\nHost: ")
                except OSError:
                    pass          # reset at once: refused
                s.setblocking(False)
    except BaseException:
        for s in held:
            s.close()
        raise
    return held


def closed_within(held: list[socket.socket], seconds: float) -> tuple[int, float]:
    """Wait until the gateway has closed every one of ``held`` (EOF or reset), at most
    ``seconds``; returns (how many it closed, when the last went, in seconds)."""
    start = time.monotonic()
    sel = selectors.DefaultSelector()
    for s in held:
        sel.register(s, selectors.EVENT_READ)
    closed, last = 0, 0.0
    try:
        while closed < len(held) and time.monotonic() - start < seconds:
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    gone = not s.recv(4096)       # (a 408 answer comes before the EOF)
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    sel.unregister(s)
                    closed += 1
                    last = time.monotonic() - start
    finally:
        sel.close()
    return closed, last


def test_slow_flood_from_one_address_leaves_others_served_and_is_closed_in_time(logged):
    node = logged.node
    offset = logged.size()
    before = gateway(node)
    t0 = time.monotonic()
    held = flood(node, ["127.0.0.2"], FLOOD)
    try:
        opened = time.monotonic() - t0
        holding = gateway(node)["connections"]
        latencies = []
        for i in range(20):                 # another client, while the flood is held
            t = time.monotonic()
            assert ask(node, "127.0.0.3", f"other{i}") == 200
            latencies.append(time.monotonic() - t)
        assert max(latencies) < 1.0, f"another address's requests took up to {max(latencies):.3f} s"
        closed, last = closed_within(held, HEADER_TIMEOUT + 3.0)
    finally:
        for s in held:
            s.close()
    after = gateway(node)
    err = logged.since(offset)
    refused = after["conn_refused"] - before["conn_refused"]
    timeouts = after["header_timeouts"] - before["header_timeouts"]
    print(f"flood of {FLOOD} from one address (opened in {opened:.2f} s): {refused} refused at "
          f"once, {holding} held at its end, {timeouts} closed at the header deadline, the last "
          f"after {last:.2f} s; "
          f"another address's asks: max {max(latencies) * 1000:.1f} ms; stderr {len(err)} bytes")
    assert closed == FLOOD, f"only {closed} of {FLOOD} slow connections were closed within " \
                            f"{HEADER_TIMEOUT + 3.0} s"
    assert refused + timeouts >= FLOOD, (refused, timeouts)
    # (the flood takes longer than header_timeout to open: its first connections are
    # closed by the deadline while the last open, so it gets more than 256 in all)
    assert holding <= 256, f"one address held {holding} connections (max_connections_per_address 256)"
    assert len(err) < MAX_LOG_BYTES, f"the node wrote {len(err)} bytes to stderr:\n{err[:3000]}"


def test_descriptor_reserve_refuses_a_flood_from_many_addresses(logged):
    """At 512 descriptors, four addresses together want more than the gateway may spend: the
    excess is closed at once (not met by EMFILE), the node's own sockets keep working
    (its status comes through the gateway's ZeroMQ socket), and once the deadline has
    closed the flood, requests are served again."""
    node = logged.node
    offset = logged.size()
    pid = role_pid(node, "gateway")
    before = gateway(node)
    hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (LOW_NOFILE, hard))
    try:
        held = flood(node, [f"127.0.0.{i}" for i in range(4, 8)], 300)
        try:
            during = gateway(node)          # through the gateway's own socket, mid-flood
            assert during["connections"] <= LOW_NOFILE - 64, during["connections"]
            closed, last = closed_within(held, HEADER_TIMEOUT + 3.0)
        finally:
            for s in held:
                s.close()
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (NOFILE, hard))
    wait_until(lambda: gateway(node)["connections"] == 0, "the flood's connections to be gone", 5)
    assert ask(node, "127.0.0.3", "after-reserve") == 200
    after = gateway(node)
    err = logged.since(offset)
    fds = after["conn_refused_fds"] - before["conn_refused_fds"]
    print(f"flood of 4 x 300 at {LOW_NOFILE} descriptors: {during['connections']} connections held "
          f"at most, {fds} refused for the descriptor reserve, all closed after {last:.2f} s; "
          f"stderr {len(err)} bytes")
    assert closed == len(held)
    assert fds > 0, "expected the descriptor reserve to refuse connections"
    assert after["pid"] == pid, "the gateway restarted"
    assert after["accept_errors"] == before["accept_errors"], "accept() failed (out of descriptors)"
    assert after["loop_errors"] == before["loop_errors"], "the gateway's event loop logged errors"
    assert len(err) < MAX_LOG_BYTES, f"the node wrote {len(err)} bytes to stderr:\n{err[:3000]}"


def test_content_length_over_the_limit_is_413_at_once(bounded):
    t = time.monotonic()
    status, answer = request(node := bounded, "127.0.0.3",
                             b"POST /actors/Echo/big/add HTTP/1.1\r\nHost: {host}\r\n"
                             b"Content-Length: 1000000000\r\n\r\n[1]", timeout=3.0)
    took = time.monotonic() - t
    print(f"Content-Length 1000000000 with 3 bytes: {status} after {took * 1000:.1f} ms")
    assert status == 413 and b"max_message_bytes" in answer, answer[:300]
    assert took < 1.0
    assert ask(node, "127.0.0.3", "big") == 200


def test_stalled_body_is_408_within_body_timeout(bounded):
    t = time.monotonic()
    status, answer = request(bounded, "127.0.0.3", b"POST /actors/Echo/stall/add HTTP/1.1\r\n"
                             b"Host: {host}\r\nContent-Length: 10\r\n\r\n[1", timeout=BODY_TIMEOUT + 3)
    took = time.monotonic() - t
    assert status == 408 and b"body_timeout" in answer, answer[:300]
    assert BODY_TIMEOUT - 0.2 < took < BODY_TIMEOUT + 1.5, took


def test_unfinished_headers_get_408_and_idle_keepalive_is_closed(bounded):
    t = time.monotonic()
    status, _ = request(bounded, "127.0.0.3", b"GET /actors HTTP/1.1\r\nHost: {host}\r\n",
                        timeout=HEADER_TIMEOUT + 3)
    took = time.monotonic() - t
    assert status == 408 and HEADER_TIMEOUT - 0.2 < took < HEADER_TIMEOUT + 1.5, (status, took)
    # a kept-alive connection after one answer: closed once idle for header_timeout
    body = b"[1]"
    t = time.monotonic()
    status, answer = request(bounded, "127.0.0.3", b"POST /actors/Echo/idle/add HTTP/1.1\r\n"
                             b"Host: {host}\r\nContent-Length: 3\r\n\r\n" + body,
                             timeout=HEADER_TIMEOUT + 3)
    took = time.monotonic() - t
    assert status == 200 and answer.count(b"HTTP/1.1") == 1, answer[:300]
    assert HEADER_TIMEOUT - 0.2 < took < HEADER_TIMEOUT + 1.5, took


def test_a_request_handled_longer_than_header_timeout_is_answered(bounded):
    """The header clock stops while a request is handled (review: it must, whatever the
    handler's time): a turn of header_timeout + 1 s answers 200."""
    body = b"[%g]" % (HEADER_TIMEOUT + 1.0)
    t = time.monotonic()
    status, answer = request(bounded, "127.0.0.3", b"POST /actors/Counter/slow/sleep HTTP/1.1\r\n"
                             b"Host: {host}\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                             % len(body) + body, timeout=HEADER_TIMEOUT + 10)
    assert status == 200 and b"slept" in answer, answer[:300]
    assert time.monotonic() - t > HEADER_TIMEOUT + 0.9


def test_handlers_that_raise_do_not_flood_the_log(logged):
    """300 HTTP asks whose handler raises: each is a 500, and the node's log (the
    gateway's traceback of each, the worker's failed turns) stays a few lines long."""
    node = logged.node
    offset = logged.size()
    for i in range(300):
        status, _ = request(node, "127.0.0.3", b"POST /actors/Echo/raising/fail HTTP/1.1\r\n"
                            b"Host: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        assert status == 500, (i, status)
    err = logged.since(offset)
    print(f"300 asks whose handler raised: stderr {len(err)} bytes")
    assert len(err) < MAX_LOG_BYTES, f"the node wrote {len(err)} bytes to stderr:\n{err[:3000]}"
