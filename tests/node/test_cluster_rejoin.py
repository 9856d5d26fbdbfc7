"""A node that lost its etcd lease (paused past it) and joined again under a new lease
remembers that lease: its router, killed afterwards and restarted by the node
supervisor, recognises the node's own record and serves again, instead of refusing to
start ("node_id is already a live member") and taking the whole node down. Found by
``scripts/chaos --cluster 3`` (a cut, then a router kill on the same node)."""
from __future__ import annotations

import pytest
from helpers import ACTORS, ACTORS_DIR

from actorsys.protocol import wire
from actorsys.testing.cluster import Cluster, request
from actorsys.testing.processes import kill
from actorsys.testing.nodes import wait_until

LEASE_TTL = 2.0


def router_pid(c: Cluster, i: int) -> int | None:
    reply = request(c.endpoints[i], wire.STATUS, None, 2.0)
    if reply is None or reply[0] != wire.OK:
        return None
    return next((p["pid"] for p in reply[1]["processes"] if p["role"] == "router" and p["up"]), None)


def alive(c: Cluster, seen_by: int, node_id: str) -> bool:
    return any(n["id"] == node_id and n["alive"] for n in c.view(seen_by)["nodes"])


@pytest.mark.timeout(120)
def test_a_router_killed_after_its_node_rejoined_under_a_new_lease_starts_again(tmp_path):
    with Cluster(tmp_path, 2, actors=ACTORS, python_path=[ACTORS_DIR], workers=1,
                 lease_ttl=LEASE_TTL, extra_config={"node": {"max_restarts": 100}}) as c:
        for i in range(2):
            c.wait_ready(i)
        wait_until(lambda: alive(c, 0, "n2") and alive(c, 1, "n1"), "both nodes alive", timeout=30)
        # n2 paused past its lease: n1 sees it dead; resumed, it joins again (new lease)
        c.pause_node(1)
        wait_until(lambda: not alive(c, 0, "n2"), "n2's lease expired", timeout=LEASE_TTL * 5)
        c.resume_node(1)
        wait_until(lambda: alive(c, 0, "n2"), "n2 joined again", timeout=20)
        supervisor = c.nodes[1].proc
        assert supervisor is not None
        old = router_pid(c, 1)
        assert old is not None
        kill(old)

        def restarted() -> bool:
            assert c.nodes[1].running, f"n2's supervisor stopped:\n{c.log_tail(1)}"
            return router_pid(c, 1) not in (None, old)
        wait_until(restarted, "n2's router restarted", timeout=30)
        wait_until(lambda: alive(c, 0, "n2"), "n2 alive in n1's view", timeout=20)
        assert c.nodes[1].running, f"n2's supervisor stopped:\n{c.log_tail(1)}"
        assert "already a live member" not in c.log_tail(1, 200)
