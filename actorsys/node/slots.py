"""What the router's ``status`` says of a worker slot, answered or not.

The router asks each worker for its ``STATUS`` (1 s). A worker that answers is described
by its own reply (counters, resident actors...), plus ``answered: true`` and
``state: "up"``. One that does not answer in time is described from the node's slot
board (:mod:`actorsys.protocol.board`: memory the node supervisor shares with the router
and the workers), never just as down:

* ``up``: whether its process runs (``psutil``: alive and not a zombie) with the pid
  the node supervisor forked. ``up: false`` only when the process is gone (exited, not
  yet reaped), waits out a restart backoff (``state: "restarting"``: no pid) or has not
  yet reached its first heartbeat after a fork (``state: "starting"``).
* ``state``: ``"busy"`` (a synchronous turn runs; ``busy`` says
  ``{"actor": "Type/key", "method": ..., "seconds": elapsed}``, actor and method None
  when the worker's slow-turn watch has not labelled it yet, or ``slow_turn = 0``),
  ``"unresponsive"`` (its loop is blocked outside a sync turn: an async handler between
  awaits, or the runtime; ``heartbeat_age`` says since when), ``"starting"``,
  ``"restarting"``, ``"down"``.
* The supervision tree and the gateway (:meth:`SlotStatus.peer_unanswered`): one that
  does not answer is ``up: true``, ``state: "unresponsive"`` with its pid while the
  process that answered before runs; ``up: false`` with ``state: "starting"`` while a
  new process has not answered yet, and ``"down"`` once it is gone.
* ``answered: false``, and ``error`` (why the request failed). The fields of this slot's
  last answered reply are kept when that reply came from the same pid, listed in
  ``stale`` with their age in ``stale_seconds``: they are what the worker said then,
  not now (``rss`` is measured afresh by the router).
"""
from __future__ import annotations

import time
from typing import Any

import psutil

from ..protocol.board import SlotBoard


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class SlotStatus:
    """The router's view of its worker slots for ``status`` (see the module docstring)."""

    def __init__(self, board: SlotBoard | None, start_timeout: float = 30.0) -> None:
        self.board = board
        #: a tree or gateway process up longer than this has started (whether or not this
        #: router, restarted since, has heard it answer)
        self.start_timeout = start_timeout
        #: slot -> (when, its last answered STATUS reply)
        self.last: dict[int, tuple[float, dict[str, Any]]] = {}
        #: "tree"/"gateway" -> the pid of its process that last answered STATUS
        self.peers_up: dict[str, int] = {}

    def answered(self, slot: int, reply: dict[str, Any]) -> dict[str, Any]:
        """A worker's own STATUS reply, marked answered (and kept for later)."""
        reply = {**reply, "answered": True, "state": "up", "up": True}
        self.last[slot] = (time.monotonic(), reply)
        return reply

    def unanswered(self, slot: int, error: str) -> dict[str, Any]:
        """The status of a worker that did not answer (``error``: why)."""
        out: dict[str, Any] = {"role": "worker", "slot": slot, "pid": None, "up": False,
                               "answered": False, "error": error}
        if self.board is None:
            return out
        now = time.monotonic()
        v = self.board.read(slot)
        if not v.pid or not _alive(v.pid):
            out["state"] = "down" if v.pid else "restarting"
            return out
        out["pid"] = v.pid
        out["heartbeat_age"] = round(now - v.beat, 3)
        if v.turn:
            out.update(up=True, state="busy", busy={"actor": v.actor, "method": v.method,
                                                    "seconds": round(now - v.turn, 3)})
        elif v.beat <= v.forked_at:
            out["state"] = "starting"
        else:
            out.update(up=True, state="unresponsive")
        kept = self.last.get(slot)
        if kept is not None and kept[1].get("pid") == v.pid:
            stale = {k: val for k, val in kept[1].items() if k not in out and k != "rss"}
            out.update(stale)
            out["stale"] = sorted(stale)
            out["stale_seconds"] = round(now - kept[0], 3)
        return out


    def peer_answered(self, role: str, reply: dict[str, Any]) -> dict[str, Any]:
        """The tree's or the gateway's own STATUS reply (its pid remembered as having
        answered since it started)."""
        if isinstance(reply.get("pid"), int):
            self.peers_up[role] = reply["pid"]
        return reply

    def peer_unanswered(self, role: str, error: str) -> dict[str, Any]:
        """The status of the tree or the gateway when it did not answer (``error``: why):
        while its process runs, ``up: true``, its pid and ``state: "unresponsive"`` (its
        loop is busy or stopped) if that process has answered before (or has run longer
        than ``start_timeout``: this router may have restarted since), else ``up: false``,
        ``"starting"``; ``up: false``, ``"down"`` once it is gone."""
        out: dict[str, Any] = {"role": role, "pid": None, "up": False, "answered": False,
                               "error": error, "state": "down"}
        if self.board is not None:
            pid, forked_at = self.board.peer(role)
            if pid and _alive(pid):
                out.update(pid=pid, seconds_up=round(time.monotonic() - forked_at, 3))
                if self.peers_up.get(role) == pid or out["seconds_up"] > self.start_timeout:
                    out.update(up=True, state="unresponsive")
                else:
                    out["state"] = "starting"
        return out


def note(p: dict[str, Any]) -> str:
    """One line on a worker, the tree or the gateway that did not answer ``status`` in time."""
    who = (f"worker slot {p.get('slot')}" if p["role"] == "worker" else
           {"tree": "supervision tree"}.get(p["role"], p["role"]))
    who += f" (pid {p['pid']})" if p.get("pid") else ""
    state = p.get("state", "down")
    if p["role"] != "worker":
        what = {"unresponsive": "up but not answering", "starting": "starting"}.get(
            state, "gone, being restarted")
        return f"{who}: {what} ({p.get('error', '?')})"
    if state == "busy":
        b = p.get("busy") or {}
        turn = f"{b['actor']} {b['method']!r}" if b.get("actor") else "a turn"
        what = f"busy for {b.get('seconds', 0):.1f} s in {turn} (a sync turn: it answers when it ends)"
    elif state == "unresponsive":
        what = f"up but its loop has not answered for {p.get('heartbeat_age', 0):.1f} s"
    else:
        what = {"starting": "starting", "restarting": "waiting for its restart",
                "down": "gone, being restarted"}.get(state, f"not answering ({p.get('error', '?')})")
    stale = f"; its counters are from {p['stale_seconds']:.1f} s ago" if p.get("stale") else ""
    return f"{who}: {what}{stale}"
