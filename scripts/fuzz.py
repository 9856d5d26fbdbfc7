"""actorsys frame fuzzer: hostile ZeroMQ traffic at a live node, then proof it is unharmed.

It sends ``--frames`` messages (default 1,000,000), spread at random over the router's
endpoint and every worker slot's endpoint (from the shard map), through raw pyzmq
DEALER, REQ (relaxed) and ROUTER peers. Each message comes from one generator, chosen
at random per frame by a seeded ``random.Random`` (the same seed makes the same frames):

==============  ===========================================================================
random_bytes    random bytes of random length (most empty to a few hundred bytes, some 4 KiB)
truncated       a well-formed request cut short
bitflip         a well-formed request with flipped bits, replaced, inserted or deleted bytes
wrong_shape     valid msgpack of the wrong shape: maps, strings, nil, nested arrays, huge,
                negative and float ids, unknown ops, every known op with wrong arity or types
ext_types       ext types and timestamps (well-formed and malformed) anywhere in a request
deep_nesting    arrays and maps nested 50..5,000 deep, as the payload or inside a request
invalid_utf8    a request whose type, key or method is invalid UTF-8, or bytes instead of str
multipart       messages of 2, 3 or many frames, empty frames, a lone empty frame
oversized       a request just over max_message_bytes (rare: they are big); beyond the
                socket's hard limit through a throwaway peer (ZeroMQ drops the connection)
valid_hostile   well-formed ASK/TELL/SPAWN/STOP/LIST/SUP/EXIT/PING/MAP/STATUS with hostile
                type names, keys and methods (dunders, on_start, _private, $history,
                $rewind and $destroy with bad arguments, very long strings) and arguments
==============  ===========================================================================

Besides, every ``--odd-every`` frames, a round of odd peers: PUSH, PUB and PAIR sockets
(ZeroMQ refuses them at the handshake), two DEALERs with the same routing id, and raw
stream connections speaking garbage, a cut ZMTP greeting, or a whole ZMTP 3.0 session
whose frames carry fuzz payloads (some with bogus flags or a 2**62-byte length).

Replies are drained without blocking, and each must be a well-formed ``[OK|ERR, id,
body]``. Every ``--check-every`` frames a well-formed ask goes to a check actor on each
worker slot through a normal actorsys client, and one through the router: each must
answer with the count continued. At the end the run passes (exit 0) only if

* every process of the node has the pid (and start time) it had at the start, and is up;
* every well-formed check ask was answered correctly;
* the status output shows ``bad_frames`` for the router and every worker, and their
  increase is at least the number of frames that were certainly bad (the fuzzer decodes
  each frame it sends with ``actorsys.wire`` as the receiver will; frames the receiver
  judges only later, such as asks to unknown types, are counted there as well, so only a
  lower bound and the upper bound "no more than the frames sent" are checked);
* every reply was well-formed, and the fuzzer's own decoding raised nothing but the
  documented rejection;
* the node printed no traceback (an embedded node's output goes to a log file).

Usage: ``scripts/fuzz [--frames N] [--seed S] [--workers 2] [--endpoint EP] [--json PATH]``.
Without ``--endpoint`` it starts an embedded node (temp data dir, ``--workers`` slots)
with this file's ``FuzzBox`` actor types; with it, it fuzzes that running node and checks
with ``--check-type`` (its ``--check-method`` takes one integer and returns the running
total, like ``FuzzBox.add``). Fuzzing changes actors of the types it finds: run it
against a node whose data you can lose.
"""
from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from typing import Any, Callable

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import actorsys  # noqa: E402
from actorsys.protocol import wire  # noqa: E402

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)
_PRINTABLE = bytes.maketrans(bytes(range(256)), bytes(32 + i % 95 for i in range(256)))


# ---------------------------------------------------------------------------------------
# the embedded node's actor: small, bounded handlers that take any arguments


class FuzzBox(actorsys.Actor):
    """A counter with storage, alarms, an async turn and refs: surface for hostile asks.

    No handler blocks, sleeps or loops on its arguments, so no argument can stall a
    worker; bad arguments only fail the turn.
    """

    def on_start(self) -> None:
        self.state.setdefault("n", 0)

    def add(self, by: int = 1) -> int:
        self.state["n"] += by
        return self.state["n"]

    def get(self) -> Any:
        return self.state["n"]

    def echo(self, *args: Any, **kwargs: Any) -> list:
        return [list(args), kwargs]

    def remember(self, value: Any) -> None:
        self.state["last"] = value

    def put(self, key: Any, value: Any) -> None:
        self.storage.put(key, value)

    def fetch(self, key: Any) -> Any:
        return self.storage.get(key)

    def remove(self, key: Any) -> Any:
        return self.storage.delete(key)

    def entries(self, prefix: Any = None, limit: Any = 10) -> dict:
        return self.storage.list(prefix=prefix, limit=limit)

    def alarm(self, when: Any, name: Any = "default", payload: Any = None) -> float:
        return self.set_alarm(when, name, payload)

    def unalarm(self, name: Any = "default") -> bool:
        return self.cancel_alarm(name)

    def on_alarm(self, name: str, payload: Any) -> None:
        self.state["alarms"] = self.state.get("alarms", 0) + 1

    def tell_other(self, type_name: Any, key: Any, method: Any, *args: Any) -> None:
        self.ref(type_name, key).tell(method, *args)

    async def later(self, value: Any = None) -> Any:
        await asyncio.sleep(0)
        return value

    def fail(self, message: Any = "fuzz") -> None:
        raise ValueError(str(message)[:100])

    def stop_me(self, reason: Any = "fuzz") -> None:
        self.stop(reason)


FUZZ_METHODS = ["add", "get", "echo", "remember", "put", "fetch", "remove", "entries", "alarm",
                "unalarm", "tell_other", "later", "fail", "stop_me"]
EMBEDDED_TYPES = {"FuzzBox": {"class": "fuzz:FuzzBox", "history_window": 3600},
                  "FuzzPlain": "fuzz:FuzzBox"}


def embedded_config(data_dir: str, workers: int, **node: Any) -> dict[str, Any]:
    """The embedded node's config: FuzzBox with history, FuzzPlain without."""
    settings = {"data_dir": data_dir, "workers": workers, "python_path": [HERE],
                "shutdown_timeout": 10.0, "start_timeout": 60.0}
    settings.update(node)
    return {"node": settings, "actors": dict(EMBEDDED_TYPES)}


# ---------------------------------------------------------------------------------------
# the generators

