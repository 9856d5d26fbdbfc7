"""Fault tolerance against real processes: kill -9 of workers, the router and the node
supervisor; clean stops; restart intensity."""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import psutil
import pytest

import actorsys
from actorsys.testing.nodes import role_pid, worker_pids
from helpers import ACTORS, ACTORS_DIR, writes_through_kills


def key_on_slot(client: actorsys.Client, type_name: str, slot: int, prefix: str = "k") -> str:
    """A key of ``type_name`` whose actor lives on worker ``slot``."""
    for i in range(10_000):
        key = f"{prefix}{i}"
        if client.map.slot_of(type_name, key) == slot:
            return key
    raise AssertionError(f"no key of {type_name} maps to slot {slot}")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"expected within {timeout:g} s: {what}")
        time.sleep(interval)


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for a reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def restarted_workers(node: actorsys.Node, old: dict[int, int]) -> dict[int, int] | None:
    """Every slot up with a pid different from ``old`` where ``old`` names one, else None."""
    try:
        now = worker_pids(node)
    except actorsys.ActorError:
        return None
    if set(now) != set(range(node.config.workers)):
        return None
    if any(now[s] == pid for s, pid in old.items()):
        return None
    return now


# ---------------------------------------------------------------------------------------
# 1. a worker killed with kill -9


def test_killed_worker_fails_its_in_flight_ask_promptly_with_worker_lost(node, tmp_path):
    c = node.client()
    slot = 0
    napper = key_on_slot(c, "Napper", slot)
    victim = worker_pids(node)[slot]
    marker = str(tmp_path / "napping")
    outcome: dict = {}

    def nap() -> None:
        try:
            outcome["result"] = c.ask("Napper", napper, "nap", marker, 20.0, timeout=30.0)
        except BaseException as exc:
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    t = threading.Thread(target=nap)
    t.start()
    wait_for(lambda: os.path.exists(marker), 10, "the 20 s handler to start on the worker")
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    t.join(10)
    assert not t.is_alive(), "the ask in flight on the killed worker should have returned"
    assert isinstance(outcome.get("error"), actorsys.WorkerLost), \
        f"expected WorkerLost for the ask in flight on the killed worker, got {outcome}"
    assert outcome["at"] - killed_at < 3.0, \
        f"expected WorkerLost promptly, got it {outcome['at'] - killed_at:.1f} s after the kill"


def test_killed_worker_is_restarted_into_the_same_slot(node):
    before = worker_pids(node)
    os.kill(before[1], signal.SIGKILL)
    after = wait_for(lambda: restarted_workers(node, {1: before[1]}), 10,
                     "worker slot 1 back up with a new pid")
    assert after[1] != before[1], f"expected a new pid in slot 1, got {after}"
    assert after[0] == before[0], f"expected slot 0 untouched, got {before} -> {after}"
    assert gone(before[1]), "the killed worker should be gone"


def test_asks_sent_while_a_worker_restarts_are_answered_after_it(node):
    c = node.client()
    slot = 0
    key = key_on_slot(c, "Counter", slot)
    assert c.ask("Counter", key, "add", 7) == 7
    old_pid = c.ask("Counter", key, "pid")
    assert worker_pids(node)[slot] == old_pid
    go = threading.Event()
    ready = threading.Barrier(3, timeout=10)
    results: dict = {}

    def asker(method: str, *args) -> None:
        try:
            c.ask("Counter", key, "get", timeout=5.0)   # this thread's socket is connected...
            ready.wait()
            go.wait(10)                                  # ...before the kill, and used after it
            results[method] = c.ask("Counter", key, method, *args, timeout=15.0)
        except BaseException as exc:
            results[method] = exc

    threads = [threading.Thread(target=asker, args=("add", 1)), threading.Thread(target=asker, args=("pid",))]
    for t in threads:
        t.start()
    ready.wait()
    # Hold the restart open: with the node supervisor stopped, the dead worker is not
    # replaced until SIGCONT, so the asks below are certainly sent during the restart.
    os.kill(node.pid, signal.SIGSTOP)
    try:
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: gone(old_pid), 5, "the killed worker to be gone")
        time.sleep(0.2)   # let every client socket see the disconnect
        go.set()
        time.sleep(0.5)
        assert not results, f"nothing can answer while the slot is down, got {results}"
    finally:
        os.kill(node.pid, signal.SIGCONT)
    for t in threads:
        t.join(20)
    assert results.get("add") == 8, f"expected the queued add applied to the restored 7, got {results}"
    assert isinstance(results.get("pid"), int) and results["pid"] != old_pid, \
        f"expected the queued asks answered by the new worker, got {results}"
    assert worker_pids(node)[slot] == results["pid"], "expected the new worker in the same slot"
    assert c.ask("Counter", key, "starts") == 2, "expected one reactivation from the snapshot"


