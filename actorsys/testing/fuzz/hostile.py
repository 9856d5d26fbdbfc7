"""The fuzzer's hostile vocabulary: :class:`Hostile`, seeded draws of values and requests.

What a frame is made of, before any frame is broken (:mod:`.mutator` breaks them):
hostile names, keys, methods and arguments drawn from the pools of this module's
constants (or random text), msgpack values of every type (ext types with negative codes
too, which msgpack will not encode: :meth:`Hostile.pack` puts in their hand-made
encoding), and requests of a valid shape for their op (``parse_request`` accepts them).

Every draw comes from the one ``random.Random`` it is given (the mutator's: the same
seed makes the same frames). ``types`` and ``methods`` are the node's real actor types
and handler names; keys are drawn from a fixed pool of fuzz keys (``f-N``, and ``sup-N``
for most supervision requests), hostile keys and random text, so a key outside them
(the checker's) is never touched. ``_raw`` holds the ext placeholders drawn since the
last :meth:`Hostile.pack`, which consumes them.
"""
from __future__ import annotations

import random
import time
from typing import Any

import msgpack

from actorsys.protocol import wire

from .actors import FUZZ_METHODS

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_PRINTABLE = bytes.maketrans(bytes(range(256)), bytes(32 + i % 95 for i in range(256)))

SYSTEM = ["$history", "$rewind", "$destroy", "$inspect"]
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
             wire.EXIT, wire.SUP, wire.LIST, wire.METRICS, wire.TOP]
UNKNOWN_OPS: list[Any] = [0, 11, 10, 13, 99, 255, -1, 2 ** 64 - 1, -2 ** 63, "ask", "1", 1.0, True,
                          False, None, [], {}, b"\x01", [1]]


class Hostile:
    """Seeded draws of hostile values and well-formed requests (see the module docstring)."""

    def __init__(self, r: random.Random, types: list[str], methods: list[str]) -> None:
        self.r = r
        self._raw: list[tuple[bytes, bytes]] = []
        self.types = list(types) or ["FuzzBox"]
        self.methods = list(methods) or FUZZ_METHODS
        self.keys = [f"f-{i}" for i in range(64)]
        self.sup_keys = [f"sup-{i}" for i in range(8)]

    # -- encoding -----------------------------------------------------------------------
    def pack(self, obj: Any) -> bytes:
        """``obj`` as msgpack, with the ext placeholders drawn since the last pack encoded
        by hand (random bytes if msgpack cannot encode it)."""
        raw, self._raw = self._raw, []
        try:
            b: bytes = _pack(obj)
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

    def args(self) -> list[Any]:
        r = self.r
        n = r.choice((0, 0, 1, 1, 1, 2, 3, 5))
        return [self.value() if r.random() < 0.7 else self.int_() for _ in range(n)]

    def kwargs(self, method: str) -> dict[str, Any]:
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
    def request(self) -> list[Any]:
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

    def sup_key(self) -> str:
        return self.r.choice(self.sup_keys) if self.r.random() < 0.9 else self.key()

    def spawn(self) -> list[Any]:
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
        return [wire.SPAWN, self.rid(), self.type_name(), self.sup_key(), opts]

    def stop(self) -> list[Any]:
        r = self.r
        x = r.randrange(11)
        opts = ({} if x == 0 else {"forget": True} if x < 3 else {"shutdown": "brutal_kill"} if x == 3
                else {"shutdown": 0} if x == 4 else {"shutdown": r.randrange(0, 200)} if x == 5
                else {"shutdown": "infinity"} if x == 6 else {"inc": r.randrange(0, 100)} if x == 7
                else {"forget": self.value()} if x == 8 else {"shutdown": self.value()} if x == 9
                else {self.text(): self.value()})
        return [wire.STOP, self.rid(), self.type_name(), self.sup_key(), opts]

    def encoded_request(self) -> bytes:
        return self.pack(self.request())
