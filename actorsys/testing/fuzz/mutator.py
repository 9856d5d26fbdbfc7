"""The fuzzer's seeded frame generators: :class:`Mutator`.

Each frame comes from one generator, chosen at random per frame by a seeded
``random.Random`` (the same seed makes the same frames): random bytes, truncated and
bit-flipped requests, valid msgpack of the wrong shape, ext types, deep nesting, invalid
UTF-8, multipart messages, oversized requests, and well-formed requests with hostile
type names, keys, methods and arguments. The pools of hostile values are the module's
constants.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable

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

    def _sup_key(self) -> str:
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
        return [wire.SPAWN, self.rid(), self.type_name(), self._sup_key(), opts]

    def stop(self) -> list[Any]:
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
