"""Supervisor and child specs from config files, mirroring OTP's supervisor_SUITE:
defaults, validation errors (each naming the file, the line, the dotted key and the
problem), normal start, failed start, and start_child errors at run time.

OTP cases mirrored: ``sup_start_normal``, ``sup_start_fail`` / ``sup_start_error_return``
(``init`` fails: the children already started are stopped and the supervisor does not
start), ``child_spec`` validation (``check_childspecs``: bad restart, shutdown, duplicate
ids, bad intensity / period, bad strategy, significant/auto_shutdown combinations),
``child_adm`` start_child with an invalid spec, and a start_child whose child fails to
start (``{error, ...}``; the child is not added).
"""
from __future__ import annotations

import time

import psutil
import pytest

import actorsys
from actorsys.testing.nodes import wait_until
from helpers import ACTORS_DIR

NODE = f"""\
[node]
data_dir = "data"
workers = 2
python_path = ["{ACTORS_DIR}"]
shutdown_timeout = 5.0
start_timeout = 30.0
"""
ACTORS = """\
[actors]
Worker = "sup_actors:Worker"
Journal = "sup_actors:Journal"
Life = "supervision_cfg_actors:Life"
"""
MARK = "# <-- error here"


def write(tmp_path, text: str, name: str = "node.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def marked_line(text: str) -> int:
    """The 1-based line carrying MARK (where the error must point)."""
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if MARK in line]
    assert len(lines) == 1, f"test bug: expected one {MARK!r} marker, found {len(lines)}"
    return lines[0]


# ---------------------------------------------------------------------------------------
# defaults


def test_defaults_are_otps(tmp_path):
    """OTP's defaults: one_for_one, intensity 1, period 5, permanent, shutdown 5000 for a
    worker and infinity for a supervisor child, not significant, auto_shutdown never."""
    text = NODE + ACTORS + """
[supervisors.root]
children = [
  { id = "w", actor = "Worker", key = "w" },
  { id = "s", supervisor = "sub" },
]
[supervisors.sub]
"""
    cfg = actorsys.load_config(write(tmp_path, text))
    root, sub = cfg.supervisors["root"], cfg.supervisors["sub"]
    for name, sup in (("root", root), ("sub", sub)):
        assert sup["strategy"] == "one_for_one", f"{name}: expected default strategy one_for_one: {sup}"
        assert sup["max_restarts"] == 1, f"{name}: expected default max_restarts 1: {sup}"
        assert sup["max_seconds"] == 5, f"{name}: expected default max_seconds 5: {sup}"
        assert sup["auto_shutdown"] == "never", f"{name}: expected default auto_shutdown never: {sup}"
        assert "backoff" not in sup, f"{name}: expected no backoff unless declared: {sup}"
    assert sub["children"] == [], f"expected a supervisor without children to have none: {sub}"
    w, s = root["children"]
    assert w == {"id": "w", "actor": "Worker", "key": "w", "args": [], "kwargs": {},
                 "restart": "permanent", "shutdown": 5000, "significant": False}, \
        f"expected OTP's worker defaults (permanent, 5000 ms, not significant), got {w}"
    assert s == {"id": "s", "supervisor": "sub", "restart": "permanent", "shutdown": "infinity",
                 "significant": False}, \
        f"expected OTP's supervisor-child defaults (permanent, infinity, not significant), got {s}"


def test_declared_values_are_kept(tmp_path):
    text = NODE + ACTORS + """
[supervisors.root]
strategy = "rest_for_one"
max_restarts = 0
max_seconds = 0.5
auto_shutdown = "all_significant"
backoff = { initial = 0.5, max = 4 }
children = [
  { id = "w", actor = "Worker", key = "w", args = [1, "x"], kwargs = { a = { b = 2 } }, restart = "transient", shutdown = "brutal_kill", significant = true },
]
"""  # noqa: E501 (a TOML inline table is one line)
    sup = actorsys.load_config(write(tmp_path, text)).supervisors["root"]
    assert (sup["strategy"], sup["max_restarts"], sup["max_seconds"], sup["auto_shutdown"]) == \
        ("rest_for_one", 0, 0.5, "all_significant"), f"expected the declared flags: {sup}"
    assert sup["backoff"] == {"initial": 0.5, "max": 4.0, "jitter": 0.2}, \
        f"expected the declared backoff with the default jitter 0.2: {sup['backoff']}"
    assert sup["children"] == [{"id": "w", "actor": "Worker", "key": "w", "args": [1, "x"],
                                "kwargs": {"a": {"b": 2}}, "restart": "transient",
                                "shutdown": "brutal_kill", "significant": True}], sup["children"]


