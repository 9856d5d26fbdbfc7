"""What an installed actorsys holds, as setuptools builds it from ``pyproject.toml``: the
``py.typed`` marker (PEP 561: users' type checkers read our annotations), the package
data (the dashboard's page, ``actorsys new``'s project template), the ``actorsys``
command and the pytest plugin's entry point; and a project written from the built copy
is the one written from this tree.

Built with setuptools' ``build_py`` (what ``bdist_wheel`` runs to lay out a wheel's
files) on a copy of the tree in a temp dir, in about a second: no ``pip wheel`` (which
fetches setuptools into an isolated environment: the network) and no build artefacts in
the checkout."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_built_package_ships_its_types_data_and_entry_points(tmp_path: Path) -> None:
    src, lib = tmp_path / "src", tmp_path / "lib"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "data")
    for top in ("actorsys", "supervisors"):
        shutil.copytree(ROOT / top, src / top, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q",
                        "build_py", "--build-lib", str(lib)],
                       cwd=src, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"build_py failed:\n{r.stdout}\n{r.stderr}"
    assert "Package would be ignored" not in r.stderr, f"setuptools warned:\n{r.stderr}"

    built = {str(p.relative_to(lib)) for p in lib.rglob("*") if p.is_file()}
    assert "actorsys/py.typed" in built and "actorsys/gateway/dashboard.html" in built
    template = ROOT / "actorsys" / "templates" / "project"
    shipped = {str(p.relative_to(ROOT)) for p in template.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert shipped and shipped <= built, f"template files missing: {sorted(shipped - built)}"
    modules = {str(p.relative_to(ROOT)) for top in ("actorsys", "supervisors")
               for p in (ROOT / top).rglob("*.py")}
    assert modules <= built, f"modules missing: {sorted(modules - built)}"

    points = configparser.ConfigParser()
    points.read(src / "actorsys.egg-info" / "entry_points.txt")
    assert points["console_scripts"]["actorsys"] == "actorsys.node.cli:main"
    assert points["pytest11"]["actorsys.testing.plugin"] == "actorsys.testing.plugin"

    # the built copy writes the project this tree writes (the template read as package data)
    for where, path in (("built", lib), ("tree", ROOT)):
        r = subprocess.run([sys.executable, "-c", "import sys; from actorsys.node import newproject; "
                            "newproject.write_project('shop', sys.argv[1]); print(newproject.__file__)",
                            str(tmp_path / where)],
                           cwd=tmp_path, env={"PYTHONPATH": str(path), "PATH": ""}, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(str(path) + "/"), f"the {where} copy was not the one imported: {r.stdout}"
    trees = [{str(p.relative_to(tmp_path / w)): p.read_text() for p in (tmp_path / w).rglob("*")
              if p.is_file()} for w in ("built", "tree")]
    assert trees[0] == trees[1] and "shop/counter.py" in trees[0]
