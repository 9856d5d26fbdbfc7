"""A child as its supervisor sees it: the record, its states, and when it is restarted.

* A child runs an actor ``(actor, key)`` in some worker, or is a nested supervisor
  (``sub``). Its :class:`ChildSpec` says which, and how it restarts and stops.
* States (:class:`ChildState`), as ``which_children`` reports them::

      STOPPED ──start──> RUNNING ──exit──> DEAD ──restart──> RUNNING
         ^                  │                │ (backoff, or a failed start retried)
         └──terminate───────┘                └──> RESTARTING ──due──> RUNNING

  ``DEAD`` lasts while its exit is handled, or until a failed restart is tried again;
  it is reported as ``restarting``. ``RESTARTING`` is a child waiting for its group's
  restart (a backoff delay, or stopped as a bystander of a sibling's restart).
  ``STOPPED`` is a child that is not running and will not be started by itself
  (terminated by hand, exited and not restarted, or never started).
* Whether an exit restarts it (:func:`restarts_after`): ``permanent`` always,
  ``transient`` after an abnormal exit only, ``temporary`` never. ``normal`` and
  ``shutdown`` are the normal exit reasons (OTP's); anything else is abnormal.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actorsys.config.supervision import ChildSpec, Restart

if TYPE_CHECKING:
    from .supervisor import Supervisor

#: exit reasons that are not failures
NORMAL_EXITS = ("normal", "shutdown")


class ChildState(enum.Enum):
    STOPPED = "stopped"
    RUNNING = "running"
    DEAD = "dead"                # exited; being handled, or its failed restart is retried
    RESTARTING = "restarting"    # waiting for its group's restart

    @property
    def reported(self) -> str:
        """What ``which_children`` says: a dead child is on its way back."""
        return "restarting" if self is ChildState.DEAD else self.value


def restarts_after(restart: Restart, reason: str) -> bool:
    """Whether a child of this restart type is restarted after exiting for ``reason``."""
    return restart is Restart.PERMANENT or (restart is Restart.TRANSIENT
                                            and reason not in NORMAL_EXITS)


@dataclass(slots=True, eq=False)     # eq=False: a child is itself, never an equal copy
class Child:
    """One child of one supervisor.

    ``sub`` is set exactly when ``spec.supervisor`` is; ``dynamic``: added at run time
    by ``start_child`` (and so persisted by the host, ordered by ``seq``); ``inc``: the
    incarnation of its current (or last) start, so that a late exit notice about an
    earlier one is ignored."""

    spec: ChildSpec
    sub: Supervisor | None = None
    dynamic: bool = False
    seq: int = 0
    state: ChildState = ChildState.STOPPED
    inc: int = 0

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def key(self) -> str | None:
        return self.spec.key

    @property
    def addr(self) -> tuple[str, str]:
        return self.spec.addr

    @property
    def significant(self) -> bool:
        return self.spec.significant

    def info(self) -> dict[str, Any]:
        """The child as ``which_children`` reports it (plain data, for the wire)."""
        d: dict[str, Any] = {"id": self.spec.id, "status": self.state.reported,
                             "restart": self.spec.restart.value, "shutdown": self.spec.shutdown,
                             "significant": self.spec.significant}
        if self.sub is not None:
            d.update(type="supervisor", supervisor=self.spec.supervisor)
        else:
            d.update(type="worker", actor=self.spec.actor, key=self.spec.key)
        return d