# ---------------------------------------------------------------------------------------
# validation errors: (id, [supervisors] text with MARK on the expected line, key, problem)

W = 'actor = "Worker"'
BAD_SUPERVISORS = [
    ("invalid restart type", f"""
[supervisors.root]
children = [
  {{ id = "a", {W}, key = "a", kwargs = {{ x = {{ y = 1 }} }}, args = [{{ z = 1 }}] }},
  {{ id = "b", {W}, key = "b", restart = "sometimes" }},  {MARK}
]
""", "supervisors.root.children[1].restart", "invalid restart type 'sometimes'"),
    ("negative shutdown", f"""
[supervisors.root]
children = [ {{ id = "a", {W}, key = "a", shutdown = -1 }} ]  {MARK}
""", "supervisors.root.children[0].shutdown", "invalid shutdown -1"),
    ("shutdown a wrong string", f"""
[supervisors.root]
children = [
  {{ id = "a", {W}, key = "a", shutdown = "brutal" }},  {MARK}
]
""", "supervisors.root.children[0].shutdown", "invalid shutdown 'brutal'"),
    ("shutdown a float", f"""
[supervisors.root]
children = [
  {{ id = "a", {W}, key = "a", shutdown = 1.5 }},  {MARK}
]
""", "supervisors.root.children[0].shutdown", "invalid shutdown 1.5"),
    ("duplicate child id", f"""
[supervisors.root]
children = [
  {{ id = "a", {W}, key = "a" }},
  {{ id = "b", {W}, key = "b" }},
  {{ id = "a", {W}, key = "c" }},  {MARK}
]
""", "supervisors.root.children[2].id", "duplicate child id 'a'"),
    ("negative intensity", f"""
[supervisors.root]
strategy = "one_for_all"
max_restarts = -1  {MARK}
""", "supervisors.root.max_restarts", "invalid intensity -1"),
    ("non-integer intensity", f"""
[supervisors.root]
max_restarts = 2.5  {MARK}
""", "supervisors.root.max_restarts", "invalid intensity 2.5"),
    ("intensity a string", f"""
[supervisors.root]
max_restarts = "3"  {MARK}
""", "supervisors.root.max_restarts", "invalid intensity '3'"),
    ("zero period", f"""
[supervisors.root]
max_seconds = 0  {MARK}
""", "supervisors.root.max_seconds", "invalid period 0"),
    ("negative period", f"""
[supervisors.root]
max_restarts = 3
max_seconds = -2.5  {MARK}
""", "supervisors.root.max_seconds", "invalid period -2.5"),
    ("invalid strategy", f"""
[supervisors.root]
strategy = "one_for_some"  {MARK}
""", "supervisors.root.strategy", "invalid strategy 'one_for_some'"),
    ("invalid auto_shutdown", f"""
[supervisors.root]
auto_shutdown = "sometimes"  {MARK}
""", "supervisors.root.auto_shutdown", "invalid auto_shutdown 'sometimes'"),
    ("auto_shutdown under simple_one_for_one", f"""
[supervisors.jobs]
strategy = "simple_one_for_one"
auto_shutdown = "any_significant"  {MARK}
children = [ {{ id = "job", {W} }} ]
""", "supervisors.jobs.auto_shutdown", "bad combination"),
    ("significant with permanent", f"""
[supervisors.root]
auto_shutdown = "any_significant"
children = [
  {{ id = "a", {W}, key = "a", significant = true }},  {MARK}
]
""", "supervisors.root.children[0].significant", "significant child must be transient or temporary"),
    ("significant with auto_shutdown never", f"""
[supervisors.root]
children = [
  {{ id = "a", {W}, key = "a", restart = "transient", significant = true }},  {MARK}
]
""", "supervisors.root.children[0].significant", "auto_shutdown"),
    ("unknown actor type", f"""
[supervisors.root]
children = [
  {{ id = "a", actor = "Wroker", key = "a" }},  {MARK}
]
""", "supervisors.root.children[0].actor", "unknown actor type 'Wroker'"),
    ("unknown child key", f"""
[supervisors.root]
children = [
  {{ id = "a", {W}, key = "a" }},
  {{ id = "b", {W}, key = "b", restrat = "temporary" }},  {MARK}
]
""", "supervisors.root.children[1].restrat", "unknown child key"),
    ("unknown supervisor key", f"""
[supervisors.root]
max_restart = 3  {MARK}
""", "supervisors.root.max_restart", "unknown key"),
    ("child with both actor and supervisor", f"""
[supervisors.root]
children = [
  {{ id = "a", {W}, key = "a", supervisor = "sub" }},  {MARK}
]
[supervisors.sub]
""", "supervisors.root.children[0]", "exactly one of"),
    ("child with neither actor nor supervisor", f"""
[supervisors.root]
children = [
  {{ id = "a", key = "a" }},  {MARK}
]
""", "supervisors.root.children[0]", "exactly one of"),
    ("missing id", f"""
[supervisors.root]
children = [
  {{ {W}, key = "a" }},  {MARK}
]
""", "supervisors.root.children[0].id", "needs an id"),
    ("missing key", f"""
[supervisors.root]
children = [
  {{ id = "a", {W} }},  {MARK}
]
""", "supervisors.root.children[0].key", "needs a key"),
    ("nested supervisor that does not exist", f"""
[supervisors.root]
children = [
  {{ id = "a", {W}, key = "a" }},
  {{ id = "sub", supervisor = "nope" }},  {MARK}
]
""", "supervisors.root.children[1].supervisor", "no [supervisors.nope] table"),
    ("supervisor with two parents", f"""
[supervisors.root]
children = [ {{ id = "s", supervisor = "shared" }} ]
[supervisors.other]
children = [ {{ id = "t", supervisor = "shared" }} ]  {MARK}
[supervisors.shared]
""", "supervisors.other.children[0].supervisor", "already a child of 'root'"),
    ("nesting cycle", f"""
[supervisors.a]  {MARK}
children = [ {{ id = "s", supervisor = "b" }} ]
[supervisors.b]
children = [ {{ id = "s", supervisor = "a" }} ]
""", "supervisors.a", "cycle: a -> b -> a"),
    ("supervisor nested in itself", f"""
[supervisors.a]  {MARK}
children = [ {{ id = "me", supervisor = "a" }} ]
""", "supervisors.a", "cycle: a -> a"),
    ("same actor address under two supervisors", f"""
[supervisors.root]
children = [ {{ id = "a", {W}, key = "k" }} ]
[supervisors.other]
children = [
  {{ id = "b", {W}, key = "k" }},  {MARK}
]
""", "supervisors.other.children[0].key", "already supervised by root/a"),
    ("simple_one_for_one with two children", f"""
[supervisors.jobs]
strategy = "simple_one_for_one"
children = [  {MARK}
  {{ id = "x", {W} }},
  {{ id = "y", {W} }},
]
""", "supervisors.jobs.children", "exactly one child spec"),
    ("simple_one_for_one with no children", f"""
[supervisors.jobs]  {MARK}
strategy = "simple_one_for_one"
""", "supervisors.jobs.children", "exactly one child spec"),
    ("simple_one_for_one template with a key", f"""
[supervisors.jobs]
strategy = "simple_one_for_one"
children = [
  {{ id = "job", {W}, key = "k" }},  {MARK}
]
""", "supervisors.jobs.children[0].key", "has no key"),
    ("backoff max below initial", f"""
[supervisors.root]
backoff = {{ initial = 2, max = 1 }}  {MARK}
""", "supervisors.root.backoff.max", "max must be at least initial"),
    ("backoff negative", f"""
[supervisors.root]
backoff = {{ initial = -0.1 }}  {MARK}
""", "supervisors.root.backoff.initial", "number >= 0"),
    ("backoff jitter above 1", f"""
[supervisors.root]
backoff = {{ jitter = 1.5 }}  {MARK}
""", "supervisors.root.backoff.jitter", "jitter is a fraction"),
    ("backoff unknown key", f"""
[supervisors.root]
backoff = {{ start = 1 }}  {MARK}
""", "supervisors.root.backoff", "must be a table { initial"),
    ("backoff as its own table", f"""
[supervisors.root]
[supervisors.root.backoff]
initial = 3
max = 1  {MARK}
""", "supervisors.root.backoff.max", "max must be at least initial"),
    # arrays of tables: the line of the key inside the right [[...children]] block
    ("arrays of tables: bad restart", f"""
[supervisors.root]
strategy = "one_for_one"

[[supervisors.root.children]]
id = "a"
actor = "Worker"
key = "a"
restart = "temporary"

[[supervisors.root.children]]
id = "b"
actor = "Worker"
key = "b"
restart = "forever"  {MARK}
""", "supervisors.root.children[1].restart", "invalid restart type 'forever'"),
    ("arrays of tables: whole-child problem", f"""
[supervisors.root]

[[supervisors.root.children]]
id = "a"
actor = "Worker"
key = "a"

[[supervisors.root.children]]  {MARK}
id = "b"
key = "b"
""", "supervisors.root.children[1]", "exactly one of"),
    ("arrays of tables: duplicate id", f"""
[supervisors.root]

[[supervisors.root.children]]
id = "a"
actor = "Worker"
key = "a"

[[supervisors.root.children]]
id = "a"  {MARK}
actor = "Worker"
key = "b"
""", "supervisors.root.children[1].id", "duplicate child id 'a'"),
]

