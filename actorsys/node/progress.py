"""Progress of long work the command line and the scripts do (issue 17): a bar on a
terminal (rich's), plain lines otherwise (a pipe, a file, CI's log), never both.

    with Progress("listing Counter", total=None, stream=sys.stderr) as p:
        for page in pages:
            p.advance(len(page))

On a terminal the bar redraws in place on ``stream``. Elsewhere one line is written when
the work starts, one at most every :data:`LINE_EVERY` seconds while it goes on, and one
when it ends (``listing Counter: 12,000 done in 3.1 s``), so a log shows where a long run
stands without a line per step.
"""
from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Any

#: seconds between two plain progress lines
LINE_EVERY = 5.0


class Progress:
    """One piece of long work (see the module docstring); ``total`` None: unknown."""

    def __init__(self, what: str, total: float | None = None, stream: IO[str] | None = None,
                 unit: str = "", bar: bool | None = None) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.done = 0.0
        self.note = ""
        self.started = self.said = time.monotonic()
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> "Progress":
        if self.bar:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       TextColumn, TimeElapsedColumn)
            columns = [TextColumn("{task.description}"), BarColumn(),
                       MofNCompleteColumn() if self.total else TextColumn("{task.completed:,.0f}"),
                       TimeElapsedColumn(), TextColumn("{task.fields[note]}")]
            # (what the program prints meanwhile goes where it goes: `ls --all > file` keeps
            # its keys in the file while the bar draws on the terminal's stderr)
            self._rich = Bar(*columns, console=Console(file=self.stream), transient=False,
                             redirect_stdout=False, redirect_stderr=False)
            self._rich.start()
            self._task = self._rich.add_task(self.what, total=self.total, note="")
        else:
            self._line("started")
        return self

    def advance(self, n: float = 1, note: str = "") -> None:
        """``n`` more done; ``note``: what is under way now (shown beside the count)."""
        self.set(self.done + n, note)

    def set(self, done: float, note: str = "") -> None:
        """``done`` so far (a time elapsed, a count); ``note`` as in :meth:`advance`."""
        self.done = done
        self.note = note or self.note
        if self._rich is not None:
            self._rich.update(self._task, completed=done, note=self.note)
        elif time.monotonic() - self.said >= LINE_EVERY:
            self._line(self.note or "under way")

    def say(self, line: str) -> None:
        """A line of its own (an event of the work): above the bar, or as it is."""
        if self._rich is not None:
            self._rich.console.print(line, highlight=False, markup=False)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _line(self, state: str) -> None:
        count = f"{self.done:,.0f}" + (f"/{self.total:,.0f}" if self.total else "")
        self.stream.write(f"{self.what}: {count}{self.unit} {state} "
                          f"({time.monotonic() - self.started:.1f} s)\n")
        self.stream.flush()
        self.said = time.monotonic()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._rich is not None:
            self._rich.stop()
        else:
            self._line("done" if exc_type is None else f"stopped ({exc_type.__name__})")