def test_actor_state_survives_kill_of_its_worker(node):
    c = node.client()
    keys = [key_on_slot(c, "Counter", 1, prefix=f"s{i}-") for i in range(5)]
    for i, k in enumerate(keys):
        c.ask("Counter", k, "add", i + 10)
    log = c.ref("Log", key_on_slot(c, "Log", 1))
    for item in ("a", "b", "c"):
        log.ask("append", item)
    victim = worker_pids(node)[1]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: restarted_workers(node, {1: victim}), 10, "worker slot 1 restarted")
    got = [c.ask("Counter", k, "get", timeout=10) for k in keys]
    assert got == [i + 10 for i in range(5)], f"expected counters restored from storage, got {got}"
    assert [c.ask("Counter", k, "starts") for k in keys] == [2] * 5, \
        "expected each counter reactivated once (on_start ran again after the crash)"
    assert log.ask("items") == ["a", "b", "c"], "expected the log's state restored"
    assert log.ask("stored") == {"item:00000001": "a", "item:00000002": "b", "item:00000003": "c"}, \
        "expected the log's storage entries restored"


def test_node_supervisor_survives_being_stopped_and_continued(node):
    # Ctrl-Z and fg on `actorsys run`, or a debugger attaching, stop and continue the
    # supervisor; that must not read as a request to stop the node.
    before = {p["pid"] for p in node.status()["processes"]}
    os.kill(node.pid, signal.SIGSTOP)
    time.sleep(0.6)
    os.kill(node.pid, signal.SIGCONT)
    time.sleep(0.6)
    assert not gone(node.pid), "expected the node supervisor to keep running after SIGSTOP/SIGCONT"
    assert {p["pid"] for p in node.status()["processes"]} == before, "expected every process unchanged"
    assert node.client().ask("Counter", "z", "add", 1) == 1


# ---------------------------------------------------------------------------------------
# 2. acknowledged writes survive kill -9


def test_every_acknowledged_write_survives_repeated_kill_9(node):
    progress = writes_through_kills(node, [f"w{i}" for i in range(24)], threads=2,
                                    kills=[[0], [1], [0, 1], [1]], pause=0.3)
    assert progress[-1] > progress[-2], \
        f"expected writes to be acknowledged after the last restart: {progress}"


# ---------------------------------------------------------------------------------------
# 3. the router killed with kill -9


def test_killed_router_is_restarted_and_existing_client_keeps_working(node):
    c = node.client()
    assert c.ask("Counter", "r", "add", 1) == 1
    old_router = role_pid(node, "router")
    workers = worker_pids(node)
    os.kill(old_router, signal.SIGKILL)
    supervisor = psutil.Process(node.pid)

    def new_router():
        kids = {p.pid for p in supervisor.children()} - set(workers.values()) - {old_router}
        return kids.pop() if len(kids) == 1 else None

    router_pid = wait_for(new_router, 5, "a new router process under the node supervisor")
    # the data path does not go through the router
    assert c.ask("Counter", "r", "add", 1, timeout=5) == 2, "expected asks to work across the router restart"
    t0 = time.monotonic()
    st = wait_for(lambda: _try_status(c), 5, "status from the same client after the router restart")
    assert time.monotonic() - t0 < 5
    procs = {p["role"]: p for p in st["processes"] if p["role"] != "worker"}
    assert procs["router"]["pid"] == router_pid != old_router, f"expected the new router in status: {procs}"
    assert worker_pids(node) == workers, "expected the workers untouched by a router restart"
    assert c.ask("Counter", "r", "get") == 2
    with actorsys.connect(node.endpoint, connect_timeout=5) as fresh:
        assert fresh.ask("Counter", "r", "get") == 2, "expected new clients to connect through the new router"


def _try_status(c: actorsys.Client):
    try:
        return c.status(timeout=2.0)
    except actorsys.NodeUnavailable:
        return None


# ---------------------------------------------------------------------------------------
# 4, 5. no process left behind


