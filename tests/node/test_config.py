"""Config errors name the file, the line and the key; bad configs never start processes."""
from __future__ import annotations

import os
import textwrap

import pytest

import actorsys
from helpers import ACTORS_DIR, ROOT

GOOD_NODE = f"""\
[node]
data_dir = "data"
workers = 2
python_path = ["{ACTORS_DIR}"]
"""
GOOD_ACTORS = """\
[actors]
Counter = "actors:Counter"
"""

# (id, file text, expected line, expected key, a fragment of the problem)
BAD_FILES = [
    ("invalid TOML", GOOD_NODE + "shards = \n" + GOOD_ACTORS, 5, None, "invalid TOML"),
    ("unclosed table header", "[node\nworkers = 2\n", 1, None, "invalid TOML"),
    ("unknown node key", GOOD_NODE + "wrokers = 3\n" + GOOD_ACTORS, 5, "node.wrokers", "unknown key"),
    ("workers not an integer", '[node]\ndata_dir = "d"\nworkers = "two"\n', 3, "node.workers", "integer"),
    ("workers a float", '[node]\n\nworkers = 2.0\n', 3, "node.workers", "integer"),
    ("workers out of range", '[node]\nworkers = 0\n', 2, "node.workers", "between 1 and 255"),
    ("bool for a number", '[node]\nask_timeout = true\n', 2, "node.ask_timeout", "number"),
    ("negative timeout", '[node]\nidle_timeout = -1\n', 2, "node.idle_timeout", "positive"),
    ("python_path not a list", '[node]\npython_path = "x"\n', 2, "node.python_path", "list of strings"),
    ("bad durability", GOOD_NODE + 'durability = "sometimes"\n', 5, "node.durability", "sometimes"),
    ("unknown top-level section", GOOD_NODE + GOOD_ACTORS + "\n[nodes]\nworkers = 2\n", 8, "nodes",
     "unknown section"),
    ("unknown top-level key", 'workers = 2\n' + GOOD_NODE, 1, "workers", "unknown section"),
    ("actor spec without a colon", GOOD_NODE + '[actors]\nCounter = "actors.Counter"\n', 6, "actors.Counter",
     "module:Class"),
    ("actor spec not a string", GOOD_NODE + '[actors]\nLog = "actors:Log"\n"Counter" = 3\n', 7,
     "actors.Counter", "module:Class"),
    ("bad actor type name", GOOD_NODE + '[actors]\n"no spaces" = "actors:Counter"\n', 6, "actors.no spaces",
     "type names"),
    ("tcp endpoint without insecure", GOOD_NODE + 'endpoint = "tcp://127.0.0.1:5555"\n' + GOOD_ACTORS, 5,
     "node.endpoint", "insecure = true"),
    ("endpoint with an unknown scheme", '[node]\nendpoint = "http://x"\n', 2, "node.endpoint", "ipc:// or tcp://"),
    ("ipc path too long", '[node]\nendpoint = "ipc:///' + "d" * 100 + '/r.sock"\n', 2, "node.endpoint",
     "too long"),
]


def write(tmp_path, text: str):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_a_good_config_file_loads(tmp_path):
    cfg = actorsys.load_config(write(tmp_path, GOOD_NODE + GOOD_ACTORS))
    assert cfg.workers == 2 and cfg.actors == {"Counter": "actors:Counter"}
    assert cfg.data_dir == str(tmp_path / "data"), "expected data_dir relative to the config file"


