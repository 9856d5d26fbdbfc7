"""What the transport keeps about a request in flight, and how its errors read.

* :class:`Pending`: one entry of the transport's table of requests awaiting a reply.
* :class:`Wording`: the texts of the two errors the transport raises by itself (a
  deadline passed, a worker went away). :func:`describe` names a request in them;
  :func:`no_answer` makes the usual deadline error of a control request.

Requests are the typed records of :mod:`actorsys.protocol.messages`.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, NamedTuple, Union

from ..errors import ActorError, NodeUnavailable
from ..protocol import wire
from ..protocol.messages import Ask, Control, ListActors, Request, Spawn, Stop, Sup

#: the ``slot`` of a request sent to the router; PEER and below: to another endpoint (the
#: tree, the gateway, a router's own workers), one number per endpoint (its requests fail
#: at once when its connection drops)
ROUTER, PEER = -1, -2
#: resends of an actor request answered ``wrong_shard`` (each after fetching the map), all
#: within its one deadline. The first is at once (the map was stale: a move had finished);
#: the next wait RESEND_PAUSE, doubled each time up to RESEND_PAUSE_MAX: during a shard
#: handoff the old owner answers wrong_shard until the move finishes (tens of ms to a few
#: seconds), and only then does the map change. 20 resends span about 3.3 s of pauses.
MAX_RESENDS = 20
RESEND_PAUSE = 0.005
RESEND_PAUSE_MAX = 0.2


def resend_pause(retries: int) -> float:
    """Seconds to wait before the resend that follows ``retries`` earlier ones."""
    return 0.0 if retries <= 0 else min(RESEND_PAUSE * 2 ** (retries - 1), RESEND_PAUSE_MAX)


ActorRequest = Union[Ask, Spawn, Stop]
#: the requests that are resent after ``wrong_shard``
RESENDABLE = (Ask, Spawn, Stop)
#: builds a control request from its request id
MakeRequest = Callable[[int], Request]
#: a control request's deadline error, given ``""`` or `` (why the CURVE handshake failed)``
Expired = Callable[[str], ActorError]


def no_answer(who: str, timeout: float, error: type[ActorError] = NodeUnavailable) -> Expired:
    """The usual deadline error of a control request: ``{who} did not answer within {t} s``."""
    return lambda why: error(f"{who} did not answer within {timeout:g} s{why}")


def describe(request: Request) -> str:
    """A request in words, for errors about it: ``ask Counter/k.add``, ``spawn Counter/k``,
    ``list Counter``, ``ping``."""
    if isinstance(request, Ask):
        return f"ask {request.type_name}/{request.key}.{request.method}"
    if isinstance(request, Spawn):
        return f"spawn {request.type_name}/{request.key}"
    if isinstance(request, Stop):
        return f"stop {request.type_name}/{request.key}"
    if isinstance(request, ListActors):
        return f"list {request.type_name}"
    if isinstance(request, Control):
        return wire.OPS[request.op]
    if isinstance(request, Sup):
        return f"{request.command} of supervisor {request.supervisor}"
    return type(request).__name__.lower()


class Wording:
    """How the two errors the transport raises by itself read: an actor request past its
    deadline (:class:`~actorsys.errors.AskTimeout`) and a request in flight on a worker
    that went away (:class:`~actorsys.errors.WorkerLost`). This is the asyncio client's
    (and the node's) wording; the blocking client keeps its own (see :mod:`.blocking`)."""

    def timed_out(self, request: Request, timeout: float) -> str:
        return f"{describe(request)}: no reply within {timeout:g} s"

    def lost(self, request: Request, slot: int) -> str:
        return (f"worker slot {slot} went away while the request was in flight; "
                f"it may or may not have been processed")


class Pending(NamedTuple):
    """A request awaiting its reply, in the transport's table under its request id.

    Invariants: the entry leaves the table before its future is settled (by the reply,
    the deadline, the slot's loss or ``close``), so a late reply finds nothing and is
    dropped; a future its caller cancelled stays until one of those. An actor request
    (``timer`` None) has its deadline in the transport's heap; a control request has
    its own ``timer``. Only actor requests are resent, within the first send's ``deadline``.
    """
    fut: asyncio.Future[Any]
    slot: int                     # the worker slot it went to, or ROUTER, or <= PEER
    request: Request              # what was sent: names it in errors, and is resent
    timeout: float                # seconds it was given (each resend gets them again)
    retries: int = 0              # resends so far after wrong_shard (<= MAX_RESENDS)
    timer: asyncio.TimerHandle | None = None   # a control request's deadline
    deadline: float = 0.0         # an actor request's (loop time; its resends keep it)
