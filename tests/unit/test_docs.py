"""The documentation matches the repository: the top-level *.md, docs/**/*.md and every
examples/**/README.md link only to files inside the repository that exist (and to
headings that exist; a web link only to this machine, as a demo's page), every
repository path they name in backticks exists, and every config key of the defaults
table (and of the supervision trees) is in the docs (the configuration reference, the
gateway's and the trees' pages). A section named by its title anywhere in the
repository (a docstring, a comment, a template of ``actorsys new``, a page:
``docs/concepts/clients.md, "Deadlines"``, ``README, "..."``, ``actorsys's
documentation, the "Configuration" page``) exists. Text only: no node, no import of
user code. The docs site built from docs/ is checked by tests/unit/test_docs_site.py."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from actorsys.config import defaults, supervision

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted({*ROOT.glob("*.md"), *ROOT.glob("docs/**/*.md"), *ROOT.glob("examples/**/README.md")})
#: the repository's top-level folders: a backticked path starting with one names a file here
TOP = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - {"build"}

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_PATHLIKE = re.compile(r"[\w.\-]+(/[\w.\-]+)*/?")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def prose(doc: Path) -> str:
    """The Markdown without its fenced code blocks."""
    return _FENCE.sub("", doc.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    return {slug(h) for h in _HEADING.findall(prose(doc))}


def links(doc: Path) -> list[str]:
    text = prose(doc)
    return _LINK.findall(text) + _REF_LINK.findall(text)


def inside_repo(path: Path) -> bool:
    return os.path.realpath(path).startswith(str(ROOT) + os.sep)


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_links_stay_in_the_repository_and_resolve(doc):
    bad = []
    for target in links(doc):
        if re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", target):
            continue         # a demo's page on this machine
        if re.match(r"[a-z][a-z0-9+.\-]*:", target) or target.startswith("/"):
            bad.append(f"{target}: an absolute path or URL scheme outside the repository")
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part) if path_part else doc
        if not inside_repo(dest):
            bad.append(f"{target}: leaves the repository")
        elif not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {rel(dest)}")
    assert not bad, f"{rel(doc)}: " + "; ".join(bad)


def named_paths(doc: Path) -> list[str]:
    """Repository paths named in inline code: the first word of a span, when it starts
    with a top-level folder of the repository (``examples/chat/chat.py``,
    ``scripts/chaos --duration 60``); in an example's README also paths relative to it
    (``static/index.html``, ``chat.py``)."""
    out = []
    in_example = doc.parent != ROOT and rel(doc).startswith("examples/")
    for span in _CODE.findall(prose(doc)):
        word = span.split()[0] if span.split() else ""
        if not _PATHLIKE.fullmatch(word) or word.startswith("."):
            continue
        if word.split("/")[0] in TOP and "/" in word:
            out.append(word)
        elif in_example and ("/" in word or word.endswith(".py")):
            out.append(word)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_file_named_exists(doc):
    missing = [p for p in named_paths(doc)
               if not ((ROOT / p).exists() or (doc.parent / p).exists())
               or not (inside_repo(ROOT / p) or inside_repo(doc.parent / p))]
    assert not missing, f"{rel(doc)} names files that do not exist: {missing}"
    outside = [span for span in _CODE.findall(prose(doc)) if span.startswith("../")]
    assert not outside, f"{rel(doc)} names files outside the repository: {outside}"


#: where the config keys are documented for users: the reference and the pages of the
#: tables it points to ([gateway] on the gateway's page, the trees' keys on theirs); not
#: the design record, whose examples may be of keys since renamed
REFERENCE = [ROOT / "README.md", ROOT / "docs" / "cluster.md",
             *sorted(ROOT.glob("docs/concepts/*.md")), *sorted(ROOT.glob("docs/operations/*.md"))]


def reference_toml() -> str:
    """Every TOML block of the user's docs, one text."""
    text = "\n".join(doc.read_text() for doc in REFERENCE)
    return "\n".join(re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M))


@pytest.mark.parametrize("key", list(defaults.DEFAULTS), ids=str)
def test_every_config_key_is_in_the_reference(key):
    """Each key of the defaults table is shown, with a value, in one of the docs' TOML
    blocks (docs/operations/configuration.md, and the gateway's table in
    docs/concepts/gateway.md)."""
    name = key.rsplit(".", 1)[-1]
    toml = reference_toml()
    if key.startswith("node.alarm_retry."):
        assert re.search(rf"^\s*#?\s*alarm_retry\s*=.*\b{name}\s*=", toml, re.M), key
    else:
        assert re.search(rf"(^|[{{,\s])#?\s*\"?{re.escape(name)}\"?\s*=", toml, re.M), \
            f"config key {key} is not in the docs' reference (their TOML blocks)"


def test_every_supervision_key_is_in_the_docs():
    text = "\n".join(doc.read_text() for doc in REFERENCE)
    missing = [k for k in (*supervision._SUP_KEYS, *supervision._CHILD_KEYS)
               if not re.search(rf"\b{k}\b\s*=|`{k}`", text)]
    assert not missing, f"supervision keys not in the docs: {missing}"


