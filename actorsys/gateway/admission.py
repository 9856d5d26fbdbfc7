"""Who may reach which actor through the gateway: the checks every request passes before
it reaches an actor, for HTTP and WebSockets alike.

* The ``Host`` must be the gateway's own (its ``listen`` address, the loopback names of
  a loopback address, ``allowed_hosts``): a page on another name that resolves here (DNS
  rebinding) is refused with 421.
* The actor type must be exposed (``expose``, default every registered type) and the key
  valid (:func:`check_key`: the protocol's one check, which the subscriber endpoint
  uses too); a method named ``_x`` or ``$x`` is not reachable.
* A browser's ``Origin`` must be the page's own or in ``allowed_origins`` (``["*"]``:
  any); a listed origin gets CORS headers and its preflights answered.
* Then the ``auth`` hook (:mod:`.auth`), if any.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiohttp import web

from ..errors import BadRequest
from ..protocol import wire
from .auth import AuthHook, GatewayRequest, Refused

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, **more: Any) -> web.Response:
    """The gateway's error answer: ``{"error": code, "message": message, ...}``."""
    return web.json_response({"error": code, "message": message, **more}, status=status)


class Admission:
    """The checks of the module docstring, for one gateway's ``[gateway]`` table."""

    def __init__(self, gateway: dict[str, Any], listen: str, types: set[str], auth: AuthHook | None,
                 counters: dict[str, int]) -> None:
        self.types, self.auth, self.counters = types, auth, counters
        self.origins: list[str] = gateway["allowed_origins"]
        self.hosts = allowed_hosts(listen, gateway["allowed_hosts"])

    async def admit(self, request: web.Request, method: str | None) -> Any:
        """Check a request against the limits and the auth hook; returns the hook's
        value (None without a hook) or raises :class:`Refused`. ``method`` is None for a
        WebSocket."""
        type_name, key = request.match_info["type"], request.match_info["key"]
        if type_name not in self.types:
            raise Refused(404, "unknown_type", f"no actor type {type_name!r:.100} here")
        check_key(key)
        if method is not None and method.startswith(("_", "$")):
            raise Refused(404, "unknown_method", f"actor type {type_name!r} has no method {method!r:.100}")
        return await self.admit_operator(request, type_name, key, method)

    async def admit_operator(self, request: web.Request, type_name: str, key: str,
                             method: str | None) -> Any:
        """The origin, then the auth hook (its value, or Refused): :meth:`admit`'s last
        checks, and the whole of the dashboard's (``dashboard.py``: ``actor_method``
        ``$overview`` or ``$inspect``). ``method`` None: a WebSocket."""
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request):
            self.counters["origin_refused"] += 1
            raise Refused(403, "forbidden", f"origin {origin!r:.100} is not allowed "
                                            f"(see [gateway] allowed_origins)")
        if self.auth is None:
            return None
        return await self.auth.user(GatewayRequest(
            method=request.method, path=request.path, query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            cookies=dict(request.cookies), remote=request.remote, origin=origin,
            actor_type=type_name, actor_key=key, actor_method=method, websocket=method is None))

    @web.middleware
    async def check_host_and_cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request: its Host must be this gateway's (a page on another name that
        resolves here, DNS rebinding, is refused), and a listed origin gets CORS headers."""
        hosts = self.hosts
        if hosts is not None and request.host.lower() not in hosts:
            return error_response(421, "forbidden", f"this gateway does not serve the host "
                                                    f"{request.host!r:.100} (see [gateway] allowed_hosts)")
        response = await handler(request)
        origin = request.headers.get("Origin")
        if origin is not None and self._listed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    async def preflight(self, request: web.Request) -> web.Response:
        """A browser's CORS preflight for ``POST /actors/...`` from a listed origin."""
        origin = request.headers.get("Origin")
        if origin is None or not self._listed(origin):
            return error_response(403, "forbidden", f"origin {origin!r:.100} is not allowed "
                                                    f"(see [gateway] allowed_origins)")
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": request.headers.get(
                "Access-Control-Request-Headers", "content-type"),
            "Access-Control-Max-Age": "600"})

    def _listed(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins

    def _origin_allowed(self, origin: str, request: web.Request) -> bool:
        if self._listed(origin):
            return True
        return origin in (f"http://{request.host}", f"https://{request.host}")


def check_key(key: str) -> None:
    """Refused (400) for a key that is no actor's (:func:`~actorsys.protocol.wire.check_key`)."""
    try:
        wire.check_key(key)
    except BadRequest as exc:
        raise Refused(400, "bad_request", str(exc)) from None


def allowed_hosts(listen: str, extra: list[str]) -> set[str] | None:
    """The Host headers the gateway answers: its listen address (and the loopback names,
    for a loopback address) plus ``allowed_hosts``; None: any (``"*"``, or a wildcard
    address such as 0.0.0.0 without a list)."""
    host, port = listen.rsplit(":", 1)
    if "*" in extra:
        return None
    if host in ("0.0.0.0", "::", "[::]") and not extra:
        return None
    names = {f"{host}:{port}".lower(), *(h.lower() for h in extra)}
    if host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        names |= {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if port == "80":
        names |= {n.rsplit(":", 1)[0] for n in list(names)}
    return names