SYSTEM = ["$history", "$rewind", "$destroy"]
HOSTILE_NAMES = [
    "", " ", "\x00", "nul\x00name", "$", "$nope", "$history ", "$HISTORY", "__init__", "__class__",
    "__dict__", "__reduce__", "__reduce_ex__", "__del__", "__getattribute__", "__subclasses__",
    "_private", "_act", "_worker", "on_start", "on_stop", "on_alarm", "state", "storage", "ref",
    "stop", "set_alarm", "cancel_alarm", "alarms", "type_name", "key", "mro",
    "os:system", "builtins:eval", "subprocess:Popen", "pickle:loads", "actorsys.runtime.worker:Worker",
    "tests.actors:Counter", "fuzz:FuzzBox", "../../etc/passwd", "%s%s%n", "{0.__class__}",
    "\u202eevil", "\ufeff", "\U0001f600" * 10, "é", "Ω" * 300, "a" * 255, "a" * 1024, "a" * 1025,
    "k" * 4096,
]
HOSTILE_KEYS = ["", "\x00", "nul\x00key", "k" * 1024, "k" * 1025, "é" * 512, "é" * 513,
                "\U0001f600" * 256, "\U0001f600" * 257, " ", "\n", "/", "..", "\x7f", "\ufffd"]
INTS = [0, 1, -1, 2, 127, 128, 255, 256, -32, -33, -128, -129, 65535, 65536, 2 ** 31 - 1,
        2 ** 31, 2 ** 32, -2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, -2 ** 63, 10 ** 9, 10 ** 18]
FLOATS = [0.0, -0.0, 0.5, 1.5, -1.5, float("nan"), float("inf"), float("-inf"), 1e308, 5e-324,
          1e9, 1.7e9, 1e18, 1e300, -1e9]
BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"abc\x80",
            b"\xe2\x82", b"\xf8\x88\x80\x80\x80", b"ok\x00\xc3", b"\xc3\x28"]
KNOWN_OPS = [wire.ASK, wire.TELL, wire.SPAWN, wire.MAP, wire.STATUS, wire.PING, wire.STOP,
             wire.EXIT, wire.SUP, wire.LIST]
UNKNOWN_OPS: list[Any] = [0, 11, 10, 13, 99, 255, -1, 2 ** 64 - 1, -2 ** 63, "ask", "1", 1.0, True,
                          False, None, [], {}, b"\x01", [1]]


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 65536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _str_header(n: int) -> bytes:
    if n < 32:
        return bytes([0xA0 | n])
    if n < 256:
        return b"\xd9" + bytes([n])
    return b"\xda" + n.to_bytes(2, "big")