def test_stop_leaves_no_process_behind(config):
    node = actorsys.Node(config()).start()
    try:
        node.client().ask("Counter", "x", "add", 1)
        pids = [p["pid"] for p in node.status()["processes"]]
        assert node.pid in pids and len(pids) == 4, f"expected supervisor, router and 2 workers: {pids}"
        run_dir = os.path.dirname(node.endpoint[6:])
    finally:
        code = node.stop()
    assert code == 0, f"expected the node supervisor to exit with status 0, got {code}"
    left = [p for p in pids if not gone(p)]
    assert not left, f"processes left after stop(): {left}"
    assert not os.path.exists(run_dir), "expected the node's private ipc directory removed"


def test_kill_9_of_node_supervisor_takes_router_and_workers_down(config):
    node = actorsys.Node(config()).start()
    try:
        children = [p["pid"] for p in node.status()["processes"] if p["role"] != "supervisor"]
        assert len(children) == 3
        os.kill(node.pid, signal.SIGKILL)
        wait_for(lambda: all(gone(p) for p in children), 5,
                 f"router and workers {children} gone after kill -9 of their supervisor")
    finally:
        code = node.stop()
    assert code == -signal.SIGKILL


# ---------------------------------------------------------------------------------------
# 6. restart intensity

FRAGILE_OK = '''
import actorsys

class Fragile(actorsys.Actor):
    def get(self):
        return "fine"
'''
FRAGILE_BROKEN = '''
raise RuntimeError("this module is broken now (a bad deploy)")
'''


def _fragile_config(config, tmp_path, **node):
    """A config with an extra actor type whose module lives in tmp_path (so we can break it)."""
    mod = f"fragile_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text(FRAGILE_OK)
    cfg = config(**node)
    cfg["node"]["python_path"] = [ACTORS_DIR, str(tmp_path)]
    cfg["actors"] = {**ACTORS, "Fragile": f"{mod}:Fragile"}
    return cfg, tmp_path / f"{mod}.py"


def test_crash_looping_worker_trips_restart_intensity_and_node_stops(config, tmp_path, capfd):
    cfg, module = _fragile_config(config, tmp_path, max_restarts=3, max_seconds=30.0)
    node = actorsys.Node(cfg).start()
    try:
        assert node.client().ask("Fragile", "a", "get") == "fine"
        pids = [p["pid"] for p in node.status()["processes"]]
        # A bad deploy: the module on disk breaks; a restarted worker imports it and dies.
        module.write_text(FRAGILE_BROKEN)
        os.kill(worker_pids(node)[0], signal.SIGKILL)
        wait_for(lambda: gone(node.pid), 10, "the node supervisor to give up and exit")
    finally:
        code = node.stop()
    assert code == 2, f"expected exit status 2 (max restart intensity reached), got {code}"
    err = capfd.readouterr().err
    assert "more than 3 restarts within 30 s: giving up" in err, \
        f"expected the supervisor to say why it stopped, got:\n{err[-3000:]}"
    assert "this module is broken now" in err, "expected the worker's import error to be reported"
    left = [p for p in pids if not gone(p)]
    assert not left, f"processes left after the node gave up: {left}"


def test_node_whose_workers_cannot_start_fails_to_start_with_a_message(config, tmp_path, capfd):
    cfg, module = _fragile_config(config, tmp_path, max_restarts=3, max_seconds=30.0)
    node = actorsys.Node(cfg)          # validates (imports the module) here
    module.write_text(FRAGILE_BROKEN)  # ...and the workers will import the broken version
    t0 = time.monotonic()
    with pytest.raises(actorsys.NodeUnavailable, match="exited with status 2"):
        node.start()
    assert time.monotonic() - t0 < 15, "expected start() to fail as soon as the supervisor gives up"
    assert node.pid is None, "expected start() to clean up after the failure"
    err = capfd.readouterr().err
    assert "cannot load actor class" in err and "this module is broken now" in err, \
        f"expected the supervisor to name the class it cannot import, got:\n{err[-3000:]}"


# ---------------------------------------------------------------------------------------
# the same two promises for the asyncio client (and so for actor-to-actor asks)