@pytest.mark.parametrize("text,line,key,fragment", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_config_file_names_file_line_and_key(tmp_path, text, line, key, fragment):
    path = write(tmp_path, text)
    with pytest.raises(actorsys.ConfigError) as info:
        actorsys.load_config(path)
    err = info.value
    msg = str(err)
    assert str(path) in msg, f"expected the file named in: {msg}"
    assert f"line {line}" in msg and err.line == line, f"expected line {line} named in: {msg}"
    if key is not None:
        assert f"key '{key}'" in msg and err.key == key, f"expected key {key!r} named in: {msg}"
    assert fragment in msg, f"expected {fragment!r} in: {msg}"


@pytest.mark.parametrize("spec,fragment", [
    ("no_such_module_xyz:Counter", "No module named 'no_such_module_xyz'"),
    ("actors:NoSuchClass", "NoSuchClass"),
    ("os:getcwd", "not a subclass of actorsys.Actor"),
])
def test_actor_class_that_cannot_be_imported_names_the_type(tmp_path, spec, fragment):
    path = write(tmp_path, GOOD_NODE + f'[actors]\nLog = "actors:Log"\nBroken = "{spec}"\n')
    with pytest.raises(actorsys.ConfigError) as info:
        actorsys.Node(path)
    msg = str(info.value)
    assert str(path) in msg and "line 7" in msg, f"expected file and line in: {msg}"
    assert "key 'actors.Broken'" in msg, f"expected the actor type named in: {msg}"
    assert spec in msg and fragment in msg, f"expected the spec and the cause in: {msg}"


def test_unreadable_config_file_is_a_config_error(tmp_path):
    with pytest.raises(actorsys.ConfigError, match="cannot read config file") as info:
        actorsys.load_config(tmp_path / "missing.toml")
    assert str(tmp_path / "missing.toml") in str(info.value)


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "node.toml"
    path.write_bytes(b"[node]\nworkers = 2\n# \xff\xfe\n")
    with pytest.raises(actorsys.ConfigError, match="not UTF-8") as info:
        actorsys.load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("config,key,fragment", [
    ({"node": {"workers": "two"}}, "node.workers", "integer"),
    ({"node": {"wrokers": 2}}, "node.wrokers", "unknown key"),
    ({"node": {"durability": "eventually"}}, "node.durability", "eventually"),
    ({"nodes": {}}, "nodes", "unknown section"),
    ({"node": []}, "node", "must be a table"),
    ({"actors": {"Counter": "actors.Counter"}}, "actors.Counter", "module:Class"),
    ({"actors": ["actors:Counter"]}, "actors", "must be a table"),
    ({"node": {"endpoint": "tcp://127.0.0.1:1"}}, "node.endpoint", "insecure"),
])
def test_bad_config_dict_names_the_key(config, key, fragment):
    with pytest.raises(actorsys.ConfigError) as info:
        actorsys.load_config(config)
    msg = str(info.value)
    assert msg.startswith("<config dict>"), f"expected the source named as a config dict: {msg}"
    assert f"key '{key}'" in msg and info.value.key == key, f"expected key {key!r} named in: {msg}"
    assert fragment in msg, f"expected {fragment!r} in: {msg}"


def test_config_dict_with_unimportable_actor_class_names_the_type(config):
    cfg = config()
    cfg["actors"]["Ghost"] = "actors:Ghost"
    with pytest.raises(actorsys.ConfigError, match="key 'actors.Ghost'.*actors:Ghost"):
        actorsys.Node(cfg)


def test_tcp_endpoint_with_insecure_true_is_accepted(tmp_path):
    cfg = actorsys.load_config(write(tmp_path, textwrap.dedent("""\
        [node]
        endpoint = "tcp://127.0.0.1:5555"
        insecure = true
        """)))
    assert cfg.endpoint == "tcp://127.0.0.1:5555" and cfg.insecure is True


def test_the_example_node_config_is_valid_and_its_actor_classes_load():
    from actorsys.actor.classes import check_actor_classes
    from actorsys.config import load_config

    path = os.path.join(ROOT, "examples", "node.toml")
    cfg = load_config(path)
    assert cfg.workers == 2 and set(cfg.actors) == {"Counter"}
    assert cfg.data_dir == os.path.join(os.path.dirname(path), "data")
    assert set(check_actor_classes(cfg)) == {"Counter"}


def test_a_class_the_node_cannot_import_stops_the_start_with_its_name(tmp_path, monkeypatch, capfd):
    """Importable in the calling process (its own sys.path), not in the node's processes:
    the node supervisor refuses to start, naming the class, instead of crash-looping workers."""
    (tmp_path / "only_here.py").write_text(
        "import actorsys\nclass Here(actorsys.Actor):\n    def ping(self):\n        return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = {"node": {"data_dir": str(tmp_path / "data"), "start_timeout": 30.0},
           "actors": {"Here": "only_here:Here"}}
    with pytest.raises(actorsys.NodeUnavailable, match="status 2"):
        with actorsys.Node(cfg):
            pass
    err = capfd.readouterr().err
    assert "cannot load actor class 'only_here:Here'" in err, err
    assert "restarted" not in err, f"expected no worker started (and crash-looping): {err}"
