"""Authority per key (``actorsys/net/authz.py``): the policy table, key files' roles and
types (``config/keyfiles.py``, ``keygen``), and the rate-limited refusal log. The node
tests (``tests/node/test_key_roles.py``) check it on real processes over CURVE."""
from __future__ import annotations

import logging

import pytest

from actorsys.config.keyfiles import key_role, load_authorized_entries
from actorsys.errors import Forbidden, error_from_wire
from actorsys.net.authz import ADMIN, Grant, Refusals, refuse_request
from actorsys.net.keys import keygen
from actorsys.protocol import wire

CLIENT = Grant("client", None, "app")
ROOMS = Grant("client", frozenset({"Room"}), "rooms")
ROOM_ADMIN = Grant("admin", frozenset({"Room"}), "room-admin")


def ask(type_name: str, method: str) -> tuple[int, list[object]]:
    return wire.ASK, [type_name, "k", method, [], {}]


@pytest.mark.parametrize("op,rest", [
    ask("Room", "say"), (wire.TELL, ["Room", "k", "say", [], {}]), (wire.SPAWN, ["Room", "k"]),
    (wire.LIST, ["Room", None, 10]), (wire.PING, []), (wire.MAP, []),
])
def test_a_client_may_ask_tell_spawn_list_ping_and_map(op, rest):
    for grant in (CLIENT, ROOMS, ROOM_ADMIN, ADMIN):
        assert refuse_request(grant, op, rest) is None, (grant, wire.OPS[op])


@pytest.mark.parametrize("op,rest", [
    ask("Room", "$destroy"), ask("Room", "$rewind"), ask("Room", "$history"), ask("Room", "$inspect"),
    ask("Room", "$run"), (wire.SPAWN, ["Room", "k", {}]), (wire.STOP, ["Room", "k", {}]),
    (wire.STATUS, []), (wire.METRICS, []), (wire.TOP, [10, "busy"]), (wire.SUP, ["root", "x", None]),
    (wire.EXIT, []), (wire.SHARDS, ["grant", {}]), (wire.CLUSTER, []), (wire.LEAVE, []),
])
def test_everything_else_is_an_admins(op, rest):
    for grant in (CLIENT, ROOMS):
        exc = refuse_request(grant, op, rest)
        assert isinstance(exc, Forbidden) and "role admin" in str(exc), (grant, wire.OPS[op])
    assert refuse_request(ADMIN, op, rest) is None


def test_types_limit_either_role():
    for grant in (ROOMS, ROOM_ADMIN):
        assert "type 'Counter'" in str(refuse_request(grant, *ask("Counter", "add")))
        assert refuse_request(grant, wire.LIST, ["Counter", None, 1]) is not None
    assert refuse_request(ROOM_ADMIN, *ask("Room", "$destroy")) is None
    assert "every type" in str(refuse_request(ROOM_ADMIN, wire.STATUS, []))
    assert "every type" in str(refuse_request(ROOM_ADMIN, wire.SUP, ["root", "x", None]))


def test_forbidden_crosses_the_wire():
    err = error_from_wire(Forbidden("no").to_wire())
    assert isinstance(err, Forbidden) and err.code == "forbidden"


def test_key_files_carry_role_and_types(tmp_path):
    d = tmp_path / "clients"
    keygen(d, "legacy")
    keygen(d, "app", role="client", types="Room, Counter")
    keygen(d, "ops", role="admin", types=["Room"])
    got = {name: (role, types) for name, _, role, types in load_authorized_entries(d)}
    assert got == {"legacy": ("admin", None), "app": ("client", frozenset({"Room", "Counter"})),
                   "ops": ("admin", frozenset({"Room"}))}
    assert key_role({"types": '["Room", "Doc"]'}, "x") == ("admin", frozenset({"Room", "Doc"}))
    with pytest.raises(ValueError, match="role must be one of"):
        key_role({"role": "root"}, "x.key")
    with pytest.raises(ValueError, match="names no actor type"):
        key_role({"types": ""}, "x.key")
    with pytest.raises(ValueError):
        keygen(d, "bad", role="superuser")


def test_refusals_are_counted_and_logged_rate_limited(caplog):
    logger = logging.getLogger("test.authz")
    counters: dict[str, int] = {}
    now = [0.0]
    r = Refusals(logger, counters, burst=3, window=60.0)
    r.limit.clock = lambda: now[0]
    with caplog.at_level(logging.WARNING, logger="test.authz"):
        for _ in range(1000):
            r.refused(CLIENT, Forbidden("no"))
        now[0] = 61.0
        r.sweep()
    assert counters["forbidden"] == 1000
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 4, lines
    assert lines[-1] == "suppressed 997 more refused requests from key 'app' in the last 61 s"


def test_a_key_files_types_must_name_actor_types_of_the_config(tmp_path):
    """A misspelt type in a key file is a config error naming the file, the key and the
    types there are, not a key whose every request is refused at run time."""
    from actorsys.config import load_config
    from actorsys.errors import ConfigError
    keygen(tmp_path / "keys", "node")
    keygen(tmp_path / "clients", "app", role="client", types="Room, Counterr")
    path = tmp_path / "node.toml"
    path.write_text('[node]\ndata_dir = "data"\nendpoint = "tcp://127.0.0.1:5999"\n'
                    'curve_secret_key = "keys/node.key_secret"\nauthorized_keys = "clients"\n'
                    '[actors]\nRoom = "app:Room"\nCounter = "app:Counter"\n')
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    msg = str(e.value)
    assert "node.toml" in msg and "authorized_keys" in msg and "app.key" in msg
    assert "'Counterr'" in msg and "Counter, Room" in msg
    keygen(tmp_path / "good", "app", role="client", types="Room, Counter")
    path.write_text(path.read_text().replace('"clients"', '"good"'))
    assert load_config(str(path)).authorized_keys == str(tmp_path / "good")
