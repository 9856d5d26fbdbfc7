"""What a type checker sees of typed proxies: mypy, run in a subprocess on a small typed
file, with the plugin (``plugins = ["actorsys.mypy"]``) and without it.

Each line of :data:`EXAMPLE` that mypy must flag says so at its end: ``# E: text`` with
or without the plugin (the proxy's own API), ``# P: text`` only with it (handler calls),
``# N: text`` only without it (strict mode's ``warn_return_any``: a handler call's result
is ``Any`` there); ``# R: type`` is what ``reveal_type`` must show with the plugin.
Every other line must pass both runs."""
from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EXAMPLE = '''
from __future__ import annotations

from typing import Awaitable

import actorsys


class Counter(actorsys.Actor):
    def add(self, by: int = 1) -> int:
        return by

    async def total(self, of: list[int]) -> str:
        return str(sum(of))

    def wait(self, timeout: float) -> float:
        return timeout

    @property
    def size(self) -> int:
        return 0

    async def via(self, key: str) -> int:
        other = self.proxy(Counter, key)
        reveal_type(other.add)  # R: def (by: int =) -> typing.Awaitable[int]
        self.proxy(Counter, key).tell.add(2)
        one, two = other.add(1), other.with_options(timeout=1.0).add(by=2)
        return await one + await two  # N: Returning Any from function


def blocking(client: actorsys.Client) -> None:
    counter = client.proxy(Counter, "visits")
    n: int = counter.add(5)
    reveal_type(counter.add)  # R: def (by: int =) -> int
    reveal_type(counter.total)  # R: def (of: list[int]) -> str
    reveal_type(counter.tell.add)  # R: def (by: int =)
    s: str = counter.with_options(timeout=2, retry=True).total([1, 2])
    f: float = client.proxy(Counter, "k", type_name="app.Counter").wait(timeout=0.5)
    counter.add("5")  # P: Argument 1 to "add" of "Counter" has incompatible type "str"; expected "int"
    counter.add(1, 2)  # P: Too many arguments for "add" of "Counter"
    wrong: str = counter.add(1)  # P: (expression has type "int", variable has type "str")
    counter.nope()  # P: "Counter" has no handler "nope"
    counter.on_start()  # P: "on_start" of "Counter" is a lifecycle hook
    counter.stop()  # P: "stop" of "Counter" is part of Actor's own API
    counter._private()  # P: "_private" of "Counter" is private
    counter.size  # P: "size" of "Counter" is not a handler
    counter.tell.nope()  # P: "Counter" has no handler "nope"
    counter.with_options(timeout="2")  # E: "with_options" of "Proxy" has incompatible type "str"
    client.proxy(Counter, 7)  # E: Argument 2 to "proxy" of "Client" has incompatible type "int"


async def aio(client: actorsys.AsyncClient) -> None:
    counter = client.proxy(Counter, "visits")
    n: int = await counter.add(5)
    s: str = await counter.total([1])
    pending: Awaitable[int] = counter.add()
    reveal_type(counter.add)  # R: def (by: int =) -> typing.Awaitable[int]
    wrong: int = await counter.total([1])  # P: (expression has type "str", variable has type "int")
    await counter.total(["1"])  # P: List item 0 has incompatible type "str"; expected "int"
'''


def run_mypy(tmp_path, plugin: bool) -> list[tuple[int, str]]:
    """(line, text) of every error and note mypy reports on the example (strict mode)."""
    (tmp_path / "example.py").write_text(EXAMPLE)
    plugins = "plugins = actorsys.mypy\n" if plugin else ""
    (tmp_path / "mypy.ini").write_text(f"[mypy]\nstrict = True\nmypy_path = {ROOT}\n{plugins}")
    # (mypy_path: actorsys from this tree, not the one installed; PYTHONPATH: the plugin's)
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini",
                        "--cache-dir", str(tmp_path / f"cache-{plugin}"), "--no-error-summary",
                        "--hide-error-context", "--no-pretty", "example.py"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 1) and not r.stderr, f"mypy did not run: {r.stderr}{r.stdout}"
    found = []
    for line in r.stdout.splitlines():
        m = re.match(r"example\.py:(\d+): (?:error|note): (.*)$", line)
        assert m, f"unexpected mypy output: {line}"
        found.append((int(m[1]), m[2]))
    return found


def expected(marks: str) -> dict[int, str]:
    """line -> expected text, for the lines of EXAMPLE marked with one of ``marks``."""
    out = {}
    for n, line in enumerate(EXAMPLE.splitlines(), 1):
        m = re.search(r"  # ([EPNR]): (.*)$", line)
        if m and m[1] in marks:
            out[n] = m[2]
    return out


def check(found: list[tuple[int, str]], want: dict[int, str]) -> None:
    by_line: dict[int, list[str]] = {}
    for n, text in found:
        by_line.setdefault(n, []).append(text)
    missing = {n: w for n, w in want.items() if not any(w in t for t in by_line.get(n, []))}
    extra = {n: ts for n, ts in by_line.items() if n not in want}
    assert not missing, f"mypy did not report (line: expected): {missing}; it reported {found}"
    assert not extra, f"mypy flagged lines that are correct: {extra}"


def test_with_the_plugin_mypy_sees_each_handlers_signature_and_result(tmp_path):
    found = run_mypy(tmp_path, plugin=True)
    reveals = {n: f'Revealed type is "{t}"' for n, t in expected("R").items()}
    check(found, {**expected("EP"), **reveals})


def test_without_the_plugin_handler_calls_are_unchecked(tmp_path):
    found = run_mypy(tmp_path, plugin=False)
    reveals = {n: 'Revealed type is "def (*Any, **Any) -> Any"' for n in expected("R")}
    check(found, {**expected("EN"), **reveals})
