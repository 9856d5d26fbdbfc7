"""Tracing with OpenTelemetry through a real node (issue 17): a client's span is the parent
of the actor's turn, which is the parent of the turns it asks and tells on, across
worker processes; an alarm's turn links to the turn that set it; a failed turn's span
says so; the gateway continues an HTTP caller's trace. The spans are exported by the
SDK's OTLP/HTTP exporter in each worker and received on loopback
(``actorsys/testing/otlp.py``)."""
from __future__ import annotations

import json
import urllib.request
from typing import Any, Iterator

import pytest
from helpers import make_config
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

import actorsys
from actorsys.errors import ConfigError
from actorsys.testing.otlp import OtlpReceiver


@pytest.fixture
def traced_node(tmp_path, monkeypatch) -> Iterator[tuple[actorsys.Node, OtlpReceiver]]:
    with OtlpReceiver() as otlp:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.url)   # the node's processes inherit it
        cfg = make_config(str(tmp_path / "data"), tracing=True)
        cfg["actors"]["Alarmist"] = "alarm_actors:Alarmist"
        cfg["gateway"] = {"listen": "127.0.0.1:0"}
        with actorsys.Node(cfg) as n:
            yield n, otlp


def named(spans: list[dict[str, Any]], name: str, **attrs: Any) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name
            and all(s["attributes"].get(k) == v for k, v in attrs.items())]


def test_a_client_s_span_is_the_parent_of_the_turns_it_causes(traced_node):
    node, otlp = traced_node
    tracer = TracerProvider().get_tracer("test")       # the test's own SDK, not exported
    c = node.client()
    with tracer.start_as_current_span("checkout") as root:
        c.ref("Relay", "r1").ask("forward_ask", "Counter", "far", "add", 2)
        c.ref("Relay", "r1").ask("forward_tell", "Counter", "told", "add", 3)
    c.ref("Counter", "told").ask("get")        # (the tell has run)
    trace_id = format(root.get_span_context().trace_id, "032x")
    root_id = format(root.get_span_context().span_id, "016x")

    def chain(spans: list[dict[str, Any]]) -> Any:
        mine = [s for s in spans if s["trace_id"] == trace_id]
        fwd = named(mine, "Relay.forward_ask", **{"actorsys.key": "r1"})
        add = named(mine, "Counter.add", **{"actorsys.key": "far"})
        tell = named(mine, "Relay.forward_tell")
        told = named(mine, "Counter.add", **{"actorsys.key": "told"})
        return (fwd, add, tell, told) if fwd and add and tell and told else None
    fwd, add, tell, told = otlp.wait_for(chain, 15, "the four turns of the trace")
    assert fwd[0]["parent"] == root_id and fwd[0]["kind"] == SpanKind.SERVER.value + 1
    assert add[0]["parent"] == fwd[0]["span_id"]          # across the Relay's ask
    assert tell[0]["parent"] == root_id
    assert told[0]["parent"] == tell[0]["span_id"]        # across the tell, after the commit
    assert told[0]["kind"] == SpanKind.CONSUMER.value + 1
    a = add[0]["attributes"]
    assert a["actorsys.type"] == "Counter" and a["actorsys.method"] == "add"
    assert a["actorsys.outcome"] == "ok" and a["actorsys.slot"] in (0, 1)
    assert add[0]["resource"]["actorsys.role"] == "worker"


def test_an_alarm_links_to_the_turn_that_set_it_and_a_failure_is_an_error(traced_node):
    node, otlp = traced_node
    c = node.client()
    # set from an async turn: the alarm's turn must not become a child of its span
    c.ref("Alarmist", "a").ask("set_then_wait", 0.2, "ping", 0.5)
    with pytest.raises(actorsys.RemoteError):
        c.ref("Counter", "bad").ask("add_then_fail", 1)

    def found(spans: list[dict[str, Any]]) -> Any:
        setter = named(spans, "Alarmist.set_then_wait")
        fired = named(spans, "Alarmist.$alarm", **{"actorsys.alarm": "ping"})
        failed = named(spans, "Counter.add_then_fail")
        return (setter, fired, failed) if setter and fired and failed else None
    setter, fired, failed = otlp.wait_for(found, 15, "the setting turn, the alarm and the failure")
    assert fired[0]["links"] == [(setter[0]["trace_id"], setter[0]["span_id"])]
    assert fired[0]["parent"] == "" and fired[0]["trace_id"] != setter[0]["trace_id"], \
        "an alarm's turn is the root of its own trace, linked to the setter"
    assert failed[0]["status"] == StatusCode.ERROR.value
    assert failed[0]["attributes"]["actorsys.outcome"] == "error"


def test_the_gateway_continues_an_http_caller_s_trace(traced_node):
    node, otlp = traced_node
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    req = urllib.request.Request(node.gateway_url + "/actors/Counter/http/add", data=b"[4]",
                                 headers={"traceparent": f"00-{trace_id}-{parent}-01",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read()) == 4
    got = otlp.wait_for(lambda spans: named(spans, "Counter.add", **{"actorsys.key": "http"}),
                        15, "the HTTP ask's turn")
    assert got[0]["trace_id"] == trace_id and got[0]["parent"] == parent


def test_a_call_with_no_trace_is_a_root_even_after_an_async_turn(traced_node):
    """A turn started from inside another turn's task (the worker's pump runs there)
    does not inherit that turn's span: with no caller's context it is a root."""
    node, otlp = traced_node
    c = node.client()
    c.ref("Counter", "solo").tell("slow_add", 1, 0.3)
    c.ref("Counter", "solo").ask("add", 1)

    def both(spans: list[dict[str, Any]]) -> Any:
        slow = named(spans, "Counter.slow_add", **{"actorsys.key": "solo"})
        add = named(spans, "Counter.add", **{"actorsys.key": "solo"})
        return (slow, add) if slow and add else None
    slow, add = otlp.wait_for(both, 15, "both turns")
    assert add[0]["parent"] == "" and add[0]["trace_id"] != slow[0]["trace_id"]


def test_a_long_tracestate_is_dropped_not_the_call():
    """W3C lets a tracestate run to 32 entries; one over the wire limit is dropped (the
    traceparent goes on) instead of making every call a BadRequest."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState, use_span

    from actorsys import tracing
    from actorsys.protocol import wire
    state = TraceState([(f"v{i}", "x" * 200) for i in range(4)])
    ctx = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, False,
                      TraceFlags(1), state)
    with use_span(NonRecordingSpan(ctx)):
        got = tracing.current()
    assert got is not None and set(got) == {"traceparent"}
    wire.check_ctx({"trace": got})      # what is sent passes the receiver's check


def test_no_span_leaves_a_client_without_a_current_span(tmp_path):
    # no SDK in this process's global provider: the call context carries no trace
    assert not trace.get_current_span().get_span_context().is_valid
    from actorsys import tracing
    assert tracing.current() is None


def test_tracing_without_the_sdk_is_a_config_error(tmp_path, monkeypatch):
    from actorsys import tracing
    monkeypatch.setattr(tracing, "sdk_missing", lambda: "the OpenTelemetry SDK is not installed")
    with pytest.raises(ConfigError) as e:
        actorsys.load_config(make_config(str(tmp_path / "d"), tracing=True))
    assert e.value.key == "node.tracing" and "SDK" in str(e.value)
