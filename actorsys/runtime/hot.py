"""The busiest actors of a worker over the last minute (issue 17's hot actors): the
per-key view the metrics must not carry (a series per key would grow without bound).

In the user's words: ``client.top(10)`` and ``actorsys top`` show, for the actors that
ran the most in about the last minute, their turns per second, the share of a core their
turns took (``busy``: seconds in turns per second; 1.0 is a worker's whole loop), their
errors and the deepest their mailbox was seen; ``by`` picks the order.

How, within bounded memory: turns are counted per actor in the current window of
:data:`WINDOW` seconds. When a window ends, only its leaders are kept (the top
:data:`KEEP` by each measure) for :data:`WINDOWS` - 1 more windows; a query adds up what
was kept of the last minute and the current window. A window that reaches
:data:`MAX_TRACKED` actors drops those with one turn and no error (the many actors of a
spread-out load, none of them hot), then if still full the less busy half: an actor hot
enough to matter has turns enough to stay. So a worker holds at most ``MAX_TRACKED +
WINDOWS * 4 * KEEP`` entries, whatever the number of actors.

Cost: one dict lookup and four adds per turn, on the event-loop thread that owns it.
"""
from __future__ import annotations

from collections import deque
from typing import Any

#: seconds per window; the view covers the last ``WINDOW * WINDOWS``
WINDOW = 10.0
WINDOWS = 6
#: actors counted in the current window at most (see the module docstring)
MAX_TRACKED = 10_000
#: actors kept of an ended window, per measure
KEEP = 200
#: what a top can be ordered by -> the entry's field
ORDERS = {"busy": 1, "turns": 0, "errors": 2, "mailbox": 3}

#: (type, key) -> [turns, seconds in turns, errors, deepest mailbox seen]
Counts = dict[tuple[str, str], list[float]]


class HotActors:
    """One worker's hot actors (see the module docstring)."""

    def __init__(self, now: float) -> None:
        self.current: Counts = {}
        self.started = now
        #: ended windows: (start, end, their leaders), the newest last
        self.past: deque[tuple[float, float, Counts]] = deque(maxlen=WINDOWS - 1)

    def turn(self, type_name: str, key: str, seconds: float, ok: bool, mailbox: int,
             now: float) -> None:
        """A turn of ``type_name``/``key`` ended at ``now`` after ``seconds``, with
        ``mailbox`` messages still waiting for it."""
        if now - self.started >= WINDOW:
            self._roll(now)
        c = self.current.get((type_name, key))
        if c is None:
            if len(self.current) >= MAX_TRACKED:
                self._prune()
            c = self.current[(type_name, key)] = [0, 0.0, 0, 0]
        c[0] += 1
        c[1] += seconds
        if not ok:
            c[2] += 1
        if mailbox > c[3]:
            c[3] = mailbox

    def _roll(self, now: float) -> None:
        self.past.append((self.started, now, leaders(self.current)))
        self.current = {}
        self.started = now

    def _prune(self) -> None:
        cur = self.current
        kept = {k: c for k, c in cur.items() if c[0] > 1 or c[2]}
        if len(kept) >= MAX_TRACKED // 2:
            ranked = sorted(kept.items(), key=lambda kc: kc[1][1], reverse=True)
            kept = dict(ranked[:MAX_TRACKED // 2])
        self.current = kept

    def top(self, n: int, by: str, now: float) -> list[dict[str, Any]]:
        """The ``n`` hottest actors of about the last minute, by ``by`` (:data:`ORDERS`):
        ``{"type", "key", "turns_per_s", "busy", "errors", "mailbox"}``."""
        if now - self.started >= WINDOW:
            self._roll(now)
        since = now - WINDOW * WINDOWS
        total: Counts = {}
        start = self.started
        for w_start, _end, counts in self.past:
            if w_start < since:
                continue
            start = min(start, w_start)
            add(total, counts)
        add(total, self.current)
        span = max(now - start, 1.0)
        field = ORDERS[by]
        ranked = sorted(total.items(), key=lambda kc: kc[1][field], reverse=True)[:n]
        return [{"type": t, "key": k, "turns_per_s": c[0] / span, "busy": c[1] / span,
                 "errors": int(c[2]), "mailbox": int(c[3])} for (t, k), c in ranked if c[field]]


def leaders(counts: Counts) -> Counts:
    """The top :data:`KEEP` of ``counts`` by each measure."""
    if len(counts) <= KEEP:
        return counts
    out: Counts = {}
    for field in ORDERS.values():
        for k, c in sorted(counts.items(), key=lambda kc: kc[1][field], reverse=True)[:KEEP]:
            if c[field]:
                out[k] = c
    return out


def add(into: Counts, counts: Counts) -> None:
    """Sum ``counts`` into ``into`` (the deepest mailbox: the larger)."""
    for k, c in counts.items():
        t = into.get(k)
        if t is None:
            into[k] = list(c)
        else:
            t[0] += c[0]
            t[1] += c[1]
            t[2] += c[2]
            t[3] = max(t[3], c[3])
