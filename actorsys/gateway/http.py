"""``POST /actors/{type}/{key}/{method}``: an ask over HTTP.

The body is a JSON array (positional arguments), a JSON object (keyword arguments) or
nothing. The result is answered as JSON; an error as ``{"error": code, "message": ...}``
with the status in :data:`STATUS_OF` (and ``Retry-After: 1`` where trying again may
work). A handler's traceback stays in the gateway's log.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .. import tracing
from ..client.transport import AsyncTransport
from ..errors import ActorError
from ..log import get_logger
from .admission import Admission, error_response
from .auth import Refused

log = get_logger("gateway")

#: error code -> HTTP status
STATUS_OF = {
    "unknown_type": 404, "unknown_method": 404, "bad_request": 400, "too_large": 413,
    "limit": 422, "remote": 500, "timeout": 504, "overloaded": 503, "worker_lost": 503,
    "unavailable": 503, "storage": 503, "stopped": 409, "wrong_shard": 503, "forbidden": 403,
    "shard_unavailable": 503,
}
#: error codes answered with ``Retry-After``
RETRY_LATER = ("overloaded", "worker_lost", "unavailable", "storage", "shard_unavailable")


class HttpAsks:
    """The handler of ``POST /actors/...``: admission, then one ask."""

    def __init__(self, admission: Admission, transport: AsyncTransport, ask_timeout: float,
                 max_body: int, counters: dict[str, int]) -> None:
        self.admission, self.transport, self.counters = admission, transport, counters
        self.ask_timeout, self.max_body = ask_timeout, max_body

    async def handle(self, request: web.Request) -> web.Response:
        self.counters["http_requests"] += 1
        type_name, key = request.match_info["type"], request.match_info["key"]
        method = request.match_info["method"]
        try:
            await self.admission.admit(request, method)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise Refused(413, "too_large", f"the body is larger than max_message_bytes "
                                                f"({self.max_body})") from None
            args, kwargs = arguments(body)
            try:
                pending = self.transport.ask(type_name, key, method, args, kwargs, self.ask_timeout,
                                             ctx=traced(request))
            except (TypeError, ValueError, OverflowError) as exc:   # e.g. a 30-digit integer
                raise Refused(400, "bad_request", f"the arguments cannot be sent ({exc})") from None
            result = await pending
        except Refused as r:
            self.counters["http_errors"] += 1
            return error_response(r.status, r.code, str(r))
        except ActorError as exc:
            self.counters["http_errors"] += 1
            return self._actor_error(request, exc)
        try:
            text = json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            self.counters["http_errors"] += 1
            return error_response(500, "not_json", f"the result is not JSON ({exc})")
        return web.Response(text=text, content_type="application/json")

    @staticmethod
    def _actor_error(request: web.Request, exc: ActorError) -> web.Response:
        """The answer to an ask that failed (a handler's traceback goes to the log only)."""
        body: dict[str, Any] = exc.to_wire()
        tb = body.pop("traceback", None)      # server internals stay in the server's log
        code = body.pop("code")
        if code == "remote":
            log.error("POST %s: the handler raised\n%s", request.path, tb or exc)
        extra = {"type": body["type"]} if code == "remote" else {}
        resp = error_response(STATUS_OF.get(code, 500), code, body["message"], **extra)
        if code in RETRY_LATER:
            resp.headers["Retry-After"] = "1"
        return resp


def traced(request: web.Request) -> dict[str, Any] | None:
    """The call context carrying the HTTP request's W3C trace context (``traceparent``,
    ``tracestate`` headers), if it has a well-formed one: the actor's turn is then a
    child of the caller's span (``actorsys/tracing.py``)."""
    carrier = {k: request.headers[k] for k in tracing.FIELDS if k in request.headers}
    return {"trace": carrier} if carrier and tracing.check(carrier) else None


def arguments(body: bytes) -> tuple[list[Any], dict[str, Any]]:
    """An HTTP body as (args, kwargs): a JSON array, a JSON object, or nothing."""
    if not body.strip():
        return [], {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "bad_request", f"the body is not JSON ({exc})") from None
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    raise Refused(400, "bad_request", "the body is a JSON array (positional arguments) or "
                                      "object (keyword arguments)")
