"""Where a config comes from, and where in it a key is: every config error names the file,
the line and the dotted key (``node.workers``, ``supervisors.root.children[1].restart``).

A :class:`Source` is the parsed TOML (or a dict given in code) with its text; its
:meth:`Source.fail` makes the :class:`~actorsys.errors.ConfigError` for a key, with the
key's line found in the text (best effort: a key written on no line of its own is
located at its nearest enclosing key or table).
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from . import supervision


@dataclass(frozen=True)
class Source:
    """A config's content and where it came from."""

    #: the TOML tables (or the dict given in code)
    raw: Any
    #: the absolute path of the file; None for a dict
    file: str | None
    #: the file's text (to locate keys); None for a dict
    text: str | None
    #: relative paths in the config are relative to this directory (the file's, or the cwd)
    base: str

    @classmethod
    def of_dict(cls, raw: dict[str, Any]) -> "Source":
        return cls(raw, None, None, os.getcwd())

    @classmethod
    def read(cls, path: "str | os.PathLike[str]") -> "Source":
        """Read and parse a TOML file; ConfigError if it cannot be read or parsed."""
        file = os.path.abspath(os.fspath(path))
        try:
            with open(file, "rb") as f:
                text = f.read().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file ({exc.strerror})", file=file) from None
        except UnicodeDecodeError:
            raise ConfigError("config file is not UTF-8 text", file=file) from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise ConfigError(f"invalid TOML: {exc}", file=file,
                              line=int(m.group(1)) if m else None) from None
        return cls(raw, file, text, os.path.dirname(file))

    def fail(self, problem: str, table: str | None = None, key: str | None = None) -> ConfigError:
        """The error for ``key`` in ``table`` (either may be dotted or None)."""
        dotted = ".".join(p for p in (table, key) if p)
        return ConfigError(problem, file=self.file, line=dotted_line(self.text, dotted),
                           key=dotted or None)

    def fail_dotted(self, problem: str, dotted: str) -> ConfigError:
        """The error for a dotted key that may index a supervisor's children
        (``supervisors.root.children[1].restart``)."""
        m = re.match(r"^supervisors\.([^.\[]+)\.children\[(\d+)\](?:\.(\w+))?$", dotted)
        if m:
            line = supervision.child_line(self.text, m.group(1), int(m.group(2)), m.group(3))
            if line is None:
                line = dotted_line(self.text, f"supervisors.{m.group(1)}.children")
        else:
            line = dotted_line(self.text, dotted)
        return ConfigError(problem, file=self.file, line=line, key=dotted)

    def path(self, relative: str) -> str:
        """A path of the config made absolute (relative to :attr:`base`)."""
        return os.path.join(self.base, relative)


def line_of(text: str | None, table: str | None, key: str | None) -> int | None:
    """Best-effort line number of ``key`` inside ``[table]`` in a TOML text."""
    if text is None:
        return None
    lines = text.splitlines()
    if table is None:
        if key is None:
            return None
        # a top-level name: a [name] / [name.x] / [[name]] header, or a root-level name = ...
        header = re.compile(r'^\s*\[+\s*["\']?' + re.escape(key) + r'["\']?\s*[\].]')
        plain = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*[=.]')
        in_root = True
        for i, line in enumerate(lines):
            if re.match(r"^\s*\[", line):
                in_root = False
                if header.match(line):
                    return i + 1
            elif in_root and plain.match(line):
                return i + 1
        return None
    header = re.compile(r"^\s*\[\s*" + re.escape(table) + r"\s*\]")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return None
    if key is None:
        return start + 1
    pat = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*=')
    for i in range(start, len(lines)):
        if i > start and re.match(r"^\s*\[", lines[i]):
            break
        if pat.match(lines[i]):
            return i + 1
    return None


def dotted_line(text: str | None, dotted: str) -> int | None:
    """Best-effort line of a dotted key: the key itself, else the nearest enclosing key or
    table written in the file (``node.backoff.max`` -> the ``backoff = {...}`` line)."""
    d = dotted
    while d:
        table, _, key = d.rpartition(".")
        line = line_of(text, table or None, key)
        if line is None and table:
            line = line_of(text, None, d)       # a [table.sub] header
        if line is not None:
            return line
        d = table
    return None