BAD_NODE_KEYS = [
    ("turn_timeout zero", f"turn_timeout = 0  {MARK}\n", "node.turn_timeout", "positive"),
    ("turn_timeout a string", f'turn_timeout = "1s"  {MARK}\n', "node.turn_timeout", "must be a number"),
    ("heartbeat_timeout negative", f"heartbeat_timeout = -2  {MARK}\n", "node.heartbeat_timeout",
     "positive"),
    ("max_worker_memory in parsecs", f'max_worker_memory = "12 parsecs"  {MARK}\n',
     "node.max_worker_memory", "'12 parsecs'"),
    ("max_worker_memory negative", f"max_worker_memory = -5  {MARK}\n", "node.max_worker_memory",
     "0 (no limit) or a positive number"),
    ("max_worker_memory a float", f"max_worker_memory = 1.5  {MARK}\n", "node.max_worker_memory",
     "size in bytes"),
    ("backoff max below initial", f"backoff = {{ initial = 1, max = 0.5 }}  {MARK}\n",
     "node.backoff.max", "max must be at least initial"),
    ("backoff not a table", f"backoff = 3  {MARK}\n", "node.backoff", "must be a table"),
    ("backoff jitter above 1", f"backoff = {{ jitter = 2 }}  {MARK}\n", "node.backoff.jitter",
     "jitter is a fraction"),
    ("backoff negative", f'backoff = {{ max = -1 }}  {MARK}\n', "node.backoff.max", "number >= 0"),
]


