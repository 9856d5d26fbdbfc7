"""``actorsys new NAME``: a new project, written from the template in
``actorsys/templates/project/``.

The template is a folder of real files (a ``pyproject.toml``, a node config, one actor,
a program running it on an embedded node, one test using the pytest plugin, a README
with the two commands), shipped as package data (``[tool.setuptools.package-data]`` in
actorsys's ``pyproject.toml``) and read with :mod:`importlib.resources`, so an installed
actorsys has it. Each file is written with:

* ``{{name}}`` replaced by the project's name and ``{{actorsys_version}}`` by this
  actorsys's version, in its text and in its path (the package folder is ``{{name}}``).
  Any other ``{{word}}`` is a fault of the template: :class:`TemplateError`, nothing
  written.
* a ``-tpl`` suffix dropped (``counter.py-tpl`` is ``counter.py``): the template's Python
  files carry it so that no tool of this repository takes them for its own modules
  (ruff, mypy, pytest, setuptools' package discovery); a ``dot-`` prefix made ``.``
  (``dot-gitignore`` is ``.gitignore``), since package data globs skip hidden files.

**The name** is the project's package, imported by ``python -m NAME`` and by the node's
workers: a lowercase Python identifier (``[a-z][a-z0-9_]*``), not a keyword, not
``tests`` (the project's test folder), not the name of a standard library module or of
one already importable here (``actorsys``, ``pytest``: the project would shadow it or be
shadowed by it). Anything else is refused with :class:`ProjectError` saying why.

**The destination** (``./NAME`` unless given) must not exist, or be an empty directory: an
existing file or non-empty directory is refused, and nothing is ever overwritten (each
file is created exclusively, so one that appears meanwhile is refused too). If writing
fails midway, what this call created is removed again.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
import keyword
import os
import re
import sys
from importlib.abc import Traversable
from pathlib import Path

#: the template's folder, inside the ``actorsys`` package
TEMPLATE = ("templates", "project")
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
#: names a project may not take beyond the rules above (its own test folder)
_TAKEN = frozenset({"tests"})


class ProjectError(ValueError):
    """A project that cannot be written: a bad name or destination (said in the message)."""


class TemplateError(RuntimeError):
    """The template itself is faulty (an unknown placeholder): a bug of actorsys."""


def check_name(name: str) -> None:
    """Refuse a project name that cannot be its package's (module docstring)."""
    if not _NAME.match(name):
        raise ProjectError(f"{name!r} is not a project name: a lowercase Python identifier "
                           f"(letters a-z, digits and _, starting with a letter), e.g. 'my_app'")
    if keyword.iskeyword(name):
        raise ProjectError(f"{name!r} cannot name a project: it is a Python keyword")
    if name in _TAKEN:
        raise ProjectError(f"{name!r} cannot name a project: it is the name of its test folder")
    if name in sys.stdlib_module_names:
        raise ProjectError(f"{name!r} is a module of Python's standard library: the project's "
                           f"package would shadow it (pick another name)")
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.origin is not None:     # (a namespace package: only a folder)
        raise ProjectError(f"{name!r} is already importable here ({spec.origin}): the project's "
                           f"package would shadow it or be shadowed by it (pick another name)")


def template_files() -> dict[str, str]:
    """The template's files, path (``/``-separated, as in the template) -> text."""
    root = importlib.resources.files("actorsys").joinpath(*TEMPLATE)
    out: dict[str, str] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name == "__pycache__":
                continue
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            else:
                out[prefix + entry.name] = entry.read_text(encoding="utf-8")

    if not root.is_dir():
        raise TemplateError(f"actorsys's project template is missing ({root}): a broken install")
    walk(root, "")
    return out


def render(text: str, values: dict[str, str]) -> str:
    """``text`` with each ``{{word}}`` replaced by ``values[word]``."""
    def one(m: re.Match[str]) -> str:
        if m[1] not in values:
            raise TemplateError(f"the project template uses {{{{{m[1]}}}}}, which is none of "
                                f"{sorted(values)}")
        return values[m[1]]
    return _PLACEHOLDER.sub(one, text)


def target_path(template_path: str, values: dict[str, str]) -> str:
    """Where a template file goes in the project (module docstring: placeholders, ``-tpl``,
    ``dot-``)."""
    parts = render(template_path, values).split("/")
    last = parts[-1].removesuffix("-tpl")
    parts[-1] = "." + last[4:] if last.startswith("dot-") else last
    return "/".join(parts)


def write_project(name: str, directory: str | os.PathLike[str] | None = None) -> list[str]:
    """Write project ``name`` into ``directory`` (default ``./name``); the files written,
    relative to it. Raises :class:`ProjectError` for a bad name or destination."""
    from .. import __version__

    check_name(name)
    dest = Path(name if directory is None else directory)
    if dest.exists() and not dest.is_dir():
        raise ProjectError(f"{dest} exists and is not a directory: nothing written")
    if dest.is_dir() and any(dest.iterdir()):
        raise ProjectError(f"{dest} exists and is not empty: nothing written (actorsys new "
                           f"never overwrites; give a new or empty directory)")
    values = {"name": name, "actorsys_version": __version__}
    files = {target_path(p, values): render(text, values) for p, text in template_files().items()}
    created: list[Path] = []          # files and folders, in the order made
    try:
        for folder in reversed([dest, *dest.parents]):
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        for rel, text in files.items():
            path = dest / rel
            for folder in reversed(path.relative_to(dest).parents[:-1]):
                if not (dest / folder).exists():
                    (dest / folder).mkdir()
                    created.append(dest / folder)
            with open(path, "x", encoding="utf-8") as f:      # never overwrite
                created.append(path)
                f.write(text)
    except BaseException:
        for path in reversed(created):
            try:
                path.rmdir() if path.is_dir() else path.unlink()
            except OSError:         # (something else put a file there meanwhile: left alone)
                pass
        raise
    return sorted(files)
