"""The cluster as the observability tools show it (issue 17 over issue 15's cluster), on
real nodes on loopback hosts with a real etcd and replicas = 2: a node's /metrics has the
cluster's gauges; ``actorsys top --once`` and the dashboard's overview list every node;
a node killed shows as not alive, and the gauges follow the cluster as it serves and
copies its shards again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

from helpers import ACTORS_DIR
from prometheus_client.parser import text_string_to_metric_families

from actorsys.config.layout import free_port
from actorsys.testing.cluster import Cluster, ClusterNode
from actorsys.testing.nodes import wait_until

SHARDS = 64
ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")
#: node id -> (its metrics HOST:PORT, its gateway's)
ADDRESSES: dict[str, tuple[str, str]] = {}


def observed(node: ClusterNode) -> dict[str, Any]:
    host = node.host.address
    taken = [node.endpoint.rsplit(":", 1)[1]]
    metrics = f"{host}:{free_port(host, taken)}"
    gateway = f"{host}:{free_port(host, [*taken, metrics.rsplit(':', 1)[1]])}"
    ADDRESSES[node.node_id] = (metrics, gateway)
    return {"node": {"shards": SHARDS, "metrics": metrics},
            "gateway": {"listen": gateway, "dashboard": True}, "cluster": {"replicas": 2}}


def gauges(node_id: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{ADDRESSES[node_id][0]}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith(("actorsys_cluster", "actorsys_shards"))}


def test_metrics_top_and_the_dashboard_show_the_cluster(tmp_path):
    with Cluster(tmp_path, 3, hosts="loopback", actors={"Counter": "actors:Counter"},
                 python_path=[ACTORS_DIR], workers=1, lease_ttl=2.0,
                 extra_config=observed) as cluster:
        for i in range(3):
            cluster.wait_ready(i, 60)

        def settled(view: Any) -> bool:
            return (sum(1 for n in view["nodes"] if n["alive"]) == 3
                    and view.get("under_replicated") == 0
                    and all(n["shards"] and not n.get("moving") for n in view["nodes"]))
        cluster.wait_view(0, settled, "3 nodes with every shard copied twice", timeout=120)
        g = gauges("n1")
        assert g["actorsys_cluster_nodes"] == 3 and g["actorsys_cluster_nodes_alive"] == 3
        assert g["actorsys_shards_under_replicated"] == 0 and g["actorsys_shards_unavailable"] == 0
        assert sum(gauges(n)["actorsys_shards_owned"] for n in ("n1", "n2", "n3")) == SHARDS

        out = subprocess.run([ACTORSYS, "top", "--once", "-e", cluster.nodes[0].endpoint],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stderr
        assert "under-replicated shards 0" in out.stdout
        for n in ("n1", "n2", "n3"):
            assert f"│ {n} " in out.stdout, out.stdout

        with urllib.request.urlopen(f"http://{ADDRESSES['n1'][1]}/dashboard/api/overview",
                                    timeout=20) as r:
            view = json.loads(r.read())["cluster"]
        assert sorted(n["id"] for n in view["nodes"]) == ["n1", "n2", "n3"]

        cluster.kill_node(2)
        wait_until(lambda: gauges("n1")["actorsys_cluster_nodes_alive"] == 2,
                   "n1 to see n3 dead", 30)
        # then the cluster copies what n3 held again, and the gauges say so
        wait_until(lambda: gauges("n1")["actorsys_shards_under_replicated"] == 0
                   and gauges("n1")["actorsys_shards_unavailable"] == 0
                   and gauges("n1")["actorsys_shards_owned"] + gauges("n2")["actorsys_shards_owned"]
                   == SHARDS, "every shard served and copied twice on n1 and n2", 120)
