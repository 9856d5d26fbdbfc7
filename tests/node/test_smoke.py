"""The basics against a real node: ask, state, status."""


def test_ask_returns_result_and_state_persists_across_turns(node):
    c = node.client()
    assert [c.ref("Counter", "a").ask("add", 2) for _ in range(3)] == [2, 4, 6]


def test_status_lists_supervisor_router_and_every_worker(node):
    procs = node.status()["processes"]
    roles = sorted((p["role"], p["slot"]) for p in procs if p["role"] != "supervisor")
    assert roles == [("router", None), ("worker", 0), ("worker", 1)], procs
    assert all(isinstance(p["pid"], int) for p in procs)
    assert {p["role"] for p in procs} >= {"supervisor", "router", "worker"}
