"""``POST /actors/{type}/{key}/{method}``: an ask over HTTP.

The body is a JSON array (positional arguments), a JSON object (keyword arguments) or
nothing. The result is answered as JSON; an error as ``{"error": code, "message": ...}``
with the status in :data:`STATUS_OF` (and ``Retry-After: 1`` where trying again may
work). A handler's traceback stays in the gateway's log.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from .. import tracing
from ..client.transport import AsyncTransport
from ..errors import ActorError
from ..log import get_logger
from ..lograte import RateLimit
from .admission import Admission, error_response
from .auth import Refused
from .doors import answer_and_close

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
                 max_body: int, counters: dict[str, int], *, body_timeout: float = 30.0,
                 limited: RateLimit | None = None) -> None:
        self.admission, self.transport, self.counters = admission, transport, counters
        self.ask_timeout, self.max_body, self.body_timeout = ask_timeout, max_body, body_timeout
        #: the log's limit for repeated lines (body timeouts, handlers that raise); its
        #: owner sweeps it (doors.py)
        self.limited = limited or RateLimit(log, "gateway log lines", burst=5, window=60.0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.counters["http_requests"] += 1
        type_name, key = request.match_info["type"], request.match_info["key"]
        method = request.match_info["method"]
        try:
            await self.admission.admit(request, method)
            body = await self._body(request)
            args, kwargs = arguments(body)
            try:
                pending = self.transport.ask(type_name, key, method, args, kwargs, self.ask_timeout,
                                             ctx=traced(request))
            except (TypeError, ValueError, OverflowError) as exc:   # e.g. a 30-digit integer
                raise Refused(400, "bad_request", f"the arguments cannot be sent ({exc})") from None
            result = await pending
        except Refused as r:
            self.counters["http_errors"] += 1
            response = error_response(r.status, r.code, str(r))
            if r.status in (408, 413):       # the rest of the body is not read
                return await answer_and_close(request, response)
            return response
        except ActorError as exc:
            self.counters["http_errors"] += 1
            return self._actor_error(request, exc, self.limited)
        try:
            text = json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            self.counters["http_errors"] += 1
            return error_response(500, "not_json", f"the result is not JSON ({exc})")
        return web.Response(text=text, content_type="application/json")

    async def _body(self, request: web.Request) -> bytes:
        """The whole body, within ``body_timeout`` seconds (else 408) and
        ``max_message_bytes`` (else 413; a ``Content-Length`` over it was answered
        before the body came: ``doors.py``)."""
        try:
            return await asyncio.wait_for(request.read(), self.body_timeout)
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, "too_large", f"the body is larger than max_message_bytes "
                                            f"({self.max_body})") from None
        except asyncio.TimeoutError:
            self.counters["body_timeouts"] += 1
            if self.limited.allow("body_timeout"):
                log.warning("POST %s from %s: the body did not come within body_timeout (%.3g s)",
                            request.path, request.remote, self.body_timeout)
            raise Refused(408, "timeout", f"the body did not come within body_timeout "
                                          f"({self.body_timeout:.3g} s)") from None

    @staticmethod
    def _actor_error(request: web.Request, exc: ActorError,
                     limited: RateLimit | None = None) -> web.Response:
        """The answer to an ask that failed (a handler's traceback goes to the log only)."""
        body: dict[str, Any] = exc.to_wire()
        tb = body.pop("traceback", None)      # server internals stay in the server's log
        code = body.pop("code")
        if code == "remote" and (limited is None or limited.allow("remote")):
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
