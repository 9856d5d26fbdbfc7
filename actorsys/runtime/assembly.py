"""Wiring one slot's runtime together: :class:`Runtime` builds the collaborators that run
a worker's actors and hands each the others it uses.

It is a composition root, not a service: no collaborator holds it, and it owns no
behaviour beyond reacting to a failed commit (log it, start recovery, wake the alarms).
It needs no socket: the worker gives it an :class:`~.commit.Output` and a client
transport, and the unit tests give it a list and a stub, with a store in a temporary
directory.

::

    Worker (sockets, dispatch) --> Catalog    (resident set, eviction, idle passivation)
                               --> Turns      (mailboxes, sync and async turns, failure)
                               --> Children   (SPAWN, STOP from the tree)
                               --> AlarmTurns (due alarms in, attempts counted)
    Turns --> GroupCommit (staging, outbox, flush)  --> Output (the worker's sockets)
          --> SystemAsks  ($history, $rewind, $destroy)
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..log import get_logger
from ..storage.requests import WindowLimits
from .alarm_turns import AlarmTurns
from .catalog import Catalog
from .children import Children
from .commit import GroupCommit, Output, Recovery
from .host import Services
from .system import SystemAsks
from .turns import Turns

if TYPE_CHECKING:
    import asyncio

    from ..actor import Actor
    from ..client.transport import AsyncTransport
    from ..config import NodeConfig
    from ..errors import StorageError
    from ..protocol.shardmap import ShardMap
    from ..storage.slot import SlotStore

log = get_logger("worker")


class Runtime:
    """The collaborators of one slot's runtime, wired (see the module docstring)."""

    def __init__(self, cfg: NodeConfig, slot: int, shard_map: ShardMap, store: SlotStore,
                 loop: asyncio.AbstractEventLoop, output: Output, transport: AsyncTransport,
                 classes: dict[str, type[Actor]], handlers: dict[str, dict[str, Any]],
                 counters: dict[str, int], *, supervised: bool,
                 beats: "memoryview[float] | None" = None) -> None:
        history_window = {t: cfg.history.get(t, cfg.history_window) for t in cfg.actors}
        self.catalog = Catalog(slot, shard_map, classes, handlers, store, supervised,
                               cfg.max_resident, counters)
        self.recovery = Recovery(loop, store, on_recovered=self._recovered)
        self.commit = GroupCommit(store, self.catalog, output, loop.call_soon, counters,
                                  on_failure=self._commit_failed)
        self.alarms = AlarmTurns(self.catalog, self.commit, store, shard_map, slot,
                                 cfg.alarm_retry, counters)
        self.system = SystemAsks(store, self.commit, self.alarms, history_window)
        self.services = Services(transport, self.commit.flush, cfg.max_message_bytes)
        self.turns = Turns(self.catalog, self.commit, store, self.services, self.alarms,
                           self.system, loop, counters, turn_timeout=cfg.turn_timeout,
                           on_error=cfg.on_error, history_window=history_window, beats=beats,
                           slot=slot, request_limits=WindowLimits(cfg.request_window,
                                                                  cfg.request_window_seconds))
        loud = self.turns.loud
        self.commit.on_dropped_tell = lambda t, exc: loud.dropped(
            t.type_name, t.key, t.method, exc, " sent by an actor")
        self.children = Children(self.catalog, self.commit, self.turns, self.alarms, store,
                                 loop.call_later, counters, slot)
        self.catalog.passivate = self.turns.passivate

    def _commit_failed(self, exc: StorageError) -> None:
        if not self.recovery.active:      # (the store has logged the fault)
            self.recovery.start()
        self.alarms.note(time.time() + 1.0)   # an alarm turn's commit may be among them

    def _recovered(self) -> None:
        self.alarms.note(time.time())       # alarms waited for it

    def close(self) -> None:
        self.recovery.close()
        if self.alarms.clock is not None:
            self.alarms.clock.close()
