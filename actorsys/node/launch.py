"""How a node's supervisor process is started, by ``actorsys run`` and by an embedded
:class:`~actorsys.Node` alike.

``python -P -m supervisors.node --config-json ... --layout-json ...``: the node
supervisor is started by module name (this package never imports ``supervisors``), with
``-P`` and this installation's root first on ``PYTHONPATH``, so neither a ``supervisors``
folder in the working directory nor a ``supervisors.py`` beside the config (the config's
folder is on its ``python_path`` by default) can stand in for ours. The config's
``python_path`` follows, for the user's modules.
"""
from __future__ import annotations

import json
import os
import sys

from ..config import NodeConfig
from ..config.layout import NodeLayout

#: where ``actorsys`` and ``supervisors`` are installed side by side (the checkout, or
#: site-packages): actorsys/node/launch.py -> ../../..
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def supervisor_command(cfg: NodeConfig, layout: NodeLayout,
                       *extra: str) -> tuple[list[str], dict[str, str]]:
    """The command line (``extra``: more of the supervisor's options) and the environment
    that start the node supervisor for ``cfg`` laid out as ``layout``."""
    argv = [sys.executable, "-P", "-m", "supervisors.node",
            "--config-json", json.dumps(cfg.to_dict()), "--layout-json", layout.to_json(), *extra]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *cfg.python_path,
                                         *filter(None, [env.get("PYTHONPATH")])])
    return argv, env
