"""Real-browser testing: the system chromium driven by Playwright (sync API).

``open_browser()`` launches ``/usr/bin/chromium`` headless with a fresh temporary profile
(Playwright creates one per launch and deletes it on close) and guarantees that no chromium
process outlives the ``with`` block. ``browser`` is a pytest fixture built on it, one
browser per test: while Playwright's sync API is started it runs an asyncio event loop
in this thread, and every other test's ``asyncio.run()`` would fail ("cannot be called
from a running event loop"). ``browser_context`` gives a test an isolated context
(cookies, storage, pages).

Needs Debian's ``chromium`` package and the ``playwright`` Python package: ``scripts/setup-browser``
installs both. Playwright's own browser downloads (``playwright install``) are never used.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import psutil
import pytest
from helpers import ROOT, SHARED

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = "/usr/bin/chromium"
# Playwright already passes --headless, --no-sandbox, --no-first-run, --disable-sync,
# --disable-background-networking and --disable-component-update; these are the rest.
EXTRA_ARGS = ["--disable-gpu", "--disable-quic"]
SCREENSHOTS = Path(ROOT) / "docs" / "screenshots"
SETUP_HINT = "run scripts/setup-browser to install chromium and playwright"


class BrowserUnavailable(RuntimeError):
    """Chromium or Playwright is not installed."""


# One Playwright driver per thread is all the sync API allows, so open_browser() calls
# share it (reference counted) and the last one to leave stops it.
_driver: dict = {"playwright": None, "process": None, "users": 0}


def _start_driver() -> tuple["Playwright", psutil.Process]:
    if _driver["users"] == 0:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            raise BrowserUnavailable(f"playwright is not installed ({exc}); {SETUP_HINT}") from None
        if not os.access(CHROMIUM, os.X_OK):
            raise BrowserUnavailable(f"{CHROMIUM} not found; {SETUP_HINT}")
        before = {p.pid for p in psutil.Process().children()}
        playwright = sync_playwright().start()
        new = [p for p in psutil.Process().children()
               if p.pid not in before and "run-driver" in " ".join(p.cmdline())]
        _driver.update(playwright=playwright, process=new[0] if new else None)
    _driver["users"] += 1
    return _driver["playwright"], _driver["process"]


def _stop_driver(timeout: float) -> None:
    _driver["users"] -= 1
    if _driver["users"]:
        return
    playwright, process = _driver["playwright"], _driver["process"]
    _driver.update(playwright=None, process=None)
    tree = _tree([process] if process else [])
    with _watchdog(tree, timeout):
        try:
            playwright.stop()
        except Exception:
            pass  # the driver may already be gone (watchdog); the reap below settles it
    _reap(tree, timeout)


def browser_pids() -> set[int]:
    """Pids of the running Playwright driver and every browser process under it.

    The autouse leftover-process check excludes these, so a session-wide browser can
    outlive individual tests.
    """
    process = _driver["process"]
    return {p.pid for p in _tree([process])} if process else set()


def _tree(roots: list[psutil.Process]) -> list[psutil.Process]:
    procs = []
    for root in roots:
        try:
            procs += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return procs


def _kill(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` for ``procs`` to exit; return those still running.

    Zombies count as gone: orphaned chromium helpers are reaped by init, sometimes a
    second or more later, and a zombie holds no resources.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def _reap(procs: list[psutil.Process], timeout: float) -> None:
    """Wait up to ``timeout`` for ``procs`` to exit, then SIGKILL the rest and wait again."""
    alive = _wait(procs, timeout)
    _kill(alive)
    alive = _wait(alive, timeout)
    if alive:
        raise RuntimeError(f"browser processes survived SIGKILL: {[p.pid for p in alive]}")


@contextmanager
def _watchdog(procs: list[psutil.Process], timeout: float) -> Iterator[None]:
    """Kill ``procs`` if the block has not finished within ``timeout`` (unblocks a hung close)."""
    timer = threading.Timer(timeout, _kill, [procs])
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextmanager
def open_browser(*, close_timeout: float = 10.0) -> Iterator["Browser"]:
    """A headless chromium (fresh temporary profile) for the duration of the block.

    On exit the browser is closed, and any of its processes still running
    ``close_timeout`` seconds later are killed. Raises ``BrowserUnavailable`` when
    chromium or playwright is missing.
    """
    playwright, driver = _start_driver()
    try:
        before = {p.pid for p in driver.children()} if driver else set()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=EXTRA_ARGS)
        roots = [p for p in driver.children() if p.pid not in before] if driver else []
        try:
            yield browser
        finally:
            tree = _tree(roots)  # taken now: it includes renderers started since launch
            with _watchdog(tree, close_timeout):
                try:
                    browser.close()
                except Exception:
                    pass  # already closed or crashed; the reap below settles it
            # chromium may start a helper while it closes (its storage service writing
            # the profile): whatever is below the roots now joins the reap
            seen = {p.pid for p in tree}
            _reap(tree + [p for p in _tree(roots) if p.pid not in seen], close_timeout)
    finally:
        _stop_driver(close_timeout)


def screenshot(page: "Page", name: str) -> Path:
    """Save a screenshot of ``page`` as docs/screenshots/<name>.png and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@pytest.fixture
def browser() -> Iterator["Browser"]:
    """A headless chromium of this test's own (gone, with its processes, when it ends)."""
    try:
        with open_browser() as b:
            yield b
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


class _Shared:
    """The browser of a module, as :data:`helpers.SHARED` holds it: its driver's pid."""

    def __init__(self, browser: "Browser") -> None:
        self.browser = browser
        self.pid = _driver["process"].pid if _driver["process"] else None


@pytest.fixture(scope="module")
def module_browser() -> Iterator["Browser"]:
    """One headless chromium for a module's tests (a module uses it through its own
    ``browser`` fixture, :func:`contexts_closed`): a launch costs about a second and as
    much CPU. No test of the module may run an asyncio loop of its own (``asyncio.run``)
    while it is open (the driver's loop runs in this thread); its processes are spared by
    the per-test check, and gone at the module's end."""
    try:
        with open_browser() as b:
            shared = _Shared(b)
            SHARED.append(shared)
            try:
                yield b
            finally:
                SHARED.remove(shared)
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def contexts_closed(browser: "Browser") -> Iterator["Browser"]:
    """``browser`` for one test (``yield from`` it in a module's ``browser`` fixture over
    :func:`module_browser`): every context (and page) it opened is closed at its end, so
    the next test starts with none."""
    try:
        yield browser
    finally:
        for context in list(browser.contexts):
            context.close()


@pytest.fixture
def browser_context(browser) -> Iterator["BrowserContext"]:
    """A fresh, isolated browser context (own cookies, storage and pages) for one test."""
    context = browser.new_context()
    try:
        yield context
    finally:
        context.close()


__all__ = ["CHROMIUM", "EXTRA_ARGS", "BrowserUnavailable", "open_browser", "screenshot",
           "browser_pids", "browser", "browser_context", "module_browser", "contexts_closed"]
