"""A griffe extension for the docs site (mkdocs.yml loads it): the Sphinx roles of
actorsys's docstrings, ``:class:`~actorsys.RemoteError```, ``:mod:`.keys```,
``:meth:`close```, rendered as code, linked to the object's page when the site has one.

The docstrings are written to be read in the source and in ``help()``, with Sphinx's
roles; mkdocstrings reads them as Markdown, where a role would show as ":class:" before
the code. Each role becomes the code Sphinx would show (``~`` keeps the last name; a
function or method gets ``()``) inside an *optional* cross-reference: a link when the
site renders the object, plain code otherwise, never a warning (a docstring may name an
internal module the reference leaves out). The target is looked up as Sphinx would: a
leading dot from the docstring's module and then each package above it, a bare name in
the docstring's class and module first; a target found nowhere stays plain code.
Cross-references written in the pages themselves (``[Actor][actorsys.Actor]``) are not
optional: a broken one fails the strict build.
"""
from __future__ import annotations

import html
import re
from typing import Any

from griffe import Extension, GriffeLoader, Module, Object

ROLE = re.compile(r":(?P<role>class|func|meth|mod|attr|exc|data|obj|const):`(?P<target>[^`]+)`")
CALLABLE = {"func", "meth"}


def candidates(target: str, obj: Object) -> list[str]:
    """The paths ``target`` may mean in ``obj``'s docstring, the likeliest first."""
    module = obj if isinstance(obj, Module) else obj.module
    packages = [module.path]
    while "." in packages[-1]:
        packages.append(packages[-1].rsplit(".", 1)[0])
    if target.startswith("."):
        return [pkg + target for pkg in packages]
    scopes = [p.path for p in (obj, obj.parent) if p is not None and not isinstance(p, Module)]
    return [target, *(f"{scope}.{target}" for scope in scopes + packages)]


def resolve(target: str, obj: Object, loader: GriffeLoader) -> str | None:
    """The canonical path of what ``target`` names, if the loaded modules hold it."""
    for path in candidates(target, obj):
        try:
            found = loader.modules_collection[path]
            return str(found.canonical_path)
        except Exception:  # noqa: BLE001 - not there, or an alias to outside: try the next
            continue
    return None


def render(match: re.Match[str], obj: Object, loader: GriffeLoader) -> str:
    role, written = match["role"], match["target"]
    target = written.lstrip("~!")
    shown = target.rsplit(".", 1)[-1] if written.startswith("~") else target.lstrip(".")
    if role in CALLABLE:
        shown += "()"
    code = f"<code>{html.escape(shown)}</code>"
    path = None if written.startswith("!") else resolve(target, obj, loader)
    if path is None:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def rewrite(obj: Object, loader: GriffeLoader) -> None:
    """The roles of ``obj``'s docstring and its members', rendered (aliases are skipped:
    their targets are rewritten where they live)."""
    if obj.docstring is not None:
        obj.docstring.value = ROLE.sub(lambda m: render(m, obj, loader), obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            rewrite(member, loader)  # type: ignore[arg-type]


class SphinxRoles(Extension):
    """Rewrites each package's docstrings once it is loaded whole."""

    def on_package(self, *, pkg: Module, loader: GriffeLoader, **kwargs: Any) -> None:
        rewrite(pkg, loader)
