"""A crash and a restart, step by step: run it with ``scripts/demo supervision``.

It starts a node from ``node.toml`` (in a temporary data directory), then:
1. shows the tree the config declared;
2. writes to the store, crashes it, and shows that the root restarted the store and
   everything after it (rest_for_one), with the committed values intact and the
   crashing turn's half-write gone;
3. kills the worker process hosting the store with kill -9 and shows the same;
4. starts jobs at run time and lets one finish (a normal exit, not restarted).
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

import actorsys

HERE = os.path.dirname(os.path.abspath(__file__))


def show(title: str, sup: actorsys.SupervisorRef) -> None:
    print(f"\n{title}")
    for c in sup.which_children():
        what = f"{c['actor']}/{c['key']}" if c["type"] == "worker" else f"supervisor {c['supervisor']}"
        print(f"  {c['id']:<6} {what:<22} {c['status']:<11} restart={c['restart']}")


def wait_running(sup: actorsys.SupervisorRef, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(c["status"] != "running" for c in sup.which_children()):
        if time.monotonic() > deadline:
            raise SystemExit("children did not come back in time")
        time.sleep(0.01)


def wait_started(store: actorsys.Ref, times: int, timeout: float = 10.0) -> None:
    """Until the store has started ``times`` times: then the tree has taken in its exit
    and, rest_for_one, already stopped the children after it (wait_running waits for
    their restart; before the exit is taken in, every child still looks running)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if store.ask("starts", timeout=1.0) >= times:
                return
        except actorsys.ActorError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the store did not come back")
        time.sleep(0.01)


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="actorsys-supervision-")
    shutil.copy(os.path.join(HERE, "node.toml"), tmp)
    shutil.copy(os.path.join(HERE, "app.py"), tmp)
    try:
        with actorsys.Node(os.path.join(tmp, "node.toml")) as node:
            client = node.client()
            root = client.supervisor("root")
            show("1. The tree from node.toml, started in declared order:", root)

            store = client.ref("Store", "main")
            store.ask("put", "greeting", "hello")
            store.ask("put", "answer", 42)
            print("\n2. Two values committed. Now a handler in the store raises:")
            try:
                store.ask("crash")
            except actorsys.RemoteError as exc:
                print(f"  the caller gets RemoteError: {exc}")
            wait_started(store, 2)
            wait_running(root)
            show("   rest_for_one restarted the store, then the cache and the jobs supervisor:", root)
            print(f"  store values after the restart: {store.ask('dump')} "
                  f"(the crashing turn's write was rolled back)")
            cached = client.ref("Cache", "main").ask("size")
            print(f"  the cache re-warmed from the restarted store: {cached} values")

            slot = client.map.slot_of("Store", "main")
            pid = next(p["pid"] for p in node.status()["processes"]
                       if p["role"] == "worker" and p["slot"] == slot)
            print(f"\n3. kill -9 of worker slot {slot} (pid {pid}), which hosts the store:")
            os.kill(pid, signal.SIGKILL)
            wait_started(store, 3)
            wait_running(root)
            print("  the node supervisor restarted the worker; the tree restarted its children.")
            print(f"  store values: {store.ask('dump')}, started {store.ask('starts')} times")

            jobs = client.supervisor("jobs")
            keys = [jobs.start_child({"key": f"job-{i}", "args": [2]}) for i in range(3)]
            show(f"\n4. Three jobs started at run time ({', '.join(keys)}):", jobs)
            client.ref("Job", "job-0").ask("step")
            client.ref("Job", "job-0").ask("step")     # its last step: self.stop()
            time.sleep(0.1)
            show("   job-0 finished (a normal exit of a temporary child: removed, not restarted):", jobs)
            print(f"\n   count_children of root: {root.count_children()}")
        print("\nnode stopped: children were stopped in reverse order, then the workers.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
