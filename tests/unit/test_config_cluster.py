"""The [cluster] table (actorsys/config/cluster.py): what a cluster node's config must
say, and a clear error (file, line, key) for each way it can be wrong."""
from __future__ import annotations

from typing import Any

import pytest

from actorsys.config import load_config
from actorsys.errors import ConfigError

NODE = {"endpoint": "tcp://10.0.0.11:7100", "insecure": True}
CLUSTER = {"etcd": ["http://10.0.0.1:2379"], "name": "prod", "node_id": "n1"}


def config(cluster: Any, **node: Any) -> dict[str, Any]:
    return {"node": {**NODE, **node}, "cluster": cluster}


def test_no_cluster_table_is_a_single_node():
    assert load_config({"node": NODE}).cluster is None


def test_a_cluster_node_gets_its_table_with_defaults():
    c = load_config(config(CLUSTER)).cluster
    assert c == {"etcd": ["http://10.0.0.1:2379"], "name": "prod", "node_id": "n1", "lease_ttl": 5.0,
                 "replicas": 1, "ack": "majority", "bootstrap_expect": 1, "bootstrap_timeout": 60.0}
    one = load_config(config({**CLUSTER, "etcd": "http://[::1]:2379", "lease_ttl": 2})).cluster
    assert one is not None and one["etcd"] == ["http://[::1]:2379"] and one["lease_ttl"] == 2.0


def test_replicas_and_ack_are_read():
    c = load_config(config({**CLUSTER, "replicas": 3, "ack": "all"})).cluster
    assert c is not None and c["replicas"] == 3 and c["ack"] == "all"


def test_bootstrap_expect_and_timeout_are_read_and_bad_values_name_the_key():
    c = load_config(config({**CLUSTER, "bootstrap_expect": 3, "bootstrap_timeout": 20})).cluster
    assert c is not None and c["bootstrap_expect"] == 3 and c["bootstrap_timeout"] == 20.0
    for key, bad, says in (("bootstrap_expect", 0, "from 1 to 1000"),
                           ("bootstrap_expect", 2.5, "from 1 to 1000"),
                           ("bootstrap_expect", True, "from 1 to 1000"),
                           ("bootstrap_timeout", 0.5, "from 1 to 3600"),
                           ("bootstrap_timeout", "60", "from 1 to 3600")):
        with pytest.raises(ConfigError) as info:
            load_config(config({**CLUSTER, key: bad}))
        assert info.value.key == f"cluster.{key}" and says in str(info.value), (key, bad, str(info.value))


def test_a_bad_replicas_value_names_the_file_and_line(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('[node]\nendpoint = "tcp://10.0.0.11:7100"\ninsecure = true\n\n[cluster]\n'
                    'etcd = ["http://10.0.0.1:2379"]\nname = "prod"\nnode_id = "n1"\nreplicas = 9\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.key == "cluster.replicas" and "from 1 to 7" in str(info.value)
    assert str(path) in str(info.value) and "9" in str(info.value), str(info.value)


@pytest.mark.parametrize("change, key, words", [
    ({"etcd": None}, "cluster.etcd", "missing"),
    ({"name": None}, "cluster.name", "missing"),
    ({"node_id": None}, "cluster.node_id", "missing"),
    ({"etcd": []}, "cluster.etcd", "list of etcd client URLs"),
    ({"etcd": ["10.0.0.1:2379"]}, "cluster.etcd", "http://HOST:PORT"),
    ({"etcd": ["http://10.0.0.1:99999"]}, "cluster.etcd", "http://HOST:PORT"),
    ({"name": "prod/eu"}, "cluster.name", "letters, digits"),
    ({"node_id": ""}, "cluster.node_id", "letters, digits"),
    ({"lease_ttl": 0.5}, "cluster.lease_ttl", "from 1 to 600"),
    ({"lease_ttl": "5"}, "cluster.lease_ttl", "from 1 to 600"),
    ({"leas_ttl": 5}, "cluster.leas_ttl", "unknown key"),
    ({"replicas": 0}, "cluster.replicas", "from 1 to 7"),
    ({"replicas": 8}, "cluster.replicas", "from 1 to 7"),
    ({"replicas": "3"}, "cluster.replicas", "from 1 to 7"),
    ({"replicas": 3.0}, "cluster.replicas", "from 1 to 7"),
    ({"replicas": True}, "cluster.replicas", "from 1 to 7"),
    ({"ack": "quorum"}, "cluster.ack", "\"majority\" or \"all\""),
    ({"ack": 2}, "cluster.ack", "\"majority\" or \"all\""),
])
def test_a_bad_cluster_table_names_the_key(change, key, words):
    table = {k: v for k, v in {**CLUSTER, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        load_config(config(table))
    assert info.value.key == key and words in str(info.value), str(info.value)


@pytest.mark.parametrize("endpoint, words", [
    (None, "set [node] endpoint"),
    ("ipc:///tmp/x.sock", "set [node] endpoint"),
    ("tcp://0.0.0.0:7100", "not a wildcard"),
    ("tcp://*:7100", "not a wildcard"),
])
def test_a_cluster_node_needs_an_endpoint_the_others_can_reach(endpoint, words):
    node = {"insecure": True} if endpoint is None else {"endpoint": endpoint, "insecure": True}
    with pytest.raises(ConfigError) as info:
        load_config({"node": node, "cluster": CLUSTER})
    assert info.value.key == "node.endpoint" and words in str(info.value), str(info.value)


def test_the_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('[node]\nendpoint = "tcp://10.0.0.11:7100"\ninsecure = true\n\n'
                    '[cluster]\netcd = ["http://10.0.0.1:2379"]\nname = "prod"\nnode_id = "n1"\n'
                    'lease_ttl = 9000\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.line == 9 and str(path) in str(info.value), str(info.value)
