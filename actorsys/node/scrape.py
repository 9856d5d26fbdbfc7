"""The node's metrics, gathered by its router (issue 17; the instruments:
``actorsys/metrics``).

* :meth:`NodeScrape.families` asks every process of the node for its samples
  (``METRICS`` over the node's own sockets, all at once, each within
  :data:`ASK_SECONDS`), adds whose they are (``role``; ``slot`` for a worker) and
  merges them with the router's own. A process that does not answer (restarting, a
  long synchronous turn) is left out of that scrape and shows as ``actorsys_up 0``,
  with the reason logged once per process until it answers again: a scrape never
  waits for more than that one deadline, and never fails because one process did.
* The router answers ``METRICS`` with that (the gateway's ``/metrics`` asks it), and
  with ``[node] metrics = "HOST:PORT"`` serves it itself at ``/metrics``
  (:class:`MetricsListener`, aiohttp, in the router's event loop).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..config import NodeLayout
from ..errors import ActorError
from ..log import get_logger
from ..protocol import wire

if TYPE_CHECKING:
    from aiohttp import web

    from ..client.transport import AsyncTransport

log = get_logger("router")

#: seconds each process has to answer a scrape
ASK_SECONDS = 2.0
#: what each hot actor of a worker's TOP answer must have (others are left out)
TOP_FIELDS: dict[str, type | tuple[type, ...]] = {
    "type": str, "key": str, "slot": int, "turns_per_s": (int, float), "busy": (int, float),
    "errors": int, "mailbox": int}
UP_HELP = "Whether the process answered this scrape (1) or not (0: restarting, busy, down)"


class NodeScrape:
    """Every process's samples, merged (see the module docstring)."""

    def __init__(self, transport: AsyncTransport, layout: NodeLayout,
                 own: metrics.ProcessMetrics) -> None:
        self.transport, self.layout, self.own = transport, layout, own
        #: processes that did not answer the last scrape -> why (logged once)
        self.silent: dict[str, str] = {}

    def _peers(self) -> list[tuple[dict[str, str], str, str]]:
        out = [({"role": "worker", "slot": str(i)}, ep, f"worker slot {i}")
               for i, ep in enumerate(self.layout.workers)]
        if self.layout.tree is not None:
            out.append(({"role": "tree"}, self.layout.tree, "supervision tree"))
        if self.layout.gateway is not None:
            out.append(({"role": "gateway"}, self.layout.gateway, "gateway"))
        return out

    async def _ask(self, labels: dict[str, str], endpoint: str,
                   who: str) -> tuple[dict[str, str], list[metrics.WireFamily] | None]:
        try:
            raw = await self.transport.call_peer(endpoint, wire.METRICS, [], ASK_SECONDS, who)
            got = metrics.check_families(raw)
        except (ActorError, ValueError) as exc:
            self._silent(who, str(exc), "the scrape; it shows as actorsys_up 0 until it does")
            return labels, None
        self._answered(who)
        return labels, got

    def _silent(self, who: str, why: str, what: str) -> None:
        """A process did not answer: logged once, until it answers again."""
        if self.silent.get(who) is None:
            log.warning("metrics: the %s did not answer %s (%s)", who, what, why)
        self.silent[who] = why

    def _answered(self, who: str) -> None:
        if self.silent.pop(who, None) is not None:
            log.info("metrics: the %s answers again", who)

    async def families(self) -> list[metrics.WireFamily]:
        """The whole node's families (wire form: what ``METRICS`` answers)."""
        answers = await asyncio.gather(*(self._ask(*p) for p in self._peers()))
        router = {"role": "router"}
        up_samples: list[list[object]] = [["actorsys_up", router, 1.0]]
        parts: list[tuple[dict[str, str], list[metrics.WireFamily]]] = [
            (router, self.own.families())]
        for labels, got in answers:
            up_samples.append(["actorsys_up", labels, 0.0 if got is None else 1.0])
            if got is not None:
                parts.append((labels, got))
        parts.append(({}, [["actorsys_up", "gauge", UP_HELP, up_samples]]))
        return metrics.merge(parts)

    async def top(self, n: int, by: str) -> list[dict[str, Any]]:
        """The node's ``n`` hottest actors by ``by``: every worker's, merged (a worker that
        does not answer within :data:`ASK_SECONDS` is left out, and logged as above)."""
        field = "turns_per_s" if by == "turns" else by

        async def one(slot: int, endpoint: str) -> list[dict[str, Any]]:
            who = f"worker slot {slot}"
            try:
                got = await self.transport.call_peer(endpoint, wire.TOP, [n, by], ASK_SECONDS, who)
                if not isinstance(got, list):
                    raise ValueError(f"a top answer must be an array, got {type(got).__name__}")
            except (ActorError, ValueError) as exc:
                self._silent(who, str(exc), "top")
                return []
            self._answered(who)
            return [h for h in got if isinstance(h, dict) and all(
                isinstance(h.get(k), t) for k, t in TOP_FIELDS.items())]
        merged = [h for part in await asyncio.gather(*(one(i, ep) for i, ep in
                                                       enumerate(self.layout.workers)))
                  for h in part]
        return sorted(merged, key=lambda h: h[field], reverse=True)[:n]


class MetricsListener:
    """``GET /metrics`` on ``[node] metrics``'s address (aiohttp, imported here: only a
    router that serves metrics loads it)."""

    def __init__(self, scrape: NodeScrape, listen: str) -> None:
        self.scrape, self.listen = scrape, listen
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve; OSError (the address in use, say) is the caller's to report."""
        from aiohttp import web
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        host, port = self.listen.rsplit(":", 1)
        await web.TCPSite(self.runner, host.strip("[]"), int(port)).start()

    async def _serve(self, request: web.Request) -> web.Response:
        return metrics.http_response(await self.scrape.families())

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

