"""Layer: config. The node's TOML file, validated into typed records with one defaults
table, and the supervision specs it declares.

May import: ``actorsys.errors``. Imported by every layer above (net, client, actor,
storage, runtime, gateway, node) and by ``supervisors``.

* :mod:`.node`: :class:`NodeConfig`, :func:`load_config` (errors name file, line, key).
* :mod:`.supervision`: OTP supervisor and child specs (strategies, restart types,
  intensity, shutdown, backoff) parsed from ``[supervisors.*]``.
* :mod:`.keyfiles`: reading CURVE key files, so a bad one is a config error.
"""
from .node import (ALARM_RETRY, DURABILITY, ON_ERROR, NodeConfig, import_function, import_object,
                   line_of, load_config, parse_size)

__all__ = ["ALARM_RETRY", "DURABILITY", "ON_ERROR", "NodeConfig", "import_function",
           "import_object", "line_of", "load_config", "parse_size"]
