"""Call chains: which actors' turns are waiting on a call (call-chain reentrancy, as
Orleans and Dapr define it).

An ask carries its call chain in its call context (``ctx["chain"]``, see
:mod:`actorsys.protocol.wire`): the ``[type, key]`` of every actor whose turn is waiting
on this call, oldest first. A client outside any actor sends none. A turn of actor X
whose own call came with chain ``C`` asks with ``C + [[X.type, X.key]]``
(:func:`extend`); the chain a turn runs under is kept in the context of its asyncio task
(:data:`CALL_CHAIN`), so an ask made anywhere in that turn's code finds it.

At the receiving worker, an ask for actor B whose chain holds B came back to B: if B's
innermost running turn is the very one waiting in this chain (the chain's prefix up to
B's last entry equals that turn's own chain: :func:`reentry_point`), the ask runs as a
nested turn (``nested.py``) or, where B's type sets ``reentrant = False``, fails at once
with :class:`~actorsys.Deadlock` naming the cycle (:func:`cycle`). An ask whose chain
holds B while B runs some other turn (B restarted in between, say) waits like any ask.

Everything here is pure, except the context variable.
"""
from __future__ import annotations

import contextvars
from typing import Any

from ..errors import Deadlock
from ..protocol.wire import MAX_CHAIN

#: a ``[type, key]`` pair as the wire carries it
Link = list[str]
#: the call chain of the turn whose code runs in the current asyncio task; None outside
#: the task of an actor's async turn (an ask made there carries a chain of one)
CALL_CHAIN: contextvars.ContextVar[list[Link] | None] = contextvars.ContextVar(
    "actorsys_call_chain", default=None)


def chain_of(ctx: dict[str, Any] | None) -> list[Link]:
    """The call chain a call's (checked) context carries; empty when none."""
    if ctx is None:
        return []
    return ctx.get("chain") or []


def extend(chain: list[Link] | None, type_name: str, key: str) -> list[Link]:
    """The chain an ask made by a turn of ``type_name/key`` carries (its turn's chain
    plus itself); :class:`Deadlock` if that would exceed ``MAX_CHAIN`` actors."""
    chain = chain or []
    if len(chain) >= MAX_CHAIN:
        raise Deadlock(f"call chain too deep: {MAX_CHAIN} actors are already waiting on "
                       f"each other ({render(chain[:3])} -> ... -> {type_name}/{key:.100}); "
                       f"a runaway recursion between actors?")
    return [*chain, [type_name, key]]


def reentry_point(chain: list[Link], type_name: str, key: str) -> int:
    """The index of the last entry of ``type_name/key`` in ``chain``, or -1."""
    for i in range(len(chain) - 1, -1, -1):
        link = chain[i]
        if link[1] == key and link[0] == type_name:
            return i
    return -1


def comes_back(chain: list[Link], type_name: str, key: str, waiting: list[Link]) -> bool:
    """Whether an ask with ``chain`` to ``type_name/key`` comes back to the turn of that
    actor whose own chain is ``waiting`` (the turn is waiting in this chain)."""
    i = reentry_point(chain, type_name, key)
    return i >= 0 and chain[:i] == waiting


def render(chain: list[Link]) -> str:
    return " -> ".join(f"{t}/{k:.100}" for t, k in chain)


def cycle(chain: list[Link], type_name: str, key: str) -> str:
    """The cycle an ask closes, for the error: ``A/1 -> B/2 -> A/1``."""
    i = reentry_point(chain, type_name, key)
    return render([*chain[max(i, 0):], [type_name, key]])


def refused(chain: list[Link], type_name: str, key: str) -> Deadlock:
    """The error of an ask that came back to a type that refuses reentrant calls."""
    return Deadlock(f"call cycle: {cycle(chain, type_name, key)} ({type_name} is not "
                    f"reentrant; this ask would wait forever for the turn waiting on it)")
