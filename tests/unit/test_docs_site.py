"""The docs site (mkdocs.yml) builds with ``--strict`` and links nowhere outside itself.

The project never links outside its repository, and its site loads nothing from
elsewhere: no page, stylesheet or script is fetched from another host, and no link
leads to one. The allowlist of outside hosts is empty. Checked on the built pages: every
URL in an HTML attribute (``href``, ``src``, ``srcset``, ``action``, ...) or an inline
style, and every ``url()`` and ``@import`` of the stylesheets, is relative or a
``data:`` URI; and no page has what makes Material's script fetch from elsewhere (the
repository widget: GitHub's API; a Mermaid diagram: unpkg.com).

scripts/test builds the site once, with ``--strict``, before the suite and names it in
``ACTORSYS_DOCS_SITE``; run alone, this module builds it itself (about 10 s). Either
way a strict build that fails fails here, naming mkdocs' warnings.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: hosts the site may link to or load from: none
ALLOWED_HOSTS: frozenset[str] = frozenset()
#: attributes that hold a URL (srcset: several, with sizes)
URL_ATTRS = {"href", "src", "srcset", "action", "formaction", "poster", "data", "cite",
             "background", "xlink:href", "manifest"}
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("docs_site")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("ACTORSYS_DOCS_SITE")
    if given:
        path = Path(given)
        assert (path / "index.html").is_file(), f"ACTORSYS_DOCS_SITE={given} holds no built site"
        return path
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")   # (the docstrings: this checkout's, mkdocs.yml's paths)
    try:
        done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                               "--site-dir", str(out)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=150)
    except subprocess.TimeoutExpired:
        pytest.fail("mkdocs build --strict did not finish within 150 s")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def outside(url: str) -> bool:
    """Whether ``url`` leads off the site: a scheme (but ``data:``) or a ``//host``."""
    url = url.strip()
    if url.startswith("//"):
        host = url[2:].split("/", 1)[0]
    elif _SCHEME.match(url):
        if url.lower().startswith("data:"):
            return False
        host = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", "", url).split("/", 1)[0]
    else:
        return False
    return host not in ALLOWED_HOSTS


class _Urls(HTMLParser):
    """Every URL of a page's attributes and inline styles, and the classes and
    components that make Material's script fetch from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.fetchers: list[str] = []
        #: every <img>'s src
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images += [v for k, v in attrs if k == "src" and v]
        for name, value in attrs:
            if value is None:
                continue
            if name in URL_ATTRS:
                parts = value.split(",") if name == "srcset" else [value]
                self.urls += [p.strip().split(" ")[0] for p in parts if p.strip()]
            elif name == "style":
                self.urls += [a or b for a, b in _CSS_URL.findall(value)]
            elif name == "content" and dict(attrs).get("http-equiv", "").lower() == "refresh":
                self.urls += re.findall(r"url=(\S+)", value, re.I)
            if name == "data-md-component" and value == "source":
                self.fetchers.append("the repository widget (GitHub's API)")
            if name == "class" and "mermaid" in value.split():
                self.fetchers.append("a Mermaid diagram (mermaid.js from unpkg.com)")


def pages(site: Path) -> list[Path]:
    found = sorted(site.rglob("*.html"))
    assert len(found) > 20, f"expected the site's pages under {site}, found {len(found)}"
    return found


def test_no_page_links_to_or_loads_from_another_host(site):
    bad = {}
    for page in pages(site):
        parser = _Urls()
        parser.feed(page.read_text(encoding="utf-8"))
        if off := sorted({u for u in parser.urls if outside(u)}):
            bad[str(page.relative_to(site))] = off
    assert not bad, f"pages linking outside the site: {bad}"


def test_no_stylesheet_loads_from_another_host(site):
    sheets = sorted(site.rglob("*.css"))
    assert sheets, "the site has no stylesheets"
    bad = {str(s.relative_to(site)): off for s in sheets
           if (off := sorted({a or b for a, b in _CSS_URL.findall(s.read_text(encoding="utf-8"))
                              if outside(a or b)}))}
    assert not bad, f"stylesheets loading from another host: {bad}"


def test_every_image_of_a_page_is_on_the_site(site):
    """An image a page shows is a file of the site: BENCHMARKS.md's plots are named from
    the repository's root there and from docs/ on the site (docs/benchmarks.md redefines
    them), and a wrong path builds without a warning, as a broken image."""
    bad, seen = {}, 0
    for page in pages(site):
        parser = _Urls()
        parser.feed(page.read_text(encoding="utf-8"))
        for src in parser.images:
            if outside(src) or src.startswith("data:"):
                continue
            seen += 1
            path = src.split("#")[0].split("?")[0]
            dest = site / path.lstrip("/") if path.startswith("/") else page.parent / path
            if not dest.resolve().is_file():
                bad.setdefault(str(page.relative_to(site)), []).append(src)
    assert not bad, f"images that are not on the site: {bad}"
    assert seen >= 2, "the benchmarks page shows its two plots"


def test_no_page_makes_the_theme_fetch_from_another_host(site):
    bad = {}
    for page in pages(site):
        parser = _Urls()
        parser.feed(page.read_text(encoding="utf-8"))
        if parser.fetchers:
            bad[str(page.relative_to(site))] = sorted(set(parser.fetchers))
    assert not bad, f"pages whose theme script would fetch from elsewhere: {bad}"


def test_the_api_reference_is_generated_from_the_docstrings(site):
    """The reference pages hold the rendered objects, their docstrings' Sphinx roles
    rendered as code (scripts/docs_roles.py), none left as ':class:'."""
    actor = (site / "reference" / "actor" / "index.html").read_text(encoding="utf-8")
    assert 'id="actorsys.Actor"' in actor and 'id="actorsys.Actor.set_alarm"' in actor
    left = {str(p.relative_to(site)): n for p in (site / "reference").rglob("*.html")
            if (n := len(re.findall(r":(class|func|meth|mod|attr|data):<code>", p.read_text())))}
    assert not left, f"Sphinx roles left unrendered: {left}"


def test_outside_tells_a_relative_url_from_another_host():
    assert not outside("../concepts/actors/#turns") and not outside("/assets/x.css")
    assert not outside("data:image/svg+xml;charset=utf-8,<svg/>") and not outside("#top")
    assert outside("https://fonts.googleapis.com/css") and outside("//cdn.example/x.js")
    assert outside("http://127.0.0.1:8080/") and outside("mailto:a@example.com")
