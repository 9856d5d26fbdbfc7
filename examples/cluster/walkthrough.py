"""A cluster of three nodes on etcd, step by step: run it with ``scripts/demo cluster``.

It starts a real etcd and three real nodes (``actorsys run``, each with its own data
directory; on network namespaces of their own when run as root, else on loopback
addresses 127.0.0.11-13) with the test harness (actorsys/testing/cluster.py), then:
1. shows each node ready and what its router says of the cluster;
2. asks one counter through each node in turn: the same actor wherever it lives
   (1, 2, 3), since the nodes share the shards through etcd;
3. kills one node with kill -9, starts it again, and reads the counter through it.
Everything (processes, etcd, namespaces, files) is gone at the end.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import actorsys
from actorsys.testing.cluster import Cluster

HERE = os.path.dirname(os.path.abspath(__file__))


def ask_through(c: Cluster, i: int, method: str) -> int:
    node = c.nodes[i]
    keys = {"key": c.client_key, "server_key": node.public_key} if c.curve else {}
    with actorsys.connect(node.endpoint, **keys) as client:
        n: int = client.ref("Counter", "demo").ask(method)
        return n


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="actorsys-cluster-") as tmp:
        t0 = time.monotonic()
        with Cluster(tmp, 3, actors={"Counter": "app:Counter"}, python_path=[HERE],
                     lease_ttl=3.0, workers=1, log_level="warning") as c:
            where = "network namespaces" if c.netns is not None else "loopback addresses"
            assert c.etcd is not None
            print(f"etcd at {c.etcd.url}; three nodes on {where}")
            for i, node in enumerate(c.nodes):
                c.wait_ready(i)
                print(f"  {node.node_id} ready at {node.endpoint} ({len(c.pids(i))} processes)")
            try:
                print(f"\nthe cluster as n1 sees it: {c.view(0)}")
            except RuntimeError as exc:
                print(f"\n(n1 does not serve the cluster view: {exc})")
            print("\nasking Counter/demo.add through each node:")
            for i, node in enumerate(c.nodes):
                print(f"  through {node.node_id}: {ask_through(c, i, 'add')}")
            print("\nkill -9 n3 (every process of it), then start it again")
            c.kill_node(2)
            c.start_node(2)
            c.wait_ready(2)
            print(f"  n3 back; Counter/demo through n3: {ask_through(c, 2, 'get')}")
        print(f"\ncluster stopped, nothing left behind ({time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