class Mutator:
    """Seeded frame generators: ``frame()`` returns ``(category, frames)``.

    ``types`` and ``methods`` are the node's real actor types and handler names (a share
    of the valid-shaped requests use them); keys are drawn from a fixed pool of fuzz keys
    (``f-N``, and ``sup-N`` for most supervision requests), hostile keys and random text,
    so a key outside them (the checker's) is never touched.
    """

    def __init__(self, seed: int, types: list[str], methods: list[str],
                 max_message_bytes: int = 1 << 20) -> None:
        self.r = random.Random(seed)
        self._raw: list[tuple[bytes, bytes]] = []
        self.types = list(types) or ["FuzzBox"]
        self.methods = list(methods) or FUZZ_METHODS
        self.max_message_bytes = max_message_bytes
        self.keys = [f"f-{i}" for i in range(64)]
        self.sup_keys = [f"sup-{i}" for i in range(8)]
        gens: list[tuple[str, float, Callable[[], list[bytes]]]] = [
            ("random_bytes", 14, self.random_bytes),
            ("truncated", 9, self.truncated),
            ("bitflip", 14, self.bitflip),
            ("wrong_shape", 15, self.wrong_shape),
            ("ext_types", 5, self.ext_types),
            ("deep_nesting", 3, self.deep_nesting),
            ("invalid_utf8", 4, self.invalid_utf8),
            ("multipart", 7, self.multipart),
            ("oversized", 0.02, self.oversized),
            ("valid_hostile", 29, self.valid_hostile),
        ]
        self.names = [g[0] for g in gens]
        self.funcs = [g[2] for g in gens]
        total, self.cum = 0.0, []
        for g in gens:
            total += g[1]
            self.cum.append(total)
        self.indices = list(range(len(gens)))

    # -- dispatch ---------------------------------------------------------------------
    def frame(self) -> tuple[str, list[bytes]]:
        i = self.r.choices(self.indices, cum_weights=self.cum)[0]
        return self.names[i], self.funcs[i]()

    def pack(self, obj: Any) -> bytes:
        raw, self._raw = self._raw, []
        try:
            b = _pack(obj)
        except (TypeError, ValueError, OverflowError):
            return self.r.randbytes(self.r.randrange(1, 32))
        for marker, ext in raw:          # ext types with negative codes, encoded by hand
            b = b.replace(_pack(marker), ext, 1)
        return b

    # -- values -------------------------------------------------------------------------
    def text(self, n: int | None = None) -> str:
        r = self.r
        n = r.choice((0, 1, 3, 8, 20, 64)) if n is None else n
        x = r.random()
        if x < 0.5:         # printable ASCII
            return r.randbytes(n).translate(_PRINTABLE).decode("ascii")
        # any UTF-16 code units: BMP characters, astral pairs, lone surrogates as U+FFFD
        return r.randbytes(2 * n).decode("utf-16-le", "replace")

    def name(self, pool: list[str]) -> str:
        r = self.r.random()
        if r < 0.6:
            return self.r.choice(pool)
        if r < 0.9:
            return self.r.choice(HOSTILE_NAMES)
        return self.text()

    def type_name(self) -> str:
        return self.name(self.types)

    def method(self) -> str:
        r = self.r.random()
        if r < 0.15:
            return self.r.choice(SYSTEM)
        return self.name(self.methods)

    def key(self) -> str:
        r = self.r.random()
        if r < 0.8:
            return self.r.choice(self.keys)
        if r < 0.93:
            return self.r.choice(HOSTILE_KEYS)
        return self.text()

    def int_(self) -> int:
        r = self.r
        return r.choice(INTS) if r.random() < 0.5 else r.randrange(-1000, 1000)

    def rid(self) -> int:
        r = self.r.random()
        if r < 0.85:
            return self.r.randrange(1, 1 << 30)
        return self.r.choice(INTS)

    def ext(self) -> Any:
        r = self.r
        x = r.random()
        if x < 0.3:
            return msgpack.ExtType(r.randrange(0, 128), r.randbytes(r.choice((0, 1, 2, 4, 8, 16, 33))))
        if x < 0.7:      # a negative code; -1 is a timestamp: lengths 4/8/12 are well-formed
            code = -1 if r.random() < 0.6 else r.randrange(-128, 0)
            return self._raw_ext(code, r.randbytes(r.choice((0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 16))))
        return msgpack.Timestamp(r.randrange(-2 ** 40, 2 ** 40), r.randrange(0, 10 ** 9))

    def _raw_ext(self, code: int, data: bytes) -> bytes:
        """A placeholder that pack() replaces with the ext's hand-made encoding."""
        c = code.to_bytes(1, "big", signed=True)
        fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
        enc = (bytes([fixed[len(data)]]) + c + data if len(data) in fixed
               else b"\xc7" + bytes([len(data)]) + c + data)
        marker = b"\x00rawext" + self.r.randbytes(8)
        self._raw.append((marker, enc))
        return marker

    def value(self, depth: int = 0) -> Any:
        r = self.r
        x = r.random()
        if x < 0.16:
            return self.int_()
        if x < 0.24:
            return r.choice(FLOATS) if r.random() < 0.6 else r.uniform(-1e6, 1e10)
        if x < 0.42:
            return self.text() if r.random() < 0.6 else r.choice(HOSTILE_NAMES)
        if x < 0.49:
            return r.randbytes(r.choice((0, 1, 8, 100)))
        if x < 0.55:
            return r.choice((None, True, False))
        if x < 0.60:
            return self.ext()
        if depth < 3 and x < 0.80:
            return [self.value(depth + 1) for _ in range(r.randrange(5))]
        if depth < 3:
            return {(self.text() if r.random() < 0.8 else self.int_()): self.value(depth + 1)
                    for _ in range(r.randrange(5))}
        return self.text()

    def args(self) -> list:
        r = self.r
        n = r.choice((0, 0, 1, 1, 1, 2, 3, 5))
        return [self.value() if r.random() < 0.7 else self.int_() for _ in range(n)]

    def kwargs(self, method: str) -> dict:
        r = self.r
        x = r.random()
        if method == "$rewind" and x < 0.7:
            which = r.choice(("version", "time", "both", "other"))
            kw: dict[str, Any] = {}
            if which in ("version", "both"):
                kw["version"] = r.randrange(-2, 40) if r.random() < 0.6 else self.value()
            if which in ("time", "both"):
                kw["time"] = time.time() - r.uniform(-100, 5000) if r.random() < 0.6 else self.value()
            if which == "other":
                kw[self.text()] = self.value()
            return kw
        if x < 0.6:
            return {}
        if x < 0.8:
            return {r.choice(("by", "value", "key", "name", "when", "payload", "limit", "prefix",
                              "self", "reason", "timeout")): self.value()}
        return {self.text() if r.random() < 0.7 else r.choice(HOSTILE_NAMES): self.value()
                for _ in range(r.randrange(1, 4))}

    # -- well-formed requests -------------------------------------------------------------
    def request(self) -> list:
        """A request of valid shape for its op (the receiver's parse_request accepts it)."""
        r = self.r
        x = r.random()
        if x < 0.40:
            method = self.method()
            return [wire.ASK, self.rid(), self.type_name(), self.key(), method, self.args(),
                    self.kwargs(method)]
        if x < 0.52:
            method = self.method()
            return [wire.TELL, 0 if r.random() < 0.8 else self.rid(), self.type_name(), self.key(),
                    method, self.args(), self.kwargs(method)]
        if x < 0.62:
            return self.spawn()
        if x < 0.69:
            return self.stop()
        if x < 0.76:
            limit = r.randrange(0, wire.MAX_LIST_LIMIT + 1) if r.random() < 0.7 else r.choice((0, 1, 10))
            after = None if r.random() < 0.5 else (self.key() if r.random() < 0.7 else self.text())
            return [wire.LIST, self.rid(), self.type_name(), after, limit]
        if x < 0.82:
            rest = [self.text() or "root", r.choice(("which_children", "count_children", "start_child",
                                                    "terminate_child", "restart_child", "delete_child",
                                                    "shutdown", "stop", self.text())), self.value()]
            if r.random() < 0.5:
                rest.append(r.choice((0, time.time() - 10, time.time() + 10, 1e300, -1.5)))
            return [wire.SUP, self.rid(), *rest]
        if x < 0.87:
            return [wire.EXIT, 0, self.text() or "root", self.text() or "c", self.type_name(),
                    self.key(), r.randrange(0, 100), r.choice(("crash", "normal", "", self.text())),
                    self.value()]
        if x < 0.95:
            return [wire.PING, self.rid()]
        if x < 0.99:
            return [wire.MAP, self.rid()]
        return [wire.STATUS, self.rid()]    # the router asks every worker: keep it rare

    def _sup_key(self) -> str:
        return self.r.choice(self.sup_keys) if self.r.random() < 0.9 else self.key()

    def spawn(self) -> list:
        r = self.r
        if r.random() < 0.5:
            return [wire.SPAWN, self.rid(), self.type_name(), self.key()]
        opts: dict[str, Any] = {"sup": self.text() or "root", "child": self.text() or "c",
                                "args": [] if r.random() < 0.5 else self.args(),
                                "kwargs": {} if r.random() < 0.6 else {self.text(): self.value()},
                                "inc": r.randrange(0, 1000)}
        if r.random() < 0.4:     # a field missing or of the wrong type
            f = r.choice(list(opts))
            if r.random() < 0.5:
                del opts[f]
            else:
                opts[f] = self.value()
        return [wire.SPAWN, self.rid(), self.type_name(), self._sup_key(), opts]

    def stop(self) -> list:
        r = self.r
        x = r.randrange(11)
        opts = ({} if x == 0 else {"forget": True} if x < 3 else {"shutdown": "brutal_kill"} if x == 3
                else {"shutdown": 0} if x == 4 else {"shutdown": r.randrange(0, 200)} if x == 5
                else {"shutdown": "infinity"} if x == 6 else {"inc": r.randrange(0, 100)} if x == 7
                else {"forget": self.value()} if x == 8 else {"shutdown": self.value()} if x == 9
                else {self.text(): self.value()})
        return [wire.STOP, self.rid(), self.type_name(), self._sup_key(), opts]

    def encoded_request(self) -> bytes:
        return self.pack(self.request())

    # -- generators ---------------------------------------------------------------------
    def random_bytes(self) -> list[bytes]:
        r = self.r
        n = r.choice((0, 1, 2, 3, 5, 8, 16, 40, 100, 300)) if r.random() < 0.97 else r.randrange(4096)
        return [r.randbytes(n)]

    def truncated(self) -> list[bytes]:
        b = self.encoded_request()
        return [b[:self.r.randrange(len(b))]]

    def bitflip(self) -> list[bytes]:
        r = self.r
        b = bytearray(self.encoded_request())
        for _ in range(r.choice((1, 1, 1, 2, 3, 8))):
            if not b:
                b.append(r.randrange(256))
                continue
            i = r.randrange(len(b))
            x = r.random()
            if x < 0.5:
                b[i] ^= 1 << r.randrange(8)
            elif x < 0.7:
                b[i] = r.randrange(256)
            elif x < 0.8:
                b.insert(i, r.randrange(256))
            elif x < 0.9:
                del b[i:i + r.randrange(1, 8)]
            else:
                b[i:i] = b[i:i + r.randrange(1, 16)]     # duplicate a run
        return [bytes(b)]

    def wrong_shape(self) -> list[bytes]:
        r = self.r
        x = r.random()
        if x < 0.15:           # not an array request at all
            return [self.pack(r.choice((self.value, lambda: {"op": wire.ASK, "id": 1},
                                        lambda: [[wire.PING, 1]], lambda: [], lambda: [wire.PING],
                                        lambda: self.text(), lambda: self.int_()))())]
        req = self.request()
        if x < 0.35:           # an unknown or ill-typed op
            req[0] = r.choice(UNKNOWN_OPS) if r.random() < 0.7 else self.value()
        elif x < 0.50:         # an ill-typed id (huge and negative ids are valid: kept in)
            req[1] = r.choice((1.0, 1.5, -0.0, "1", None, True, [1], {}, b"\x01", self.int_()))
        elif x < 0.75:         # wrong arity
            if r.random() < 0.5 and len(req) > 2:
                del req[r.randrange(2, len(req)):]
            else:
                req.extend(self.value() for _ in range(r.randrange(1, 4)))
        else:                  # a field of the wrong type
            if len(req) > 2:
                req[r.randrange(2, len(req))] = self.value()
        return [self.pack(req)]

    def ext_types(self) -> list[bytes]:
        r = self.r
        req = self.request()
        where = r.randrange(len(req) + 2)
        if where < len(req):
            req[where] = self.ext()
        elif where == len(req) and len(req) >= 7 and isinstance(req[5], list):
            req[5] = [self.ext() for _ in range(r.randrange(1, 4))]
        else:
            return [self.pack(self.ext())]
        return [self.pack(req)]

    def deep_nesting(self) -> list[bytes]:
        r = self.r
        depth = r.choice((50, 200, 500, 900, 980, 1000, 1010, 1020, 1022, 1023, 1024, 1100, 5000))
        kind = r.random()
        if kind < 0.5:
            deep = b"\x91" * depth + b"\xc0"
        else:
            deep = b"\x81\xa1k" * depth + b"\xc0"
        where = r.randrange(7)
        p = self.pack
        if where == 0:
            return [deep]
        if where == 1:         # as the op
            return [b"\x92" + deep + p(self.rid())]
        if where == 2:         # as the id
            return [b"\x92" + p(wire.PING) + deep]
        method = r.choice(("$rewind", "$rewind", "echo", "remember", "put", self.method()))
        head = [p(wire.ASK), p(self.rid()), p(r.choice(self.types)), p(r.choice(self.keys)), p(method)]
        if where == 3:         # as an argument
            return [b"\x97" + b"".join(head) + b"\x91" + deep + p({})]
        if where == 4:         # as a keyword argument (the version or time of a $rewind)
            kw = r.choice(("version", "time", "value", "by"))
            return [b"\x97" + b"".join(head) + p([]) + b"\x81" + p(kw) + deep]
        if where == 5:         # as the type name
            return [b"\x97" + p(wire.ASK) + p(self.rid()) + deep + b"".join(head[3:]) + p([]) + p({})]
        # as a spawn option
        return [b"\x95" + p(wire.SPAWN) + p(self.rid()) + p(r.choice(self.types)) + p(self._sup_key())
                + b"\x85" + p("sup") + p("s") + p("child") + p("c") + p("args") + b"\x91" + deep
                + p("kwargs") + p({}) + p("inc") + p(1)]

    def invalid_utf8(self) -> list[bytes]:
        r = self.r
        method = self.method()
        req = [wire.ASK if r.random() < 0.7 else wire.TELL, self.rid(), self.type_name(), self.key(),
               method, self.args(), self.kwargs(method)]
        parts = [self.pack(v) for v in req]
        i = r.randrange(2, 5)
        if r.random() < 0.7:
            bad = r.choice(BAD_UTF8)
            s = self.text(r.randrange(4)).encode() + bad + self.text(r.randrange(4)).encode()
            parts[i] = _str_header(len(s)) + s
        else:                  # bytes where a string belongs
            parts[i] = self.pack(str(req[i]).encode("utf-8", "replace"))
        if r.random() < 0.2:   # invalid UTF-8 as a kwargs key
            s = r.choice(BAD_UTF8)
            parts[6] = b"\x81" + _str_header(len(s)) + s + b"\x01"
        return [_array_header(len(parts)) + b"".join(parts)]

    def multipart(self) -> list[bytes]:
        r = self.r
        x = r.random()
        if x < 0.15:
            return [b""]
        if x < 0.3:
            return [b"", b""]
        if x < 0.45:
            return [self.encoded_request(), b""]
        if x < 0.6:
            return [self.encoded_request(), self.encoded_request()]
        if x < 0.75:
            return [self.encoded_request(), b"", self.encoded_request()]
        return [self._part() for _ in range(r.randrange(3, 40))]

    def _part(self) -> bytes:
        x = self.r.random()
        if x < 0.3:
            return b""
        if x < 0.7:
            return self.encoded_request()
        return self.r.randbytes(self.r.randrange(20))

    def oversized(self) -> list[bytes]:
        r = self.r
        if r.random() < 0.1:
            return self.far_oversized()
        over = self.max_message_bytes + r.choice((1, 2, 100, 4096))
        if r.random() < 0.5:
            head = self.pack([wire.ASK, self.rid(), r.choice(self.types), r.choice(self.keys), "echo"])
            body = b"\xc6" + (over).to_bytes(4, "big") + r.randbytes(8) * (over // 8 + 1)
            payload = b"\x97" + head[1:] + b"\x91" + body[:over + 5] + self.pack({})
            return [payload[:over + 64] if len(payload) > over else payload + b"\x00" * (over - len(payload))]
        return [r.randbytes(over)]

    def far_oversized(self) -> list[bytes]:
        """Beyond the socket's hard limit (2 x max_message_bytes): ZeroMQ drops the peer."""
        return [self.r.randbytes(2 * self.max_message_bytes + self.r.choice((1, 1 << 16)))]

    def valid_hostile(self) -> list[bytes]:
        return [self.pack(self.request())]


# ---------------------------------------------------------------------------------------
# classification (what the receiver must count) and reply checking

ROUTER_SERVES = frozenset({wire.MAP, wire.PING, wire.STATUS, wire.TELL, wire.ASK, wire.SPAWN})
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


# ---------------------------------------------------------------------------------------
# raw peers of one endpoint


class Peer:
    """One raw socket to an endpoint, with what the receiving ROUTER adds in front."""

    def __init__(self, ctx: zmq.Context, kind: int, endpoint: str, label: str,
                 routing_id: bytes | None = None) -> None:
        self.kind, self.endpoint, self.label = kind, endpoint, label
        s = ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 2000)          # closed peers still deliver what they queued
        s.setsockopt(zmq.SNDHWM, 1000)
        s.setsockopt(zmq.RCVHWM, 1000)
        s.setsockopt(zmq.RECONNECT_IVL, 10)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 100)
        if routing_id is not None:
            s.setsockopt(zmq.ROUTING_ID, routing_id)
        if kind == zmq.REQ:
            s.setsockopt(zmq.REQ_RELAXED, 1)     # may send again without a reply
        self.dest: bytes | None = None
        if kind == zmq.ROUTER:                   # a ROUTER peer names the node's socket
            self.dest = b"node"
            s.setsockopt(zmq.CONNECT_ROUTING_ID, self.dest)
            s.setsockopt(zmq.ROUTER_MANDATORY, 1)
        s.connect(endpoint)
        self.sock = s
        # the receiver sees [peer-id, (b"" from REQ), *frames]
        self.prefix = [b"peer", b""] if kind == zmq.REQ else [b"peer"]

    def try_send(self, frames: list[bytes]) -> bool:
        """One non-blocking attempt; False when the peer cannot take it now."""
        try:
            if self.dest is not None:
                self.sock.send_multipart([self.dest, *frames], _NOBLOCK)
            else:
                self.sock.send_multipart(frames, _NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:  # the ROUTER peer is not connected yet
                return False
            raise

    def drain(self, on_reply: Callable[[list[bytes]], None]) -> int:
        s, n = self.sock, 0
        while s.getsockopt(_EVENTS) & _POLLIN:
            try:
                frames = s.recv_multipart(_NOBLOCK)
            except zmq.Again:
                break
            n += 1
            on_reply(frames[1:] if self.dest is not None else frames)
        return n

    def close(self, linger: int | None = None) -> None:
        self.sock.close(linger)


# ---------------------------------------------------------------------------------------
# odd peers: incompatible socket types, duplicate identities, raw stream bytes


def _zmtp_greeting(r: random.Random) -> bytes:
    return (b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, r.choice((0, 1))]) + b"NULL".ljust(20, b"\x00")
            + b"\x00" + b"\x00" * 31)


