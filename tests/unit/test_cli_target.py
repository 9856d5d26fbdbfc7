"""Which node a CLI command talks to (actorsys.node.target): endpoint and keys from
``-e``, ``--config`` or ``$ACTORSYS_CONFIG``; no node, no socket."""
from __future__ import annotations

import os

import pytest

from actorsys import keygen
from actorsys.node.claim import ENDPOINT_FILE, record_endpoint
from actorsys.node.target import CONFIG_ENV, Target, TargetError, resolve


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)


def write_config(tmp_path, node: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\ndata_dir = "data"\n{node}\n[actors]\nCounter = "m:Counter"\n')
    return str(path)


def test_neither_endpoint_nor_config_is_a_clear_error():
    with pytest.raises(TargetError, match=r"--endpoint .*--config .*\$ACTORSYS_CONFIG"):
        resolve(None, None, None, None)


def test_endpoint_alone_is_used_as_given():
    assert resolve("ipc:///x/r.sock", None, "k", "s") == Target("ipc:///x/r.sock", "k", "s")


def test_a_tcp_config_gives_its_endpoint_and_the_nodes_own_keys(tmp_path):
    _, secret = keygen(tmp_path / "keys", "node")
    config = write_config(tmp_path, f'endpoint = "tcp://0.0.0.0:7123"\n'
                                    f'curve_secret_key = "{secret}"')
    assert resolve(None, config, None, None) == Target("tcp://127.0.0.1:7123", secret, secret)
    # given keys win, one by one; -e wins for the endpoint (keys still from --config)
    assert resolve(None, config, "me.key_secret", None) == Target(
        "tcp://127.0.0.1:7123", "me.key_secret", secret)
    assert resolve("tcp://db1:7000", config, None, "n.key") == Target("tcp://db1:7000", secret, "n.key")


def test_an_insecure_tcp_config_gives_no_keys(tmp_path):
    config = write_config(tmp_path, 'endpoint = "tcp://127.0.0.1:7124"\ninsecure = true')
    assert resolve(None, config, None, None) == Target("tcp://127.0.0.1:7124", None, None)


def test_the_environment_names_the_config_unless_an_endpoint_is_given(tmp_path, monkeypatch):
    config = write_config(tmp_path, f'endpoint = "ipc://{tmp_path}/r.sock"')
    monkeypatch.setenv(CONFIG_ENV, config)
    assert resolve(None, None, None, None).endpoint == f"ipc://{tmp_path}/r.sock"
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.toml"))
    assert resolve("ipc:///other.sock", None, None, None).endpoint == "ipc:///other.sock", \
        "expected -e to win without reading $ACTORSYS_CONFIG"


def test_a_config_without_endpoint_reads_what_the_node_recorded(tmp_path):
    config = write_config(tmp_path, "")
    with pytest.raises(TargetError, match="not running: it has recorded no endpoint .*'actorsys run"):
        resolve(None, config, None, None)
    sock = tmp_path / "router.sock"
    os.makedirs(tmp_path / "data")
    record_endpoint(str(tmp_path / "data"), f"ipc://{sock}")
    assert (tmp_path / "data" / ENDPOINT_FILE).read_text() == f"ipc://{sock}\n"
    with pytest.raises(TargetError, match="is not running .* is gone"):
        resolve(None, config, None, None)
    sock.write_text("")           # stands for the socket of the running node
    assert resolve(None, config, None, None).endpoint == f"ipc://{sock}"


def test_a_bad_config_names_its_problem(tmp_path):
    config = write_config(tmp_path, "workers = 'two'")
    with pytest.raises(TargetError, match=r"--config: .*node\.workers"):
        resolve(None, config, None, None)
    with pytest.raises(TargetError, match="missing.toml"):
        resolve(None, str(tmp_path / "missing.toml"), None, None)
