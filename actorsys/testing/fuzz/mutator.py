"""The fuzzer's seeded frame generators: :class:`Mutator`.

Each frame comes from one generator, chosen at random per frame by a seeded
``random.Random`` (the same seed makes the same frames): random bytes, truncated and
bit-flipped requests, valid msgpack of the wrong shape, ext types, deep nesting, invalid
UTF-8, multipart messages, oversized requests, and well-formed requests with hostile
type names, keys, methods and arguments. What the frames are made of (hostile values,
well-formed requests, their encoding) is :mod:`.hostile`'s; this module breaks them.
"""
from __future__ import annotations

import random
from typing import Callable

from actorsys.protocol import wire

from .hostile import BAD_UTF8, UNKNOWN_OPS, Hostile


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

    ``v`` draws the values and requests the frames are made of, from the same seeded
    ``r`` (see :class:`~.hostile.Hostile` for ``types`` and ``methods``); ``names``,
    ``funcs`` and ``cum`` are the generators' categories, functions and cumulative
    weights, index by index.
    """

    def __init__(self, seed: int, types: list[str], methods: list[str],
                 max_message_bytes: int = 1 << 20) -> None:
        self.r = random.Random(seed)
        self.v = Hostile(self.r, types, methods)
        self.max_message_bytes = max_message_bytes
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

    # -- generators ---------------------------------------------------------------------
    def random_bytes(self) -> list[bytes]:
        r = self.r
        n = r.choice((0, 1, 2, 3, 5, 8, 16, 40, 100, 300)) if r.random() < 0.97 else r.randrange(4096)
        return [r.randbytes(n)]

    def truncated(self) -> list[bytes]:
        b = self.v.encoded_request()
        return [b[:self.r.randrange(len(b))]]

    def bitflip(self) -> list[bytes]:
        r = self.r
        b = bytearray(self.v.encoded_request())
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
            return [self.v.pack(r.choice((self.v.value, lambda: {"op": wire.ASK, "id": 1},
                                          lambda: [[wire.PING, 1]], lambda: [], lambda: [wire.PING],
                                          lambda: self.v.text(), lambda: self.v.int_()))())]
        req = self.v.request()
        if x < 0.35:           # an unknown or ill-typed op
            req[0] = r.choice(UNKNOWN_OPS) if r.random() < 0.7 else self.v.value()
        elif x < 0.50:         # an ill-typed id (huge and negative ids are valid: kept in)
            req[1] = r.choice((1.0, 1.5, -0.0, "1", None, True, [1], {}, b"\x01", self.v.int_()))
        elif x < 0.75:         # wrong arity
            if r.random() < 0.5 and len(req) > 2:
                del req[r.randrange(2, len(req)):]
            else:
                req.extend(self.v.value() for _ in range(r.randrange(1, 4)))
        else:                  # a field of the wrong type
            if len(req) > 2:
                req[r.randrange(2, len(req))] = self.v.value()
        return [self.v.pack(req)]

    def ext_types(self) -> list[bytes]:
        r = self.r
        req = self.v.request()
        where = r.randrange(len(req) + 2)
        if where < len(req):
            req[where] = self.v.ext()
        elif where == len(req) and len(req) >= 7 and isinstance(req[5], list):
            req[5] = [self.v.ext() for _ in range(r.randrange(1, 4))]
        else:
            return [self.v.pack(self.v.ext())]
        return [self.v.pack(req)]

    def deep_nesting(self) -> list[bytes]:
        r = self.r
        depth = r.choice((50, 200, 500, 900, 980, 1000, 1010, 1020, 1022, 1023, 1024, 1100, 5000))
        kind = r.random()
        if kind < 0.5:
            deep = b"\x91" * depth + b"\xc0"
        else:
            deep = b"\x81\xa1k" * depth + b"\xc0"
        where = r.randrange(7)
        p = self.v.pack
        if where == 0:
            return [deep]
        if where == 1:         # as the op
            return [b"\x92" + deep + p(self.v.rid())]
        if where == 2:         # as the id
            return [b"\x92" + p(wire.PING) + deep]
        method = r.choice(("$rewind", "$rewind", "echo", "remember", "put", self.v.method()))
        head = [p(wire.ASK), p(self.v.rid()), p(r.choice(self.v.types)), p(r.choice(self.v.keys)),
                p(method)]
        if where == 3:         # as an argument
            return [b"\x97" + b"".join(head) + b"\x91" + deep + p({})]
        if where == 4:         # as a keyword argument (the version or time of a $rewind)
            kw = r.choice(("version", "time", "value", "by"))
            return [b"\x97" + b"".join(head) + p([]) + b"\x81" + p(kw) + deep]
        if where == 5:         # as the type name
            return [b"\x97" + p(wire.ASK) + p(self.v.rid()) + deep + b"".join(head[3:]) + p([]) + p({})]
        # as a spawn option
        return [b"\x95" + p(wire.SPAWN) + p(self.v.rid()) + p(r.choice(self.v.types))
                + p(self.v.sup_key()) + b"\x85" + p("sup") + p("s") + p("child") + p("c") + p("args")
                + b"\x91" + deep + p("kwargs") + p({}) + p("inc") + p(1)]

    def invalid_utf8(self) -> list[bytes]:
        r = self.r
        method = self.v.method()
        req = [wire.ASK if r.random() < 0.7 else wire.TELL, self.v.rid(), self.v.type_name(),
               self.v.key(), method, self.v.args(), self.v.kwargs(method)]
        parts = [self.v.pack(x) for x in req]
        i = r.randrange(2, 5)
        if r.random() < 0.7:
            bad = r.choice(BAD_UTF8)
            s = self.v.text(r.randrange(4)).encode() + bad + self.v.text(r.randrange(4)).encode()
            parts[i] = _str_header(len(s)) + s
        else:                  # bytes where a string belongs
            parts[i] = self.v.pack(str(req[i]).encode("utf-8", "replace"))
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
            return [self.v.encoded_request(), b""]
        if x < 0.6:
            return [self.v.encoded_request(), self.v.encoded_request()]
        if x < 0.75:
            return [self.v.encoded_request(), b"", self.v.encoded_request()]
        return [self._part() for _ in range(r.randrange(3, 40))]

    def _part(self) -> bytes:
        x = self.r.random()
        if x < 0.3:
            return b""
        if x < 0.7:
            return self.v.encoded_request()
        return self.r.randbytes(self.r.randrange(20))

    def oversized(self) -> list[bytes]:
        r = self.r
        if r.random() < 0.1:
            return self.far_oversized()
        over = self.max_message_bytes + r.choice((1, 2, 100, 4096))
        if r.random() < 0.5:
            head = self.v.pack([wire.ASK, self.v.rid(), r.choice(self.v.types), r.choice(self.v.keys),
                                "echo"])
            body = b"\xc6" + (over).to_bytes(4, "big") + r.randbytes(8) * (over // 8 + 1)
            payload = b"\x97" + head[1:] + b"\x91" + body[:over + 5] + self.v.pack({})
            return [payload[:over + 64] if len(payload) > over else payload + b"\x00" * (over - len(payload))]
        return [r.randbytes(over)]

    def far_oversized(self) -> list[bytes]:
        """Beyond the socket's hard limit (2 x max_message_bytes): ZeroMQ drops the peer."""
        return [self.r.randbytes(2 * self.max_message_bytes + self.r.choice((1, 1 << 16)))]

    def valid_hostile(self) -> list[bytes]:
        return [self.v.pack(self.v.request())]