def _zmtp_ready(socket_type: bytes) -> bytes:
    prop = bytes([11]) + b"Socket-Type" + len(socket_type).to_bytes(4, "big") + socket_type
    body = b"\x05READY" + prop
    return b"\x04" + bytes([len(body)]) + body


def _zmtp_frame(body: bytes, more: bool) -> bytes:
    if len(body) < 256:
        return bytes([1 if more else 0]) + bytes([len(body)]) + body
    return bytes([3 if more else 2]) + len(body).to_bytes(8, "big") + body


def _raw_connect(endpoint: str) -> socket.socket:
    if endpoint.startswith("ipc://"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        s.connect(endpoint[len("ipc://"):])
        return s
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=2.0)
    s.settimeout(2.0)
    return s


def raw_stream_session(endpoint: str, r: random.Random, mut: Mutator) -> int:
    """One raw connection speaking garbage or (cut, bent) ZMTP; returns the fuzz messages
    it carried in well-formed ZMTP (they may reach the node's ROUTER)."""
    try:
        s = _raw_connect(endpoint)
    except OSError:
        return 0
    carried = 0
    try:
        x = r.random()
        if x < 0.25:
            s.sendall(r.randbytes(r.randrange(1, 2000)))
        elif x < 0.45:
            g = bytearray(_zmtp_greeting(r))
            cut = r.randrange(1, len(g))
            for _ in range(r.randrange(3)):
                g[r.randrange(len(g))] = r.randrange(256)
            s.sendall(bytes(g[:cut]))
        else:
            out = [_zmtp_greeting(r), _zmtp_ready(r.choice((b"DEALER", b"DEALER", b"REQ", b"ROUTER",
                                                              b"PUSH", b"NOPE", b"")))]
            for _ in range(r.randrange(1, 20)):
                y = r.random()
                if y < 0.7:
                    _cat, frames = mut.frame()
                    frames = [f for f in frames if len(f) < 65536] or [b""]
                    for j, f in enumerate(frames):
                        out.append(_zmtp_frame(f, more=j < len(frames) - 1))
                    carried += 1
                elif y < 0.85:         # bogus flags
                    out.append(bytes([r.randrange(8, 256)]) + r.randbytes(r.randrange(1, 30)))
                elif y < 0.95:         # a huge declared length
                    out.append(b"\x02" + (1 << 62).to_bytes(8, "big") + r.randbytes(16))
                else:                  # an unknown command
                    out.append(b"\x04\x05" + b"\x04PING" if r.random() < 0.5 else b"\x04\x03\x03BAD")
            s.sendall(b"".join(out))
            try:
                s.recv(4096)           # the node's greeting, or nothing
            except OSError:
                pass
    except OSError:
        pass
    finally:
        s.close()
    return carried


