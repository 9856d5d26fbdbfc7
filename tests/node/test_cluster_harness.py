"""The cluster harness (actorsys/testing/cluster.py) itself: real nodes start on their
namespace hosts, kill -9 / pause / cut take effect on every process of a node, a joiner
gets a host of its own, CURVE clusters admit the test's client key, and nothing is left
behind (no process, etcd, namespace, link or file)."""
from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest
from helpers import ACTORS, ACTORS_DIR

from actorsys.testing.cluster import Cluster, ping
from actorsys.testing.netns import HostsUnavailable
from actorsys.testing.nodes import wait_until

NETNS = os.geteuid() == 0
needs_netns = pytest.mark.skipif(not NETNS, reason="network namespaces need root")

CONNECT = ("import socket, sys; s = socket.socket(); s.settimeout(1.5);"
           "print(s.connect_ex((sys.argv[1], int(sys.argv[2]))))")


def cluster(tmp_path, n: int, **kw) -> Cluster:
    return Cluster(tmp_path, n, actors=ACTORS, python_path=[ACTORS_DIR], **kw)


def netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def reaches(c: Cluster, i: int, address: str, port: int) -> bool:
    """Whether a tcp connect from node ``i``'s host to ``address:port`` succeeds."""
    r = subprocess.run(c.nodes[i].host.command([sys.executable, "-c", CONNECT, address, str(port)]),
                       capture_output=True, text=True, timeout=20)
    return r.stdout.strip() == "0"


def assert_left_nothing(c: Cluster, pids: list[int], prefix: str | None) -> None:
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"node processes left: {alive}"
    assert c.etcd is not None and c.etcd.proc is None
    assert not os.path.exists(c.dir), os.listdir(c.dir)
    if prefix is not None:
        assert f"{prefix}-" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                  text=True).stdout
        assert f"{prefix}-" not in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                                  text=True).stdout


@needs_netns
def test_nodes_run_in_their_namespaces_and_leave_nothing(tmp_path):
    with cluster(tmp_path, 2, hosts="netns") as c:
        assert c.netns is not None and c.can_cut
        prefix = c.netns.prefix
        for i in range(2):
            c.wait_ready(i)
        assert [ep.rsplit(":", 1)[0] for ep in c.endpoints] == \
            [f"tcp://{c.netns.subnet}.11", f"tcp://{c.netns.subnet}.12"]
        pids = c.pids(0) + c.pids(1)
        assert len(c.pids(0)) >= 4      # supervisor, router, two workers
        for i in range(2):
            ns = os.stat(f"/run/netns/{c.nodes[i].host.netns}").st_ino
            assert {netns_inode(p) for p in c.pids(i)} == {ns}, f"node {i} outside its namespace"
        assert netns_inode(os.getpid()) not in {netns_inode(p) for p in pids}
        # each node has its config's [cluster] and its own data directory
        text = open(c.nodes[1].config_path).read()
        assert 'node_id" = "n2"' in text and c.etcd is not None and c.etcd.url in text
        # the nodes' hosts reach etcd in the root namespace, and each other
        host, port = c.etcd.url.rsplit("/", 1)[1].split(":")
        assert reaches(c, 1, host, int(port))
        assert reaches(c, 0, c.nodes[1].host.address, 7100)
        reply = c.stop_node(1, drain=True)      # LEAVE (refused until the router serves it), SIGTERM
        assert reply is not None        # answered, ok or not
        assert not c.nodes[1].running and not ping(c.endpoints[1], timeout=0.3)
    assert_left_nothing(c, pids, prefix)


@needs_netns
def test_kill_pause_and_cut_take_effect_and_a_killed_node_restarts(tmp_path):
    with cluster(tmp_path, 2, hosts="netns") as c:
        for i in range(2):
            c.wait_ready(i)
        seen = c.pids(0) + c.pids(1)
        # kill -9: every process of node 1 dies at once; node 0 runs on
        before = c.pids(1)
        c.kill_node(1)
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                       for p in before)
        assert not ping(c.endpoints[1], timeout=0.3) and ping(c.endpoints[0])
        c.start_node(1)
        c.wait_ready(1)
        seen += c.pids(1)
        # pause: every process stopped, the router does not answer; resume: it does
        c.pause_node(0)
        wait_until(lambda: all(psutil.Process(p).status() == psutil.STATUS_STOPPED for p in c.pids(0)),
                   "every process of node 1 stopped", timeout=5)
        assert not ping(c.endpoints[0], timeout=0.5)
        c.resume_node(0)
        assert ping(c.endpoints[0], timeout=5)
        # cut: node 0's host reaches neither etcd nor node 1, and no one reaches it
        assert c.etcd is not None
        host, port = c.etcd.url.rsplit("/", 1)[1].split(":")
        c.cut_node(0)
        assert not ping(c.endpoints[0], timeout=0.5)
        assert not reaches(c, 0, host, int(port))
        assert not reaches(c, 0, c.nodes[1].host.address, 7100)
        assert c.nodes[0].running        # its processes run on
        c.heal_node(0)
        assert wait_until(lambda: ping(c.endpoints[0], timeout=0.5), "node 1 back after heal")
        assert reaches(c, 0, host, int(port))
        prefix = c.netns.prefix if c.netns else None
    assert_left_nothing(c, seen, prefix)