# -- sections named by title ------------------------------------------------------------
#: the trees whose text may name a section of the docs (with the top-level *.md)
NAMING = ("actorsys", "supervisors", "scripts", "examples", "tests", "docs")
_BINARY = {".png", ".jpg", ".ico", ".pyc", ".woff2", ".gz"}
_TITLE = r'"[^"\n]{1,160}"'
#: ``FILE.md, "Title"``, ``README's "Title"``, ``actorsys's documentation: the "A" and
#: "B" pages``: the file (or the docs site), then one or more quoted titles
_NAMED = re.compile(
    r"(?<![\w/.-])(?P<doc>README(?:\.md)?|(?:[\w.-]+/)*[\w.-]+\.md|(?:actorsys's|its) documentation)"
    r"(?:'s)?(?:[,:]\s*|\s+)(?:the\s+)?"
    rf"(?P<titles>{_TITLE}(?:\s*(?:,\s*and|,|and)\s+(?:the\s+)?{_TITLE})*)")
#: a line break and what continues a comment or docstring on the next line
_BREAK = re.compile(r"\s*\n\s*(?:(?:#|//|\*)(?![#*])\s*)?")
_BOLD_LEAD = re.compile(r"^\s*(?:[-*]\s+)?\*\*(.+?)\*\*", re.M)


def naming_files() -> list[Path]:
    """Every text file of NAMING and the top-level *.md, but this one (its samples name
    sections that do not exist, on purpose)."""
    out = [*ROOT.glob("*.md")]
    for top in NAMING:
        out += [p for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix not in _BINARY
                and "__pycache__" not in p.parts and p != Path(__file__).resolve()]
    return sorted(out)


def plain(text: str) -> str:
    """Lower case, no Markdown emphasis or code marks, single spaces."""
    return " ".join(re.sub(r"[`*_]", "", text).lower().split())


def sections(doc: Path) -> list[str]:
    """The titles a reader finds in ``doc``: its headings and its bold paragraph leads."""
    text = prose(doc)
    return [plain(t) for t in (*_HEADING.findall(text), *_BOLD_LEAD.findall(text))]


def page_titles() -> set[str]:
    """The docs site's pages: each page's first heading, and its title in mkdocs.yml's nav."""
    titles = {plain(m.group(1)) for doc in ROOT.glob("docs/**/*.md")
              if (m := re.search(r"^#\s+(.+?)\s*$", doc.read_text(), re.M))}
    nav = (ROOT / "mkdocs.yml").read_text()
    return titles | {plain(t) for t in re.findall(r"^\s*-\s+([^:\n]+):\s+\S+\.md\s*$", nav, re.M)}


def named_sections(path: Path) -> list[tuple[str, list[str]]]:
    """(the file or site a text names, [the titles it names in it]), line breaks and
    comment marks between the words taken out."""
    try:
        text = _BREAK.sub(" ", path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return []
    return [(m["doc"], re.findall(r'"([^"]+)"', m["titles"])) for m in _NAMED.finditer(text)]


def missing_section(path: Path, doc: str, title: str, pages: set[str]) -> str | None:
    """Why ``title`` is not a section of ``doc`` as ``path`` names it (None: it is)."""
    want = plain(title)
    if doc.endswith("documentation"):
        return None if want in pages else f'no page of the docs is titled "{title}"'
    target = ROOT / "README.md" if doc.startswith("README") else next(
        (p for p in (ROOT / doc, path.parent / doc) if p.is_file()), None)
    if target is None:
        return f'{doc} (for "{title}"): no such file'
    if not any(re.search(rf"(^|\W){re.escape(want)}($|\W)", s) for s in sections(target)):
        return f'{rel(target)} has no section "{title}"'
    return None


def test_every_section_named_by_title_exists():
    """Module docstrings, comments, the templates of ``actorsys new`` and the pages name
    sections of the README and of docs/ by title; each such section exists (sections
    move: the README's long ones went into docs/)."""
    pages = page_titles()
    found, bad = 0, []
    for path in naming_files():
        for doc, titles in named_sections(path):
            for title in titles:
                found += 1
                if (why := missing_section(path, doc, title, pages)) is not None:
                    bad.append(f"{rel(path)}: {why}")
    assert found >= 10, f"expected the repository's references to sections, found {found}"
    assert not bad, "sections named that do not exist:\n" + "\n".join(bad)


def test_the_section_check_reads_each_form_of_reference(tmp_path):
    """The forms the repository uses, wrapped over comment and docstring lines, are
    read, and a section that does not exist is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""See docs/concepts/clients.md, "Deadlines"; its README: "Quickstart", "Writing an\n'
        '    actor"; actorsys\'s documentation, the "Storage, alarms and history" page."""\n'
        '# Every key: actorsys\'s README, "Configuration"  (moved: no such section)\n'
        '# its documentation: the "Actors and turns" and\n'
        '# "Testing your actors" pages\n')
    named = named_sections(sample)
    assert named == [("docs/concepts/clients.md", ["Deadlines"]),
                     ("README", ["Quickstart", "Writing an actor"]),
                     ("actorsys's documentation", ["Storage, alarms and history"]),
                     ("README", ["Configuration"]),
                     ("its documentation", ["Actors and turns", "Testing your actors"])], named
    pages = page_titles()
    assert [t for doc, titles in named for t in titles if missing_section(sample, doc, t, pages)] == \
        ["Configuration"]
