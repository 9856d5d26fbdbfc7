"""The users' test kit in-process (no node): function references, the import roots a
test node needs, config overrides, the worker's ``$run`` handler, and that loading the
pytest plugin (or ``import actorsys``) loads next to nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from actorsys.config import NodeConfig, load_config
from actorsys.errors import BadArguments, NotTesting
from actorsys.runtime import testing_asks
from actorsys.testing import inside
from actorsys.testing.factory import import_roots
from actorsys.testing.inside import function_ref


def module_level(self, x):
    return x


def raises_type_error(self):
    raise TypeError("from inside the function")


class Holder:
    @staticmethod
    def nested_name(self):
        return "held"


def test_function_ref_names_module_level_functions_and_refuses_the_rest():
    assert function_ref(module_level) == "test_testing_kit:module_level"
    assert function_ref(Holder.nested_name) == "test_testing_kit:Holder.nested_name"
    assert function_ref("pkg.mod:fn") == "pkg.mod:fn"

    def local(self):
        return None

    for fn, words in [(lambda self: None, "lambda or a nested"), (local, "lambda or a nested"),
                      ("no colon", "module:qualname"), (42, "runs a function")]:
        with pytest.raises(TypeError, match=words):
            function_ref(fn)
    main = types.FunctionType(module_level.__code__, {}, "in_main")
    main.__module__, main.__qualname__ = "__main__", "in_main"
    with pytest.raises(TypeError, match="__main__"):
        function_ref(main)
    renamed = types.FunctionType(module_level.__code__, {}, "renamed")
    renamed.__module__, renamed.__qualname__ = __name__, "not_here"
    with pytest.raises(TypeError, match="does not name"):
        function_ref(renamed)


def test_the_helpers_send_the_asks_the_worker_serves():
    assert (inside.RUN, inside.FIRE_ALARM) == (testing_asks.RUN, testing_asks.FIRE_ALARM)
    assert testing_asks.TESTING_METHODS == {"$run", "$fire_alarm"}


def test_import_roots_are_the_modules_root_and_project_folders_on_sys_path(tmp_path, monkeypatch):
    pkg = tmp_path / "proj" / "tests" / "pkg"
    pkg.mkdir(parents=True)
    site = tmp_path / "proj" / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    mod = types.ModuleType("pkg.test_x")
    mod.__file__ = str(pkg / "test_x.py")
    init = types.ModuleType("pkg")
    init.__file__ = str(pkg / "__init__.py")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "proj" / "tests"), str(site), "",
                                      str(tmp_path / "elsewhere"), str(tmp_path / "proj")])
    (tmp_path / "elsewhere").mkdir()
    top = str(tmp_path / "proj" / "tests")
    assert import_roots(mod, tmp_path / "proj") == [top, str(tmp_path / "proj")], \
        "the module's root first, then sys.path folders inside rootdir, never site-packages"
    assert import_roots(init, None) == [top], "a package's __init__ is one level further down"
    assert import_roots(None, None) == []


def test_load_config_overrides_replace_keys_and_none_removes_one(tmp_path):
    raw = {"node": {"endpoint": f"ipc://{tmp_path}/n.sock", "workers": 3}, "actors": {}}
    cfg = load_config(raw, {"node": {"endpoint": None, "testing": True, "python_path": ["lib"]}})
    assert cfg.endpoint is None and cfg.testing and cfg.workers == 3
    assert raw["node"] == {"endpoint": f"ipc://{tmp_path}/n.sock", "workers": 3}, "the dict is unchanged"
    (tmp_path / "node.toml").write_text('[node]\ndata_dir = "d"\n')
    cfg = load_config(tmp_path / "node.toml", {"node": {"python_path": ["lib"]}, "gateway": {}})
    assert cfg.python_path == [str(tmp_path), str(tmp_path / "lib")] and cfg.gateway is not None, \
        "an override's relative path is relative to the config file, as the file's own"
    assert load_config({}).testing is False, "a node is not for testing unless it says so"
    with pytest.raises(TypeError, match="NodeConfig"):
        load_config(NodeConfig(data_dir="d"), {"node": {"workers": 1}})


def test_the_run_handler_imports_by_name_and_blames_the_caller_for_bad_references():
    run = testing_asks.run_handler([])
    assert run("the actor", "test_testing_kit:module_level", [5]) == 5
    assert run("the actor", "test_testing_kit:module_level", None, {"x": 6}) == 6
    for spec, args, words in [("nosuch.module:fn", [], "cannot import 'nosuch.module:fn'"),
                              ("test_testing_kit:missing", [], "AttributeError"),
                              (b"bytes", [], "module:qualname"),
                              ("test_testing_kit:module_level", [1, 2], "takes 2 positional"),
                              ("test_testing_kit:module_level", "x", "a list of arguments")]:
        with pytest.raises(BadArguments, match=words):
            run("the actor", spec, args)
    with pytest.raises(TypeError, match="from inside"):
        run("the actor", "test_testing_kit:raises_type_error")   # the function's own error
    refused = testing_asks.refusal("$fire_alarm")
    assert isinstance(refused, NotTesting) and "fire_alarms" in str(refused) \
        and "testing = true" in str(refused) and refused.to_wire()["code"] == "not_testing"


PROBE = """
import json, sys
import pytest
before = set(sys.modules)
import {target}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


@pytest.mark.parametrize("target", ["actorsys", "actorsys.testing.plugin"])
def test_loading_the_plugin_or_actorsys_loads_next_to_nothing(target):
    r = subprocess.run([sys.executable, "-c", PROBE.format(target=target)], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(loaded) <= {"actorsys", "actorsys.testing", "actorsys.testing.plugin"}, \
        f"import {target} (into a pytest run) loaded {loaded}"


def test_actorsys_names_load_at_first_use():
    import actorsys

    assert actorsys.Node.__name__ == "Node" and actorsys.errors.NotTesting is NotTesting
    assert {"Actor", "connect", "RemoteError"} <= set(dir(actorsys))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        actorsys.Nope  # noqa: B018
