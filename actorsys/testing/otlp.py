"""A receiving end of OTLP/HTTP for the tracing tests (issue 17): what an OpenTelemetry
collector does first, on loopback: accept ``POST /v1/traces`` (protobuf, as the SDK's
exporter sends it; gzip or not), decode it with OpenTelemetry's own protobuf classes
(``opentelemetry-proto``) and keep the spans, so a test can read what the node's
processes exported.

    with OtlpReceiver() as otlp:
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = otlp.url
        ...
        otlp.wait_for(lambda spans: any(s["name"] == "Counter.add" for s in spans), 10)
"""
from __future__ import annotations

import gzip
import http.server
import threading
import time
from types import TracebackType
from typing import Any, Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind is not None else None


def spans_of(body: bytes) -> list[dict[str, Any]]:
    """The spans of one export request: ``{"name", "trace_id", "span_id", "parent",
    "kind", "attributes", "links": [(trace_id, span_id)], "status", "resource"}``
    (ids as hex; ``parent`` "" for a root span)."""
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = []
    for rs in req.resource_spans:
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({"name": s.name, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(), "kind": s.kind,
                            "attributes": {a.key: _value(a.value) for a in s.attributes},
                            "links": [(ln.trace_id.hex(), ln.span_id.hex()) for ln in s.links],
                            "status": s.status.code, "resource": resource})
    return out


class OtlpReceiver:
    """``POST /v1/traces`` on a loopback port of its own (see the module docstring)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                got = spans_of(body)
                with receiver.lock:
                    receiver.spans.extend(got)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)

    def wait_for(self, ok: Callable[[list[dict[str, Any]]], Any], timeout: float, what: str) -> Any:
        """Poll the spans until ``ok(spans)`` is truthy (its value), within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            got = ok(self.snapshot())
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; spans: "
                                     f"{[s['name'] for s in self.snapshot()]}")
            time.sleep(0.05)

    def __enter__(self) -> "OtlpReceiver":
        self.thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
