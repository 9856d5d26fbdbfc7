"""Authority per key (``actorsys/net/authz.py``), on one real node over tcp with CURVE on
127.0.0.1: a ``client`` key asks and tells public methods and lists, and is refused
(``Forbidden``, counted, logged rate-limited) everything an admin does; a key limited to
some types is refused the others; an ``admin`` key and a key file with no role (as
before roles existed) do all. Each process checks: the router before it forwards, each
worker, the supervision tree."""
from __future__ import annotations

import time
from typing import Iterator

import pytest
import zmq

import actorsys
from actorsys.config.keyfiles import load_public, load_secret
from actorsys.config.layout import free_port
from actorsys.net.keys import keygen
from actorsys.protocol import wire
from actorsys.testing.nodes import key_on_slot
from helpers import NodeStderr, make_config, module_node

pytestmark = pytest.mark.timeout(120)
SUPERVISED = {"root": {"children": [{"id": "c", "actor": "Counter", "key": "supervised"}]}}


class Keys:
    def __init__(self, root) -> None:
        self.node_public, self.node_secret = keygen(root / "keys", "node")
        clients = root / "keys" / "clients"
        self.clients = str(clients)
        self.legacy = keygen(clients, "legacy")[1]                 # no role: admin, as before
        self.admin = keygen(clients, "boss", role="admin")[1]
        self.client = keygen(clients, "app", role="client")[1]
        self.counter_only = keygen(clients, "counting", role="client", types="Counter")[1]
        self.counter_admin = keygen(clients, "counter-admin", role="admin", types=["Counter"])[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Keys:
    return Keys(tmp_path_factory.mktemp("roles"))


@pytest.fixture(scope="module")
def err(tmp_path_factory) -> NodeStderr:
    """The module node's standard error."""
    return NodeStderr(tmp_path_factory.mktemp("roles-err") / "stderr.log")


@pytest.fixture(scope="module")
def node(tmp_path_factory, keys, err) -> Iterator[actorsys.Node]:
    cfg = make_config(str(tmp_path_factory.mktemp("roles-node") / "data"),
                      endpoint=f"tcp://127.0.0.1:{free_port('127.0.0.1')}",
                      curve_secret_key=keys.node_secret, authorized_keys=keys.clients)
    cfg["supervisors"] = SUPERVISED
    yield from module_node(cfg, err)


def connect(node: actorsys.Node, keys: Keys, secret: str) -> actorsys.Client:
    return actorsys.connect(node.endpoint, key=secret, server_key=keys.node_public, timeout=10)


def forbidden(node: actorsys.Node) -> int:
    return sum(p.get("forbidden") or 0 for p in node.status()["processes"])


def test_a_client_key_asks_and_tells_but_is_forbidden_what_an_admin_does(node, keys, own):
    before = forbidden(node)
    with connect(node, keys, keys.client) as c:
        far = key_on_slot(c, "Counter", 1, own("far"))
        assert c.ref("Counter", own("a")).ask("add", 2) == 2
        c.ref("Counter", own("a")).tell("add", 3)
        assert c.ref("Counter", own("a")).ask("get") == 5, "expected the client's tell to run"
        assert c.ref("Counter", far).ask("add", 1) == 1
        assert own("a") in c.list_actors("Counter", limit=10_000)
        refused = {
            "destroy": lambda: c.ref("Counter", own("a")).destroy(),
            "rewind": lambda: c.ref("Counter", own("a")).rewind(0),
            "history": lambda: c.ref("Counter", own("a")).history(),
            "supervisor": lambda: c.supervisor("root").which_children(),
            "terminate_child": lambda: c.supervisor("root").terminate_child("c"),
            "status": lambda: c.status(),
        }
        for what, call in refused.items():
            with pytest.raises(actorsys.Forbidden, match="role admin") as e:
                call()
            assert e.value.code == "forbidden", what
        assert c.ref("Counter", own("a")).ask("get") == 5, "expected nothing of a refusal to run"
    with connect(node, keys, keys.admin) as a:
        assert a.supervisor("root").count_children()["active"] == 1, \
            "expected terminate_child refused: the supervised child still runs"
    assert forbidden(node) - before >= len(refused)


def test_the_router_checks_before_it_forwards(node, keys, zctx, own):
    """The worker sees the router's own key: a raw peer's system ask through the router
    must be refused by the router itself."""
    pub, sec = load_secret(keys.client)
    s = zctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.curve_publickey, s.curve_secretkey = pub, sec
    s.curve_serverkey = load_public(keys.node_public)
    s.connect(node.endpoint)
    s.send(wire.pack([wire.ASK, 7, "Counter", own("r"), "$destroy", [], {}]))
    s.send(wire.pack([wire.ASK, 8, "Counter", own("r"), "add", [4], {}]))
    s.send(wire.pack([wire.STATUS, 9]))
    got = {}
    while len(got) < 3:
        assert s.poll(10_000), f"expected three answers, got {got}"
        reply = wire.unpack(s.recv_multipart()[-1])
        got[reply[1]] = reply
    assert got[7][0] == wire.ERR and got[7][2]["code"] == "forbidden", got[7]
    assert got[8] == [wire.OK, 8, 4]
    assert got[9][0] == wire.ERR and got[9][2]["code"] == "forbidden", got[9]


def test_a_key_limited_to_some_types_is_refused_the_others(node, keys, own):
    with connect(node, keys, keys.counter_only) as c:
        assert c.ref("Counter", own("t")).ask("add", 1) == 1
        with pytest.raises(actorsys.Forbidden, match="type 'Log'"):
            c.ref("Log", own("t")).ask("items")
        with pytest.raises(actorsys.Forbidden, match="type 'Log'"):
            c.list_actors("Log")
        with pytest.raises(actorsys.Forbidden, match="role admin"):
            c.ref("Counter", own("t")).destroy()
    with connect(node, keys, keys.counter_admin) as a:
        assert a.ref("Counter", own("t2")).ask("add", 1) == 1
        assert a.ref("Counter", own("t2")).destroy()["deleted"] >= 1
        with pytest.raises(actorsys.Forbidden, match="type 'Log'"):
            a.ref("Log", own("t")).ask("items")
        with pytest.raises(actorsys.Forbidden, match="every type"):
            a.supervisor("root").which_children()


@pytest.mark.parametrize("which", ["admin", "legacy"])
def test_an_admin_key_and_a_key_without_a_role_do_everything(node, keys, own, which):
    with connect(node, keys, getattr(keys, which)) as a:
        r = a.ref("Counter", own("x"))
        assert r.ask("add", 2) == 2
        assert r.ask("add", 3) == 5
        assert a.ref("Log", own("x")).ask("items") == []
        assert a.status()["processes"]
        assert a.supervisor("root").count_children()["active"] == 1
        assert r.destroy()["deleted"] >= 1
        assert r.ask("get") == 0, "expected the destroyed counter to start over"


def test_refusals_are_logged_rate_limited(node, keys, own, err):
    """2,000 refused asks from one key (to a worker, the router, the tree): a handful of
    lines, not 2,000."""
    with connect(node, keys, keys.client) as c:
        c.ref("Counter", own("warm")).ask("add", 1)
        before = len(err.read())
        r, root = c.ref("Counter", own("flood")), c.supervisor("root")
        for i in range(2_000):
            with pytest.raises(actorsys.Forbidden):
                root.which_children() if i % 10 == 0 else r.history()
        with pytest.raises(actorsys.Forbidden):
            c.status()
        time.sleep(0.3)
    text = err.read()[before:]
    lines = [ln for ln in text.splitlines() if "refused a request" in ln]
    # at most LOG_BURST lines per key and process (2 workers, the router, the tree)
    assert 1 <= len(lines) <= 4 * 5, f"expected at most 20 refusal lines, got {len(lines)}"
    assert len(text) < 10_000, f"expected a few lines of log, got {len(text)} bytes:\n{text[-3000:]}"


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(0)
