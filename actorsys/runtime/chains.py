"""Call chains: which actors' turns are waiting on a call (call-chain reentrancy, as
Orleans and Dapr define it).

An ask carries its call chain in its call context (``ctx["chain"]``, see
:mod:`actorsys.protocol.wire`): a link ``[type, key, token]`` for every turn waiting on
this call, oldest first, where ``token`` is 8 random bytes drawn when that turn went
async (:func:`own_chain`). A client outside any actor sends none. A turn of actor X
whose own call came with chain ``C`` asks with ``C + [[X.type, X.key, its token]]``:
that is the turn's *own chain*, kept in the context of its asyncio task
(:data:`CALL_CHAIN`), so an ask made anywhere in that turn's code finds it.

At the receiving worker, an ask for actor B whose chain holds B came back to B: if its
chain up to B's last link is exactly the own chain of B's innermost running turn (same
ancestors, same token: :func:`comes_back`), the ask runs as a nested turn
(``nested.py``) or, where B's type sets ``reentrant = False``, fails at once with
:class:`~actorsys.Deadlock` naming the cycle (:func:`cycle`). Any other ask whose chain
holds B waits like any ask: the token makes a stale chain (an ask sent for a turn of B
that has ended, B now waiting in another turn) or a forged one (a peer naming B without
knowing the token of B's turn) an ordinary message, never a way into a running turn.

The same context carries the turn's :class:`AskIds`: an ask made by a turn that itself
answers an ask with a request id (exactly-once, ``storage/requests.py``) gets a request
id derived from that one, the ask's place among the turn's asks, and what it asks
(:meth:`AskIds.next`). A client's retry re-runs a turn lost with its worker; the turn's
asks then carry the ids they had the first time, and an actor that already committed
one answers it from its record instead of running it again (B debited once, not twice,
when A's transfer is retried). An ask that differs (another actor, method or
arguments) gets another id and runs.

Everything here is pure, except the context variables and the tokens' randomness.
"""
from __future__ import annotations

import contextvars
import hashlib
import os
from typing import Any

import msgpack

from ..errors import Deadlock
from ..protocol.wire import MAX_CHAIN

#: a ``[type, key, token]`` link as the wire carries it
Link = list[Any]
#: bytes of a turn's token (random: a peer cannot name a turn it did not hear from)
TOKEN_BYTES = 8
#: the call chain of the turn whose code runs in the current asyncio task; None outside
#: the task of an actor's async turn (an ask made there carries a chain of one)
CALL_CHAIN: contextvars.ContextVar[list[Link] | None] = contextvars.ContextVar(
    "actorsys_call_chain", default=None)


#: the request ids of the asks the current turn makes (None: the turn has no id of its own)
TURN_ASK_IDS: contextvars.ContextVar["AskIds | None"] = contextvars.ContextVar(
    "actorsys_turn_ask_ids", default=None)


class AskIds:
    """The request ids of one turn's asks, derived from the turn's own (see the module
    docstring): the same turn re-run makes the same asks with the same ids."""

    __slots__ = ("parent", "n")

    def __init__(self, parent: bytes) -> None:
        self.parent = parent
        self.n = 0     #: asks made so far by the turn

    def next(self, type_name: str, key: str, method: str, args: Any, kwargs: Any) -> bytes:
        n, self.n = self.n, self.n + 1
        what = msgpack.packb([n, type_name, key, method, args, kwargs], use_bin_type=True)
        return hashlib.blake2b(what, digest_size=16, key=self.parent[:64]).digest()


def chain_of(ctx: dict[str, Any] | None) -> list[Link]:
    """The call chain a call's (checked) context carries; empty when none."""
    if ctx is None:
        return []
    return ctx.get("chain") or []


def own_chain(incoming: list[Link] | None, type_name: str, key: str) -> list[Link]:
    """The own chain of a turn of ``type_name/key`` called with ``incoming``: what its
    asks carry, ending with its link and a fresh token."""
    return [*(incoming or ()), [type_name, key, os.urandom(TOKEN_BYTES)]]


def outgoing(chain: list[Link] | None, type_name: str, key: str) -> list[Link]:
    """The chain an ask made by the turn whose own chain is ``chain`` carries (a turn
    with none: a link nobody waits on); :class:`Deadlock` past ``MAX_CHAIN`` links."""
    if chain is None:
        return own_chain(None, type_name, key)
    if len(chain) > MAX_CHAIN:
        raise Deadlock(f"call chain too deep: {MAX_CHAIN} actors are already waiting on "
                       f"each other ({render(chain[:3])} -> ... -> {type_name}/{key:.100}); "
                       f"a runaway recursion between actors?")
    return chain


def reentry_point(chain: list[Link], type_name: str, key: str) -> int:
    """The index of the last entry of ``type_name/key`` in ``chain``, or -1."""
    for i in range(len(chain) - 1, -1, -1):
        link = chain[i]
        if link[1] == key and link[0] == type_name:
            return i
    return -1


def comes_back(chain: list[Link], type_name: str, key: str, waiting: list[Link] | None) -> bool:
    """Whether an ask with ``chain`` to ``type_name/key`` comes back to the turn of that
    actor whose own chain is ``waiting`` (the turn is waiting in this chain: the same
    links up to it, its token included)."""
    if not waiting:
        return False
    i = reentry_point(chain, type_name, key)
    return i >= 0 and chain[:i + 1] == waiting


def render(chain: list[Link]) -> str:
    return " -> ".join(f"{link[0]}/{link[1]:.100}" for link in chain)


def cycle(chain: list[Link], type_name: str, key: str) -> str:
    """The cycle an ask closes, for the error: ``A/1 -> B/2 -> A/1``."""
    i = reentry_point(chain, type_name, key)
    return render([*chain[max(i, 0):], [type_name, key]])


def refused(chain: list[Link], type_name: str, key: str, why: str | None = None) -> Deadlock:
    """The error of an ask that came back to a turn that refuses reentrant calls (its
    type's, or ``why``)."""
    why = why or f"{type_name} is not reentrant"
    return Deadlock(f"call cycle: {cycle(chain, type_name, key)} ({why}; this ask would "
                    f"wait forever for the turn waiting on it)")
