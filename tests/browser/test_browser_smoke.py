"""The real-browser harness works on its own: chromium loads a page from a local HTTP server,
runs its JavaScript and talks back to the server (no actorsys involved)."""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest


PAGE = """<!doctype html>
<title>smoke</title>
<button id="go">go</button><output id="out"></output>
<script>
  document.getElementById("go").onclick = async () => {
    const token = new URLSearchParams(location.search).get("token");
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
    const hex = [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, "0")).join("");
    const numbers = await (await fetch("numbers.json")).json();
    document.getElementById("out").textContent =
      JSON.stringify({hex, sum: numbers.reduce((a, b) => a + b, 0)});
  };
</script>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def site(tmp_path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (random port) serving a page and a JSON file."""
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "numbers.json").write_text(json.dumps(list(range(1, 101))))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.timeout(60)
def test_chromium_runs_page_javascript(browser_context, site):
    tokens = [secrets.token_hex(8) for _ in range(2)]
    pages = [browser_context.new_page() for _ in tokens]
    for page, token in zip(pages, tokens):
        page.goto(f"{site}?token={token}")
        page.click("#go")
    for page, token in zip(pages, tokens):
        page.wait_for_function("document.getElementById('out').textContent !== ''")
        result = json.loads(page.text_content("#out"))
        assert result == {"hex": hashlib.sha256(token.encode()).hexdigest(), "sum": 5050}
    assert pages[0].evaluate("navigator.userAgent").find("HeadlessChrome") >= 0