def check_error(path, text: str, key: str, fragment: str) -> actorsys.ConfigError:
    line = marked_line(text)
    with pytest.raises(actorsys.ConfigError) as info:
        actorsys.load_config(path)
    err, msg = info.value, str(info.value)
    assert str(path) in msg and err.file == str(path), f"expected the file {path} named in: {msg}"
    assert err.line == line and f"line {line}" in msg, f"expected line {line} named in: {msg}"
    assert err.key == key and f"key '{key}'" in msg, f"expected key {key!r} named in: {msg}"
    assert fragment in msg, f"expected the problem ({fragment!r}) in: {msg}"
    return err


@pytest.mark.parametrize("sups,key,fragment", [c[1:] for c in BAD_SUPERVISORS],
                         ids=[c[0] for c in BAD_SUPERVISORS])
def test_invalid_supervisor_spec_names_file_line_key_and_problem(tmp_path, sups, key, fragment):
    text = NODE + ACTORS + sups
    check_error(write(tmp_path, text), text, key, fragment)


@pytest.mark.parametrize("line,key,fragment", [c[1:] for c in BAD_NODE_KEYS],
                         ids=[c[0] for c in BAD_NODE_KEYS])
def test_invalid_node_supervision_key_names_file_line_key_and_problem(tmp_path, line, key, fragment):
    text = NODE + line + ACTORS
    check_error(write(tmp_path, text), text, key, fragment)


