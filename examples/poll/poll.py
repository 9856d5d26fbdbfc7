"""A live poll per actor, reached over WebSocket through the node's gateway.

``/ws/Poll/<poll>?session=<id>`` attaches a browser tab to the poll ``<poll>``. Each
browser session (an id the page keeps in ``sessionStorage``) has one vote; voting again
moves it. The counts live in ``self.state``; who voted for what lives in
``self.storage`` under ``voter/<session>`` (one small entry per voter, so 100k voters fit
where a 512 KiB state would not). A vote's count and its voter entry commit in the same
turn, and the broadcast leaves only after that commit: a vote a client saw acknowledged
survives a kill -9 of the worker.

Messages, as JSON text frames:

* client -> poll: ``{"type": "vote", "option": "latte", "session": "<id>"}``
* poll -> client on connect: ``{"type": "poll", "question", "options", "counts",
  "total", "mine"}`` (``mine``: this session's option, or null)
* poll -> everyone: ``{"type": "counts", "counts": {...}, "total": n}``
* poll -> the voter (and its session's other tabs): ``{"type": "voted", "option": ...}``
* poll -> one client: ``{"type": "error", "message": "..."}`` for a bad request

Over HTTP: ``POST /actors/Poll/<poll>/results`` and ``.../configure`` with
``{"question": "...", "options": [...]}`` (which starts the poll afresh).
"""
from __future__ import annotations

import json
import re
from typing import Any

import actorsys

QUESTION = "How do you take your coffee?"
OPTIONS = ["espresso", "latte", "cappuccino", "flat white", "filter"]
MAX_VOTERS = 100_000
MAX_OPTIONS = 12
MAX_OPTION = 40             # characters per option
MAX_QUESTION = 200          # characters per question
SESSION = re.compile(r"[A-Za-z0-9_-]{8,64}")


def valid_session(value: Any) -> bool:
    return isinstance(value, str) and SESSION.fullmatch(value) is not None


def _text(value: Any, limit: int, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value.strip()) <= limit or not value.isprintable():
        raise ValueError(f"{what} is 1-{limit} printable characters, got {value!r:.60}")
    return value.strip()


class Poll(actorsys.Actor):
    def on_start(self) -> None:
        if "options" not in self.state:
            self._reset(QUESTION, OPTIONS)

    # -- WebSocket events --------------------------------------------------------
    def on_connect(self, conn: actorsys.Connection) -> None:
        session = conn.query.get("session")
        mine = None
        if valid_session(session):
            conn.tag(f"session:{session}")   # the session's other tabs hear of its votes
            mine = self.storage.get(f"voter/{session}")
        conn.send({"type": "poll", "question": self.state["question"],
                   "options": self.state["options"], **self._counts(), "mine": mine})

    def on_message(self, conn: actorsys.Connection, data: str | bytes) -> None:
        try:
            msg = json.loads(data)
        except (TypeError, ValueError):
            return self._error(conn, "send JSON text frames")
        if not isinstance(msg, dict) or msg.get("type") != "vote":
            return self._error(conn, 'expected {"type": "vote", "option": ..., "session": ...}')
        option, session = msg.get("option"), msg.get("session")
        if not isinstance(option, str) or option not in self.state["counts"]:
            return self._error(conn, f"unknown option {option!r:.60}")
        if not valid_session(session):
            return self._error(conn, "session is 8-64 characters of A-Z a-z 0-9 _ -")
        key = f"voter/{session}"
        previous = self.storage.get(key)
        if previous != option:
            if previous is None and self.state["total"] >= MAX_VOTERS:
                return self._error(conn, f"this poll is full ({MAX_VOTERS} voters)")
            counts = self.state["counts"]
            if previous in counts:
                counts[previous] -= 1          # a moved vote: still one vote
            else:
                self.state["total"] += 1
            counts[option] += 1
            self.storage.put(key, option)
            self.broadcast({"type": "counts", **self._counts()})
        voted = {"type": "voted", "option": option}
        conn.send(voted)
        self.broadcast(voted, tag=f"session:{session}", exclude=conn)

    # -- HTTP: POST /actors/Poll/<poll>/<method> ---------------------------------
    def results(self) -> dict[str, Any]:
        """The question, the options and the live counts."""
        return {"question": self.state["question"], "options": self.state["options"],
                **self._counts()}

    def configure(self, question: str, options: list[str]) -> dict[str, Any]:
        """Start the poll afresh with a new question and 2-12 options (votes are reset)."""
        question = _text(question, MAX_QUESTION, "the question")
        if not isinstance(options, list) or not 2 <= len(options) <= MAX_OPTIONS:
            raise ValueError(f"options is a list of 2-{MAX_OPTIONS} strings")
        options = [_text(o, MAX_OPTION, "an option") for o in options]
        if len(set(options)) != len(options):
            raise ValueError("options must be distinct")
        self.storage.delete(list(self.storage.list(prefix="voter/")))
        self._reset(question, options)
        self.broadcast({"type": "poll", **self.results(), "mine": None})
        return self.results()

    # -- internals ---------------------------------------------------------------
    def _reset(self, question: str, options: list[str]) -> None:
        self.state.update(question=question, options=list(options),
                          counts={o: 0 for o in options}, total=0)

    def _counts(self) -> dict[str, Any]:
        return {"counts": dict(self.state["counts"]), "total": self.state["total"]}

    @staticmethod
    def _error(conn: actorsys.Connection, message: str) -> None:
        conn.send({"type": "error", "message": message})