@needs_netns
def test_curve_cluster_and_a_joiner(tmp_path):
    with cluster(tmp_path, 1, hosts="netns", curve=True, workers=1) as c:
        c.wait_ready(0)
        keys = c.client_keys(0)
        assert keys is not None and ping(c.endpoints[0], keys)
        assert not ping(c.endpoints[0], None, timeout=0.5)     # CURVE required
        j = c.add_node()
        c.wait_ready(j)
        assert j == 1 and c.nodes[j].node_id == "n2"
        assert c.nodes[j].host.address != c.nodes[0].host.address
        assert c.client_keys(1) != keys                         # its own server key
        assert not ping(c.endpoints[1], c.client_keys(0), timeout=0.5)   # wrong server key
        with c.connect(1) as client:
            assert client.ref("Counter", "a").ask("add", 1) == 1
        pids = c.pids(0) + c.pids(1)
        prefix = c.netns.prefix if c.netns else None
    assert_left_nothing(c, pids, prefix)


def test_loopback_hosts_fallback(tmp_path):
    with cluster(tmp_path, 1, hosts="loopback", workers=1,
                 extra_config=lambda node: {"node": {"max_resident": 1000 + node.index}}) as c:
        c.wait_ready(0)
        assert '"max_resident" = 1000' in open(c.nodes[0].config_path).read()
        assert c.endpoints[0].startswith("tcp://127.0.0.11:") and not c.can_cut
        with c.connect(0) as client:
            assert client.ref("Counter", "a").ask("add", 2) == 2
        with pytest.raises(AssertionError, match="waiting for nothing; n1's last view"):
            c.wait_view(0, lambda view: False, "nothing", timeout=0.5)
        with pytest.raises(HostsUnavailable):
            c.cut_node(0)
        pids = c.pids(0)
    assert_left_nothing(c, pids, None)


def test_a_node_that_cannot_start_fails_wait_ready_with_its_log(tmp_path):
    with cluster(tmp_path, 1, hosts="loopback", workers=1,
                 extra_config={"actors": {"Nope": "no_such_module:Nope"}}) as c:
        with pytest.raises(RuntimeError, match="n1 .* exited"):
            c.wait_ready(0, timeout=30)


def test_cluster_demo_runs():
    from helpers import ROOT

    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "cluster", "walkthrough.py")],
                       cwd=ROOT, capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    out = r.stdout
    assert "A fourth node" in out and "n2 leaves" in out, out
    views = out.split("cluster 'demo'")[1:]
    assert [v.count(" up ") for v in views] == [3, 4, 3], out
    assert "acknowledged writes lost: 0" in out, out


HARNESS = """
import sys, time
sys.path.insert(0, {tests!r})
from helpers import ACTORS, ACTORS_DIR
from actorsys.testing.cluster import Cluster
with Cluster({tmp!r}, 1, hosts="netns", actors=ACTORS, python_path=[ACTORS_DIR], workers=1) as c:
    c.wait_ready(0)
    print(c.netns.prefix, c.etcd.proc.pid, *c.pids(0), flush=True)
    time.sleep(120)
"""


@needs_netns
def test_a_killed_harness_leaves_no_process_and_its_namespaces_are_swept(tmp_path):
    from helpers import TESTS_DIR

    from actorsys.testing.netns import sweep_stale

    harness = subprocess.Popen([sys.executable, "-c", HARNESS.format(tests=TESTS_DIR, tmp=str(tmp_path))],
                               stdout=subprocess.PIPE, text=True)
    try:
        prefix, *pids = harness.stdout.readline().split()
    finally:
        harness.kill()
        harness.wait(10)
    assert len(pids) >= 3, pids     # etcd, the supervisor, its router and worker
    wait_until(lambda: not any(psutil.pid_exists(int(p)) and psutil.Process(int(p)).status()
                               != psutil.STATUS_ZOMBIE for p in pids),
               "the killed harness's etcd and node processes to die with it")
    assert f"{prefix}-0" in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    swept = sweep_stale("ac")
    assert {f"{prefix}-0", f"{prefix}-br"} <= set(swept), swept
    assert f"{prefix}-" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"{prefix}-" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