def test_valid_node_supervision_keys(tmp_path):
    text = NODE + ('turn_timeout = 2.5\nheartbeat_timeout = 3\nmax_worker_memory = "512MB"\n'
                   'backoff = { initial = 0.1, max = 1 }\n') + ACTORS
    cfg = actorsys.load_config(write(tmp_path, text))
    assert (cfg.turn_timeout, cfg.heartbeat_timeout, cfg.max_worker_memory) == (2.5, 3, 512 * 10**6), \
        f"expected the declared node keys, got {cfg.turn_timeout}, {cfg.heartbeat_timeout}, " \
        f"{cfg.max_worker_memory}"
    assert cfg.backoff == {"initial": 0.1, "max": 1.0, "jitter": 0.2}, cfg.backoff


def test_a_bad_tree_starts_no_process(tmp_path):
    """Validation happens in Node(): a bad spec is a ConfigError before anything forks."""
    text = NODE + ACTORS + '[supervisors.root]\nchildren = [ { id = "a", actor = "Worker", key = "a", ' \
                           'restart = "always" } ]\n'
    with pytest.raises(actorsys.ConfigError, match="invalid restart type 'always'"):
        actorsys.Node(write(tmp_path, text)).start()
    assert not psutil.Process().children(recursive=True), "expected no process started for a bad config"
    assert not (tmp_path / "data").exists(), "expected no data directory created for a bad config"


# ---------------------------------------------------------------------------------------
# normal start (OTP sup_start_normal)

TREE = """
[supervisors.root]
strategy = "one_for_one"
max_restarts = 3
children = [
  { id = "a", actor = "Worker", key = "a", args = [1, "one"], shutdown = 500 },
  { id = "mid", supervisor = "mid" },
  { id = "b", actor = "Worker", key = "b", kwargs = { colour = "blue" }, shutdown = 500 },
]
[supervisors.mid]
strategy = "one_for_all"
children = [
  { id = "m1", actor = "Worker", key = "m1", shutdown = 500 },
  { id = "m2", actor = "Worker", key = "m2", restart = "transient", shutdown = "brutal_kill" },
]
"""


def test_normal_start_runs_every_child_in_declared_order(tmp_path):
    with actorsys.Node(write(tmp_path, NODE + ACTORS + TREE)) as node:
        client = node.client()
        root, mid = client.supervisor("root"), client.supervisor("mid")
        got = [(c["id"], c["type"], c["status"]) for c in root.which_children()]
        assert got == [("a", "worker", "running"), ("mid", "supervisor", "running"),
                       ("b", "worker", "running")], f"expected root's children running in order: {got}"
        kids = root.which_children()
        assert (kids[0]["actor"], kids[0]["key"], kids[0]["restart"], kids[0]["shutdown"],
                kids[0]["significant"]) == ("Worker", "a", "permanent", 500, False), kids[0]
        assert (kids[1]["shutdown"], kids[1]["restart"]) == ("infinity", "permanent"), \
            f"expected a supervisor child's default shutdown infinity: {kids[1]}"
        got = [(c["id"], c["status"], c["restart"], c["shutdown"]) for c in mid.which_children()]
        assert got == [("m1", "running", "permanent", 500), ("m2", "running", "transient", "brutal_kill")], \
            f"expected mid's children running in order: {got}"
        assert root.count_children() == {"specs": 3, "active": 3, "supervisors": 1, "workers": 2}
        assert mid.count_children() == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}
        # every child got its start arguments in on_start
        a, b = client.ask("Worker", "a", "info"), client.ask("Worker", "b", "info")
        assert (a["starts"], a["args"], a["kwargs"]) == (1, [1, "one"], {}), f"a's on_start: {a}"
        assert (b["starts"], b["args"], b["kwargs"]) == (1, [], {"colour": "blue"}), f"b's on_start: {b}"
        # started depth-first in declared order (the Journal orders by the system-wide clock)
        lines = wait_until(lambda: (lambda ls: ls if len(ls) >= 4 else None)(
            client.ask("Journal", "main", "lines")), "four start lines in the Journal")
        assert lines == ["start a", "start m1", "start m2", "start b"], \
            f"expected children started in declared order, depth first: {lines}"


