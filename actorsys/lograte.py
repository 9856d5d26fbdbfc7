"""A rate limit for log records, per key (an actor type), so a crash loop cannot flood the log.

Layer: the bottom, beside ``log``; any module may import it.

* :meth:`RateLimit.allow` answers whether a record for ``key`` may be logged now: the
  first ``burst`` records of a key in each window of ``window`` seconds are; the rest
  are counted (suppressed).
* A key's window starts at its first record and rolls once ``window`` seconds have
  passed. When a window that suppressed records rolls (at the key's next record, or at
  :meth:`RateLimit.sweep`, which the owner calls now and then), one line says how many:
  ``suppressed 990 more failed turns of type 'Counter' in the last 60 s``.
  :meth:`RateLimit.flush` writes those lines for every open window at once (a process
  that stops).
* At most ``max_keys`` keys are tracked at once (keys can come from a peer: unknown
  type names); past that, new keys share the key ``"*"``.

It does no I/O and reads no clock of its own but the one it is given, so a unit test
drives it with a fake clock.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

#: the key that new keys share once ``max_keys`` are tracked
OVERFLOW_KEY = "*"


class _Window:
    __slots__ = ("start", "count", "suppressed")

    def __init__(self, start: float) -> None:
        self.start = start      # monotonic seconds: when this window opened
        self.count = 0          # records allowed in it (<= burst)
        self.suppressed = 0     # records refused in it


class RateLimit:
    """At most ``burst`` records per key per ``window`` seconds (see the module docstring).

    ``what`` names the records in the summary line ("failed turns"), ``label`` what
    the key is ("of type": ``... failed turns of type 'Counter' ...``); the summary is
    logged to ``logger`` at WARNING.
    """

    def __init__(self, logger: logging.Logger, what: str, *, burst: int, window: float,
                 max_keys: int = 1000, clock: Callable[[], float] = time.monotonic,
                 label: str = "of type") -> None:
        if burst < 1 or window <= 0 or max_keys < 1:
            raise ValueError("burst and max_keys must be positive, window a positive number of seconds")
        self.logger, self.what, self.label = logger, what, label
        self.burst, self.window, self.max_keys, self.clock = burst, window, max_keys, clock
        #: key -> its current window (a key with no record for a window is dropped at sweep)
        self.windows: dict[str, _Window] = {}

    def allow(self, key: str) -> bool:
        """Whether a record for ``key`` may be logged now (counts it either way)."""
        now = self.clock()
        windows = self.windows
        w = windows.get(key)
        if w is None and len(windows) >= self.max_keys:
            key = OVERFLOW_KEY
            w = windows.get(key)
        if w is None or now - w.start >= self.window:
            if w is not None:
                self._summary(key, w, now)
            w = windows[key] = _Window(now)
        if w.count < self.burst:
            w.count += 1
            return True
        w.suppressed += 1
        return False

    def sweep(self) -> None:
        """Roll every window that has ended: write the summary of those that suppressed
        records, and forget them."""
        now = self.clock()
        ended = [k for k, w in self.windows.items() if now - w.start >= self.window]
        for key in ended:
            self._summary(key, self.windows.pop(key), now)

    def flush(self) -> None:
        """Write the summary of every window that suppressed records, ended or not, and
        forget every window."""
        now = self.clock()
        windows, self.windows = self.windows, {}
        for key, w in windows.items():
            self._summary(key, w, now)

    def _summary(self, key: str, w: _Window, now: float) -> None:
        if w.suppressed:
            self.logger.warning("suppressed %d more %s %s %r in the last %.0f s",
                                w.suppressed, self.what, self.label, key, now - w.start)
