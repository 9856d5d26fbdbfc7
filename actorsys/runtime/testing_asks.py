"""What a node started for testing serves (``[node] testing = true``), and every other node
refuses: the asks behind :mod:`actorsys.testing`'s ``run_in_actor`` and ``fire_alarms``.

* ``$run`` (``spec, args, kwargs``): one turn of the actor that runs the function
  ``spec`` names (``"module:qualname"``) as ``fn(self, *args, **kwargs)``; an ``async``
  one is awaited, as an async handler is. It is a turn like any other: it activates the
  actor (``on_start`` first), what it does to ``self.state``, ``self.storage``, alarms
  and tells commits with it, and its return value is the reply. If it raises, the turn
  is discarded and the caller gets the error (``RemoteError``, with the traceback). A
  reference that does not import, or arguments that do not fit the function, are
  ``BadRequest`` (``BadArguments``): the caller's mistake, never a supervised child's
  crash. On a testing node every type has it as a handler (:func:`run_handler`).
* ``$fire_alarm`` (``name``): delivers the actor's alarm ``name`` now, due or not, the way
  the clock delivers a due one (:meth:`.alarm_turns.AlarmTurns.fire`): the attempt is
  counted and committed first, then ``on_alarm`` runs in a turn of its own, in the
  actor's turn order. The reply, after that turn's commit: True; False at once if the
  actor has no alarm of that name (or its attempts are used up: it is dropped, as the
  clock would); if ``on_alarm`` raises, the error, and the alarm is retried after its
  backoff like any failed attempt. With no name it fires nothing and answers the names
  of the actor's alarms, earliest first, as last committed: the helper's first step, so
  that a node not started for testing refuses ``fire_alarms`` even for an actor that
  has no alarm.

Why functions go by reference: a worker never unpickles what arrives on a socket, so a
function cannot be sent; its name is, and the worker imports it with the node's
``python_path`` (the test plugin adds the test's own folder). Its arguments and its
result are msgpack values, as any ask's.

Why both are refused unless the node is for testing (:func:`refusal`, ``NotTesting``):
``$run`` lets whoever can send the node a message run any importable function, with
any arguments, in a worker: remote code execution. ``$fire_alarm`` runs ``on_alarm``
before its time, which no actor expects in production (an expiry alarm ending a live
session early), and spends its attempts. The gateway forwards no ``$`` method.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

from ..config import import_function
from ..config.values import IMPORT_PATH
from ..errors import BadArguments, NotTesting

if TYPE_CHECKING:
    from ..actor import Actor

RUN, FIRE_ALARM = "$run", "$fire_alarm"
#: the asks only a node started for testing serves
TESTING_METHODS = frozenset({RUN, FIRE_ALARM})
_HELPERS = {RUN: "run_in_actor", FIRE_ALARM: "fire_alarms"}


def refusal(method: str) -> NotTesting:
    """The error a node not started for testing answers ``method`` with."""
    return NotTesting(
        f"{method} (actorsys.testing's {_HELPERS.get(method, method)}) is served only by a node "
        f"started for testing ([node] testing = true, which the actorsys_node fixture sets): it "
        f"runs any function a client names, so a node for anything else refuses it")


def run_handler(python_path: list[str]) -> Callable[..., Any]:
    """The ``$run`` handler of a testing node's types: imports with ``python_path`` first
    on ``sys.path`` (what the node's actor classes import with)."""

    def run(inst: Actor, spec: Any, args: Any = None, kwargs: Any = None) -> Any:
        fn = resolve(spec, python_path)
        args = [] if args is None else args
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise BadArguments(f"$run takes a list of arguments and a dict of keyword arguments, "
                               f"got {type(args).__name__} and {type(kwargs).__name__}")
        try:
            return fn(inst, *args, **kwargs)
        except TypeError as exc:
            if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                # raised by the call itself, before the function ran: its arguments do
                # not fit (the caller's mistake, as for a handler)
                raise BadArguments(f"{spec}(self, ...): {exc}") from None
            raise

    return run


def resolve(spec: Any, python_path: list[str]) -> Callable[..., Any]:
    """The function ``"module:qualname"`` names, imported in this worker; BadArguments
    saying why when it cannot be."""
    if not isinstance(spec, str) or not IMPORT_PATH.match(spec):
        raise BadArguments(f"$run takes a function as \"module:qualname\", got {spec!r:.200}")
    try:
        fn: Callable[..., Any] = import_function(spec, python_path)
    except Exception as exc:
        raise BadArguments(
            f"$run: worker pid {os.getpid()} cannot import {spec!r}: {type(exc).__name__}: "
            f"{str(exc):.500} (a function of a test module must be importable by the node: "
            f"its folder on the node's python_path)") from None
    return fn