# ---------------------------------------------------------------------------------------
# failed start (OTP sup_start_fail, sup_start_error_return)

FAILING_TREE = """
[supervisors.root]
children = [
  { id = "a", actor = "Life", key = "a", kwargs = { tag = "sup" }, shutdown = 2000 },
  { id = "mid", supervisor = "mid" },
  { id = "b", actor = "Life", key = "b", kwargs = { tag = "sup" }, shutdown = 2000 },
  FAILING
  { id = "d", actor = "Life", key = "d", kwargs = { tag = "sup" }, shutdown = 2000 },
]
[supervisors.mid]
children = [ { id = "m", actor = "Life", key = "m", kwargs = { tag = "sup" }, shutdown = 2000 } ]
"""
FAILING_CHILD = '{ id = "c", actor = "Life", key = "c", kwargs = { fail_start = true } },'


def test_failed_start_stops_started_children_in_reverse_and_the_node(tmp_path):
    """A child whose on_start raises: the supervisor fails to start, the children started
    before it are stopped in reverse order (each gets on_stop), the later ones never start,
    and Node.start raises NodeUnavailable naming the supervisor and the child."""
    path = write(tmp_path, NODE + ACTORS + FAILING_TREE.replace("FAILING", FAILING_CHILD))
    node = actorsys.Node(path)
    with pytest.raises(actorsys.NodeUnavailable) as info:
        node.start()
    msg = str(info.value)
    assert "status 3" in msg, f"expected the tree's failure status 3 in: {msg}"
    assert "supervisor 'root'" in msg and "child 'c'" in msg, \
        f"expected the failing supervisor and child id named in: {msg}"
    assert "c refuses to start" in msg, f"expected the on_start error in: {msg}"
    assert node.failure is not None and "child 'c'" in node.failure, \
        f"expected Node.failure to say why: {node.failure!r}"
    left = psutil.wait_procs(psutil.Process().children(recursive=True), timeout=5)[1]
    assert not left, f"expected no process left after a failed start: {[p.pid for p in left]}"

    # The history each child committed to its own state survives the node: start a node
    # on the same data without the failing child and read it.
    between = time.monotonic_ns()       # one system-wide clock: orders both runs' entries
    path = write(tmp_path, NODE + ACTORS + FAILING_TREE.replace("FAILING", ""))
    with actorsys.Node(path) as node2:
        client = node2.client()
        lives = {k: client.ask("Life", k, "life") for k in "abcdm"}
        failed_run = {k: [e for e in v if e[1] < between] for k, v in lives.items()}
        for k in "amb":
            kinds = [e[0] for e in failed_run[k]]
            assert kinds == ["start", "stop"], \
                f"expected {k} started then stopped (on_stop) in the failed run, got {lives[k]}"
        stops = sorted((failed_run[k][1][1], k) for k in "amb")
        assert [k for _t, k in stops] == ["b", "m", "a"], \
            f"expected the started children stopped in reverse order (b, mid's m, a): {stops}"
        last_start = max(failed_run[k][0][1] for k in "amb")
        assert all(t > last_start for t, _k in stops), "expected every stop after the last start"
        assert failed_run["d"] == [], f"expected d (after the failing child) never started: {lives['d']}"
        # c is no longer in the tree: a plain actor now, whose failed start committed nothing
        assert [(e[0], e[3]) for e in lives["c"]] == [("start", {})], \
            f"expected c's failed on_start to have committed nothing: {lives['c']}"
        assert [c["id"] for c in client.supervisor("root").which_children()] == ["a", "mid", "b", "d"]


# ---------------------------------------------------------------------------------------
# start_child at run time: a child that fails to start, and an invalid spec

