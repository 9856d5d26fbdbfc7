"""Destroying an actor, and the listing of actors that hold no data.

* **Self-destroy** (``self.destroy()`` in a handler; :func:`end_destroyed`). The turn
  that asked for it ends by deleting the actor: its state, storage entries, alarms (and
  their due-index entries), history and listing entry (every key in the actor's range,
  the same writes as the operator's ``$destroy`` ask: :func:`destroy_writes`), staged
  through the group commit like any turn's writes. What the turn itself wrote is
  discarded (only its WebSocket delivery mark is kept, so a redelivered socket batch
  does not run again on the fresh actor). Its reply, tells and WebSocket effects leave
  once the deletion has committed. ``on_stop`` does not run (as with ``$destroy``, and
  as a Durable Object's ``deleteAll()``: there is nothing left to stop; the destroying
  handler is the last code of that actor). The instance leaves memory through the
  ``EXITING`` path with reason ``"normal"`` (or the reason of a ``self.stop(reason)``
  the same turn made), without an instance: a supervised child makes a normal exit,
  exactly as after ``self.stop("normal")`` (its supervision record is kept: the tree
  restarts a ``permanent`` child, fresh, and not a ``transient`` or ``temporary``
  one); a plain actor leaves memory. The next message to the address starts a fresh
  actor (empty state); deliveries of its alarms already queued are dropped with the
  alarms. A turn that raises after ``destroy()`` is discarded like any failed turn:
  nothing is destroyed.
* **Empty actors are not listed.** A turn after which the actor's state is empty and
  it has no storage entries and no alarms removes its listing entry in that turn's
  commit (and its empty state is stored as no state); its next write lists it again.
  The check (:func:`holds_data`) runs only when the state is empty and the turn
  deleted something: a turn of an actor with a non-empty state pays nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol import wire
from ..storage.keys import (ALARM, ENTRY, REQUEST, actor_range, alarm_index_key_of, listing_key,
                            mark_key, prefix_range, supervision_key)
from ..storage.overlay import merge
from .activation import EXITING, Internal, Kind

if TYPE_CHECKING:
    from ..storage.slot import SlotStore
    from ..storage.view import Storage
    from .activation import Activation
    from .alarm_turns import AlarmTurns
    from .commit import GroupCommit

#: the reason a supervised child's exit gives after self.destroy() (unless the turn also
#: called self.stop(reason)): a normal exit
DESTROYED_EXIT_REASON = "normal"


def destroy_writes(store: SlotStore, act: Activation) -> tuple[dict[bytes, bytes | None], int]:
    """The writes that delete an actor (every key of its range but its supervision
    record, the due-index entries of its alarms, its listing entry), and how many of
    its own data keys they delete (not counting its request-id window: the runtime's,
    not data). Sees what is staged but not yet committed."""
    prefix = act.prefix
    n = len(prefix)
    mk = supervision_key(prefix)
    writes: dict[bytes, bytes | None] = {listing_key(act.type_name, act.key): None}
    deleted = 0
    for k, v in store.range(*actor_range(prefix), actor=prefix):
        if k == mk:
            continue                 # supervision is not data: a child stays supervised
        writes[k] = None
        tag = k[n:n + 1]
        if tag == REQUEST:
            continue
        deleted += 1
        if tag == ALARM:
            writes[alarm_index_key_of(prefix, k[n + 1:], v)] = None
    return writes, deleted


def end_destroyed(store: SlotStore, commit: GroupCommit, alarms: AlarmTurns, act: Activation,
                  storage: Storage, ending: bool) -> None:
    """Stage the deletion of an actor whose turn called ``self.destroy()`` (its reply
    and result were checked by the caller), drop its instance, and queue its exit
    (unless the turn was already one that ends the instance). See the module docstring."""
    host = act.host
    reason = (host.stop_reason if host is not None else None) or DESTROYED_EXIT_REASON
    own = storage.take_writes()          # what the turn wrote goes with the actor
    writes, _ = destroy_writes(store, act)
    mk = mark_key(act.prefix)
    mark = own.get(mk)
    if mark is not None:
        writes[mk] = mark                # a redelivered socket batch must not run again
    store.stage(writes, act.prefix)
    commit.staged.append(act)
    act.drop_instance()
    act.snapshot = b""
    drop_queued_alarms(act, alarms)
    if not ending:
        # leaves memory as after self.stop(reason): no instance, so no on_stop
        act.mail().appendleft(Internal(EXITING, name=reason))


def drop_queued_alarms(act: Activation, alarms: AlarmTurns) -> None:
    """The actor's alarms were deleted: their deliveries already queued in its mailbox
    go too (they would only start a fresh instance to find their alarm gone); one fired
    by a test is answered that it did not run (testing_asks.py), after the deletion's
    commit."""
    mailbox = act.mailbox
    if not mailbox:
        return
    queued = [m for m in mailbox if type(m) is Internal and m.kind is Kind.ALARM]
    for m in queued:
        mailbox.remove(m)
        alarms.done(act, m.name)
        if m.reply_to is not None:
            alarms.commit.reply(m.reply_to, wire.ok(m.rid, False))


def holds_data(store: SlotStore, prefix: bytes, writes: dict[bytes, bytes | None]) -> bool:
    """Whether the actor has a storage entry or an alarm once ``writes`` (this turn's)
    apply over what is committed and staged (its state is checked by the caller)."""
    for tag in (ENTRY, ALARM):
        lo, hi = prefix_range(prefix + tag)
        for _kv in merge(store.range(lo, hi, actor=prefix), writes, lo, hi, False):
            return True
    return False
