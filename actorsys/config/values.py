"""Values inside a config: checking a value against its :class:`~.defaults.Kind`, sizes
such as ``"512MiB"``, and the shape of ``"module:name"`` (imported by
:func:`.node.import_object`)."""
from __future__ import annotations

import re
from typing import Any

from .defaults import Kind

#: ``backoff``, ``alarm_retry`` and ``auto_response``: the table each must be (in the
#: error when it is not)
TABLE_SHAPES = {"backoff": "{ initial = SECONDS, max = SECONDS, jitter = FRACTION }",
                "alarm_retry": "{ initial = SECONDS, max = SECONDS, attempts = N }",
                "auto_response": "{ request = TEXT, response = TEXT }"}


def kind_problem(kind: Kind, key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for a key of ``kind`` (None: nothing). Booleans are
    not numbers here, although Python counts them as ints."""
    if kind is Kind.INT and type(value) is not int:
        return f"must be an integer, got {value!r}"
    if kind is Kind.NUMBER and type(value) not in (int, float):
        return f"must be a number, got {value!r}"
    if kind is Kind.STR and not isinstance(value, str):
        return f"must be a string, got {value!r}"
    if kind is Kind.BOOL and not isinstance(value, bool):
        return f"must be true or false, got {value!r}"
    if kind is Kind.STRINGS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return "must be a list of strings"
    if kind is Kind.SIZE and type(value) not in (int, str):
        return f"must be a size in bytes or a string such as \"512MB\", got {value!r}"
    if kind is Kind.TABLE and not isinstance(value, dict):
        return f"must be a table {TABLE_SHAPES.get(key, '')}".rstrip()
    return None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_size(value: "int | str") -> int:
    """Bytes from an int or a string such as ``"512MB"`` / ``"2GiB"``; 0 means no limit."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be 0 (no limit) or a positive number of bytes")
        return value
    m = _SIZE.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"must be a size such as \"512MB\" or \"2GiB\", got {value!r:.80}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


#: ``"module:name"`` (an actor class, a function)
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
