"""The router's periodic grants to its workers (actorsys/cluster/grants.py): grants
asked for while one is on its way make a single grant after it (a look at the contents if
any of them wanted one), never a queue. Before, a slow worker got a queue of grants no
longer true and fell ever further behind, its loop blocked until it was killed as hung.
(The real grants, against real workers and etcd, are in the cluster node tests.)"""
from __future__ import annotations

import asyncio
from typing import Any

from actorsys.cluster.grants import Grants


class Router:
    """The attributes of Grants its grant pacing uses; ``_grant`` records each
    grant sent and waits until the test lets it answer."""

    grant_quietly = Grants.grant_quietly

    def __init__(self) -> None:
        self.grant_follow: dict[int, bool | None] = {}
        self.sent: list[tuple[int, bool, bool]] = []       # (slot, periodic, renew_only)
        self.answer = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    async def _grant(self, slot: int, timeout: float | None = None, periodic: bool = False,
                     renew_only: bool = False) -> dict[str, Any]:
        self.sent.append((slot, periodic, renew_only))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.answer.wait()
        finally:
            self.in_flight -= 1
        return {}


def test_grants_asked_while_one_is_on_its_way_make_one_more_after_it() -> None:
    async def main() -> Router:
        r = Router()
        first = asyncio.create_task(r.grant_quietly(0, renew_only=True))
        await asyncio.sleep(0)
        for _ in range(20):                              # two seconds of periodic rounds
            await r.grant_quietly(0, renew_only=True)
        await r.grant_quietly(0, renew_only=False)      # (a change: look at the contents)
        other = asyncio.create_task(r.grant_quietly(1, renew_only=True))
        await asyncio.sleep(0)
        assert r.sent == [(0, True, True), (1, True, True)], "worker 1's own, at once"
        r.answer.set()
        await asyncio.gather(first, other)
        return r
    r = asyncio.run(main())
    assert [g for g in r.sent if g[0] == 0] == [(0, True, True), (0, True, False)], \
        "one grant after the one on its way, looking at the contents"
    assert not r.grant_follow
