"""NodeLayout: every endpoint of a node, computed once at start (in-process, no node)."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile

import pytest

from actorsys.config import NodeLayout, load_config
from actorsys.config.layout import plan_layout
from actorsys.errors import ConfigError

SUPERVISORS = {"root": {"children": [{"id": "a", "actor": "C", "key": "k"}]}}
ACTORS = {"C": "mod:C"}


@pytest.fixture
def sock_dir():
    """A short private directory (ipc socket paths are limited to ~100 characters)."""
    d = tempfile.mkdtemp(prefix="as-layout-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_ipc_sockets_sit_beside_the_routers(sock_dir):
    cfg = load_config({"node": {"endpoint": f"ipc://{sock_dir}/n.sock", "workers": 3},
                       "actors": ACTORS, "supervisors": SUPERVISORS,
                       "gateway": {"listen": "127.0.0.1:8123"}})
    layout = plan_layout(cfg)
    assert layout == NodeLayout(
        router=f"ipc://{sock_dir}/n.sock",
        workers=tuple(f"ipc://{sock_dir}/n-worker-{i}.sock" for i in range(3)),
        tree=f"ipc://{sock_dir}/n-tree.sock", gateway=f"ipc://{sock_dir}/n-gateway.sock",
        subscribers=f"ipc://{sock_dir}/n-subscribers.sock",
        gateway_listen="127.0.0.1:8123", run_dir=None)
    assert layout.endpoints() == [layout.router, *layout.workers, layout.tree, layout.gateway,
                                  layout.subscribers]
    assert cfg.endpoint == f"ipc://{sock_dir}/n.sock" and cfg.gateway is not None \
        and cfg.gateway["listen"] == "127.0.0.1:8123", "the config stays as written"


def test_no_endpoint_gets_a_private_temporary_directory():
    layout = plan_layout(load_config({"node": {"workers": 1}}))
    try:
        assert layout.run_dir is not None and layout.router == f"ipc://{layout.run_dir}/router.sock"
        assert os.stat(layout.run_dir).st_mode & 0o777 == 0o700
        assert layout.workers == (f"ipc://{layout.run_dir}/router-worker-0.sock",)
        assert (layout.tree, layout.gateway, layout.subscribers, layout.gateway_listen) \
            == (None, None, None, None), \
            "no tree without supervisors, no gateway without [gateway]"
    finally:
        if layout.run_dir:
            os.rmdir(layout.run_dir)


def test_tcp_gets_distinct_free_ports_on_the_routers_host():
    cfg = load_config({"node": {"endpoint": "tcp://127.0.0.1:5999", "insecure": True, "workers": 2},
                       "actors": ACTORS, "supervisors": SUPERVISORS, "gateway": {"listen": "127.0.0.1:0"}})
    layout = plan_layout(cfg)
    internal = [*layout.workers, layout.tree, layout.gateway, layout.subscribers]
    assert all(ep is not None and ep.startswith("tcp://127.0.0.1:") for ep in internal), internal
    ports = [int(ep.rsplit(":", 1)[1]) for ep in internal]
    assert len(set(ports)) == len(ports) and 5999 not in ports, ports
    assert layout.gateway_listen is not None and layout.gateway_listen.startswith("127.0.0.1:")
    port = int(layout.gateway_listen.rsplit(":", 1)[1])
    assert port != 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))    # it was free when chosen


def test_it_travels_as_json():
    layout = NodeLayout("ipc:///r/a.sock", ("ipc:///r/a-worker-0.sock",), None, "ipc:///r/a-gateway.sock",
                        "127.0.0.1:80", "/r")
    assert NodeLayout.from_json(layout.to_json()) == layout


def test_an_ipc_directory_open_to_others_is_refused(sock_dir):
    open_dir = os.path.join(sock_dir, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o755)
    with pytest.raises(ConfigError, match="open to other users") as info:
        plan_layout(load_config({"node": {"endpoint": f"ipc://{open_dir}/r.sock"}}))
    assert info.value.key == "node.endpoint"


def test_a_missing_ipc_directory_is_made_private(sock_dir):
    path = os.path.join(sock_dir, "new", "r.sock")
    plan_layout(load_config({"node": {"endpoint": f"ipc://{path}"}}))
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700


def test_a_restart_keeps_the_ports_chosen_for_the_last_run(sock_dir):
    """An embedded Node started again keeps the gateway's HTTP port it chose for ':0' (the
    address its pages were given) and, on tcp, its internal ports (review finding: a
    restart got a new gateway port)."""
    ipc = load_config({"node": {"endpoint": f"ipc://{sock_dir}/n.sock"}, "actors": ACTORS,
                       "gateway": {"listen": "127.0.0.1:0"}})
    first = plan_layout(ipc)
    assert plan_layout(ipc, first).gateway_listen == first.gateway_listen
    metered = load_config({"node": {"endpoint": f"ipc://{sock_dir}/m.sock", "metrics": "127.0.0.1:0"},
                           "actors": ACTORS})
    first = plan_layout(metered)
    assert first.metrics_listen is not None and not first.metrics_listen.endswith(":0")
    assert plan_layout(metered, first).metrics_listen == first.metrics_listen
    tcp = load_config({"node": {"endpoint": f"tcp://127.0.0.1:{_free()}", "insecure": True,
                                "workers": 2}, "actors": ACTORS, "supervisors": SUPERVISORS,
                       "gateway": {"listen": "127.0.0.1:0"}})
    first = plan_layout(tcp)
    again = plan_layout(tcp, first)
    assert again == first
    other = plan_layout(load_config({"node": {"endpoint": f"tcp://127.0.0.1:{_free()}",
                                              "insecure": True, "workers": 2},
                                     "actors": ACTORS}), first)
    assert not set(other.workers) & set(first.workers), "another node's ports are not taken"


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handout:
    """The OS's port hand-out, scripted: a port released a moment ago comes back (the
    CI run where the tree was given the router's own port, not yet bound)."""
    def __init__(self, ports):
        self.ports = iter(ports)

    def __call__(self, *_a):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *_a):
        return False

    def bind(self, addr):
        self.port = next(self.ports)

    def getsockname(self):
        return ("127.0.0.1", self.port)


def test_a_port_handed_out_again_is_never_given_to_two_processes(monkeypatch):
    from actorsys.config import layout as layout_mod
    monkeypatch.setattr(layout_mod.socket, "socket", _Handout([5999, 7001, 7001, 5999, 7002, 7003]))
    cfg = load_config({"node": {"endpoint": "tcp://127.0.0.1:5999", "insecure": True, "workers": 2},
                       "actors": ACTORS, "supervisors": SUPERVISORS})
    layout = plan_layout(cfg)
    assert (layout.workers, layout.tree) == (("tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002"),
                                             "tcp://127.0.0.1:7003")
