"""The code's shape, checked rather than hoped for: no module of the package, the
supervisors or the scripts is over :data:`MAX_LINES` lines, and every package says in its
``__init__`` what it is (docs/design-changes.md, "Issue 13, finished").

Test files are not held to the limit: a test module is a list of cases around one
fixture (a cluster started once per module), and splitting it would start that fixture
again.
"""
from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: the longest a module may be (issue 13: "no module over about 500 lines")
MAX_LINES = 500
CHECKED = ("actorsys", "supervisors", "scripts")


def python_files() -> list[pathlib.Path]:
    return sorted(p for top in CHECKED for p in (ROOT / top).rglob("*.py"))


def test_no_module_is_over_the_line_limit():
    files = python_files()
    assert len(files) > 100, f"expected the project's modules under {CHECKED}, found {len(files)}"
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"


def test_every_package_says_what_it_is():
    inits = [p for top in ("actorsys", "supervisors") for p in (ROOT / top).rglob("__init__.py")]
    assert inits
    silent = [str(p.relative_to(ROOT)) for p in inits
              if not p.read_text(encoding="utf-8").lstrip().startswith(('"""', "'''"))]
    assert not silent, f"packages without a docstring saying what they hold: {silent}"
