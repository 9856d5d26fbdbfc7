"""The fuzzer's oracles: what the node must do with what it is sent.

* :func:`certainly_bad`: whether the receiver must count a frame as bad whatever its
  state (refused at decoding, or an op it does not serve), decided by decoding it with
  :mod:`actorsys.protocol.wire` as the receiver will;
* :func:`reply_problem`: whether a reply is a well-formed ``[OK|ERR, id, body]``;
* :class:`Checker`: well-formed asks that must keep their counts through the fuzzing;
* :func:`tracebacks`: the tracebacks a node printed to its log, grouped.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any

import msgpack
import zmq

from actorsys.client import Client
from actorsys.errors import AskTimeout, error_from_wire
from actorsys.protocol import wire
from actorsys.protocol.messages import Ask

ROUTER_SERVES = frozenset({wire.MAP, wire.PING, wire.STATUS, wire.TELL, wire.ASK, wire.SPAWN, wire.METRICS,
                           wire.TOP})
WORKER_REFUSES = frozenset({wire.EXIT, wire.SUP})


class DecoderEscape(Exception):
    """actorsys.protocol.wire.decode_frames raised something other than Rejected."""


def certainly_bad(seen: list[bytes], at_router: bool, max_message_bytes: int) -> bool:
    """Whether the receiver must count ``seen`` (frames as its ROUTER socket gets them) as
    a bad frame whatever its state: refused at decoding, or an op it does not serve."""
    try:
        _env, op, _rid, _rest = wire.decode_frames(seen, max_message_bytes)
    except wire.Rejected:
        return True
    except Exception as exc:        # the receiver would get the same: no reply, no count
        raise DecoderEscape(f"{type(exc).__name__}: {exc}") from exc
    return op not in ROUTER_SERVES if at_router else op in WORKER_REFUSES


def reply_problem(frames: list[bytes]) -> str | None:
    """Why a reply is malformed (None: a well-formed ``[OK|ERR, id, body]``)."""
    try:
        msg = msgpack.unpackb(frames[-1], raw=False, strict_map_key=False)
    except Exception as exc:
        return f"undecodable reply: {type(exc).__name__}"
    if not isinstance(msg, list) or len(msg) != 3 or msg[0] not in (wire.OK, wire.ERR) \
            or type(msg[1]) is not int:
        return f"reply of the wrong shape: {str(msg)[:120]}"
    if msg[0] == wire.ERR:
        body = msg[2]
        if not isinstance(body, dict) or not isinstance(body.get("code"), str) \
                or not isinstance(body.get("message"), str):
            return f"error reply without code and message: {str(body)[:120]}"
    return None


def reply_code(frames: list[bytes]) -> str:
    """"ok" or the error code of a well-formed reply."""
    msg = msgpack.unpackb(frames[-1], raw=False, strict_map_key=False)
    return "ok" if msg[0] == wire.OK else msg[2]["code"]



class Checker:
    """Well-formed asks to fresh check actors, one per worker slot (through an actorsys
    client) and one through the router (a clean raw DEALER): each ``add(1)`` must answer
    the count continued."""

    def __init__(self, ctx: zmq.Context[Any], client: Client, endpoint: str, type_name: str,
                 method: str, tag: str, timeout: float = 15.0) -> None:
        self.client, self.type_name, self.method, self.timeout = client, type_name, method, timeout
        self.keys: list[str] = []
        for slot in range(len(client.map.endpoints)):
            self.keys.append(next(k for k in (f"fzchk-{tag}-{slot}-{i}" for i in range(100_000))
                                  if client.map.slot_of(type_name, k) == slot))
        self.router_key = f"fzchk-{tag}-router"
        self.counts = {k: 0 for k in [*self.keys, self.router_key]}
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.rid = 0
        self.asks = 0
        self.failures: list[str] = []

    def _router_ask(self, key: str) -> Any:
        self.rid += 1
        rid = self.rid
        self.sock.send(Ask(rid, self.type_name, key, self.method, [1], {}).encode())
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(left * 1000):
                raise AskTimeout(f"no reply through the router within {self.timeout:g} s")
            msg = msgpack.unpackb(self.sock.recv_multipart()[-1], raw=False, strict_map_key=False)
            if msg[1] != rid:
                continue            # a late reply to an earlier check
            if msg[0] != wire.OK:
                raise error_from_wire(msg[2])
            return msg[2]

    def round(self) -> bool:
        """One ask per check actor; returns whether all answered correctly."""
        ok = True
        for key in [*self.keys, self.router_key]:
            want = self.counts[key] + 1
            self.asks += 1
            try:
                if key == self.router_key:
                    got = self._router_ask(key)
                else:
                    got = self.client.ask(self.type_name, key, self.method, 1, timeout=self.timeout)
            except Exception as exc:
                got = f"{type(exc).__name__}: {exc}"
            if got == want:
                self.counts[key] = want
            else:
                ok = False
                self.failures.append(f"{self.type_name}/{key}.{self.method}(1): expected {want}, "
                                     f"got {str(got)[:200]}")
                if isinstance(got, int):
                    self.counts[key] = got     # report each divergence once
        return ok

    def close(self) -> None:
        self.sock.close(0)



#: the logger of failed turns (runtime/loud.py): a handler that raised on fuzzed
#: arguments is the actor's failure, reported to its caller and logged by design
TURN_LOGGER = "actorsys.turns:"
#: the first line of a log record (actorsys/log.py's text format starts with the time)
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d.*$", re.M)


def tracebacks(log_path: str | None) -> dict[str, dict[str, Any]]:
    """The tracebacks the node printed (embedded node only), grouped by where they were
    raised and what: ``{signature: {"count", "example"}}``; not those of failed turns
    (logged under :data:`TURN_LOGGER`: actor code that raised, not the node)."""
    if not log_path or not os.path.exists(log_path):
        return {}
    with open(log_path, "r", errors="replace") as f:
        text = f.read()
    out: dict[str, dict[str, Any]] = {}
    chunks = text.split("Traceback (most recent call last):")
    header = ""                  # the last log record's first line before this traceback
    for before, chunk in zip(chunks, chunks[1:]):
        headers = _RECORD.findall(before)
        if headers:
            header = headers[-1]
        if TURN_LOGGER in header:
            continue
        lines = chunk.strip("\n").splitlines()
        files = [ln.strip() for ln in lines if ln.startswith("  File ")]
        end = next((i for i, ln in enumerate(lines) if ln and not ln.startswith((" ", "\t"))), len(lines))
        what = lines[end] if end < len(lines) else "?"
        sig = f"{files[-1] if files else '?'} -> {what.split(':')[0]}"
        entry = out.setdefault(sig, {"count": 0, "example": ""})
        entry["count"] += 1
        if not entry["example"]:
            entry["example"] = "Traceback (most recent call last):\n" + "\n".join(lines[:end + 1])[:4000]
    return out
