"""The Actor base class: subclass it, and its public methods become handlers.

```python
class Counter(actorsys.Actor):
    def on_start(self):
        self.state.setdefault("n", 0)

    def add(self, by=1):
        self.state["n"] += by
        return self.state["n"]
```

One message is one *turn*. Turns of one actor never overlap; on one worker, turns of
different actors interleave only where an ``async def`` handler awaits. At the end of a
turn ``self.state`` (a msgpack-able dict) and every ``self.storage`` write commit in one
atomic batch, and only then does the reply (or any ``tell`` the turn made) leave the
worker. If the handler raises, the turn's changes are discarded, the caller gets a
:class:`~actorsys.RemoteError`, and the actor restarts from its last commit.
"""
from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..proxy import ActorProxy, C, address
from ..proxy import handlers_of as handlers_of
from .connection import broadcast as _broadcast
from .connection import connections as _connections

if TYPE_CHECKING:
    from .connection import Connection
    from .host import ActorHost, ActorRef, StorageAPI

A = TypeVar("A", bound="Actor")


class Actor:
    """Base class of every actor. See the module docstring for the turn semantics."""

    #: the registered type name this actor was activated as (e.g. ``"chat.Room"``)
    type_name: str
    #: the actor's key within its type
    key: str
    #: the actor's durable state: a dict of msgpack-able values, committed every turn
    state: dict[str, Any]
    #: the actor's durable key-value storage; writes commit with the turn
    storage: "StorageAPI"
    #: call-chain reentrancy: an ask that comes back to this actor while its turn waits
    #: in the same call chain (A asks B, B asks A) runs as a nested turn. ``False``
    #: refuses it: such an ask fails at once with :class:`~actorsys.Deadlock` naming the
    #: cycle. (Other asks always wait for the running turn to end.)
    reentrant: bool = True
    #: the runtime hosting this instance (see :mod:`actorsys.actor.host`), set by
    #: :func:`incarnate` before any hook runs; a name no user's actor is likely to take
    _actorsys_host: "ActorHost"

    def on_start(self, *args: Any, **kwargs: Any) -> Any:
        """Runs after every activation (first, after passivation, after a crash).

        A supervised child gets its child spec's ``args`` and ``kwargs`` here on every
        start; if it raises, the start failed. May be ``async def``. Its changes commit
        with the activation's first turn.
        """

    def on_stop(self) -> Any:
        """Runs before passivation or shutdown (not after a crash). May be ``async def``."""

    def stop(self, reason: str = "normal") -> None:
        """Stop this actor once the current turn has committed (its reply is sent first).

        ``on_stop`` runs next, ahead of queued messages. For a supervised child this is an
        exit: ``"normal"`` (or ``"shutdown"``) is a normal exit, any other reason an
        abnormal one, and its supervisor restarts it or not by its restart type
        (``transient`` children restart only after abnormal exits). An unsupervised actor
        is passivated; its next message activates it again.
        """
        if not isinstance(reason, str):
            raise TypeError("the stop reason is a string")
        self._actorsys_host.stop(reason)

    def destroy(self) -> None:
        """Delete this actor when the current turn commits: its state, storage, alarms,
        history and listing entry (as ``ref.destroy()`` does), in that turn's commit.

        The turn's reply, tells and WebSocket effects leave after the deletion has
        committed; what the turn itself wrote is discarded with the rest. ``on_stop``
        does not run (the handler calling ``destroy()`` is the actor's last code); the
        instance leaves memory, and the next message to this address starts a fresh
        actor with an empty state. If the turn raises after ``destroy()``, nothing is
        destroyed. A supervised child makes a normal exit, as after
        ``self.stop("normal")``: its supervisor restarts it (fresh) only if it is
        ``permanent``. Works in any handler, sync or async, ``on_alarm`` and the
        WebSocket handlers included.
        """
        self._actorsys_host.destroy()

    def on_alarm(self, name: str, payload: Any) -> Any:
        """Runs when an alarm this actor set comes due (see :meth:`set_alarm`). May be
        ``async def``. If it raises, the alarm is retried with backoff."""
        raise NotImplementedError(f"{type(self).__name__} set alarm {name!r} but does not "
                                  f"define on_alarm(self, name, payload)")

    def set_alarm(self, when: "float | datetime.datetime | None" = None, name: str = "default",
                  payload: Any = None, *, cron: str | None = None,
                  every: "float | datetime.timedelta | None" = None,
                  tz: str | None = None) -> float:
        """Schedule ``on_alarm(name, payload)``; returns its (first) due time (epoch seconds).

        Give exactly one of:

        * ``when``: once, after a delay in seconds, at an epoch time (values of 1e9 and
          above), or at a timezone-aware ``datetime``;
        * ``cron``: on a five-field cron expression (``"*/5 * * * *"``, ``"0 9 * * mon-fri"``,
          ``"@hourly"``), in UTC unless ``tz`` names an IANA zone (``"Europe/Berlin"``);
        * ``every``: every so many seconds (a number or a ``timedelta``, at least 1 s),
          first one period from now, then at ``set time + k * every``.

        One alarm per name: setting a name again replaces it (a recurring one with its
        schedule). The alarm commits with this turn, survives crashes and restarts,
        reactivates the actor if it was passivated, and fires at least once (see
        ``actorsys/storage/alarms.py``). A recurring alarm fires until it is cancelled or
        replaced; its next due time comes from its schedule, not from when a firing
        ended, and times missed while the node was down (or while a firing was retried)
        fire once, not in a burst (``actorsys/storage/schedule.py``). A failing
        ``on_alarm`` is retried with backoff as for a one-shot alarm; after the last
        attempt a recurring alarm gives up that firing only and carries on at its next
        time. While ``on_alarm`` runs, a one-shot alarm is no longer listed and a
        recurring one is listed at its next time.

        Bad arguments (a bad or never-due cron expression, an unknown zone, ``every``
        under a second, both ``when`` and ``cron``...) raise ``TypeError`` or
        ``ValueError`` here, so the turn fails and nothing is set.
        """
        if type(self).on_alarm is Actor.on_alarm:
            raise TypeError(f"{type(self).__name__} sets an alarm but does not define "
                            f"on_alarm(self, name, payload)")
        return self.storage.set_alarm(when, name, payload, cron=cron, every=every, tz=tz)

    def alarms(self) -> dict[str, dict[str, Any]]:
        """This actor's alarms by name: ``{"when", "payload", "attempt"}``, ``when`` being
        when it is next due (its next time, or its next attempt's); a recurring alarm's
        also has ``"cron"`` and ``"tz"``, or ``"every"``."""
        return self.storage.alarms()

    def cancel_alarm(self, name: str = "default") -> bool:
        """Cancel an alarm, one-shot or recurring (with this turn's commit); returns
        whether it was set."""
        return self.storage.cancel_alarm(name)

    # -- WebSockets (see actorsys/actor/connection.py; the gateway holds the sockets) -------
    def on_connect(self, conn: "Connection") -> Any:
        """A WebSocket was opened to this actor (``/ws/{type}/{key}``). May be ``async
        def``. ``conn.close()`` refuses it; by default every socket is accepted."""

    def on_message(self, conn: "Connection", data: "str | bytes") -> Any:
        """A frame arrived on ``conn``: a text frame as ``str``, a binary one as ``bytes``.
        May be ``async def``."""
        raise NotImplementedError(f"{type(self).__name__} takes WebSockets but does not "
                                  f"define on_message(self, conn, data)")

    def on_disconnect(self, conn: "Connection") -> Any:
        """``conn`` was closed (by the browser, by ``conn.close()``, or by the gateway).
        May be ``async def``."""

    def broadcast(self, data: Any, tag: str | None = None,
                  exclude: "Connection | None" = None) -> None:
        """Send ``data`` to every WebSocket of this actor (those with ``tag``, if given;
        not to ``exclude``): ``str`` as text, ``bytes`` as binary, anything else as JSON.
        It leaves when this turn commits."""
        _broadcast(self._actorsys_host, data, tag, exclude)

    def connections(self, tag: str | None = None) -> "list[Connection]":
        """This actor's WebSockets (with ``tag``), oldest first: each from its
        ``on_connect`` until its ``on_disconnect`` has committed. Exact in a socket
        event's turn; elsewhere, as of the last socket event this activation saw."""
        return _connections(self._actorsys_host, tag)

    def ref(self, type_name: str, key: str) -> "ActorRef":
        """A reference to another actor: ``tell`` from any handler, ``await ask`` from async ones.

        Tells leave only after this turn commits; an ask is sent at once (its answer is
        needed to finish the turn).
        """
        return self._actorsys_host.ref(type_name, key)

    def proxy(self, cls: type[C], key: str, *, type_name: str | None = None) -> ActorProxy[C]:
        """A typed proxy of another actor: its handlers as methods, sending as
        :meth:`ref` does. ``await self.proxy(Counter, k).add(5)`` from an ``async def``
        handler; ``self.proxy(Counter, k).tell.add(5)`` from any (it leaves when this
        turn commits); a call in a synchronous handler raises ``TypeError``, as
        ``ref(...).ask`` does.

        ``cls`` gives the names and signatures only (none of its code runs here); the
        type name sent is ``type_name``, else ``cls.__name__``. A name that is not a
        handler of ``cls`` raises ``AttributeError`` before anything is sent. See
        :mod:`actorsys.proxy`.
        """
        type_name, key = address(cls, key, type_name)
        return ActorProxy(cls, self._actorsys_host.channel(type_name, key))

    @property
    def self_ref(self) -> "ActorRef":
        """A reference to this actor itself."""
        return self.ref(self.type_name, self.key)


def incarnate(cls: type[A], host: "ActorHost", type_name: str, key: str) -> A:
    """A new instance of an actor class, bound to the runtime that hosts it: the runtime's
    one way to make an actor (it then sets ``state`` and ``storage`` and runs
    ``on_start``)."""
    inst = cls()
    inst.type_name, inst.key = type_name, key
    inst._actorsys_host = host
    return inst
