"""Tracing with OpenTelemetry (issue 17): a W3C trace context travels in a call's
context (``ctx["trace"]``: the ``traceparent`` and ``tracestate`` fields, made and read by
OpenTelemetry's own propagator), from a client to the actor and on across
``self.ref(...).ask`` and ``tell``; a node with ``[node] tracing = true`` makes one span
per turn (``Counter.add``, with the actor's type, key, method, slot and outcome), a
child of the caller's span, and an alarm's turn links to the turn that set it.

Layer: the bottom, beside ``log`` and ``metrics``; it imports ``opentelemetry-api`` only
(a dependency: light, no exporter). The SDK and its OTLP exporter are the optional
extra ``actorsys[tracing]``, imported by :func:`start` alone.

Cost without an SDK (the default): a client's ask or tell asks OpenTelemetry's API for
the current span (a context-variable read) and finds none valid; a worker whose node
does not trace checks one attribute per turn. Measured in BENCHMARKS.md.

Where spans go: OpenTelemetry's standard environment (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_SERVICE_NAME``, ...), read by the OTLP/HTTP
exporter in each node process; every process batches its spans and flushes them when it
stops (a process killed with kill -9 loses its last batch).
"""
from __future__ import annotations

import os
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: the W3C trace context propagator (traceparent, tracestate)
PROPAGATOR = TraceContextTextMapPropagator()
#: fields of ``ctx["trace"]``, and the longest value accepted from a peer
FIELDS, MAX_FIELD = ("traceparent", "tracestate"), 512
#: milliseconds between two exports of a process's batched spans
EXPORT_EVERY_MS = 500


def current() -> dict[str, str] | None:
    """The current span's context as ``ctx["trace"]`` (None: no span is current)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier or None


def parent(carrier: Any) -> otel_context.Context | None:
    """The context a call's ``ctx["trace"]`` names (None: none, or not a valid one)."""
    if not carrier:
        return None
    ctx = PROPAGATOR.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def link_of(carrier: Any) -> list[trace.Link]:
    """A link to the span ``carrier`` names (an alarm's turn to the turn that set it)."""
    ctx = parent(carrier)
    return [trace.Link(trace.get_current_span(ctx).get_span_context())] if ctx else []


def check(carrier: Any) -> bool:
    """Whether ``carrier`` is a well-formed ``ctx["trace"]`` from a peer."""
    return (isinstance(carrier, dict) and 0 < len(carrier) <= len(FIELDS)
            and all(k in FIELDS and isinstance(v, str) and len(v) <= MAX_FIELD
                    for k, v in carrier.items()))


class Tracing:
    """A node process's tracer and the provider to flush when it stops."""

    def __init__(self, tracer: trace.Tracer, provider: Any) -> None:
        self.tracer, self.provider = tracer, provider

    def close(self) -> None:
        """Export what is batched, then stop (called when the process stops)."""
        self.provider.shutdown()


def start(role: str, slot: int | None) -> Tracing:
    """This process's tracing, for a node with ``[node] tracing = true``: the SDK's
    tracer provider with a batching OTLP/HTTP exporter configured by the standard
    environment variables, its resource naming the process."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attrs: dict[str, Any] = {"service.name": os.environ.get("OTEL_SERVICE_NAME", "actorsys"),
                             "actorsys.role": role, "process.pid": os.getpid()}
    if slot is not None:
        attrs["actorsys.slot"] = slot
    provider = TracerProvider(resource=Resource.create(attrs))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(),
                                                   schedule_delay_millis=EXPORT_EVERY_MS))
    return Tracing(provider.get_tracer("actorsys"), provider)


def sdk_missing() -> str | None:
    """Why ``[node] tracing = true`` cannot work here (None: it can)."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        return (f"the OpenTelemetry SDK is not installed ({exc}); install actorsys[tracing] "
                f"(opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)")
    return None
