"""Turn telemetry: what a worker measures and traces of each turn (a part of
:class:`~.turns.Turns`, which owns one).

* **Time.** :class:`~.turns.Turns` writes a turn's start into :attr:`TurnTelemetry.started`
  as it begins (no call of its own: the hot path); :meth:`TurnTelemetry.ended`, called
  once when the turn ends, ok or failed, gives its duration to the process's metrics
  (when the node serves them) and to the hot actors (``client.top``, ``actorsys top``).
  A nested turn has no time of its own: it is inside the turn that awaited it.
* **Spans** (only while the node traces: :attr:`TurnTelemetry.tracing`): each turn runs
  inside its own span, a child of its caller's (an alarm's links to the turn that set
  it), made current while the turn's code runs, so that what it asks and tells carries
  its context (``actorsys/tracing.py``); the span ends with the turn, with its error if
  it failed.

Invariants: :attr:`~TurnTelemetry.started` and :attr:`~TurnTelemetry.spans` hold an
activation only while a turn of it runs (a turn of an earlier generation, discarded,
takes its entries out: :meth:`.turn_failure.TurnFailures.discard`);
:attr:`~TurnTelemetry.spans` is empty while :attr:`~TurnTelemetry.tracing` is None.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import tracing
from ..errors import ActorStopped
from ..protocol import wire
from .activation import ALARM, Activation, Call, Internal, method_label
from .hot import HotActors

if TYPE_CHECKING:
    from ..metrics import ProcessMetrics
    from ..tracing import Tracing
    from .alarm_turns import AlarmTurns

_ASK = wire.ASK


class TurnTelemetry:
    """Times and traces the turns of a worker's activations (see the module docstring)."""

    def __init__(self, alarms: AlarmTurns, slot: int) -> None:
        self.alarms, self.slot = alarms, slot
        #: the process's metrics, when the node serves them (None: not timed)
        self.metrics: ProcessMetrics | None = None
        #: the busiest actors of the last minute (client.top, actorsys top)
        self.hot = HotActors(time.monotonic())
        #: this process's tracer when the node traces (None: no span is made)
        self.tracing: Tracing | None = None
        #: the span of each activation's running turn (only while tracing)
        self.spans: dict[Activation, Any] = {}
        #: when each activation's running turn started (its duration: metrics, hot actors;
        #: a nested turn's time is inside the turn that awaited it)
        self.started: dict[Activation, float] = {}

    def start_span(self, act: Activation, msg: Call | Internal) -> Any:
        """Start the turn's span (a child of the caller's; an alarm's links to the turn
        that set it) and make it current; the token that undoes that."""
        assert self.tracing is not None
        attrs: dict[str, Any] = {"actorsys.type": act.type_name, "actorsys.key": act.key,
                                 "actorsys.method": method_label(msg), "actorsys.shard": act.shard,
                                 "actorsys.slot": self.slot}
        caller = set_by = None
        if isinstance(msg, Call):
            kind = tracing.ASK if msg.op == _ASK else tracing.TELL
            caller = msg.ctx.get("trace") if msg.ctx else None
        else:
            kind = tracing.INTERNAL
            if msg.kind is ALARM:
                attrs["actorsys.alarm"] = msg.name
                set_by = self.alarms.set_by(act, msg.name)
        left = self.spans.pop(act, None)
        if left is not None:        # (a turn that ended by a path that made no end: closed now)
            tracing.Tracing.end_span(left, ActorStopped("the turn ended without an outcome"))
        span, token = self.tracing.start_span(f"{act.type_name}.{attrs['actorsys.method']}",
                                              caller, kind, attrs, set_by)
        self.spans[act] = span
        return token

    def ended(self, act: Activation, msg: Call | Internal, exc: BaseException | None) -> float:
        """A turn ended (``exc``: why it failed, or None): its time to the metrics and the
        hot actors, its span ended; returns the time it ended."""
        end = time.monotonic()
        took = end - self.started.pop(act, end)
        if self.metrics is not None:
            self.metrics.turn(act.type_name, method_label(msg), exc is None, took)
        self.hot.turn(act.type_name, act.key, took, exc is None, len(act.mailbox), end)
        if self.spans:
            self.end_span(act, exc)
        return end

    def end_span(self, act: Activation, exc: BaseException | None) -> None:
        """End the span of ``act``'s turn, if it has one (``exc``: why the turn failed)."""
        span = self.spans.pop(act, None)
        if span is not None:
            tracing.Tracing.end_span(span, exc)
