"""Small helpers shared by the tests (import them: ``from helpers import ...``)."""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable

import actorsys


def slot_of(client: actorsys.Client, type_name: str, key: str) -> int:
    """The worker slot that owns actor ``(type_name, key)``."""
    return client.map.slot_of(type_name, key)


def key_on_slot(client: actorsys.Client, type_name: str, slot: int, prefix: str = "k") -> str:
    """The first key ``prefix-<i>`` of ``type_name`` that lives on worker ``slot``."""
    for i in range(10_000):
        key = f"{prefix}-{i}"
        if slot_of(client, type_name, key) == slot:
            return key
    raise AssertionError(f"no key of {type_name} on slot {slot}")


def workers(node: actorsys.Node) -> dict[int, dict]:
    """slot -> status dict of every worker."""
    return {p["slot"]: p for p in node.status()["processes"] if p["role"] == "worker"}


def supervised_config(config: Callable[..., dict], actors: dict[str, str],
                      supervisors: dict[str, Any], **node: Any) -> dict[str, Any]:
    """The ``config`` fixture's dict plus more actor types and ``[supervisors]`` tables."""
    cfg = config(**node)
    cfg["actors"].update(actors)
    cfg["supervisors"] = supervisors
    return cfg


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until it returns a truthy value (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def kill_worker_of(node: actorsys.Node, client: actorsys.Client, type_name: str, key: str) -> None:
    """kill -9 the worker owning the actor and wait until its slot runs a new process."""
    slot = slot_of(client, type_name, key)
    old = workers(node)[slot]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: workers(node)[slot]["up"] and workers(node)[slot]["pid"] != old,
               f"worker slot {slot} to be restarted after kill -9", timeout=30)


def after_kill(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, again while it races a worker's restart (a call sent as
    the worker died fails with WorkerLost; the next one reaches the new worker)."""
    for _ in range(50):
        try:
            return call(*args, **kwargs)
        except (actorsys.WorkerLost, actorsys.NodeUnavailable, actorsys.AskTimeout):
            time.sleep(0.1)
    raise AssertionError(f"{call} kept failing after the worker was killed")
