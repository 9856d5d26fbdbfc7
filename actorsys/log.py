"""Logging for every process of a node: the standard :mod:`logging` module, one logger per
component, one format that names the process.

Layer: the bottom, beside ``errors``; any module may import it.

* A module logs through ``log = get_logger("worker")`` (``actorsys.worker``) or, in
  ``supervisors``, ``logging.getLogger("supervisors.tree")``. Nothing prints.
* :func:`setup` is called once per process when it takes its role (the node supervisor,
  each forked router, worker, tree and gateway). Every record then carries the role,
  the slot (workers) and the pid:
  ``2026-12-06 02:10:00,123 WARNING worker[1] pid=4242 actorsys.worker: ...``
* ``actorsys run --log-level debug --log-json`` (or ``ACTORSYS_LOG_LEVEL`` and
  ``ACTORSYS_LOG_JSON=1`` in the environment, which embedded nodes pass on) sets the
  level and switches to one JSON object per line (python-json-logger), for log
  shippers. Logs go to standard error, as the node's output always has.
* A library user who configures logging themselves keeps their configuration: an
  embedded :class:`~actorsys.Node` does not touch the calling process's logging; only the
  node's own processes call :func:`setup`.
"""
from __future__ import annotations

import logging
import os
import sys

#: environment variables a node's processes read (and an embedded node passes on)
LEVEL_ENV, JSON_ENV = "ACTORSYS_LOG_LEVEL", "ACTORSYS_LOG_JSON"
DEFAULT_LEVEL = "INFO"
LEVELS = ("debug", "info", "warning", "error", "critical")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(role)s pid=%(process)d %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(role)s %(slot)s %(process)d %(name)s %(message)s"


class _RoleFilter(logging.Filter):
    """Stamps every record with the process's role and slot (``worker[1]``)."""

    def __init__(self, role: str, slot: int | None) -> None:
        super().__init__()
        self.role = role if slot is None else f"{role}[{slot}]"
        self.slot = slot

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        record.slot = self.slot
        return True


def get_logger(component: str) -> logging.Logger:
    """The logger of one component of ``actorsys`` (``"worker"`` -> ``actorsys.worker``)."""
    return logging.getLogger(f"actorsys.{component}")


def setup(role: str, slot: int | None = None, *, level: str | None = None,
          json: bool | None = None) -> None:
    """Configure this process's logging for its role in the node (replaces any earlier
    set-up, so a forked child names itself). ``level`` and ``json`` default to the
    environment (:data:`LEVEL_ENV`, :data:`JSON_ENV`)."""
    level = (level or os.environ.get(LEVEL_ENV) or DEFAULT_LEVEL).upper()
    if json is None:
        json = os.environ.get(JSON_ENV, "") not in ("", "0", "false", "no")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RoleFilter(role, slot))
    if json:
        from pythonjsonlogger.json import JsonFormatter
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level",
                                                                       "process": "pid",
                                                                       "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    for name in ("actorsys", "supervisors"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def export(level: str | None, json: bool) -> None:
    """Put the chosen level and format in the environment, for the processes this one
    starts (``actorsys run`` before it becomes the node supervisor)."""
    if level:
        os.environ[LEVEL_ENV] = level.upper()
    if json:
        os.environ[JSON_ENV] = "1"
