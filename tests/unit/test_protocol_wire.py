"""The wire's call context (the optional last field of ASK and TELL): what is accepted,
what is refused with a clear error, and that a record without one encodes as before."""
import pytest

from actorsys.errors import BadRequest
from actorsys.protocol import wire
from actorsys.protocol.messages import Ask, Tell, decode


def parsed(msg):
    return wire.parse_request(wire.unpack(wire.pack(msg)))


def test_an_ask_without_ctx_encodes_as_the_seven_fields_it_always_had():
    assert wire.unpack(Ask(3, "T", "k", "m", [1], {}).encode()) == [wire.ASK, 3, "T", "k", "m", [1], {}]
    assert wire.unpack(Tell(0, "T", "k", "m", [], {}, {}).encode()) == [wire.TELL, 0, "T", "k", "m", [], {}]


def test_a_ctx_travels_and_decodes_to_the_record():
    ctx = {"id": b"\x01" * 16, "chain": [["A", "1", b"t1"], ["B", "2", b"t2"]]}
    op, rid, rest = wire.parse_request(wire.unpack(Ask(4, "T", "k", "m", [], {"x": 1}, ctx).encode()))
    assert decode(op, rid, rest) == Ask(4, "T", "k", "m", [], {"x": 1}, ctx)


@pytest.mark.parametrize("ctx, words", [
    ([1], "must be a map"),
    ({"idd": b"x"}, "unknown ctx key 'idd'"),
    ({"id": "text"}, "1 to 64 bytes"),
    ({"id": b""}, "1 to 64 bytes"),
    ({"id": b"x" * 65}, "1 to 64 bytes"),
    ({"chain": [["A", "1"]]}, "[type, key, token] links"),
    ({"chain": [["A", "1", 1]]}, "[type, key, token] links"),
    ({"chain": [["A", "1", b"t"]] * (wire.MAX_CHAIN + 1)}, "at most 64"),
    ({"chain": [["A", "1", b"t" * 17]]}, "1 to 16 bytes"),
])
def test_a_bad_ctx_is_refused_with_what_is_wrong(ctx, words):
    with pytest.raises(BadRequest) as info:
        parsed([wire.ASK, 1, "T", "k", "m", [], {}, ctx])
    assert words in str(info.value)


def test_more_fields_than_ctx_are_refused():
    with pytest.raises(BadRequest, match=r"ctx\?"):
        parsed([wire.TELL, 0, "T", "k", "m", [], {}, {}, 1])


def test_a_shards_request_travels_and_decodes_to_its_record():
    from actorsys.protocol.messages import Shards
    args = {"shards": {3: 1}, "epoch": 2, "until": None}
    op, rid, rest = wire.parse_request(wire.unpack(Shards(5, "grant", args).encode()))
    assert (op, decode(op, rid, rest)) == (wire.SHARDS, Shards(5, "grant", args))


@pytest.mark.parametrize("msg", [[wire.SHARDS, 1], [wire.SHARDS, 1, "grant"], [wire.SHARDS, 1, 2, {}],
                                 [wire.SHARDS, 1, "grant", []], [wire.SHARDS, 1, "grant", {1: 2}],
                                 [wire.SHARDS, 1, "grant", {}, {}]])
def test_a_malformed_shards_request_is_refused(msg):
    with pytest.raises(BadRequest) as info:
        parsed(msg)
    assert "shards takes [op, id, command, {arguments}]" in str(info.value)
