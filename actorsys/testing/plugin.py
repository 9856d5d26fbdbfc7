"""actorsys's pytest plugin: the ``actorsys_node`` fixture.

Registered through the ``pytest11`` entry point, so installing actorsys is enough; before
that (a checkout), ``pytest -p actorsys.testing.plugin`` or ``pytest_plugins =
["actorsys.testing.plugin"]`` in a conftest. The entry point's name is the module's own,
``actorsys.testing.plugin``, so those two still work once it is installed (pytest
refuses one module registered under two names); ``-p no:actorsys.testing.plugin`` turns
it off.

``actorsys_node(config, **node) -> Node`` starts an isolated node for the test (a fresh
data directory, a private endpoint, free ports, ``testing = true``, the test's folder
on its ``python_path``) and stops it at the end, failing the test if a process of it is
left: :class:`~.factory.NodeFactory`. What a test then does with it (``run_in_actor``,
``fire_alarms``, ``kill_worker``, ``ws_connect``) is in :mod:`actorsys.testing`.

Light to load: pytest loads this module into every run once actorsys is installed, so
it imports only pytest and the standard library here (``import actorsys`` itself loads
nothing, see ``actorsys/__init__.py``); the node, the clients and ZeroMQ are imported
when a test first asks for the fixture.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from .factory import NodeFactory


@pytest.fixture
def actorsys_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NodeFactory]:
    """A factory of isolated nodes: ``actorsys_node(config_dict_or_path, **node_overrides)
    -> Node``, started under the test's ``tmp_path``; every node it made is stopped at
    the end of the test, and a process of one still running then fails it (see
    :mod:`actorsys.testing.factory`)."""
    from .factory import NodeFactory, import_roots
    from .wsclient import close_all

    try:
        module = request.module
    except AttributeError:          # (an item that is no Python test function)
        module = None
    factory = NodeFactory(tmp_path / "actorsys", import_roots(module, request.config.rootpath))
    try:
        yield factory
    finally:
        close_all()
        factory.close()
