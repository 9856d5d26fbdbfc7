"""The web dashboard in a real headless Chromium (issue 17): processes, the charts, the
hot actors, the supervision tree, and the actor inspector (state, a page of storage,
alarms, history) of a node under load; a killed worker shows as restarted; the auth
hook keeps it to operators; off unless ``[gateway] dashboard = true``."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

import actorsys
from actorsys.testing.nodes import wait_until
from browser import contexts_closed, screenshot
from helpers import make_config, module_node

AUTH = "dashboard_auth:operators_only"


@pytest.fixture(scope="module")
def dashboard_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[actorsys.Node, Any]]:
    """A node with a gateway serving the dashboard, a supervision tree, history on
    StoreCounter, and a thread keeping two Counter actors busy: shared by the module's
    tests that use it (in file order: the worker kill comes after the first look)."""
    cfg = make_config(str(tmp_path_factory.mktemp("dashboard") / "data"), metrics="127.0.0.1:0")
    cfg["actors"].update({"Journal": "restarts_actors:Journal", "Worker": "restarts_actors:Worker",
                          "StoreCounter": {"class": "actors:StoreCounter", "history_window": 3600}})
    children = [{"id": k, "actor": "Worker", "key": k} for k in ("w1", "w2")]
    cfg["supervisors"] = {"root": {"max_restarts": 100, "children": children}}
    cfg["gateway"] = {"listen": "127.0.0.1:0", "dashboard": True, "auth": AUTH}
    stop = threading.Event()
    with contextmanager(module_node)(cfg) as n:
        c = n.client()

        def load() -> None:
            i = 0
            while not stop.is_set():
                try:        # (a test kills the busy actors' worker: the load goes on after it)
                    c.ref("Counter", ("busy-a", "busy-b")[i % 2]).ask("add", 1, retry=True)
                except actorsys.ActorError:
                    time.sleep(0.05)
                i += 1
        t = threading.Thread(target=load, daemon=True)
        t.start()
        try:
            yield n, c
        finally:
            stop.set()
            t.join(10)


@pytest.fixture
def browser(module_browser: Any) -> Iterator[Any]:
    """The module's chromium (browser.module_browser), each test's pages closed at its end."""
    yield from contexts_closed(module_browser)


def get(url: str, token: str | None = "ops") -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_dashboard_shows_the_node_and_inspects_an_actor(dashboard_node, browser):
    node, c = dashboard_node
    inspected = c.ref("StoreCounter", "inspected")
    inspected.ask("add", 7)
    for i in range(60):
        inspected.ask("put", f"entry-{i:02d}", {"i": i, "blob": "x" * 10})
    inspected.ask("put", "raw", b"\x00\xff")          # bytes: shown as text, not dropped
    c.ref("Counter", "inspected-alarm").ask("add", 1)
    base = node.gateway_url

    context = browser.new_context(viewport={"width": 1400, "height": 1300},
                                  extra_http_headers={"Authorization": "Bearer ops"})
    page = context.new_page()
    page.goto(base + "/dashboard?interval=0.5")       # (polls every 0.5 s: six in 3 s)
    page.wait_for_function("() => window.dash && dash.polls >= 6", timeout=40_000)
    # processes: the router, both workers and the tree, up; the busy worker's turns/s
    rows = page.locator('[data-testid="processes"] tbody tr')
    roles = sorted(rows.nth(i).get_attribute("data-role") for i in range(rows.count()))
    assert roles == ["gateway", "router", "supervisor", "tree", "worker", "worker"]
    rates = [page.locator(f'[data-testid="processes"] tr[data-role="worker"][data-slot="{s}"] '
                          f'[data-testid="turns-rate"]').inner_text() for s in (0, 1)]
    assert max(int(r.replace(",", "")) for r in rates if r != "-") > 10, rates
    # the charts have a line; the hot actors list the busy two; the tree its children
    assert page.locator('[data-testid="turns-chart"] path').count() == 1
    assert page.locator('[data-testid="restarts-chart"] path').count() == 1
    hot = page.locator('[data-testid="hot"] tbody tr')
    assert {hot.nth(i).get_attribute("data-key") for i in range(2)} == {"busy-a", "busy-b"}
    assert page.locator('[data-supervisor="root"] [data-child="w1"] .ok').inner_text() == "running"
    assert page.locator('[data-supervisor="root"] [data-child="w2"]').count() == 1

    # the inspector: where it lives, its state, a page of storage and the next, history
    page.fill('[data-testid="inspect-type"]', "StoreCounter")
    page.fill('[data-testid="inspect-key"]', "inspected")
    page.click('[data-testid="inspect-form"] button')
    page.wait_for_selector('[data-testid="inspect-where"]', timeout=10_000)
    where = page.locator('[data-testid="inspect-where"]').inner_text()
    assert where.startswith("StoreCounter/inspected: slot ") and "in memory" in where, where
    state = json.loads(page.locator('[data-testid="inspect-state"]').inner_text())
    assert state["n"] == 7
    assert page.locator('[data-testid="inspect-storage"] tr').count() == 50
    assert page.locator('[data-testid="inspect-history"] tr').count() >= 60
    screenshot(page, "dashboard")
    page.click('[data-testid="inspect-more"]')
    page.wait_for_function("() => dash.inspected && dash.inspected.storage[0][0] === 'entry-50'",
                           timeout=10_000)
    names = [r.inner_text().split("\t")[0] for r in
             page.locator('[data-testid="inspect-storage"] tr td:first-child').all()]
    assert names == [f"entry-{i}" for i in range(50, 60)] + ["raw"]
    assert '"bytes":"AP8="' in page.locator('[data-testid="inspect-storage"]').inner_text()
    # an unknown type is said so
    page.fill('[data-testid="inspect-type"]', "Ghost")
    page.click('[data-testid="inspect-form"] button')
    page.wait_for_selector('[data-testid="inspect-error"]', timeout=10_000)
    assert "Ghost" in page.locator('[data-testid="inspect-error"]').inner_text()
    context.close()


def test_a_killed_worker_shows_down_then_restarted_on_the_dashboard(dashboard_node, browser):
    node, c = dashboard_node
    base = node.gateway_url
    pid = c.ref("Counter", "busy-a").ask("pid")
    context = browser.new_context(extra_http_headers={"Authorization": "Bearer ops"})
    page = context.new_page()
    page.goto(base + "/dashboard?interval=0.5")
    page.wait_for_function("() => window.dash && dash.polls >= 1", timeout=30_000)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: c.ref("Counter", "busy-a").ask("pid", retry=True) != pid, "the restart", 30)
    page.wait_for_function(
        "() => Object.values((dash.last.counters.actorsys_process_restarts_total) || {})"
        ".some(v => v >= 1)", timeout=30_000)
    restarted = page.locator('[data-testid="processes"] tr[data-role="worker"] td:nth-child(7)')
    assert "1" in [restarted.nth(i).inner_text() for i in range(restarted.count())]
    context.close()


def test_the_auth_hook_keeps_the_dashboard_to_operators(dashboard_node):
    node, _c = dashboard_node
    base = node.gateway_url
    assert get(base + "/dashboard/api/overview", token=None)[0] == 403
    assert get(base + "/dashboard/api/actor/Counter/busy-a", token="visitor")[0] == 403
    status, body = get(base + "/dashboard/api/actor/Counter/busy-a")
    assert status == 200 and body["state"]["n"] > 0 and body["type"] == "Counter"
    status, body = get(base + "/dashboard/api/overview")
    assert status == 200 and body["tree"]["root"]["total"] == 2


def test_the_dashboard_is_off_unless_asked_for(tmp_path):
    cfg = make_config(str(tmp_path / "data"))
    cfg["gateway"] = {"listen": "127.0.0.1:0"}
    with actorsys.Node(cfg) as n:
        for path in ("/dashboard", "/dashboard/api/overview"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(n.gateway_url + path, timeout=10)
            assert e.value.code == 404


def test_the_inspector_keeps_to_exposed_types_and_pages_large_values(tmp_path):
    cfg = make_config(str(tmp_path / "data"))
    cfg["gateway"] = {"listen": "127.0.0.1:0", "dashboard": True, "expose": ["StoreCounter"]}
    with actorsys.Node(cfg) as n:
        c = n.client()
        c.ref("Counter", "hidden").ask("add", 1)
        big = c.ref("StoreCounter", "big")
        for name in ("a", "b", "c"):
            big.ask("put", name, "x" * 200_000)
        status, body = get(n.gateway_url + "/dashboard/api/actor/Counter/hidden", token=None)
        assert status == 404 and body["error"] == "unknown_type", body
        status, body = get(n.gateway_url + "/dashboard/api/actor/StoreCounter/big", token=None)
        assert status == 200 and body["more"] is True
        assert [e[0] for e in body["storage"]] == ["a"], "256 KiB a page past its first entry"
        status, body = get(n.gateway_url + "/dashboard/api/actor/StoreCounter/big?after=a",
                           token=None)
        assert [e[0] for e in body["storage"]] == ["b"] and body["more"] is True