def odd_peers_round(ctx: zmq.Context, endpoint: str, r: random.Random, mut: Mutator,
                    raw_sessions: int) -> dict[str, int]:
    """Incompatible socket types, a duplicate routing id, raw stream sessions."""
    out = {"incompatible_sent": 0, "incompatible_refused": 0, "duplicate_id_replies": 0,
           "raw_sessions": 0, "raw_frames": 0}
    for kind in (zmq.PUSH, zmq.PUB, zmq.PAIR):
        s = ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 10)
        s.connect(endpoint)
        for _ in range(5):
            try:
                s.send(mut.valid_hostile()[0], _NOBLOCK)
                out["incompatible_sent"] += 1
            except zmq.Again:
                out["incompatible_refused"] += 1
        time.sleep(0.005)
        s.close(0)
    routing = b"dup-" + r.randbytes(4)
    dealers = []
    for _ in range(2):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTING_ID, routing)
        s.connect(endpoint)
        dealers.append(s)
    for i, s in enumerate(dealers):
        try:
            s.send(_pack([wire.PING, 1000 + i]), _NOBLOCK)
        except zmq.Again:
            pass
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        for s in dealers:
            while s.getsockopt(_EVENTS) & _POLLIN:
                s.recv_multipart(_NOBLOCK)
                out["duplicate_id_replies"] += 1
        time.sleep(0.01)
    for s in dealers:
        s.close(0)
    for _ in range(raw_sessions):
        out["raw_frames"] += raw_stream_session(endpoint, r, mut)
        out["raw_sessions"] += 1
    return out


