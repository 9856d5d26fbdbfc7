"""The web dashboard (issue 17): ``[gateway] dashboard = true`` serves ``/dashboard``, one
page with no build step (``dashboard.html``: plain HTML, CSS and JavaScript in the
package, nothing fetched from elsewhere), and the two JSON reads it polls:

* ``GET /dashboard/api/overview``: the node's processes (``STATUS``), each process's
  turns, restarts and CPU counters (from ``METRICS``), the hot actors (``TOP``), each
  supervisor's children (``which_children``) and, for a node of a cluster, the cluster
  as it sees it (``CLUSTER``). The page keeps the last minutes of
  these itself and draws turns/s and restarts as charts.
* ``GET /dashboard/api/actor/{type}/{key}?after=&limit=``: the actor inspector, one
  actor's ``$inspect`` (where it lives, its state, a page of its storage entries, its
  alarms, its history's versions; read-only, as last committed, never activating it).

Access: off by default; the gateway's Host check applies, the inspector reaches only the
types of ``[gateway] expose``, and the ``auth`` hook sees ``actor_method`` ``"$overview"``
(with ``actor_type`` ``"$dashboard"``) or ``"$inspect"`` (with the inspected actor's type
and key), so a hook can keep the dashboard to operators; with no hook the gateway logs at
start that the dashboard is open. Values that JSON cannot carry (bytes, msgpack extension types,
non-string map keys) are shown as text, never dropped silently.
"""
from __future__ import annotations

import asyncio
import base64
import json
import math
import os
from typing import Any

from aiohttp import web

from ..client.transport import AsyncTransport
from ..errors import ActorError
from ..log import get_logger
from ..protocol import wire
from ..protocol.messages import Top
from .admission import Admission, check_key, error_response
from .auth import Refused

log = get_logger("gateway")

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard.html")
#: seconds each read of the overview may take
READ_SECONDS = 5.0
#: hot actors and children per supervisor the overview carries
HOT_SHOWN, CHILDREN_SHOWN = 15, 50
#: the overview's counters, by sample name (summed per process)
COUNTED = ("actorsys_turns_total", "actorsys_process_restarts_total", "process_cpu_seconds_total",
           "actorsys_supervisor_restarts_total", "actorsys_turn_failures_total")


def jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot carry shown as text: bytes as ``{"bytes": base64}``
    (and their first bytes), other objects by their repr."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)             # (JSON has no NaN or Infinity)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": base64.b64encode(value).decode(), "text": repr(bytes(value[:64]))}
    return repr(value)


class Dashboard:
    """The routes of the module docstring, for one gateway."""

    def __init__(self, admission: Admission, transport: AsyncTransport, ask_timeout: float) -> None:
        self.admission, self.transport, self.ask_timeout = admission, transport, ask_timeout

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/dashboard", self.page)
        app.router.add_get("/dashboard/api/overview", self.overview)
        app.router.add_get("/dashboard/api/actor/{type}/{key}", self.actor)

    async def _admit(self, request: web.Request, type_name: str, key: str, method: str) -> None:
        await self.admission.admit_operator(request, type_name, key, method)

    async def page(self, request: web.Request) -> web.StreamResponse:
        try:
            await self._admit(request, "$dashboard", "", "$overview")
        except Refused as r:
            return error_response(r.status, r.code, str(r))
        return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def overview(self, request: web.Request) -> web.Response:
        try:
            await self._admit(request, "$dashboard", "", "$overview")
            status, families, hot = await asyncio.gather(
                self.transport.call_router(wire.STATUS, READ_SECONDS),
                self.transport.call_router(wire.METRICS, READ_SECONDS),
                self.transport.request_router(lambda rid: Top(rid, HOT_SHOWN, "busy"), READ_SECONDS))
            tree = await self._tree(status)
            cluster = (await self.transport.call_router(wire.CLUSTER, READ_SECONDS)
                       if isinstance(status.get("cluster"), dict) else None)
        except Refused as r:
            return error_response(r.status, r.code, str(r))
        except ActorError as exc:
            log.warning("/dashboard: the node's overview did not come: %s", exc)
            return error_response(503, exc.to_wire()["code"], f"the node did not answer: {exc}")
        counted: dict[str, dict[str, float]] = {}
        for _name, _type, _help, samples in families:
            for name, labels, value in samples:
                if name in COUNTED:
                    who = labels.get("role", "?") + (f"[{labels['slot']}]" if "slot" in labels else "")
                    if name == "actorsys_supervisor_restarts_total":
                        who = labels.get("supervisor", "?")
                    per = counted.setdefault(name, {})
                    per[who] = per.get(who, 0.0) + float(value)
        return self._json({"status": status, "counters": counted, "hot": hot, "tree": tree,
                           "cluster": cluster})

    async def _tree(self, status: dict[str, Any]) -> dict[str, Any]:
        sups = [name for p in status.get("processes", []) if p.get("role") == "tree" and p.get("up")
                for name in sorted(p.get("supervisors") or {})]

        async def children(name: str) -> Any:
            try:
                got = await self.transport.supervise(name, "which_children", None, READ_SECONDS)
                return {"children": got[:CHILDREN_SHOWN], "total": len(got)}
            except ActorError as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}
        return dict(zip(sups, await asyncio.gather(*(children(n) for n in sups))))

    async def actor(self, request: web.Request) -> web.Response:
        type_name, key = request.match_info["type"], request.match_info["key"]
        try:
            check_key(key)
            if type_name not in self.admission.types:     # ([gateway] expose holds here too)
                raise Refused(404, "unknown_type", f"no actor type {type_name!r:.100} here")
            await self._admit(request, type_name, key, "$inspect")
            after = request.query.get("after") or None
            try:
                limit = int(request.query.get("limit", "50"))
            except ValueError:
                raise Refused(400, "bad_request", "limit must be an integer") from None
            got = await self.transport.ask(type_name, key, "$inspect", [],
                                           {"after": after, "limit": limit}, self.ask_timeout)
            m = self.transport.map
            slot = m.slot_of(type_name, key) if m is not None else None
            node = m.node_of_slot(slot) if m is not None and slot is not None else None
        except Refused as r:
            return error_response(r.status, r.code, str(r))
        except ActorError as exc:
            body = exc.to_wire()
            status = {"unknown_type": 404, "bad_request": 400}.get(body["code"], 503)
            return error_response(status, body["code"], body["message"])
        got["slot"] = slot
        got["node"] = (node or {}).get("id")
        got["endpoint"] = m.endpoints[slot] if m is not None and slot is not None else None
        return self._json(got)

    @staticmethod
    def _json(body: Any) -> web.Response:
        return web.Response(text=json.dumps(jsonable(body), ensure_ascii=False),
                            content_type="application/json", headers={"Cache-Control": "no-store"})
