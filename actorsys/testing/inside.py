"""Reaching inside an actor from a test: what Durable Objects' ``runInDurableObject`` and
``runDurableObjectAlarm`` do, and a worker killed under it.

* :func:`run_in_actor` runs a module-level function of the test inside one of the
  actor's turns, as ``fn(self, *args, **kwargs)``: to look at ``self.state`` and
  ``self.storage``, or to seed them. It is a real turn (``$run``): it activates the
  actor, waits its turn behind the actor's other messages, and its writes commit like
  any turn's; if the function raises, the turn is rolled back and the test gets the
  error.
* :func:`fire_alarms` runs the actor's alarms now, due or not (``$fire_alarm``), each in
  a turn of its own as the alarm clock would, and returns once each has committed.
* :func:`kill_worker` kill -9s the worker process hosting an actor and returns once its
  slot runs a new process and the actor answers again.

The first two need a node started for testing (``[node] testing = true``: the
``actorsys_node`` fixture sets it); any other node refuses them with
:class:`~actorsys.errors.NotTesting`. A function goes to the node by reference,
``"module:qualname"``, never pickled: the node imports it, so it must be a module-level
function of a module the node can import (the fixture puts the test's own folder on the
node's ``python_path``); its arguments and its result are msgpack values, as any ask's.
The worker's side, and why nothing else serves these asks, is
``actorsys/runtime/testing_asks.py``.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any, Callable

from actorsys.client import Ref
from actorsys.config.values import IMPORT_PATH
from actorsys.errors import AskTimeout, NodeUnavailable, WorkerLost
from actorsys.node import Node

from .nodes import slot_of, wait_until, workers

#: the asks behind these helpers (``actorsys/runtime/testing_asks.py``'s RUN and FIRE_ALARM)
RUN, FIRE_ALARM = "$run", "$fire_alarm"


def function_ref(fn: "Callable[..., Any] | str") -> str:
    """``"module:qualname"`` of a module-level function (or such a string, checked): what
    the node imports. TypeError, saying why, for what the node could not import by
    name: a lambda, a nested function, a function of ``__main__``, a callable that is not
    found under its own name in its module."""
    if isinstance(fn, str):
        if not IMPORT_PATH.match(fn):
            raise TypeError(f"a function reference is \"module:qualname\", got {fn!r:.200}")
        return fn
    module, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not callable(fn) or not isinstance(module, str) or not isinstance(qual, str):
        raise TypeError(f"run_in_actor runs a function, got {fn!r:.200}")
    if "<lambda>" in qual or "<locals>" in qual:
        raise TypeError(f"run_in_actor runs a module-level function (the node imports it by "
                        f"name): {module}.{qual} is a lambda or a nested function")
    if module == "__main__":
        raise TypeError(f"run_in_actor: {qual} is defined in __main__, which the node cannot "
                        f"import; define it in a module")
    found: Any = sys.modules.get(module)
    for part in qual.split("."):
        found = getattr(found, part, None)
    if found is not fn:
        raise TypeError(f"run_in_actor: {module}:{qual} does not name {fn!r:.200} in its module "
                        f"(the node imports it by that name)")
    return f"{module}:{qual}"


def run_in_actor(ref: Ref, fn: "Callable[..., Any] | str", /, *args: Any,
                 timeout: float | None = None, **kwargs: Any) -> Any:
    """Run ``fn(self, *args, **kwargs)`` in a turn of ``ref``'s actor and return its
    result (see the module docstring); ``fn`` may be ``async``. Its errors: what it
    raised as :class:`~actorsys.RemoteError` (with the traceback); ``BadRequest`` when
    the node cannot import it or the arguments do not fit; ``NotTesting`` from a node
    not started for testing. ``timeout``: the ask's (the client's default)."""
    return ref.ask(RUN, function_ref(fn), list(args), kwargs, timeout=timeout)


def fire_alarms(ref: Ref, *names: str, timeout: float | None = None) -> list[str]:
    """Run the alarms of ``ref``'s actor now, due or not, earliest first (only ``names``,
    if given), each in its own turn as the alarm clock would: the attempt counted, then
    ``on_alarm(name, payload)`` and the alarm's removal committed together. Returns the
    names whose ``on_alarm`` ran, once each has committed.

    Only the alarms set when it is called run: one that ``on_alarm`` sets again (a
    periodic alarm) is left for its time, or the next call. If an ``on_alarm`` raises,
    its error is raised here (:class:`~actorsys.RemoteError`) and the alarms after it
    are left; that alarm is then retried after its backoff, as after any failed attempt
    (``alarm_retry``). ``NotTesting`` from a node not started for testing."""
    listed: list[str] = ref.ask(FIRE_ALARM, timeout=timeout)
    ran: list[str] = []
    for name in listed:
        if names and name not in names:
            continue
        if ref.ask(FIRE_ALARM, name, timeout=timeout):
            ran.append(name)
    return ran


def kill_worker(node: Node, ref: Ref, timeout: float = 30.0) -> int:
    """kill -9 the worker process hosting ``ref``'s actor, wait until the node supervisor
    has restarted its slot and the actor answers again (a read-only ``inspect``, which
    does not activate it), and return the new process's pid. A single node's worker
    (on a cluster, see :mod:`.clusternode`)."""
    client = node.client()
    slot = slot_of(client, ref.type_name, ref.key)
    old = workers(node)[slot]["pid"]
    try:
        os.kill(old, signal.SIGKILL)
    except ProcessLookupError:
        pass              # (it died by itself meanwhile: its restart is awaited all the same)
    deadline = time.monotonic() + timeout
    wait_until(lambda: workers(node)[slot]["up"] and workers(node)[slot]["pid"] != old,
               f"worker slot {slot} to be restarted after kill -9 of pid {old}", timeout=timeout)
    probe = client.ref(ref.type_name, ref.key)
    while True:
        try:
            probe.inspect(limit=1, timeout=max(min(deadline - time.monotonic(), 5.0), 0.5))
            break
        except (WorkerLost, NodeUnavailable, AskTimeout):
            if time.monotonic() > deadline:
                raise AssertionError(f"{ref.type_name}/{ref.key} did not answer within "
                                     f"{timeout:g} s of the kill of its worker") from None
            time.sleep(0.05)
    pid: int = workers(node)[slot]["pid"]
    return pid
