"""actorsys.log: one format naming the process (role, slot, pid), JSON on request, set
from the environment a node's processes inherit (in-process, no node)."""
from __future__ import annotations

import json
import logging
import os
import re

import pytest

from actorsys import log as logs


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch):
    """Each test leaves the process's logging and environment as it found them."""
    for name in (logs.LEVEL_ENV, logs.JSON_ENV):
        monkeypatch.setenv(name, "")       # (recorded first: restored last, whatever happens)
        monkeypatch.delenv(name)
    saved = {}
    for name in ("actorsys", "supervisors"):
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.level, lg.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_text_lines_name_role_slot_and_pid(capsys):
    logs.setup("worker", 3)
    logs.get_logger("worker").warning("slot %d is busy", 3)
    logging.getLogger("supervisors.tree").info("and the tree says so")
    out = lines(capsys)
    assert len(out) == 2, out
    pid = os.getpid()
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} WARNING worker\[3\] pid={pid} "
                        r"actorsys\.worker: slot 3 is busy", out[0]), out[0]
    assert f" INFO worker[3] pid={pid} supervisors.tree: and the tree says so" in out[1], out[1]


def test_json_lines_are_one_object_each(capsys):
    logs.setup("gateway", json=True)
    logs.get_logger("gateway").error("no answer from %s", "the router")
    try:
        raise ValueError("boom")
    except ValueError:
        logs.get_logger("gateway").exception("it broke")
    out = lines(capsys)
    assert len(out) == 2, f"one line per record, tracebacks included: {out}"
    first, second = (json.loads(line) for line in out)
    assert {k: first[k] for k in ("role", "slot", "pid", "level", "logger", "message")} == {
        "role": "gateway", "slot": None, "pid": os.getpid(), "level": "ERROR",
        "logger": "actorsys.gateway", "message": "no answer from the router"}, first
    assert "ValueError: boom" in second["exc_info"], second


def test_level_and_format_come_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv(logs.LEVEL_ENV, "WARNING")
    monkeypatch.setenv(logs.JSON_ENV, "1")
    logs.setup("router")
    log = logs.get_logger("router")
    log.info("not shown")
    log.warning("shown")
    out = lines(capsys)
    assert [json.loads(line)["message"] for line in out] == ["shown"], out


def test_setup_again_replaces_the_handler(capsys):
    logs.setup("supervisor")
    logs.setup("worker", 0)          # a forked child names itself
    logs.get_logger("worker").warning("once")
    out = lines(capsys)
    assert len(out) == 1 and "worker[0]" in out[0], out


def test_export_passes_the_choice_to_child_processes(monkeypatch):
    logs.export("debug", True)
    assert (os.environ[logs.LEVEL_ENV], os.environ[logs.JSON_ENV]) == ("DEBUG", "1")
    monkeypatch.delenv(logs.LEVEL_ENV)
    monkeypatch.delenv(logs.JSON_ENV)
    logs.export(None, False)
    assert logs.LEVEL_ENV not in os.environ and logs.JSON_ENV not in os.environ, \
        "nothing chosen: the children keep the defaults (or what the environment says)"