RUNTIME_TREE = """
[supervisors.root]
children = [ { id = "a", actor = "Worker", key = "a", shutdown = 500 } ]
[supervisors.jobs]
strategy = "simple_one_for_one"
children = [ { id = "job", actor = "Worker", args = ["t"], shutdown = 500 } ]
"""


def test_start_child_whose_on_start_raises_is_start_failed_and_not_added(tmp_path):
    with actorsys.Node(write(tmp_path, NODE + ACTORS + RUNTIME_TREE)) as node:
        client = node.client()
        root, jobs = client.supervisor("root"), client.supervisor("jobs")
        before, jobs_before = root.count_children(), jobs.count_children()
        with pytest.raises(actorsys.StartFailed) as info:
            root.start_child({"id": "bad", "actor": "Worker", "key": "bad", "kwargs": {"fail_start": True}})
        assert "bad refuses to start" in str(info.value), f"expected the on_start error in: {info.value}"
        assert root.count_children() == before, \
            f"expected the child not added: {before} -> {root.count_children()}"
        assert [c["id"] for c in root.which_children()] == ["a"], root.which_children()
        # the failed spec is gone (not already_present): the same id starts with a good spec
        info2 = root.start_child({"id": "bad", "actor": "Worker", "key": "bad"})
        assert info2["status"] == "running", f"expected the same id to start afterwards: {info2}"
        assert client.ask("Worker", "bad", "info")["starts"] == 1

        with pytest.raises(actorsys.StartFailed):
            jobs.start_child({"key": "j-bad", "kwargs": {"fail_start": True}})
        assert jobs.count_children() == jobs_before and jobs.which_children() == [], \
            f"expected no simple_one_for_one child added: {jobs.which_children()}"



def test_a_restart_child_that_fails_answers_start_failed_and_leaves_the_child_stopped(tmp_path):
    """OTP ``sup_start_restart_child_returns_error``: the failed start is the answer, and
    the child stays a stopped spec (a later restart_child tries again), not one reported
    as restarting with no restart to come."""
    with actorsys.Node(write(tmp_path, NODE + ACTORS + RUNTIME_TREE)) as node:
        client = node.client()
        root = client.supervisor("root")
        client.ask("Worker", "a", "fail_next_start")
        root.terminate_child("a")
        for attempt in (1, 2):
            with pytest.raises(actorsys.StartFailed) as info:
                root.restart_child("a")
            assert "a refuses to start" in str(info.value), (attempt, str(info.value))
            status = {c["id"]: c["status"] for c in root.which_children()}
            assert status == {"a": "stopped"}, f"after failed restart {attempt}: {status}"

INVALID_START_SPECS = [
    ({"id": "x", "actor": "Worker", "key": "x", "restart": "sometimes"}, "restart", "invalid restart type"),
    ({"id": "x", "actor": "Worker", "key": "x", "shutdown": -5}, "shutdown", "invalid shutdown -5"),
    ({"id": "x", "actor": "Wroker", "key": "x"}, "actor", "unknown actor type 'Wroker'"),
    ({"id": "x", "actor": "Worker", "key": "x", "colour": 1}, "colour", "unknown child key"),
    ({"id": "x", "actor": "Worker"}, "key", "needs a key"),
    ({"actor": "Worker", "key": "x"}, "id", "needs an id"),
    ({"id": "x", "actor": "Worker", "key": "x", "restart": "temporary", "significant": True},
     "significant", "auto_shutdown"),
]


def test_start_child_with_an_invalid_spec_is_a_config_error_naming_the_key(tmp_path):
    with actorsys.Node(write(tmp_path, NODE + ACTORS + RUNTIME_TREE)) as node:
        root = node.client().supervisor("root")
        before = root.which_children()
        for spec, key, fragment in INVALID_START_SPECS:
            with pytest.raises(actorsys.ConfigError) as info:
                root.start_child(spec)
            msg = str(info.value)
            assert f"start_child.{key}" in msg, f"{spec}: expected the key start_child.{key} named in: {msg}"
            assert fragment in msg, f"{spec}: expected {fragment!r} in: {msg}"
            assert root.which_children() == before, f"{spec}: expected nothing added by an invalid spec"
        # the supervisor still works after all that
        assert root.start_child({"id": "x", "actor": "Worker", "key": "x"})["status"] == "running"