# ---------------------------------------------------------------------------------------
# the node: process table and counters


def process_table(status: dict[str, Any]) -> dict[tuple[str, Any], dict[str, Any]]:
    """(role, slot) -> the process's status entry."""
    return {(p["role"], p.get("slot")): p for p in status["processes"]}


def start_time(pid: int | None) -> float | None:
    """The process's start time if it runs on this machine (psutil), else None."""
    if not pid:
        return None
    try:
        import psutil
        return psutil.Process(pid).create_time()
    except Exception:
        return None


def identities(status: dict[str, Any]) -> dict[str, tuple[Any, Any, bool]]:
    """"role[slot]" -> (pid, start time, up) of every process of the node."""
    out = {}
    for (role, slot), p in process_table(status).items():
        name = role if slot is None else f"{role}[{slot}]"
        out[name] = (p.get("pid"), start_time(p.get("pid")), bool(p.get("up")))
    return out


def bad_frames(status: dict[str, Any]) -> dict[str, int | None]:
    """"router" / "worker[N]" -> its bad_frames counter (None if the status lacks it)."""
    out: dict[str, int | None] = {}
    for (role, slot), p in process_table(status).items():
        if role == "router":
            out["router"] = p.get("bad_frames")
        elif role == "worker":
            out[f"worker[{slot}]"] = p.get("bad_frames")
    return out


# ---------------------------------------------------------------------------------------
# the checker: well-formed asks that must keep their counts


