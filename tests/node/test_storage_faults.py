"""Storage faults: a full disk, a read-only data directory, a damaged or locked LevelDB.

The data directory lives on a small tmpfs this module mounts (and unmounts) itself, so
the disk really fills up and really turns read-only. Needs root (CI runs as root).
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import time
from typing import Iterator

import plyvel
import pytest
import zmq

import actorsys
from actorsys.protocol import wire
from actorsys.testing.nodes import wait_until, worker_pids
from helpers import ACTORS_DIR, NodeStderr

ACTORS = {"Ledger": "disk_actors:Ledger", "Counter": "actors:Counter"}


def _config(data_dir: str, **node) -> dict:
    settings = {"data_dir": data_dir, "workers": 1, "python_path": [ACTORS_DIR],
                "shutdown_timeout": 5.0, "start_timeout": 30.0, "ask_timeout": 10.0}
    settings.update(node)
    return {"node": settings, "actors": dict(ACTORS)}


@contextlib.contextmanager
def tmpfs(path: str, size: str) -> Iterator[str]:
    """A tmpfs of ``size`` mounted at ``path`` for the block."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"these tests mount a tmpfs and need root: {r.stderr.strip()}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def fill(path: str) -> str:
    """Fill the filesystem holding ``path`` with a ballast file; returns its name.
    Unbuffered: a buffered file kept what the full disk refused and raised ENOSPC again
    when it was closed (a CI run failed so)."""
    ballast = os.path.join(path, "ballast")
    chunk = bytes(1 << 16)
    with open(ballast, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while f.write(chunk):
                pass
    return ballast


def deposit_until_refused(ledger, note: str = "x" * 2000,
                          attempts: int = 400) -> tuple[int, actorsys.StorageError]:
    """Deposit 1 until the node refuses; returns (acknowledged deposits, the error)."""
    acked = 0
    for _ in range(attempts):
        try:
            ledger.ask("deposit", 1, note)
            acked += 1
        except actorsys.StorageError as exc:
            return acked, exc
    raise AssertionError(f"{attempts} deposits were all acknowledged; expected a StorageError")


def funded_ledgers(client, n: int) -> list:
    """``n`` ledgers holding 10 each (committed while the disk has room)."""
    ledgers = [client.ref("Ledger", f"l{i}") for i in range(n)]
    for lg in ledgers:
        assert lg.ask("deposit", 10) == 10
    return ledgers


def kill_worker(node, pid: int) -> None:
    """kill -9 the worker ``pid`` and wait for its replacement."""
    os.kill(pid, 9)
    wait_until(lambda: worker_pids(node).get(0) not in (None, pid), "the worker restarted", 10)


@pytest.mark.timeout(120)
def test_full_disk_refuses_writes_serves_reads_and_recovers_when_space_returns(tmp_path):
    with tmpfs(str(tmp_path / "fs"), "24m") as fs, \
            actorsys.Node(_config(os.path.join(fs, "data"))) as node:
        c = node.client()
        ledgers = funded_ledgers(c, 20)
        before = worker_pids(node)

        ballast = fill(fs)
        acked, err = deposit_until_refused(ledgers[0])
        assert "No space left on device" in str(err) and "worker slot 0" in str(err), err
        # every turn that writes is refused while the disk is full, on any actor...
        for lg in ledgers[1:5]:
            with pytest.raises(actorsys.StorageError, match="cannot write"):
                lg.ask("deposit", 1000)
        # ...and reads go on, with only acknowledged writes visible
        assert ledgers[0].ask("balance") == 10 + acked
        assert [lg.ask("balance") for lg in ledgers[1:]] == [10] * 19, \
            "a refused deposit changed a balance"
        w = next(p for p in node.status()["processes"] if p["role"] == "worker")
        assert w["storage"] == "read-only" and "No space left" in w["storage_error"], w
        assert w["storage_errors"] >= 1

        os.remove(ballast)
        wait_until(lambda: _deposits_again(ledgers[1]), "deposits accepted once space returned", 10)
        assert ledgers[0].ask("deposit", 5) == 15 + acked
        assert worker_pids(node) == before, "the worker restarted instead of recovering in place"
        assert next(p for p in node.status()["processes"] if p["role"] == "worker")["storage"] == "ok"

        # after recovery, acknowledged writes survive kill -9 (LevelDB's log was reopened)
        kill_worker(node, before[0])
        assert ledgers[0].ask("balance", timeout=10) == 15 + acked
        assert ledgers[1].ask("balance") == 11
        assert ledgers[0].ask("deposits") == 2 + acked


@pytest.mark.timeout(120)
def test_a_worker_restarted_on_a_full_disk_waits_for_space_instead_of_stopping_the_node(tmp_path):
    with tmpfs(str(tmp_path / "fs"), "24m") as fs, \
            actorsys.Node(_config(os.path.join(fs, "data"))) as node:
        c = node.client()
        ledger = c.ref("Ledger", "l")
        for _ in range(200):       # a log big enough that reopening it needs room
            ledger.ask("deposit", 1, "x" * 2000)
        before = worker_pids(node)[0]
        ballast = fill(fs)
        kill_worker(node, before)    # reopening the database now needs space it does not have
        with pytest.raises(actorsys.StorageError, match="cannot be opened now.*No space left"):
            ledger.ask("balance")
        assert node.status()["processes"][0]["up"], "the node stays up"
        os.remove(ballast)
        wait_until(lambda: _balance(ledger), "the slot opened once space returned", 10)
        assert ledger.ask("balance") == 200 and ledger.ask("deposits") == 200
        assert ledger.ask("deposit", 1) == 201


def _balance(ledger) -> int | None:
    try:
        return ledger.ask("balance")
    except actorsys.StorageError:
        return None


def _deposits_again(ledger) -> bool:
    try:
        ledger.ask("deposit", 1)
        return True
    except actorsys.StorageError:
        return False


@contextlib.contextmanager
def read_only(path: str) -> Iterator[None]:
    """``path`` turns read-only (a read-only bind mount over it) for the block."""
    r = subprocess.run(f"mount --bind {path} {path} && mount -o remount,bind,ro {path}",
                       shell=True, capture_output=True, text=True)
    assert r.returncode == 0, f"cannot make {path} read-only: {r.stderr.strip()}"
    try:
        yield
    finally:
        subprocess.run(["umount", path], check=False)


@pytest.mark.timeout(120)
def test_read_only_data_directory_refuses_writes_serves_reads_and_recovers(tmp_path):
    with tmpfs(str(tmp_path / "fs"), "256m") as fs, \
            actorsys.Node(_config(os.path.join(fs, "data"))) as node:
        c = node.client()
        ledgers = funded_ledgers(c, 10)
        before = worker_pids(node)
        note = "n" * 100_000
        with read_only(os.path.join(fs, "data")):
            # LevelDB keeps appending to the log it has open; it fails when it needs a
            # new file (a few MB on), and from then on every write is refused
            acked, err = deposit_until_refused(ledgers[0], note)
            assert "Read-only file system" in str(err) and "worker slot 0" in str(err), err
            with pytest.raises(actorsys.StorageError, match="cannot write"):
                ledgers[1].ask("deposit", 1000)
            assert ledgers[0].ask("balance") == 10 + acked
            assert [lg.ask("balance") for lg in ledgers[1:]] == [10] * 9
            assert ledgers[0].ask("deposits") == 1 + acked
            time.sleep(1.0)      # the worker's reopen attempts fail while it is read-only
            assert worker_pids(node) == before
        wait_until(lambda: _deposits_again(ledgers[1]), "deposits accepted once writable again", 10)
        kill_worker(node, before[0])
        assert ledgers[0].ask("balance", timeout=10) == 10 + acked
        assert ledgers[1].ask("balance") == 11
        assert ledgers[0].ask("deposits") == 1 + acked


def test_a_deleted_data_directory_refuses_every_write_loudly_and_serves_reads(tmp_path):
    """``rm -rf`` of the data directory while the node runs: LevelDB would go on writing to
    unlinked files (every such write lost at the next start), so the worker refuses writes
    from the first commit after the deletion, for good, and says so in its status; reads
    go on from what is still open. A restart cannot bring the data back: the node stops,
    naming the missing directory (not a lock)."""
    data = str(tmp_path / "data")
    err = NodeStderr(tmp_path / "stderr")
    with err.node(_config(data)) as node:
        c = node.client()
        ledgers = funded_ledgers(c, 5)
        before = worker_pids(node)
        shutil.rmtree(data)
        with pytest.raises(actorsys.StorageError, match="was deleted while open"):
            ledgers[0].ask("deposit", 1)
        time.sleep(1.5)     # the worker's reopen attempts would find an empty directory
        for lg in ledgers:
            with pytest.raises(actorsys.StorageError, match="was deleted while open"):
                lg.ask("deposit", 1)
        assert [lg.ask("balance") for lg in ledgers] == [10] * 5, "a refused deposit counted"
        w = next(p for p in node.status()["processes"] if p["role"] == "worker")
        assert w["storage"] == "deleted" and "deleted while open" in w["storage_error"], w
        assert worker_pids(node) == before
        os.kill(before[0], 9)
        assert node.wait(30) not in (None, 0), "a worker restarted without its data must stop the node"
        assert err.read().count("was deleted while open") == 1, "said once, loudly"
        err.wait_for(r"worker slot 0: .*directory is missing .*; stopping the node", "why it stopped")


# -- damaged or locked LevelDB at start ---------------------------------------------------

def _node_with_data(tmp_path) -> tuple[dict, str]:
    """A stopped node's config whose slot 0 holds ledgers l0-l4 (balance 10) only in a
    LevelDB table and l5-l9 (balance 20) with their last deposit in the log."""
    cfg = _config(str(tmp_path / "data"))
    with actorsys.Node(cfg) as node:
        for i in range(10):
            node.client().ref("Ledger", f"l{i}").ask("deposit", 10)
    with actorsys.Node(cfg) as node:     # opening turned the log into a table
        for i in range(5, 10):
            node.client().ref("Ledger", f"l{i}").ask("deposit", 10)
    return cfg, str(tmp_path / "data" / "slot-0")


def _start_fails(cfg: dict, *expected: str) -> None:
    with pytest.raises(actorsys.NodeUnavailable) as info:
        with actorsys.Node(cfg):
            pass
    for text in expected:
        assert text in str(info.value), f"expected {text!r} in the start error: {info.value}"


def _garble(path: str, offset: int = 10, length: int = 40) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xa5" * length)


def test_a_slot_without_its_current_file_stops_the_start_instead_of_starting_empty(tmp_path):
    cfg, slot = _node_with_data(tmp_path)
    os.remove(os.path.join(slot, "CURRENT"))
    _start_fails(cfg, "worker slot 0", slot, "no LevelDB CURRENT file")
    assert not os.path.exists(os.path.join(slot, "CURRENT")), "a new, empty database was created"


@pytest.mark.parametrize("victim", ["MANIFEST-*", "*.log"])
def test_a_damaged_manifest_or_log_stops_the_start_naming_slot_and_path(tmp_path, victim):
    cfg, slot = _node_with_data(tmp_path)
    _garble(sorted(glob.glob(os.path.join(slot, victim)))[-1])
    _start_fails(cfg, "worker slot 0", slot, "damaged")


def test_a_damaged_table_fails_the_read_with_a_clear_error_never_an_empty_actor(tmp_path):
    cfg, slot = _node_with_data(tmp_path)
    tables = glob.glob(os.path.join(slot, "*.ldb"))
    assert tables, f"expected a table file in {slot}: {os.listdir(slot)}"
    for table in tables:
        _garble(table, offset=0, length=200)      # the first data block: the first ledgers
    with actorsys.Node(cfg) as node:
        with pytest.raises(actorsys.StorageError) as info:
            node.client().ref("Ledger", "l0").ask("balance")
        assert "worker slot 0" in str(info.value) and slot in str(info.value), info.value


def test_a_slot_locked_by_another_process_stops_the_start_naming_slot_and_path(tmp_path):
    cfg, slot = _node_with_data(tmp_path)
    db = plyvel.DB(slot)          # this test process holds the slot's LevelDB lock
    try:
        _start_fails(cfg, "worker slot 0", slot, "locked by another process")
    finally:
        db.close()
    with actorsys.Node(cfg) as node:    # and once the lock is released, nothing is lost
        assert [node.client().ref("Ledger", f"l{i}").ask("balance") for i in (3, 7)] == [10, 20]


# -- review regressions: nothing refused may come back ------------------------------------

def _broken(node, fs: str) -> str:
    """Fill the disk and make the worker's store read-only; returns the ballast's path."""
    ballast = fill(fs)
    deposit_until_refused(node.client().ref("Ledger", "breaker"))
    return ballast


def one_batch(endpoint: str, requests: list[list]) -> dict[int, list]:
    """Send ``requests`` to a worker while a sync turn of the Counter "blocker" (already
    active) blocks its loop, so they form one group commit; the replies by request id."""
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.connect(endpoint)
        s.send(wire.pack([wire.ASK, 1, "Counter", "blocker", "sleep", [0.5], {}]))
        time.sleep(0.1)
        for request in requests:
            s.send(wire.pack(request))
        replies: dict[int, list] = {}
        while len(replies) < len(requests) + 1 and s.poll(10_000):
            r = wire.unpack(s.recv())
            replies[r[1]] = r
        s.close(0)
    finally:
        ctx.term()
    return replies


def test_a_refused_write_does_not_survive_an_eviction_and_reactivation_in_its_batch(tmp_path):
    """The refused deposit's actor was evicted and activated again within one group
    commit; the new activation had read the staged (never committed) state."""
    with tmpfs(str(tmp_path / "fs"), "24m") as fs, \
            actorsys.Node(_config(os.path.join(fs, "data"), max_resident=3)) as node:
        c = node.client()
        c.ref("Counter", "blocker").ask("get")
        ledger = c.ref("Ledger", "L")
        assert ledger.ask("deposit", 10) == 10
        ballast = fill(fs)
        burst = [("L", "deposit", [5, "z" * 4000]), ("A", "balance", []),
                 ("B", "balance", []), ("L", "balance", [])]
        replies = one_batch(c.map.endpoints[0], [[wire.ASK, i, "Ledger", key, method, args, {}]
                                                 for i, (key, method, args) in enumerate(burst, start=2)])
        assert replies[2][0] == wire.ERR, f"the deposit cannot have been acknowledged: {replies[2]}"
        os.remove(ballast)
        wait_until(lambda: _deposits_again(c.ref("Ledger", "other")), "writable again", 10)
        assert ledger.ask("balance") == 10, "the refused deposit of 5 came back"


def test_a_refused_destroy_leaves_the_actor_whole(tmp_path):
    with tmpfs(str(tmp_path / "fs"), "24m") as fs, \
            actorsys.Node(_config(os.path.join(fs, "data"))) as node:
        victim = node.client().ref("Ledger", "victim")
        victim.ask("deposit", 10)
        victim.ask("deposit", 5)
        ballast = _broken(node, fs)
        with pytest.raises(actorsys.StorageError):
            victim.destroy()
        os.remove(ballast)
        wait_until(lambda: _deposits_again(node.client().ref("Ledger", "other")), "writable again", 10)
        assert victim.ask("balance") == 15 and victim.ask("deposits") == 2


def test_a_supervised_child_whose_write_is_refused_is_not_restarted_or_given_up(tmp_path):
    cfg = _config(str(tmp_path / "fs" / "data"))
    cfg["supervisors"] = {"root": {"max_restarts": 1, "max_seconds": 60,
                                   "children": [{"id": "z", "actor": "Ledger", "key": "z"}]}}
    with tmpfs(str(tmp_path / "fs"), "24m") as fs, actorsys.Node(cfg) as node:
        child = node.client().ref("Ledger", "z")
        assert child.ask("deposit", 1) == 1
        ballast = _broken(node, fs)
        for _ in range(3):       # more than the root's restart intensity allows
            with pytest.raises(actorsys.StorageError):
                child.ask("deposit", 1)
        [z] = node.client().supervisor("root").which_children()
        assert z["status"] == "running" and z.get("restarts", 0) == 0, z
        os.remove(ballast)
        wait_until(lambda: _deposits_again(child), "the child writes again", 10)
        assert child.ask("balance") == 2 and node.failure is None


def test_a_slot_first_created_on_a_full_disk_opens_once_space_returns(tmp_path):
    with tmpfs(str(tmp_path / "fs"), "24m") as fs:
        cfg = _config(os.path.join(fs, "data"))
        with actorsys.Node(cfg):
            pass
        shutil.rmtree(os.path.join(fs, "data", "slot-0"))    # the slot starts empty
        ballast = fill(fs)
        with actorsys.Node(cfg) as node:
            ledger = node.client().ref("Ledger", "a")
            with pytest.raises(actorsys.StorageError, match="cannot be opened now"):
                ledger.ask("balance")
            os.remove(ballast)
            wait_until(lambda: _balance(ledger) is not None, "the new slot opened", 10)
            assert ledger.ask("deposit", 3) == 3


def test_list_actors_never_shows_an_actor_whose_first_write_was_refused(tmp_path):
    """A LIST in the same batch as the refused first write used to see it (the listing
    was read with the staged writes, and its reply does not wait for the commit)."""
    with tmpfs(str(tmp_path / "fs"), "24m") as fs, \
            actorsys.Node(_config(os.path.join(fs, "data"))) as node:
        c = node.client()
        c.ref("Counter", "blocker").ask("get")
        ballast = fill(fs)
        replies = one_batch(c.map.endpoints[0],
                            [[wire.ASK, 2, "Ledger", "ghost", "deposit", [1, "z" * 4000], {}],
                             [wire.LIST, 3, "Ledger", None, 100]])
        assert replies[2][0] == wire.ERR, replies[2]
        assert replies[3] == [wire.OK, 3, []], f"expected no listed actor: {replies[3]}"
        os.remove(ballast)
