"""The security rules, each against real processes: CURVE on tcp (authorized keys in,
others refused and counted), plain tcp only with ``insecure = true``, ``actorsys keygen``,
private ipc directories, nothing unpickled from a socket, and only registered actor
types activated (a payload cannot make a worker import a module)."""
from __future__ import annotations

import ast
import asyncio
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import msgpack
import pytest
import zmq

import actorsys
from actorsys.protocol import wire
from actorsys.config.layout import free_port as _free_port
from actorsys.config.keyfiles import load_public, load_secret
from actorsys.net.keys import keygen
from actorsys.testing.nodes import key_on_slot, kill_worker_of, wait_until
from helpers import ACTORS_DIR, ROOT

ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")
SUPERVISED = {"root": {"children": [{"id": "c", "actor": "Counter", "key": "supervised"}]}}


def cli(*args: str, env: dict | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([ACTORSYS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


class Keys:
    """Key pairs made by the real keygen: the node's, an authorized client's (alice),
    and one the node has never seen (mallory)."""

    def __init__(self, root) -> None:
        self.node_public, self.node_secret = keygen(root / "keys", "node")
        self.clients = str(root / "keys" / "clients")
        self.alice_public, self.alice_secret = keygen(self.clients, "alice")
        self.mallory_public, self.mallory_secret = keygen(root / "elsewhere", "mallory")


@pytest.fixture
def keys(tmp_path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def tcp_node(config, keys):
    """A node on tcp with CURVE (alice authorized) and a supervision tree."""
    cfg = config(endpoint=f"tcp://127.0.0.1:{_free_port('127.0.0.1')}",
                 curve_secret_key=keys.node_secret, authorized_keys=keys.clients)
    cfg["supervisors"] = SUPERVISED
    with actorsys.Node(cfg) as node:
        yield node


def endpoints(node: actorsys.Node) -> dict[tuple[str, int | None], str]:
    """(role, slot) -> the tcp endpoint every process of the node binds."""
    c = node.client()
    out = {("router", None): node.endpoint, ("tree", None): c.tree_endpoint}
    out.update({("worker", i): ep for i, ep in enumerate(c.map.endpoints)})
    assert all(ep.startswith("tcp://") for ep in out.values()), out
    return out


def counters(node: actorsys.Node, name: str) -> dict[tuple[str, int | None], int]:
    return {(p["role"], p.get("slot")): p.get(name) for p in node.status()["processes"]
            if p["role"] != "supervisor"}


def raw_dealer(ctx: zmq.Context, endpoint: str, public=None, secret=None, server=None) -> zmq.Socket:
    """A plain ZeroMQ peer, as an attacker would write it (CURVE keys as Z85 text, or none)."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if public is not None:
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = public, secret, server
    s.connect(endpoint)
    return s


def assert_no_answer(socks: dict, within: float) -> None:
    """Send a PING on every socket; none may get a reply within ``within`` seconds."""
    for s in socks.values():
        try:
            s.send(wire.pack([wire.PING, 1]), zmq.NOBLOCK)
        except zmq.Again:      # no connection: libzmq dropped it after the failed handshake
            pass
    deadline = time.monotonic() + within
    for what, s in socks.items():
        got = s.poll(max(deadline - time.monotonic(), 0) * 1000)
        assert not got, f"expected {what} to refuse the peer, but it answered: {s.recv_multipart()}"


# -- 1: an authorized key gets in -----------------------------------------------------


def test_an_authorized_client_reaches_every_process_over_curve(tcp_node, keys, zctx):
    ep = tcp_node.endpoint
    with actorsys.connect(ep, key=keys.alice_secret, server_key=keys.node_public) as c:
        far = key_on_slot(c, "Counter", 1, "far")
        relay = key_on_slot(c, "Relay", 0, "relay")
        assert c.ref("Counter", "a").ask("add", 2) == 2
        assert c.ref("Relay", relay).ask("forward_ask", "Counter", far, "add", 3) == 3, \
            "expected a worker to reach another worker over CURVE"
        assert c.supervisor("root").count_children()["active"] == 1, \
            "expected the supervision tree to answer an authorized client"

    async def async_client() -> int:
        async with actorsys.connect_async(ep, key=keys.alice_secret,
                                          server_key=keys.node_public) as ac:
            return await ac.ref("Counter", "a").ask("add", 1)
    assert asyncio.run(async_client()) == 3

    pub, sec = load_secret(keys.alice_secret)
    router = raw_dealer(zctx, ep, pub, sec, load_public(keys.node_public))
    router.send(wire.pack([wire.ASK, 9, "Counter", "a", "add", [1], {}]))
    assert router.poll(10_000), "expected the router to forward an authorized peer's ask"
    assert wire.unpack(router.recv_multipart()[-1]) == [wire.OK, 9, 4]

    r = cli("ask", "-e", ep, "--key", keys.alice_secret, "--server-key", keys.node_public,
            "Counter", "a", "add", "5")
    assert (r.returncode, r.stdout.strip()) == (0, "9"), f"expected the CLI's ask answered: {r}"
    r = cli("--key", keys.alice_secret, "--server-key", keys.node_public, "ls", "-e", ep, "Counter")
    assert r.returncode == 0 and "a" in r.stdout.split(), f"expected keys before the command used: {r}"
    env = dict(os.environ, ACTORSYS_KEY=keys.alice_secret, ACTORSYS_SERVER_KEY=keys.node_public)
    r = cli("status", "-e", ep, "--json", env=env)
    assert r.returncode == 0, f"expected the keys from ACTORSYS_KEY/ACTORSYS_SERVER_KEY used: {r}"
    assert {p["role"] for p in json.loads(r.stdout)["processes"]} == {"supervisor", "router",
                                                                      "worker", "tree"}
    assert set(counters(tcp_node, "auth_refused").values()) == {0}, \
        "expected no refusal while only authorized keys connect"


# -- 2: no keys (or not the node's server key) is refused and counted -----------------


@pytest.mark.parametrize("who", ["no keys", "the wrong server key"])
def test_a_client_that_cannot_do_the_handshake_is_refused_in_time_and_counted(tcp_node, keys,
                                                                             zctx, who):
    ep = tcp_node.endpoint
    kwargs = {} if who == "no keys" else {"key": keys.alice_secret,
                                          "server_key": keys.mallory_public}
    started = time.monotonic()
    with pytest.raises(actorsys.NodeUnavailable) as info:
        actorsys.connect(ep, connect_timeout=2.0, **kwargs)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0 + 5.0, f"expected the refusal by the 2 s connect deadline, took {elapsed:.1f} s"
    msg = str(info.value)
    assert "did not answer within 2 s" in msg and "handshake" in msg and "CURVE" in msg, \
        f"expected a clear message naming the failed CURVE handshake: {msg}"
    r = cli("ask", "-e", ep, "--connect-timeout", "1", "Counter", "a", "get",
            *(["--key", keys.alice_secret, "--server-key", keys.mallory_public] if kwargs else []))
    assert r.returncode == 1 and "NodeUnavailable" in r.stderr and "handshake" in r.stderr, \
        f"expected the CLI to fail with the same clear error: {r}"

    if kwargs:
        pub, sec = load_secret(keys.alice_secret)
        socks = {k: raw_dealer(zctx, e, pub, sec, load_public(keys.mallory_public))
                 for k, e in endpoints(tcp_node).items()}
    else:
        socks = {k: raw_dealer(zctx, e) for k, e in endpoints(tcp_node).items()}
    assert_no_answer(socks, within=1.0)
    wait_until(lambda: all(n >= 1 for n in counters(tcp_node, "handshake_failed").values()),
               "every process to count the failed handshakes")
    assert set(counters(tcp_node, "auth_refused").values()) == {0}, \
        "a failed handshake is not an authentication refusal"
    assert tcp_node.client().ref("Counter", "a").ask("add") == 1, "expected the node still serving"


# -- 3: an unknown key is refused (at once) and counted -------------------------------


def test_a_client_with_an_unknown_key_is_refused_at_once_and_counted(tcp_node, keys, zctx):
    ep = tcp_node.endpoint
    started = time.monotonic()
    with pytest.raises(actorsys.NodeUnavailable, match="refused this client's CURVE key"):
        actorsys.connect(ep, key=keys.mallory_secret, server_key=keys.node_public,
                         connect_timeout=5.0)

    async def async_client() -> None:
        async with actorsys.connect_async(ep, key=keys.mallory_secret,
                                          server_key=keys.node_public, connect_timeout=5.0):
            pass
    with pytest.raises(actorsys.NodeUnavailable, match="refused this client's CURVE key"):
        asyncio.run(async_client())
    elapsed = time.monotonic() - started
    assert elapsed < 5.0, f"expected both refusals before the 5 s deadline, took {elapsed:.1f} s"
    r = cli("status", "-e", ep, "--key", keys.mallory_secret, "--server-key", keys.node_public)
    assert r.returncode == 1 and "refused this client's CURVE key" in r.stderr, r

    pub, sec = load_secret(keys.mallory_secret)
    socks = {k: raw_dealer(zctx, e, pub, sec, load_public(keys.node_public))
             for k, e in endpoints(tcp_node).items()}
    assert_no_answer(socks, within=1.0)
    refused = wait_until(lambda: (lambda c: all(n >= 1 for n in c.values()) and c)(
        counters(tcp_node, "auth_refused")), "every process to count the refused key")
    assert refused[("router", None)] >= 4, f"expected the router to count 4 refusals: {refused}"
    assert tcp_node.client().ref("Counter", "a").ask("add") == 1, "expected the node still serving"


# -- 4: tcp needs keys, or insecure = true (with a warning) ---------------------------


def write_config(tmp_path, node_lines: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text("[node]\n" + 'endpoint = "tcp://127.0.0.1:7001"\n' + node_lines
                    + "\n[actors]\nCounter = \"actors:Counter\"\n")
    return str(path)


def key_cases(tmp_path, keys: Keys) -> list[tuple[str, str, str, int, str]]:
    """(what, [node] lines, key named, line named, fragment of the message)"""
    garbage = tmp_path / "garbage.key_secret"
    garbage.write_text("this is not a key\n")
    open_secret = tmp_path / "open.key_secret"
    shutil.copy(keys.node_secret, open_secret)
    os.chmod(open_secret, 0o644)
    mixed = tmp_path / "mixed.key_secret"       # alice's public key with the node's secret
    text = open(keys.node_secret).read()
    node_pub = load_public(keys.node_public).decode()
    mixed.write_text(text.replace(node_pub, load_public(keys.alice_public).decode()))
    os.chmod(mixed, 0o600)
    bad_dir = tmp_path / "bad_clients"
    bad_dir.mkdir()
    (bad_dir / "eve.key").write_text('curve\n    public-key = "short"\n')
    return [
        ("no key, no insecure", "", "node.endpoint", 2, "curve_secret_key"),
        ("a missing secret file", 'curve_secret_key = "nope.key_secret"\n',
         "node.curve_secret_key", 3, "cannot read key file"),
        ("a public file as the secret", f'curve_secret_key = "{keys.node_public}"\n',
         "node.curve_secret_key", 3, "holds no secret key"),
        ("a file that is no key", f'curve_secret_key = "{garbage}"\n',
         "node.curve_secret_key", 3, "not a key file"),
        ("a secret file others can read", f'curve_secret_key = "{open_secret}"\n',
         "node.curve_secret_key", 3, "open to other users"),
        ("a public key not of the secret", f'curve_secret_key = "{mixed}"\n',
         "node.curve_secret_key", 3, "does not belong"),
        ("authorized_keys not a directory",
         f'curve_secret_key = "{keys.node_secret}"\nauthorized_keys = "{keys.alice_public}"\n',
         "node.authorized_keys", 4, "not a directory"),
        ("a bad key in authorized_keys",
         f'curve_secret_key = "{keys.node_secret}"\nauthorized_keys = "{bad_dir}"\n',
         "node.authorized_keys", 4, "eve.key"),
        ("authorized_keys without the node's key", f'authorized_keys = "{keys.clients}"\n',
         "node.authorized_keys", 3, "needs curve_secret_key"),
        ("insecure and a key", f'curve_secret_key = "{keys.node_secret}"\ninsecure = true\n',
         "node.insecure", 4, "remove one"),
    ]


def test_tcp_key_problems_are_config_errors_naming_file_line_and_key(tmp_path, keys):
    for what, lines, key, line, fragment in key_cases(tmp_path, keys):
        path = write_config(tmp_path, lines)
        with pytest.raises(actorsys.ConfigError) as info:
            actorsys.load_config(path)
        e = info.value
        assert (e.file, e.key, e.line) == (path, key, line), \
            f"{what}: expected {path}, line {line}, key {key}; got {e.file}, {e.line}, {e.key}: {e}"
        assert fragment in str(e), f"{what}: expected {fragment!r} in: {e}"
    with pytest.raises(actorsys.ConfigError) as info:
        actorsys.load_config(write_config(tmp_path, ""))
    assert "insecure = true" in str(info.value), "expected the way out named too"
    cfg = actorsys.load_config(write_config(tmp_path, 'curve_secret_key = "keys/node.key_secret"\n'
                                                      'authorized_keys = "keys/clients"\n'))
    assert (cfg.curve_secret_key, cfg.authorized_keys) == (keys.node_secret, keys.clients), \
        "expected key paths relative to the config file"


def test_plain_tcp_with_insecure_true_works_and_warns(config, capfd):
    ep = f"tcp://127.0.0.1:{_free_port('127.0.0.1')}"
    with actorsys.Node(config(endpoint=ep, insecure=True)):
        with actorsys.connect(ep) as c:
            assert c.ref("Counter", "plain").ask("add", 4) == 4
    err = capfd.readouterr().err
    assert "WARNING" in err and "unauthenticated and unencrypted" in err, \
        f"expected a warning about plain tcp on stderr, got:\n{err}"


# -- 5: keygen ------------------------------------------------------------------------


def test_keygen_writes_a_pair_with_a_private_secret_file(tmp_path):
    d = tmp_path / "new" / "keys"
    r = cli("keygen", str(d), "--name", "alice")
    assert r.returncode == 0, f"expected keygen to succeed: {r}"
    public, secret = str(d / "alice.key"), str(d / "alice.key_secret")
    assert public in r.stdout and secret in r.stdout, r.stdout
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)   # noqa: E731
    assert mode(secret) == 0o600, f"expected the secret file mode 600, got {mode(secret):o}"
    assert mode(d) == 0o700, f"expected a new key directory mode 700, got {mode(d):o}"
    assert sorted(os.listdir(d)) == ["alice.key", "alice.key_secret"], os.listdir(d)
    pub, _sec = load_secret(secret)
    assert load_public(public) == pub, "expected the public file to hold the secret's public key"
    assert "secret-key" not in open(public).read(), "expected no secret in the public file"
    before = open(secret).read()
    r = cli("keygen", str(d), "--name", "alice")
    assert r.returncode != 0 and "already exists" in r.stderr, f"expected no overwrite: {r}"
    assert open(secret).read() == before, "expected the existing secret kept"


# -- 6: ipc sockets live in a directory only the owner can open -----------------------


def test_ipc_sockets_live_in_a_private_directory(node, config):
    run_dir = os.path.dirname(node.endpoint[len("ipc://"):])
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700, \
        f"expected the default socket directory mode 700, got {os.stat(run_dir).st_mode:o}"
    assert node.client().ref("Counter", "ipc").ask("add") == 1
    open_dir = tempfile.mkdtemp(prefix="as-sec-")
    try:
        os.chmod(open_dir, 0o755)
        with pytest.raises(actorsys.ConfigError) as info:
            actorsys.Node(config(endpoint=f"ipc://{open_dir}/r.sock")).start()
        assert info.value.key == "node.endpoint" and "open to other users" in str(info.value), \
            str(info.value)
        assert os.listdir(open_dir) == [], "expected nothing bound in a directory open to others"
    finally:
        shutil.rmtree(open_dir, ignore_errors=True)


# -- 7: nothing from a socket is unpickled --------------------------------------------


class Bomb:
    """Unpickling this creates the marker directory."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_payloads_are_never_unpickled(node, zctx, tmp_path):
    marker = str(tmp_path / "UNPICKLED")
    bomb = pickle.dumps(Bomb(marker))
    c = node.client()
    key = key_on_slot(c, "Log", 0, "pickles")
    ask = lambda rid, *args, **kw: wire.pack([wire.ASK, rid, "Log", key, "append", list(args), kw])  # noqa: E731
    for target, ep in (("router", node.endpoint), ("worker", c.map.endpoints[0])):
        peer = raw_dealer(zctx, ep)
        for i, frames in enumerate([[bomb], [b"", bomb], [wire.pack([wire.PING, 3]), bomb]]):
            peer.send_multipart(frames)
            assert peer.poll(5000), f"{target}: expected an answer to a pickle frame"
            reply = wire.unpack(peer.recv_multipart()[-1])
            assert reply[0] == wire.ERR and reply[2]["code"] == "bad_request", \
                f"{target}: expected BadRequest for pickle frames #{i}, got {reply}"
        peer.send(ask(1, bomb))
        peer.send(ask(2, msgpack.ExtType(1, bomb)))
        peer.send(wire.pack([wire.ASK, 3, "Log", key, "append", [], {"item": bomb}]))
        replies = []
        for _ in range(3):
            assert peer.poll(5000), f"{target}: expected a reply to an ask carrying a pickle"
            replies.append(wire.unpack(peer.recv_multipart()[-1]))
        assert all(r[0] == wire.OK for r in replies), f"{target}: expected normal replies: {replies}"
        peer.close(0)
    kill_worker_of(node, c, "Log", key)     # read back from LevelDB, not from memory
    items = c.ref("Log", key).ask("items")
    assert items == [bomb, msgpack.ExtType(1, bomb), bomb] * 2, \
        f"expected the pickles kept as opaque bytes and ext values: {items!r:.300}"
    assert not os.path.exists(marker), "a pickle from the wire was unpickled"


FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve",
                     "copyreg", "jsonpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
#: the modules that may import by name: the config's actor classes (and, on a node
#: started for testing, ``$run``'s functions) from the operator's own files; the two
#: packages that load their public names at first use, from tables in their own code
BY_NAME = {"actorsys/config/node.py", "actorsys/__init__.py", "actorsys/testing/__init__.py"}


def test_no_module_can_unpickle_eval_or_import_by_name():
    problems = []
    sources = sorted(os.path.relpath(os.path.join(d, f), ROOT)
                     for package in ("actorsys", "supervisors")
                     for d, _, files in os.walk(os.path.join(ROOT, package)) for f in files
                     if f.endswith(".py"))
    assert len(sources) > 20, f"expected the package's modules, found {sources}"
    for rel in sources:
        if True:
            package, name = rel.split(os.sep, 1)
            path = os.path.join(ROOT, rel)
            tree = ast.parse(open(path).read(), path)
            for n in ast.walk(tree):
                where = f"{package}/{name}:{getattr(n, 'lineno', '?')}"
                if isinstance(n, ast.Import):
                    problems += [f"{where} imports {a.name}" for a in n.names
                                 if a.name.split(".")[0] in FORBIDDEN_MODULES]
                elif isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in FORBIDDEN_MODULES:
                    problems.append(f"{where} imports from {n.module}")
                elif isinstance(n, ast.Call):
                    f = n.func
                    fname = (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute)
                             else "")
                    if (fname in FORBIDDEN_CALLS and isinstance(f, ast.Name)) or (
                            fname in FORBIDDEN_CALLS - {"compile"}):     # re.compile is fine
                        problems.append(f"{where} calls {fname}()")
                    if fname == "import_module" and f"{package}/{name}" not in BY_NAME:
                        problems.append(f"{where} imports a module by name")
                    if fname in ("unpackb", "Unpacker") and any(
                            k.arg in ("ext_hook", "object_hook", "object_pairs_hook", "list_hook")
                            for k in n.keywords):
                        problems.append(f"{where} decodes msgpack with a hook")
    assert not problems, "expected no unpickling, eval/exec or import by name:\n" + "\n".join(problems)


# -- 8: only registered types; a payload cannot import a module -----------------------


def test_a_payload_cannot_activate_an_unregistered_type_or_import_a_module(config, tmp_path, zctx):
    marker = tmp_path / "IMPORTED"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "evil_mod.py").write_text(textwrap.dedent(f"""\
        import actorsys
        open({str(marker)!r}, "w").write("imported")

        class Evil(actorsys.Actor):
            def run(self):
                return "evil ran"
        """))
    cfg = config(python_path=[ACTORS_DIR, str(evil)])
    cfg["supervisors"] = SUPERVISED
    with actorsys.Node(cfg) as node:
        c = node.client()
        types = ["evil_mod", "evil_mod:Evil", "evil_mod.Evil", "os:system", "builtins:eval",
                 "actors:Counter", "Evil", "../evil_mod"]
        for t in types:
            with pytest.raises(actorsys.UnknownActorType):
                c.ref(t, "k").ask("run", module="evil_mod")
            with pytest.raises(actorsys.UnknownActorType):
                c.spawn(t, "k")
            with pytest.raises(actorsys.UnknownActorType):
                c.list_actors(t)
            c.ref(t, "k").tell("run", "evil_mod")
        for m in ["__init__", "__class__", "__reduce__", "__getattribute__", "on_start",
                  "_private", "import_actor_class", "evil_mod"]:
            with pytest.raises(actorsys.UnknownMethod):
                c.ref("Counter", "k").ask(m, "evil_mod", spec="evil_mod:Evil")
        with pytest.raises(actorsys.ConfigError, match="unknown actor type .evil_mod:Evil"):
            c.supervisor("root").start_child({"id": "x", "actor": "evil_mod:Evil", "key": "k"})
        router = raw_dealer(zctx, node.endpoint)
        router.send(wire.pack([wire.ASK, 5, "evil_mod:Evil", "k", "run", [], {}]))
        assert router.poll(5000), "expected the router to answer"
        reply = wire.unpack(router.recv_multipart()[-1])
        assert reply[0] == wire.ERR and reply[2]["code"] == "unknown_type", reply
        assert c.ref("Counter", "k").ask("add") == 1, "expected the node still serving"
        assert c.ping_workers(timeout=10) is None
    assert not marker.exists(), "a payload made a node process import a module"


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)
