"""A cluster of nodes on this machine, step by step: run it with ``scripts/demo cluster``.

It starts an etcd server and three nodes, each on its own loopback address (127.0.0.11,
.12, .13: three "hosts" of one machine), all in temporary directories, then:
1. a client connected to the cluster writes counters; each ask goes straight to the
   worker that holds the counter, on whichever node;
2. a fourth node joins: it takes a fair share of the shards, each moving with its data
   while the client keeps writing (the nodes log the move's progress);
3. a node leaves (``actorsys leave``): its shards move to the others first;
4. every counter still holds every acknowledged write.

Nothing is left behind: the nodes, etcd and the temporary directories go at the end.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import actorsys
from actorsys.testing.etcd import Etcd

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTERS = 200


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def config(tmp: str, etcd: str, node_id: str, host: str) -> str:
    """A node's config file (what a user writes once per machine)."""
    path = os.path.join(tmp, f"{node_id}.toml")
    with open(path, "w") as f:
        f.write(f'''[node]
data_dir = "{node_id}-data"
workers = 2
endpoint = "tcp://{host}:{free_port(host)}"
insecure = true               # a demo on loopback; use CURVE keys between real hosts
python_path = ["{HERE}"]
shutdown_timeout = 5.0

[actors]
"Counter" = "cluster_counters:Counter"

[cluster]
etcd = ["{etcd}"]
name = "demo"
node_id = "{node_id}"
lease_ttl = 5.0
''')
    return path


def show(title: str, client: actorsys.Client) -> None:
    view = client.cluster()
    print(f"\n{title}\n  cluster {view['name']!r}, epoch {view['epoch']}:")
    for n in view["nodes"]:
        state = "up" if n["alive"] else "DOWN"
        moving = f", moving {n['moving']}" if n.get("moving") else ""
        print(f"    {n['id']:<4} {n['endpoint'] or '-':<26} {state:<5} {n['shards']:>5} shards{moving}")


def settle(client: actorsys.Client, live: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        nodes = [n for n in client.cluster()["nodes"] if n["alive"]]
        if len(nodes) == live and all(n["shards"] and not n["moving"] for n in nodes):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the cluster did not settle on {live} nodes in {timeout:g} s")
        time.sleep(0.1)


class Writer(threading.Thread):
    """Adds 1 to the counters in turn, counting what was acknowledged."""

    def __init__(self, client: actorsys.Client) -> None:
        super().__init__(daemon=True)
        self.client, self.acked = client, [0] * COUNTERS
        self.stop, self.errors = threading.Event(), 0

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                self.client.ask("Counter", f"c{i % COUNTERS}", "add", 1, timeout=30.0)
                self.acked[i % COUNTERS] += 1
            except actorsys.ActorError as exc:
                self.errors += 1
                print(f"  (an ask failed: {type(exc).__name__}: {exc})")
            i += 1


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="actorsys-cluster-")
    nodes: dict[str, actorsys.Node] = {}
    try:
        with Etcd(os.path.join(tmp, "etcd"), "127.0.0.1") as etcd:
            print(f"etcd at {etcd.url}; three nodes start (127.0.0.11 .. .13):")
            for i in range(3):
                nid = f"n{i + 1}"
                nodes[nid] = actorsys.Node(config(tmp, etcd.url, nid, f"127.0.0.{11 + i}")).start()
            with open(os.path.join(tmp, "n1.toml")) as f:
                print(f"\nn1's config:\n{f.read()}")
            client = actorsys.connect([nodes["n1"].endpoint, nodes["n2"].endpoint])
            settle(client, 3)
            show("1. Three nodes share the 4096 shards:", client)
            writer = Writer(client)
            writer.start()
            time.sleep(1.0)
            print(f"\n   a client is writing: {sum(writer.acked)} acknowledged adds so far")

            print("\n2. A fourth node (127.0.0.14) joins; the client keeps writing:")
            nodes["n4"] = actorsys.Node(config(tmp, etcd.url, "n4", "127.0.0.14")).start()
            settle(client, 4)
            show("   It took a fair share, each shard moved with its data:", client)

            print(f"\n3. n2 leaves: `actorsys leave -e {nodes['n2'].endpoint}`")
            out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "actorsys"),
                                  "leave", "-e", nodes["n2"].endpoint],
                                 capture_output=True, text=True, timeout=300)
            print("   " + (out.stdout.strip() or out.stderr.strip()))
            nodes.pop("n2").stop()
            settle(client, 3)
            show("   Its shards moved to the others before it stopped:", client)

            writer.stop.set()
            writer.join(60)
            counts = [client.ask("Counter", f"c{i}", "get") for i in range(COUNTERS)]
            lost = sum(max(0, a - c) for a, c in zip(writer.acked, counts))
            print(f"\n4. {sum(writer.acked)} adds acknowledged during the moves, "
                  f"{writer.errors} failed (maybe applied); every counter read back: "
                  f"acknowledged writes lost: {lost}")
            client.close()
            stop_all(nodes)          # before etcd, so that they leave it cleanly
    finally:
        stop_all(nodes)
        shutil.rmtree(tmp, ignore_errors=True)


def stop_all(nodes: dict[str, actorsys.Node]) -> None:
    while nodes:
        nodes.popitem()[1].stop()


if __name__ == "__main__":
    main()
