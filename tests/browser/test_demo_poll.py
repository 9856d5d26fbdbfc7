"""The poll demo end to end in a real headless Chromium: live counts across two browser
sessions, one vote per session, persisted counts, and a kill -9 of the poll's worker
while both pages stay connected."""
from __future__ import annotations

from typing import Any

import pytest

from browser import screenshot
from demo_helpers import example_dir, example_node, post
from actorsys.testing.nodes import kill_worker_of

EXAMPLE = example_dir("poll")
OPTIONS = ["espresso", "latte", "cappuccino", "flat white", "filter"]


def poll_of(page) -> dict[str, Any]:
    return page.evaluate("() => ({counts: poll.counts, total: poll.total, mine: poll.mine,"
                         " connected: poll.connected, opens: poll.opens, session: poll.session})")


def open_poll(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("() => window.poll && poll.connected && poll.options.length > 0",
                           timeout=15_000)
    return page


def expect_counts(page, counts: dict[str, int], mine: str | None, who: str) -> None:
    """Wait until the page shows ``counts`` (the others 0) and ``mine``, in its hook and
    in its bars."""
    want = {o: counts.get(o, 0) for o in OPTIONS}
    total = sum(want.values())
    try:
        page.wait_for_function(
            "([want, total, mine]) => poll.total === total && poll.mine === mine &&"
            " Object.entries(want).every(([o, n]) => poll.counts[o] === n)",
            arg=[want, total, mine], timeout=15_000)
    except Exception:
        raise AssertionError(f"{who} should show counts {want} (total {total}, mine {mine!r}); "
                             f"it shows {poll_of(page)}") from None
    for option, n in want.items():
        row = page.locator(f'[data-testid="option"][data-option="{option}"]')
        shown = row.locator('[data-testid="count"]').inner_text()
        assert shown == f"{n} vote{'' if n == 1 else 's'}", \
            f"{who}: the {option} bar should say {n} votes, it says {shown!r}"
        pct = round(100 * n / total) if total else 0
        assert row.locator('[data-testid="percent"]').inner_text() == f"{pct}%", \
            f"{who}: the {option} bar should show {pct}%"
        assert ("mine" in (row.get_attribute("class") or "")) == (option == mine), \
            f"{who}: only the {mine!r} bar should be marked as this session's vote"
    assert page.locator('[data-testid="total"]').inner_text() == str(total), \
        f"{who} should show a total of {total}"


def vote(page, option: str) -> None:
    page.locator(f'[data-testid="option"][data-option="{option}"]').click()


@pytest.mark.timeout(150)
def test_poll_live_counts_one_vote_per_session_and_a_kill_9(tmp_path, browser):
    with example_node(EXAMPLE, tmp_path) as node:
        url = f"{node.gateway_url}/?poll=coffee"
        ctx_a, ctx_b = browser.new_context(), browser.new_context()
        a, b = open_poll(ctx_a, url), open_poll(ctx_b, url)
        assert a.locator('[data-testid="question"]').inner_text() == "How do you take your coffee?"
        assert a.locator('[data-testid="option"]').count() == len(OPTIONS), \
            f"the page should show the default options {OPTIONS}"
        assert poll_of(a)["session"] != poll_of(b)["session"], \
            "two browser contexts should be two voting sessions"

        # two sessions vote: both pages see both votes, live
        vote(a, "latte")
        expect_counts(a, {"latte": 1}, "latte", "page A")
        expect_counts(b, {"latte": 1}, None, "page B")
        vote(b, "espresso")
        expect_counts(b, {"latte": 1, "espresso": 1}, "espresso", "page B")
        expect_counts(a, {"latte": 1, "espresso": 1}, "latte", "page A")

        # the same session votes again: its vote moves, the total stays
        vote(a, "cappuccino")
        expect_counts(a, {"cappuccino": 1, "espresso": 1}, "cappuccino", "page A after moving its vote")
        expect_counts(b, {"cappuccino": 1, "espresso": 1}, "espresso", "page B")
        vote(a, "cappuccino")       # the same vote again changes nothing
        expect_counts(b, {"cappuccino": 1, "espresso": 1}, "espresso", "page B after a repeated vote")

        # a reload shows the persisted counts and keeps the session (sessionStorage)
        session_a = poll_of(a)["session"]
        a.reload()
        a.wait_for_function("() => window.poll && poll.connected && poll.options.length > 0")
        assert poll_of(a)["session"] == session_a, "a reload should keep the voting session"
        expect_counts(a, {"cappuccino": 1, "espresso": 1}, "cappuccino", "page A after a reload")
        assert post(node, "/actors/Poll/coffee/results")["counts"]["cappuccino"] == 1

        # kill -9 the poll's worker with both pages open, a vote in flight as it dies
        client = node.client()
        vote(b, "latte")
        kill_worker_of(node, client, "Poll", "coffee")
        expect_counts(b, {"cappuccino": 1, "latte": 1}, "latte",
                      "page B (its vote was sent as the worker was killed)")
        expect_counts(a, {"cappuccino": 1, "latte": 1}, "cappuccino", "page A after the kill -9")
        results = post(node, "/actors/Poll/coffee/results")
        assert (results["total"], results["counts"]["cappuccino"], results["counts"]["latte"]) \
            == (2, 1, 1), f"no vote may be lost to the kill -9: {results}"

        # more votes: both pages keep working on their first socket
        vote(a, "filter")           # a moved vote: the voter entries survived the crash too
        expect_counts(a, {"filter": 1, "latte": 1}, "filter", "page A after the kill -9")
        expect_counts(b, {"filter": 1, "latte": 1}, "latte", "page B after the kill -9")
        vote(b, "flat white")
        expect_counts(b, {"filter": 1, "flat white": 1}, "flat white", "page B after the kill -9")
        expect_counts(a, {"filter": 1, "flat white": 1}, "filter", "page A after the kill -9")
        for page, who in ((a, "page A"), (b, "page B")):
            state = poll_of(page)
            assert state["connected"] and state["opens"] == 1, \
                f"{who} should have kept its one socket across the kill -9 (it opened {state['opens']})"

        # a third session for the screenshot
        ctx_c = browser.new_context()
        c = open_poll(ctx_c, url)
        vote(c, "flat white")
        expect_counts(a, {"filter": 1, "flat white": 2}, "filter", "page A")
        a.wait_for_timeout(500)     # let the bars finish their transition
        screenshot(a, "poll")
        ctx_c.close()
        assert client.ref("Poll", "coffee").ask("results")["total"] == 3
        client.close()

        # configure (over HTTP) starts a new poll on the open pages
        post(node, "/actors/Poll/coffee/configure", {"question": "Tea or coffee?",
                                                     "options": ["tea", "coffee"]})
        for page, who in ((a, "page A"), (b, "page B")):
            try:
                page.wait_for_function("() => poll.question === 'Tea or coffee?' && poll.total === 0"
                                       " && poll.mine === null && poll.options.join() === 'tea,coffee'",
                                       timeout=15_000)
            except Exception:
                raise AssertionError(f"{who} should show the new poll 'Tea or coffee?' with no "
                                     f"votes; it shows {page.evaluate('JSON.stringify(poll)')}") from None
            assert page.locator('[data-testid="option"]').count() == 2, f"{who} should show 2 options"
        vote(b, "tea")
        a.wait_for_function("() => poll.counts.tea === 1 && poll.total === 1", timeout=15_000)
        ctx_a.close()
        ctx_b.close()
