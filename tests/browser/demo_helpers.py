"""Shared by the demos' end-to-end tests: a node for an example, and its HTTP API."""
from __future__ import annotations

import json
import os
import tomllib
import urllib.request
from typing import Any

from helpers import EXAMPLES_DIR

import actorsys


def example_dir(name: str) -> str:
    return os.path.join(EXAMPLES_DIR, name)


def example_config(example: str, tmp_path: Any, **node: Any) -> dict[str, Any]:
    """The example's node.toml as a dict, with its data in tmp_path and a free port;
    ``node`` overrides [node] keys."""
    with open(os.path.join(example, "node.toml"), "rb") as f:
        cfg = tomllib.load(f)
    cfg["node"].update(data_dir=str(tmp_path / "data"), python_path=[example],
                       shutdown_timeout=5.0, start_timeout=30.0, **node)
    cfg["gateway"].update(listen="127.0.0.1:0",
                          static=os.path.join(example, cfg["gateway"]["static"]))
    return cfg


def example_node(example: str, tmp_path: Any, **node: Any) -> actorsys.Node:
    """A (not yet started) Node serving the example."""
    return actorsys.Node(example_config(example, tmp_path, **node))


def post(node: actorsys.Node, path: str, body: Any = None) -> Any:
    """``POST`` to the node's gateway; the JSON answer."""
    req = urllib.request.Request(node.gateway_url + path, method="POST",
                                 data=json.dumps(body).encode() if body is not None else b"",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())
