"""Layer: config. The node's TOML file, validated into typed records with one defaults
table, the supervision specs it declares, and where a started node's processes listen.

May import: ``actorsys.errors``, ``actorsys.log``, ``actorsys.protocol``. Imported by
every layer above (net, client, actor, storage, runtime, gateway, node) and by
``supervisors``.

* :mod:`.defaults`: every key with its kind and default (the one table).
* :mod:`.node`: :class:`NodeConfig`, :func:`load_config`, :func:`import_object`;
  :mod:`.gateway` checks the ``[gateway]`` table, :mod:`.values` single values (sizes),
  :mod:`.source` reads the file and says where a key is (errors name file, line, key).
* :mod:`.supervision`: OTP supervisor and child specs (strategies, restart types,
  intensity, shutdown, backoff) parsed from ``[supervisors.*]``.
* :mod:`.layout`: :class:`NodeLayout`, the endpoints of a started node's processes,
  computed once when it starts.
* :mod:`.keyfiles`: reading CURVE key files, so a bad one is a config error.
* :mod:`.target`: where a client finds a node from its config (its endpoint, or the one
  the running node recorded; its keys): ``actorsys COMMAND --config`` and
  ``connect(config=...)``.
"""
from .defaults import ALARM_RETRY, DURABILITY, ON_ERROR
from .layout import NodeLayout
from ..errors import ConfigError
from .node import NodeConfig, import_function, import_object, load_config
from .source import line_of
from .values import parse_size

__all__ = ["ALARM_RETRY", "ConfigError", "DURABILITY", "ON_ERROR", "NodeConfig", "NodeLayout",
           "import_function", "import_object", "line_of", "load_config", "parse_size"]