def test_async_client_ask_in_flight_on_a_killed_worker_fails_promptly(node, tmp_path):
    import asyncio

    c = node.client()
    napper = key_on_slot(c, "Napper", 0)
    victim = worker_pids(node)[0]
    marker = str(tmp_path / "napping")

    async def run():
        async with actorsys.connect_async(node.endpoint, timeout=30) as ac:
            fut = ac.ref("Napper", napper).ask("nap", marker, 20.0)
            await asyncio.get_running_loop().run_in_executor(
                None, wait_for, lambda: os.path.exists(marker), 10, "the handler to start")
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            try:
                await fut
            except actorsys.WorkerLost:
                return time.monotonic() - killed_at
            raise AssertionError("expected WorkerLost for the ask in flight on the killed worker")

    elapsed = asyncio.run(run())
    assert elapsed < 3.0, f"expected WorkerLost promptly, got it {elapsed:.1f} s after the kill"


def test_async_client_asks_sent_while_a_worker_restarts_are_answered_after_it(node):
    import asyncio

    c = node.client()
    key = key_on_slot(c, "Counter", 0)
    assert c.ask("Counter", key, "add", 7) == 7
    old_pid = c.ask("Counter", key, "pid")

    async def run():
        async with actorsys.connect_async(node.endpoint, timeout=15) as ac:
            ref = ac.ref("Counter", key)
            assert await ref.ask("get") == 7          # connected before the kill
            os.kill(node.pid, signal.SIGSTOP)         # hold the restart open
            try:
                os.kill(old_pid, signal.SIGKILL)
                await asyncio.get_running_loop().run_in_executor(
                    None, wait_for, lambda: gone(old_pid), 5, "the killed worker to be gone")
                # let the client see the disconnect: an ask sent in the millisecond between
                # the death and that event counts as in flight (WorkerLost, "may or may not
                # have been processed")
                await asyncio.sleep(0.2)
                futs = [ref.ask("add", 1) for _ in range(5)]
                await asyncio.sleep(0.5)
                assert not any(f.done() for f in futs), "nothing can answer while the slot is down"
            finally:
                os.kill(node.pid, signal.SIGCONT)
            return await asyncio.gather(*futs, return_exceptions=True)

    results = asyncio.run(run())
    assert results == [8, 9, 10, 11, 12], \
        f"expected the asks sent during the restart answered after it, in order, got {results}"


# ---------------------------------------------------------------------------------------
# one node per data directory and endpoint


def test_a_second_node_on_the_same_data_directory_is_refused_and_the_first_keeps_serving(config):
    with actorsys.Node(config()) as first:
        first.client().ref("Counter", "mine").ask("add", 1)
        with pytest.raises(actorsys.ConfigError, match="in use by another running node"):
            actorsys.Node(config()).start()
        with actorsys.connect(first.endpoint) as fresh:
            assert fresh.ref("Counter", "mine").ask("add", 1) == 2, "the first node is unharmed"


def test_a_second_node_on_the_same_endpoint_is_refused(config, tmp_path):
    import tempfile

    run_dir = tempfile.mkdtemp(prefix="actorsys-ep-")
    try:
        endpoint = f"ipc://{run_dir}/router.sock"
        with actorsys.Node(config(endpoint=endpoint)) as first:
            other = config(endpoint=endpoint)
            other["node"]["data_dir"] = str(tmp_path / "other-data")
            with pytest.raises(actorsys.ConfigError, match="endpoint .* in use"):
                actorsys.Node(other).start()
            assert first.client().ref("Counter", "x").ask("add") == 1
    finally:
        import shutil
        shutil.rmtree(run_dir, ignore_errors=True)


def test_threads_that_end_release_their_client_sockets(node):
    c = node.client()
    proc = psutil.Process()
    c.ref("Counter", "threads").ask("add")
    before = proc.num_fds()
    for _ in range(300):   # one short-lived thread at a time: a thread-per-request server
        t = threading.Thread(target=lambda: c.ref("Counter", "threads").ask("add"))
        t.start()
        t.join(10)
    assert c.ref("Counter", "threads").ask("get") == 301
    assert proc.num_fds() - before < 30, \
        f"expected finished threads' sockets closed, fds grew {before} -> {proc.num_fds()}"


def test_a_node_restarts_at_once_on_its_own_tcp_endpoint(config):
    """The endpoint check must not mistake our own stopped node's TIME-WAIT port for a live one."""
    from actorsys.config.layout import free_port as _free_port

    endpoint = f"tcp://127.0.0.1:{_free_port('127.0.0.1')}"
    with actorsys.Node(config(endpoint=endpoint, insecure=True)) as node:
        assert node.client().ref("Counter", "tcp").ask("add") == 1
    with actorsys.Node(config(endpoint=endpoint, insecure=True)) as node:
        assert node.client().ref("Counter", "tcp").ask("add") == 2
