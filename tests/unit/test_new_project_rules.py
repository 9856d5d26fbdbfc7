"""``actorsys new``'s rules, in-process (``actorsys/node/newproject.py``): the names and
destinations it refuses, that it never overwrites and takes back a half-written project,
and that every template file renders to valid Python or TOML. The generated project run
for real (its program and its tests, on real nodes) is ``tests/node/test_new_project.py``."""
from __future__ import annotations

import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

import actorsys
from actorsys.node import newproject
from actorsys.node.newproject import ProjectError, TemplateError, check_name, write_project

@pytest.fixture(autouse=True)
def importable_as_in_a_fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``check_name`` refuses a name already importable, as ``actorsys new`` (a process of
    its own) sees it; other tests in this worker may have put their temporary folders on
    ``sys.path`` and imported modules from them (an embedded node imports its actors'
    classes), so those are hidden here."""
    tmp = tempfile.gettempdir()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.startswith(tmp)])
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(tmp):
            monkeypatch.delitem(sys.modules, name)
    yield


EXPECTED = [".gitignore", "README.md", "demo_app/__init__.py", "demo_app/__main__.py",
            "demo_app/counter.py", "node.toml", "pyproject.toml", "tests/test_counter.py"]


def test_a_project_is_its_template_with_the_name_filled_in(tmp_path: Path) -> None:
    files = write_project("demo_app", tmp_path / "demo_app")
    assert files == EXPECTED
    root = tmp_path / "demo_app"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == EXPECTED
    for rel in files:
        text = (root / rel).read_text()
        assert "{{" not in text and "-tpl" not in text, f"{rel} kept a placeholder"
        if rel.endswith(".py"):
            compile(text, rel, "exec")
        elif rel.endswith(".toml"):
            tomllib.loads(text)
    assert tomllib.loads((root / "node.toml").read_text())["actors"] == {
        "Counter": "demo_app.counter:Counter"}
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] == "demo_app"
    assert project["dependencies"] == [f"actorsys>={actorsys.__version__}"]
    assert "from demo_app.counter import Counter" in (root / "tests/test_counter.py").read_text()


def test_the_default_destination_is_the_name_in_the_current_folder(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_project("shop")
    assert (tmp_path / "shop" / "shop" / "counter.py").is_file()


def test_an_empty_directory_is_filled(tmp_path: Path) -> None:
    write_project("shop", tmp_path)
    assert (tmp_path / "node.toml").is_file()


@pytest.mark.parametrize("name, why", [
    ("Demo", "lowercase Python identifier"), ("my-app", "lowercase Python identifier"),
    ("1app", "lowercase Python identifier"), ("", "lowercase Python identifier"),
    ("_app", "lowercase Python identifier"), ("démo", "lowercase Python identifier"),
    ("class", "Python keyword"), ("tests", "its test folder"),
    ("json", "standard library"), ("pytest", "already importable"),
    ("actorsys", "already importable"),
])
def test_a_name_that_cannot_be_its_package_is_refused(name: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=why):
        write_project(name, tmp_path / "p")
    assert not (tmp_path / "p").exists(), "nothing written"


def test_a_valid_name_passes() -> None:
    for name in ("demo_app", "shop", "app2", "match"):     # (a soft keyword is a fine module name)
        check_name(name)


def test_an_existing_file_or_non_empty_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ProjectError, match="exists and is not empty: nothing written"):
        write_project("shop", tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ProjectError, match="is not a directory"):
        write_project("shop", tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"


def test_a_write_that_fails_midway_takes_back_what_it_made(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # a.txt is written, then a.txt/b.txt cannot be (a.txt is a file): the error is raised
    # and a.txt and the project folder this call made are gone again
    monkeypatch.setattr(newproject, "template_files", lambda: {"a.txt": "x", "a.txt/b.txt": "y"})
    with pytest.raises(OSError):
        write_project("shop", tmp_path / "new" / "shop")
    assert list(tmp_path.iterdir()) == [], "the half-written project and the folders made for it are gone"
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError):
        write_project("shop", tmp_path / "empty")
    assert (tmp_path / "empty").is_dir() and not list((tmp_path / "empty").iterdir()), \
        "a folder that was there before stays, empty as it was"


def test_an_unknown_placeholder_is_a_fault_of_the_template(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(newproject, "template_files", lambda: {"x.txt": "{{nmae}}"})
    with pytest.raises(TemplateError, match="{{nmae}}"):
        write_project("shop", tmp_path / "shop")
    assert not (tmp_path / "shop").exists()


def test_template_paths_lose_their_markers() -> None:
    values = {"name": "shop", "actorsys_version": "1"}
    assert newproject.target_path("{{name}}/counter.py-tpl", values) == "shop/counter.py"
    assert newproject.target_path("dot-gitignore", values) == ".gitignore"
    assert newproject.target_path("tests/dot-keep-tpl", values) == "tests/.keep"
    assert newproject.target_path("README.md", values) == "README.md"
