"""The public names are what a type checker is told they are.

``actorsys`` and ``actorsys.testing`` load their names at first use (PEP 562), from a
table of homes, while mypy reads the imports of their ``if TYPE_CHECKING:`` block. Two
lists of the same names: this test holds them equal, name for name and object for
object, so the types a user's checker sees are those of what ``actorsys.X`` gives at
run time. (That every public function is annotated is mypy's, not this test's: the
project's mypy config is ``strict``, whose ``disallow_untyped_defs`` covers every
function of ``actorsys``, and ``py.typed`` ships it: ``tests/unit/test_packaging.py``.)
"""
from __future__ import annotations

import ast
import importlib
import inspect
from types import ModuleType

import pytest

import actorsys
import actorsys.testing


def type_checking_imports(module: ModuleType) -> dict[str, object]:
    """name -> the object that ``module``'s ``if TYPE_CHECKING:`` block imports under it."""
    tree = ast.parse(inspect.getsource(module))
    out: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.unparse(imp)
                home = importlib.import_module("." * imp.level + (imp.module or ""), module.__name__)
                for alias in imp.names:
                    out[alias.asname or alias.name] = getattr(home, alias.name)
    return out


@pytest.mark.parametrize("module", [actorsys, actorsys.testing], ids=lambda m: m.__name__)
def test_each_public_name_is_the_object_its_type_comes_from(module: ModuleType) -> None:
    typed = type_checking_imports(module)
    assert sorted(typed) == sorted(module.__all__), \
        "__all__ and the TYPE_CHECKING imports list different names"
    wrong = {name: (getattr(module, name), typed[name]) for name in module.__all__
             if getattr(module, name) is not typed[name]}
    assert not wrong, f"names whose run-time object is not the one typed: {wrong}"
    assert set(module.__all__) <= set(dir(module))



def test_every_error_is_importable_from_actorsys() -> None:
    """docs/reference/errors.md: each error a client or an actor sees is also importable
    from ``actorsys``."""
    import actorsys.errors as errors
    missing = [name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, errors.ActorError)
               and name not in actorsys.__all__]
    assert not missing, f"errors not exported from actorsys: {missing}"
