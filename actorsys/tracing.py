"""Tracing with OpenTelemetry (issue 17): a W3C trace context travels in a call's
context (``ctx["trace"]``: the ``traceparent`` and ``tracestate`` fields, made and read by
OpenTelemetry's own propagator), from a client to the actor and on across
``self.ref(...).ask`` and ``tell``; a node with ``[node] tracing = true`` makes one span
per turn (``Counter.add``, with the actor's type, key, method, slot and outcome), a
child of the caller's span, and an alarm's turn links to the turn that set it.

Layer: the bottom, beside ``log`` and ``metrics``. It imports OpenTelemetry only when it
is used: ``opentelemetry-api`` (a dependency: light, no exporter) once a span is current
or the node traces, the SDK and its OTLP exporter (the optional extra
``actorsys[tracing]``) in :func:`start` alone. A node process that does not trace never
imports either (importing them costs a node's start about 0.25 s here).

Cost without tracing (the default): a client's ask or tell looks OpenTelemetry up in
``sys.modules`` (not imported: no span can be current); if the program imported it, it
asks the API for the current span and finds none valid. A worker whose node does not
trace checks one attribute per turn. Measured in BENCHMARKS.md.

Where spans go: OpenTelemetry's standard environment (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_SERVICE_NAME``, ...), read by the OTLP/HTTP
exporter in each node process; every process batches its spans and flushes them when it
stops (a process killed with kill -9 loses its last batch).
"""
from __future__ import annotations

import os
import sys
from typing import Any

#: fields of ``ctx["trace"]``, and the longest value accepted from a peer
FIELDS, MAX_FIELD = ("traceparent", "tracestate"), 512
#: milliseconds between two exports of a process's batched spans
EXPORT_EVERY_MS = 500
#: the turn's kind of span, by what the turn is (OpenTelemetry's SpanKind names)
ASK, TELL, INTERNAL = "SERVER", "CONSUMER", "INTERNAL"

_propagator: Any = None


def _w3c() -> Any:
    """OpenTelemetry's W3C trace context propagator (traceparent, tracestate)."""
    global _propagator
    if _propagator is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        _propagator = TraceContextTextMapPropagator()
    return _propagator


def current() -> dict[str, str] | None:
    """The current span's context as ``ctx["trace"]`` (None: no span is current). A
    program that never imported OpenTelemetry has no current span: nothing is imported
    or read then (a client, or a node that does not trace, pays a dict lookup)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _w3c().inject(carrier)
    if len(carrier.get("tracestate", "")) > MAX_FIELD:
        del carrier["tracestate"]     # (W3C lets a hop drop what it cannot carry; the parent stays)
    return carrier or None


def parent(carrier: Any) -> Any:
    """The OpenTelemetry context a call's ``ctx["trace"]`` names (None: none, or not a
    valid one)."""
    if not carrier:
        return None
    from opentelemetry import trace
    ctx = _w3c().extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def link_of(carrier: Any) -> list[Any]:
    """A link to the span ``carrier`` names (an alarm's turn to the turn that set it)."""
    ctx = parent(carrier)
    if ctx is None:
        return []
    from opentelemetry import trace
    return [trace.Link(trace.get_current_span(ctx).get_span_context())]


def check(carrier: Any) -> bool:
    """Whether ``carrier`` is a well-formed ``ctx["trace"]`` from a peer."""
    return (isinstance(carrier, dict) and 0 < len(carrier) <= len(FIELDS)
            and all(k in FIELDS and isinstance(v, str) and len(v) <= MAX_FIELD
                    for k, v in carrier.items()))


class Tracing:
    """A node process's tracer and the provider to flush when it stops."""

    def __init__(self, tracer: Any, provider: Any) -> None:
        self.tracer, self.provider = tracer, provider

    def start_span(self, name: str, caller: Any, kind: str, attributes: dict[str, Any],
                   set_by: Any = None) -> tuple[Any, Any]:
        """Start a turn's span, a child of ``caller``'s (a call's ``ctx["trace"]``),
        linked to ``set_by``'s (an alarm's setting turn), and make it current:
        ``(span, token)``; :func:`detach` the token when the turn's code returns."""
        from opentelemetry import context, trace
        # no caller's context: a root span, never a child of whatever span is current here
        # (a turn may start inside another turn's task, which carries that turn's span)
        span = self.tracer.start_span(name, context=parent(caller) or context.Context(),
                                      kind=trace.SpanKind[kind], attributes=attributes,
                                      links=link_of(set_by))
        return span, context.attach(trace.set_span_in_context(span))

    @staticmethod
    def detach(token: Any) -> None:
        from opentelemetry import context
        context.detach(token)

    @staticmethod
    def end_span(span: Any, exc: BaseException | None) -> None:
        """End a turn's span with its outcome (an error's recorded)."""
        if exc is None:
            span.set_attribute("actorsys.outcome", "ok")
        else:
            from opentelemetry.trace import StatusCode
            span.set_attribute("actorsys.outcome", "error")
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {str(exc):.200}")
        span.end()

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
