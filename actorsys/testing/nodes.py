"""A node for a test or a harness, and helpers that read or poke a running one.

:func:`node_config` is the config dict every test and harness starts from (two workers,
short shutdown and start deadlines). The rest answer the questions end-to-end tests keep
asking: which worker owns an actor (:func:`slot_of`, :func:`key_on_slot`), which process
is which (:func:`workers`, :func:`worker_pids`, :func:`role_pid`, :func:`identities`), a
condition awaited with a deadline instead of a sleep (:func:`wait_until`), a worker killed
and back (:func:`kill_worker_of`, :func:`after_kill`).
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psutil

from actorsys.client import Client
from actorsys.errors import AskTimeout, NodeUnavailable, WorkerLost
from actorsys.node import Node


def node_config(data_dir: str, actors: Mapping[str, Any], *, python_path: Iterable[str] = (),
                **node: Any) -> dict[str, Any]:
    """A node config dict: ``actors`` registered, ``python_path`` (if any) given to the
    node's processes, two workers and short deadlines; ``node`` overrides ``[node]`` keys."""
    settings: dict[str, Any] = {"data_dir": data_dir, "workers": 2}
    path = list(python_path)
    if path:
        settings["python_path"] = path
    settings.update(shutdown_timeout=5.0, start_timeout=30.0)
    settings.update(node)
    return {"node": settings, "actors": dict(actors)}


def supervised_config(config: Callable[..., dict[str, Any]], actors: Mapping[str, str],
                      supervisors: dict[str, Any], **node: Any) -> dict[str, Any]:
    """``config(**node)`` (a config factory, such as the tests' fixture) plus more actor
    types and ``[supervisors]`` tables."""
    cfg = config(**node)
    cfg["actors"].update(actors)
    cfg["supervisors"] = supervisors
    return cfg


# -- which worker owns what ----------------------------------------------------------------


def slot_of(client: Client, type_name: str, key: str) -> int:
    """The worker slot that owns actor ``(type_name, key)``."""
    slot: int = client.map.slot_of(type_name, key)
    return slot


def key_on_slot(client: Client, type_name: str, slot: int, prefix: str = "k",
                tries: int = 10_000) -> str:
    """The first key ``<prefix>-<i>`` (i < ``tries``) of ``type_name`` that lives on
    worker ``slot``."""
    for i in range(tries):
        key = f"{prefix}-{i}"
        if slot_of(client, type_name, key) == slot:
            return key
    raise AssertionError(f"no key of {type_name} on slot {slot}")


# -- the node's processes, from its status -------------------------------------------------


def workers(node: Node) -> dict[int, dict[str, Any]]:
    """slot -> status dict of every worker."""
    return {p["slot"]: p for p in node.status()["processes"] if p["role"] == "worker"}


def worker_pids(node: Node) -> dict[int, int]:
    """slot -> pid of every live worker."""
    return {p["slot"]: p["pid"] for p in node.status()["processes"] if p["role"] == "worker" and p["up"]}


def role_pid(node: Node, role: str) -> int:
    """The pid of the node's process in ``role`` ("router", "gateway", ...)."""
    pid: int = next(p["pid"] for p in node.status()["processes"] if p["role"] == role)
    return pid


def process_table(status: dict[str, Any]) -> dict[tuple[str, Any], dict[str, Any]]:
    """(role, slot) -> the process's entry in a status reply."""
    return {(p["role"], p.get("slot")): p for p in status["processes"]}


def start_time(pid: int | None) -> float | None:
    """The process's start time if it runs on this machine, else None."""
    if not pid:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def identities(status: dict[str, Any]) -> dict[str, tuple[Any, Any, bool]]:
    """"role[slot]" -> (pid, start time, up) of every process in a status reply: the same
    pid and start time later means the process never restarted."""
    out = {}
    for (role, slot), p in process_table(status).items():
        name = role if slot is None else f"{role}[{slot}]"
        out[name] = (p.get("pid"), start_time(p.get("pid")), bool(p.get("up")))
    return out


def bad_frames(status: dict[str, Any]) -> dict[str, int | None]:
    """"router" / "worker[N]" -> its bad_frames counter (None if the status lacks it)."""
    out: dict[str, int | None] = {}
    for (role, slot), p in process_table(status).items():
        if role == "router":
            out["router"] = p.get("bad_frames")
        elif role == "worker":
            out[f"worker[{slot}]"] = p.get("bad_frames")
    return out


# -- waiting and killing -------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until it returns a truthy value, and return that value (a
    deadline, not a timing assertion: ``what`` names the wait in the error)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def kill_worker_of(node: Node, client: Client, type_name: str, key: str) -> None:
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
        except (WorkerLost, NodeUnavailable, AskTimeout):
            time.sleep(0.1)
    raise AssertionError(f"{call} kept failing after the worker was killed")