class Checker:
    """Well-formed asks to fresh check actors, one per worker slot (through an actorsys
    client) and one through the router (a clean raw DEALER): each ``add(1)`` must answer
    the count continued."""

    def __init__(self, ctx: zmq.Context, client: actorsys.Client, endpoint: str, type_name: str,
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
        self.sock.send(_pack([wire.ASK, rid, self.type_name, key, self.method, [1], {}]))
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(left * 1000):
                raise actorsys.AskTimeout(f"no reply through the router within {self.timeout:g} s")
            msg = msgpack.unpackb(self.sock.recv_multipart()[-1], raw=False, strict_map_key=False)
            if msg[1] != rid:
                continue            # a late reply to an earlier check
            if msg[0] != wire.OK:
                raise actorsys.errors.error_from_wire(msg[2])
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


# ---------------------------------------------------------------------------------------
# the run


def discover_types(client: actorsys.Client) -> list[str]:
    """The node's registered actor types, read from the error a LIST of an unregistered
    type gets (the node names them)."""
    try:
        client.list_actors("\x01fuzz-no-such-type", limit=1)
    except actorsys.UnknownActorType as exc:
        text = str(exc)
        if "registered:" in text:
            names = text.split("registered:", 1)[1].strip().rstrip(")")
            return [n.strip() for n in names.split(",") if n.strip() and n.strip() != "none"]
    except Exception:
        pass
    return []


class Run:
    """One fuzzing run against a node at ``endpoint``."""

    def __init__(self, args: Any, endpoint: str, types: list[str], methods: list[str]) -> None:
        self.args, self.endpoint = args, endpoint
        self.ctx = zmq.Context()
        self.client = actorsys.connect(endpoint, timeout=15.0)
        self.max_bytes = int(getattr(self.client, "max_message_bytes", 0) or args.max_message_bytes)
        self.hard_limit = max(2 * self.max_bytes, 1 << 16)
        self.mut = Mutator(args.seed, types, methods, self.max_bytes)
        self.r = random.Random(args.seed ^ 0x5EED)
        names = ["router"] + [f"worker[{i}]" for i in range(len(self.client.map.endpoints))]
        self.targets = list(zip(names, [endpoint, *self.client.map.endpoints]))
        self.peers: dict[str, list[Peer]] = {}
        for name, ep in self.targets:
            self.peers[name] = [self._peer(zmq.DEALER, name, ep) for _ in range(3)] + [
                self._peer(zmq.REQ, name, ep), self._peer(zmq.ROUTER, name, ep)]
        self.sent = {name: 0 for name, _ in self.targets}
        self.cats = {c: {"sent": 0, "certainly_bad": 0} for c in self.mut.names}
        self.peer_kinds = {"dealer": 0, "req": 0, "router": 0, "throwaway": 0}
        self.replies: dict[str, int] = {}
        self.malformed: list[str] = []
        self.malformed_n = 0
        self.escapes: list[str] = []
        self.escapes_n = 0
        self.gave_up = 0
        self.odd: dict[str, int] = {}
        self.churned = 0
        self.certain_bad = 0
        self.total_sent = 0

    def _peer(self, kind: int, name: str, ep: str) -> Peer:
        rid = None
        if kind == zmq.DEALER and self.r.random() < 0.5:   # a chosen routing id, random bytes
            rid = bytes([self.r.randrange(1, 256)]) + self.r.randbytes(self.r.randrange(0, 200))
        return Peer(self.ctx, kind, ep, name, rid)

    def _on_reply(self, frames: list[bytes]) -> None:
        why = reply_problem(frames)
        if why is not None:
            self.malformed_n += 1
            if len(self.malformed) < 20:
                self.malformed.append(why)
            return
        code = reply_code(frames)
        self.replies[code] = self.replies.get(code, 0) + 1

    def drain(self) -> int:
        n = 0
        for peers in self.peers.values():
            for p in peers:
                n += p.drain(self._on_reply)
        return n

    def send(self, peer: Peer, frames: list[bytes]) -> bool:
        if peer.try_send(frames):
            return True
        deadline = time.monotonic() + self.args.send_timeout
        while time.monotonic() < deadline:
            self.drain()
            time.sleep(0.0005)
            if peer.try_send(frames):
                return True
        self.gave_up += 1
        return False

    def throwaway(self, ep: str, frames: list[bytes]) -> None:
        """Frames beyond the hard limit go through a fresh peer: ZeroMQ drops it."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 1000)
        s.setsockopt(zmq.SNDTIMEO, int(self.args.send_timeout * 1000))
        s.connect(ep)
        try:
            s.send_multipart(frames)
        except zmq.Again:
            self.gave_up += 1
        s.close()

    def churn(self) -> None:
        """Replace a random peer (closing it with replies possibly still on the way)."""
        name, ep = self.r.choice(self.targets)
        peers = self.peers[name]
        i = self.r.randrange(len(peers))
        old = peers[i]
        peers[i] = self._peer(old.kind, name, ep)
        old.close()
        self.churned += 1

    def odd_round(self) -> None:
        for _name, ep in self.targets:
            res = odd_peers_round(self.ctx, ep, self.r, self.mut, self.args.raw_sessions)
            for k, v in res.items():
                self.odd[k] = self.odd.get(k, 0) + v

    def fuzz(self, checker: Checker) -> tuple[float, bool]:
        """Send the frames; returns (seconds, whether it stopped early)."""
        args, r, mut = self.args, self.r, self.mut
        names = [n for n, _ in self.targets]
        eps = dict(self.targets)
        consecutive_failures = 0
        t0 = time.monotonic()
        deadline = t0 + args.max_seconds
        n_targets = len(names)
        for i in range(args.frames):
            if i % args.check_every == 0:
                consecutive_failures = 0 if checker.round() else consecutive_failures + 1
                if consecutive_failures >= 3:
                    return time.monotonic() - t0, True
                if time.monotonic() > deadline:
                    return time.monotonic() - t0, True
            if args.odd_every and i % args.odd_every == 0:
                self.odd_round()
            if i and i % args.churn_every == 0:
                self.churn()
            cat, frames = mut.frame()
            name = names[r.randrange(n_targets)]
            if max(map(len, frames)) >= self.hard_limit - 64:
                self.throwaway(eps[name], frames)
                self.peer_kinds["throwaway"] += 1
                ok = True
                bad = False
            else:
                x = r.random()
                peers = self.peers[name]
                peer = peers[r.randrange(3)] if x < 0.80 else peers[3] if x < 0.92 else peers[4]
                try:
                    bad = certainly_bad(peer.prefix + frames, name == "router", self.max_bytes)
                except DecoderEscape as exc:
                    bad = False
                    self.escapes_n += 1
                    if len(self.escapes) < 10:
                        self.escapes.append(f"{exc} for frames {[f[:80] for f in frames]!r:.400}")
                ok = self.send(peer, frames)
                if ok:
                    self.peer_kinds["dealer" if peer.kind == zmq.DEALER else
                                    "req" if peer.kind == zmq.REQ else "router"] += 1
            if ok:
                self.sent[name] += 1
                self.total_sent += 1
                c = self.cats[cat]
                c["sent"] += 1
                if bad:
                    c["certainly_bad"] += 1
                    self.certain_bad += 1
            if i & 31 == 0:
                self.drain()
        return time.monotonic() - t0, False

    def close_peers(self) -> None:
        self.drain()
        for peers in self.peers.values():
            for p in peers:
                p.close()       # LINGER: what is still queued is delivered
        self.peers = {}


def settle(client: actorsys.Client, want_at_least: int, timeout: float = 60.0) -> dict[str, Any]:
    """Status once the bad-frame counters stop moving (and reach ``want_at_least``)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        st = client.status(timeout=15.0)
        total = sum(v or 0 for v in bad_frames(st).values())
        received = sum(p.get("received") or 0 for p in st["processes"])
        if last is not None and total == last[0] and total >= want_at_least:
            return st
        if time.monotonic() > deadline:
            return st
        last = (total, received)
        time.sleep(0.5)


def tracebacks(log_path: str | None) -> dict[str, dict[str, Any]]:
    """The tracebacks the node printed (embedded node only), grouped by where they were
    raised and what: ``{signature: {"count", "example"}}``."""
    if not log_path or not os.path.exists(log_path):
        return {}
    with open(log_path, "r", errors="replace") as f:
        text = f.read()
    out: dict[str, dict[str, Any]] = {}
    for chunk in text.split("Traceback (most recent call last):")[1:]:
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


def fuzz_node(args: Any, endpoint: str, types: list[str], methods: list[str],
              check_type: str, log_path: str | None) -> dict[str, Any]:
    """Fuzz the node at ``endpoint`` and check it; returns the report."""
    wall0 = time.monotonic()
    run = Run(args, endpoint, types, methods)
    checker = Checker(run.ctx, run.client, endpoint, check_type, args.check_method,
                      f"{args.seed}-{os.getpid()}-{time.time_ns() % 10 ** 9}")
    report: dict[str, Any] = {"endpoint": endpoint, "seed": args.seed, "frames_requested": args.frames}
    try:
        st0 = run.client.status(timeout=15.0)
        ids0, bad0 = identities(st0), bad_frames(st0)
        seconds, stopped = run.fuzz(checker)
        if args.odd_every:
            run.odd_round()
        run.close_peers()
        st1 = settle(run.client, sum(v or 0 for v in bad0.values()) + run.certain_bad)
        final_ok = checker.round()        # and well-formed requests after it all
        st1 = run.client.status(timeout=15.0)
        ids1, bad1 = identities(st1), bad_frames(st1)
    finally:
        checker.close()
        run.client.close()
        for peers in run.peers.values():
            for p in peers:
                p.close(0)
        run.ctx.destroy(linger=0)
    delta = {k: (bad1.get(k) or 0) - (bad0.get(k) or 0) for k in bad1}
    total_delta = sum(delta.values())
    table = []
    for (role, slot), p in process_table(st1).items():
        name = role if slot is None else f"{role}[{slot}]"
        before = ids0.get(name)
        table.append({"process": name, "pid": p.get("pid"), "pid_before": before and before[0],
                      "same": before is not None and before[:2] == ids1[name][:2], "up": bool(p.get("up")),
                      "rss_mb": round((p.get("rss") or 0) / 2 ** 20, 1),
                      **{k: p.get(k) for k in ("received", "bad_frames", "dropped_replies", "failures",
                                               "overloaded", "resident", "supervised", "forwarded")
                         if k in p}})
    tbs = tracebacks(log_path)
    checks = {
        "no process died or restarted": set(ids0) == set(ids1) and all(
            ids0[k][:2] == ids1[k][:2] for k in ids0),
        "every process up": all(v[2] for v in ids1.values()),
        "every well-formed request answered correctly": not checker.failures and final_ok,
        "bad_frames counters in status": all(v is not None for v in bad1.values()) and "router" in bad1
        and len(bad1) == len(run.targets),
        "bad_frames rose by at least the certainly-bad frames": total_delta >= run.certain_bad,
        "bad_frames rose by no more than the frames sent": total_delta <= run.total_sent
        + run.odd.get("raw_frames", 0) + 10 * run.odd.get("raw_sessions", 0),
        "every reply well-formed": run.malformed_n == 0,
        "decoding raised only Rejected": run.escapes_n == 0,
        "all frames sent": not stopped and run.total_sent + run.gave_up >= args.frames and run.gave_up == 0,
    }
    if log_path is not None:         # (a node started elsewhere keeps its own output)
        checks["no traceback from the node"] = not tbs
    report.update({
        "frames_sent": run.total_sent, "seconds": round(seconds, 2),
        "frames_per_s": round(run.total_sent / seconds) if seconds else None,
        "wall_seconds": round(time.monotonic() - wall0, 2),
        "per_target": run.sent, "per_peer_kind": run.peer_kinds, "per_category": run.cats,
        "certainly_bad": run.certain_bad, "bad_frames_before": bad0, "bad_frames_after": bad1,
        "bad_frames_delta": delta, "bad_frames_delta_total": total_delta,
        "replies": dict(sorted(run.replies.items(), key=lambda kv: -kv[1])),
        "malformed_replies": run.malformed_n, "malformed_examples": run.malformed,
        "decoder_escapes": run.escapes_n, "decoder_escape_examples": run.escapes,
        "send_gave_up": run.gave_up, "peers_churned": run.churned, "odd_peers": run.odd,
        "check_asks": checker.asks, "check_failures": checker.failures[:20],
        "check_counts": checker.counts, "stopped_early": stopped,
        "node_tracebacks": sum(t["count"] for t in tbs.values()), "node_traceback_kinds": tbs,
        "processes": table, "checks": checks, "passed": all(checks.values()),
    })
    return report


def print_report(rep: dict[str, Any]) -> None:
    p = print
    p(f"fuzzed {rep['endpoint']} (seed {rep['seed']})")
    p(f"frames sent: {rep['frames_sent']:,} in {rep['seconds']} s = {rep['frames_per_s']:,} frames/s "
      f"(wall time {rep['wall_seconds']} s)")
    p("per target:    " + ", ".join(f"{k} {v:,}" for k, v in rep["per_target"].items()))
    p("per peer kind: " + ", ".join(f"{k} {v:,}" for k, v in rep["per_peer_kind"].items()))
    p("per category (sent / certainly bad):")
    for k, v in rep["per_category"].items():
        p(f"  {k:<14} {v['sent']:>9,} / {v['certainly_bad']:>9,}")
    p(f"odd peers: {rep['odd_peers']}; peers churned: {rep['peers_churned']}; "
      f"sends given up: {rep['send_gave_up']}")
    p("replies by code: " + ", ".join(f"{k} {v:,}" for k, v in rep["replies"].items()))
    p(f"malformed replies: {rep['malformed_replies']}; decoder escapes: {rep['decoder_escapes']}")
    for e in rep["malformed_examples"][:5] + rep["decoder_escape_examples"][:5]:
        p(f"  {e}")
    p("bad_frames: " + ", ".join(f"{k} {rep['bad_frames_before'].get(k)} -> {v}"
                                 for k, v in rep["bad_frames_after"].items())
      + f"; rise {rep['bad_frames_delta_total']:,} (certainly bad sent: {rep['certainly_bad']:,})")
    p(f"well-formed check asks: {rep['check_asks']:,}, failures: {len(rep['check_failures'])}")
    for f in rep["check_failures"][:5]:
        p(f"  {f}")
    if rep["node_tracebacks"]:
        p(f"node tracebacks: {rep['node_tracebacks']}, of {len(rep['node_traceback_kinds'])} kinds:")
        for sig, tb in rep["node_traceback_kinds"].items():
            p(f"  {tb['count']} x {sig}")
            p("    " + tb["example"].replace("\n", "\n    "))
    cols = ["process", "pid_before", "pid", "same", "up", "rss_mb", "received", "bad_frames",
            "dropped_replies", "failures", "overloaded", "resident", "supervised", "forwarded"]
    p("processes:")
    p("  " + " ".join(f"{c:>15}" for c in cols))
    for row in rep["processes"]:
        p("  " + " ".join(f"{str(row.get(c, '')):>15}" for c in cols))
    for name, ok in rep["checks"].items():
        p(f"{'PASS' if ok else 'FAIL'}: {name}")
    p("fuzz: all checks passed" if rep["passed"] else "fuzz: CHECKS FAILED")


def start_logged(node: actorsys.Node, log_path: str) -> None:
    """Start ``node`` with its processes' stdout and stderr going to ``log_path`` (they
    inherit the file at start; this process keeps its own output)."""
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        node.start()
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames to send (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--workers", type=int, default=2, help="worker slots of the embedded node")
    ap.add_argument("--endpoint", default=None, help="fuzz this running node instead")
    ap.add_argument("--json", metavar="PATH", default=None, help="write the report as JSON")
    ap.add_argument("--check-every", type=int, default=1000, help="frames between check asks")
    ap.add_argument("--check-type", default="FuzzBox", help="actor type of the check asks")
    ap.add_argument("--check-method", default="add", help="method: add(1) -> the running total")
    ap.add_argument("--odd-every", type=int, default=100_000,
                    help="frames between rounds of odd peers (0: none)")
    ap.add_argument("--raw-sessions", type=int, default=5, help="raw stream sessions per target per round")
    ap.add_argument("--churn-every", type=int, default=5000, help="frames between peer replacements")
    ap.add_argument("--send-timeout", type=float, default=10.0,
                    help="seconds a frame may wait for room to send before the run gives it up")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="stop fuzzing after this long")
    ap.add_argument("--max-message-bytes", type=int, default=1 << 20,
                    help="the embedded node's max_message_bytes")
    ap.add_argument("--node-log", metavar="PATH", default=None,
                    help="keep a copy of the embedded node's output here")
    ap.add_argument("--tmpdir", default=None, help="where the embedded node's temp dir goes")
    args = ap.parse_args(argv)
    args.check_every = max(args.check_every, 1)
    args.churn_every = max(args.churn_every, 1)

    if args.endpoint:
        with actorsys.connect(args.endpoint, timeout=15.0) as c:
            types = discover_types(c) or [args.check_type]
        rep = fuzz_node(args, args.endpoint, types, FUZZ_METHODS + [args.check_method],
                        args.check_type, None)
    else:
        tmp = tempfile.mkdtemp(prefix="actorsys-fuzz-", dir=args.tmpdir)
        log_path = os.path.join(tmp, "node.log")
        try:
            node = actorsys.Node(embedded_config(os.path.join(tmp, "data"), args.workers,
                                                 max_message_bytes=args.max_message_bytes))
            start_logged(node, log_path)
            try:
                rep = fuzz_node(args, node.endpoint, list(EMBEDDED_TYPES), FUZZ_METHODS,
                                args.check_type, log_path)
            finally:
                node.stop()
            rep["node_log_lines"] = sum(1 for _ in open(log_path, errors="replace"))
            if args.node_log:
                shutil.copyfile(log_path, args.node_log)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print_report(rep)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=2, default=str)
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
