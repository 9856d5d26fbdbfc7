"""Nodes for a test: what the ``actorsys_node`` fixture (:mod:`.plugin`) gives a test.

``actorsys_node(config, **node) -> Node``: a :class:`NodeFactory` called with a config (a
TOML path or a dict, as :class:`~actorsys.Node` takes) and ``[node]`` keys to override.
Each node it makes is isolated, the way a Durable Objects test gets storage of its own:

* a fresh data directory under the test's temporary folder (``node-1``, ``node-2``, ...)
  unless ``data_dir`` is given (a test that restarts a node on the same data passes the
  first one's ``node.config.data_dir``);
* a private ipc endpoint (the config's ``endpoint`` is dropped unless ``endpoint`` is
  given), and free ports for the gateway's ``listen`` and the ``metrics`` listener (the
  host is kept; ``node.gateway_url`` says where);
* ``testing = true`` (unless given), so :func:`~.inside.run_in_actor` and
  :func:`~.inside.fire_alarms` work: see ``actorsys/runtime/testing_asks.py`` for why no
  other node serves them;
* the test's import roots appended to its ``python_path``, so the node's workers can
  import the functions ``run_in_actor`` names from the test module
  (:func:`import_roots`).

The node is started (``start=False``: made, not started; the factory still stops it).
At the end (:meth:`NodeFactory.close`, the fixture's teardown) every node is stopped,
newest first, and every process it ran must be gone: those whose command line names its
data directory (the supervisor and what it forked, wherever they were reparented) and
whatever ran below its supervisor at that moment (what an actor started). One still
running 10 s (``exit_grace``) after the stop is killed and named in an ``AssertionError``: a leak is a
failed test, not a slow machine later.

A factory is also a context manager, for fixtures of a wider scope::

    @pytest.fixture(scope="module")
    def shop(tmp_path_factory):
        with NodeFactory(tmp_path_factory.mktemp("shop")) as make:
            yield make("shop.toml")
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import psutil

from actorsys.config import load_config
from actorsys.config.source import Source
from actorsys.errors import ActorError
from actorsys.node import Node

#: seconds a stopped node's processes have to be gone before they count as left behind
EXIT_GRACE = 10.0


class NodeFactory:
    """Makes isolated nodes for a test and stops them at the end (see the module
    docstring). ``root``: the folder their data directories go in (made if missing);
    ``python_path``: folders added to every node's ``python_path``; ``exit_grace``:
    seconds a stopped node's processes have to be gone."""

    def __init__(self, root: "str | os.PathLike[str]", python_path: Iterable[str] = (),
                 exit_grace: float = EXIT_GRACE) -> None:
        self.root = Path(root)
        self.python_path = list(python_path)
        self.exit_grace = exit_grace
        #: every node made, oldest first
        self.nodes: list[Node] = []

    def __call__(self, config: "str | os.PathLike[str] | dict[str, Any]", /, *, start: bool = True,
                 **node: Any) -> Node:
        """A node for ``config`` with ``node`` overriding its ``[node]`` keys, started
        (unless ``start=False``) and stopped at the end of the test."""
        if not isinstance(config, (str, os.PathLike, dict)):
            raise TypeError(f"actorsys_node takes a config file's path or a config dict, "
                            f"got {type(config).__name__}")
        src = Source.of_dict(config) if isinstance(config, dict) else Source.read(config)
        raw = src.raw if isinstance(src.raw, dict) else {}
        mine = raw.get("node")
        mine = mine if isinstance(mine, dict) else {}
        overrides: dict[str, dict[str, Any]] = {"node": self._node_keys(mine, node)}
        gateway = raw.get("gateway")
        if isinstance(gateway, dict):
            overrides["gateway"] = {"listen": _free_port(gateway.get("listen", "127.0.0.1:8080"))}
        made = Node(load_config(config, overrides))
        self.nodes.append(made)
        if start:
            made.start()
        return made

    def _node_keys(self, mine: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        """The ``[node]`` overrides: what the test gave, over the isolation's defaults."""
        keys: dict[str, Any] = {"testing": True, "endpoint": None}
        if isinstance(mine.get("metrics"), str):
            keys["metrics"] = _free_port(mine["metrics"])
        if "data_dir" not in given:
            self.root.mkdir(parents=True, exist_ok=True)
            keys["data_dir"] = str(self.root / f"node-{len(self.nodes) + 1}")
        path = given.get("python_path", mine.get("python_path", []))
        if isinstance(path, list):
            keys["python_path"] = [*path, *(p for p in self.python_path if p not in path)]
        keys.update(given)
        return keys

    def close(self) -> None:
        """Stop every node, newest first; AssertionError naming the processes of a node
        that outlived its stop (they are killed)."""
        left: list[str] = []
        failed: list[str] = []
        for node in reversed(self.nodes):
            procs = processes_of(node)
            try:
                node.stop()
            except (ActorError, OSError) as exc:
                failed.append(f"{node.config.data_dir}: {type(exc).__name__}: {exc}")
            procs |= processes_of(node)       # (any the stop itself could still see)
            for p in psutil.wait_procs(list(procs), timeout=self.exit_grace)[1]:
                left.append(f"pid {p.pid} ({_cmd(p)}) of the node at {node.config.data_dir}")
                try:
                    p.kill()
                except psutil.Error:
                    pass
        self.nodes = []
        if left or failed:
            raise AssertionError("actorsys_node: " + "; ".join(
                [*(f"a node's stop failed: {f}" for f in failed),
                 *(f"{what} was still running {self.exit_grace:g} s after its node stopped "
                   f"(killed)" for what in left)]))

    def __enter__(self) -> "NodeFactory":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def processes_of(node: Node) -> set[psutil.Process]:
    """The live processes of ``node``: every one whose command line carries its config
    (the supervisor and the processes it forked: router, workers, tree, gateway), and
    every descendant of its supervisor (what its actors may have started)."""
    mark = '"data_dir": ' + json.dumps(node.config.data_dir)    # (as in its --config-json)
    found: set[psutil.Process] = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
            if "--config-json" in cmd and any(mark in arg for arg in cmd) and p.pid != os.getpid():
                found.add(p)
        except psutil.Error:
            continue
    if node.pid is not None:
        try:
            sup = psutil.Process(node.pid)
            found |= {sup, *sup.children(recursive=True)}
        except psutil.Error:
            pass
    return {p for p in found if _alive(p)}


def import_roots(module: ModuleType | None, rootdir: "str | os.PathLike[str] | None") -> list[str]:
    """The folders a node needs on its ``python_path`` to import what a test module
    imports: the folder the module itself is imported from (its file's folder, up one per
    dot in its name), then the folders of ``sys.path`` inside ``rootdir`` (pytest's
    rootdir: the conftest folders pytest put there), but no installed packages."""
    roots: list[str] = []
    file = getattr(module, "__file__", None)
    if module is not None and file:
        base = os.path.dirname(os.path.abspath(file))
        levels = module.__name__.count(".") + (os.path.basename(file) == "__init__.py")
        for _ in range(levels):
            base = os.path.dirname(base)
        roots.append(base)
    if rootdir is not None:
        top = os.path.realpath(rootdir)
        installed = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        for entry in sys.path:
            if not entry or not os.path.isdir(entry):
                continue
            real = os.path.realpath(entry)
            if (real == top or real.startswith(top + os.sep)) and not any(
                    real.startswith(i + os.sep) for i in installed) and \
                    "site-packages" not in real and "dist-packages" not in real:
                roots.append(os.path.abspath(entry))
    out: list[str] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def _free_port(listen: Any) -> Any:
    """``HOST:PORT`` with port 0 (a free one), the host kept."""
    if not isinstance(listen, str) or ":" not in listen:
        return listen            # (the config's own check names what is wrong)
    return listen.rsplit(":", 1)[0] + ":0"


def _alive(p: psutil.Process) -> bool:
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())[:200]
    except psutil.Error:
        return "?"
