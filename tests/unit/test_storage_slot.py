"""SlotStore against a real LevelDB in tmp_path: the staged overlay, the group commit,
a failed commit turning the store read-only and try_recover reopening it, and the
errors of opening a database.

Faults are real, not mocked: the process's file size limit (RLIMIT_FSIZE) set to 0
makes every write to a file fail with EFBIG, as a full disk makes it fail with ENOSPC.
"""
from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
from typing import Iterator

import plyvel
import pytest

from actorsys.errors import StorageError
from actorsys.storage.slot import SlotStore, error_text, open_db

A, B = b"a\x00\x00A\x00a\x00", b"a\x00\x01B\x00b\x00"     # two actors' prefixes


@pytest.fixture
def store(tmp_path) -> Iterator[SlotStore]:
    s = SlotStore(str(tmp_path / "slot-0"), fsync=False, what="slot 0")
    yield s
    s.close()


def committed(store: SlotStore, writes: dict[bytes, bytes | None], actor: bytes = A) -> None:
    store.stage(writes, actor)
    store.commit()


@contextlib.contextmanager
def files_cannot_grow() -> Iterator[None]:
    """Every write to a file of this process fails (EFBIG) inside the block. Nothing
    may print or log to a file meanwhile (pytest's capture is a file)."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)


# -- the overlay and the group commit -------------------------------------------------

def test_staged_writes_are_read_before_the_commit_and_reach_leveldb_only_with_it(store):
    committed(store, {A + b"k1": b"old", A + b"k2": b"two"})
    store.stage({A + b"k1": b"new", A + b"k2": None, A + b"k3": b"three"}, A)
    assert store.get(A + b"k1") == b"new" and store.get(A + b"k2") is None
    assert store.get(A + b"k3") == b"three"
    assert list(store.range(A, A + b"\xff")) == [(A + b"k1", b"new"), (A + b"k3", b"three")]
    assert list(store.range(A, A + b"\xff", reverse=True)) == [(A + b"k3", b"three"), (A + b"k1", b"new")]
    assert list(store.range(A, A + b"\xff", committed=True)) == [(A + b"k1", b"old"), (A + b"k2", b"two")]
    assert store.db.get(A + b"k3") is None, "nothing staged is in LevelDB before the commit"
    store.commit()
    assert store.pending == {} and store.pending_actors == set()
    assert list(store.range(A, A + b"\xff", committed=True)) == [(A + b"k1", b"new"), (A + b"k3", b"three")]


def test_one_commit_writes_every_actors_staged_writes_and_they_last(store, tmp_path):
    store.stage({A + b"s": b"a"}, A)
    store.stage({B + b"s": b"b", B + b"kx": b"x"}, B)
    store.stage({A + b"kz": b"z"}, A)
    assert store.pending_actors == {A, B}
    store.commit()
    assert (store.commits, store.committed_writes) == (1, 4), "one group commit of four writes"
    store.commit()
    assert store.commits == 1, "nothing staged: no commit"
    store.close()
    again = SlotStore(str(tmp_path / "slot-0"), fsync=True)
    try:
        assert [again.get(k) for k in (A + b"s", A + b"kz", B + b"s", B + b"kx")] == [b"a", b"z", b"b", b"x"]
    finally:
        again.close()


def test_a_range_within_an_actor_with_nothing_staged_is_read_from_leveldb(store):
    committed(store, {B + b"k1": b"1"}, B)
    store.stage({A + b"k1": b"staged"}, A)
    assert list(store.range(B, B + b"\xff", actor=B)) == [(B + b"k1", b"1")]
    assert list(store.range(A, A + b"\xff", actor=A)) == [(A + b"k1", b"staged")]


# -- faults ------------------------------------------------------------------------------

def test_a_failed_commit_makes_the_store_read_only_until_it_reopens(store, caplog):
    committed(store, {A + b"s": b"before"})
    caplog.set_level(logging.INFO, logger="actorsys.storage")
    with files_cannot_grow():
        store.stage({A + b"s": b"lost", B + b"s": b"lost too"}, A)
        with pytest.raises(StorageError) as failed:
            store.commit()
        assert store.pending == {}, "the failed group is dropped"
        assert store.get(A + b"s") == b"before", "reads go on from the open database"
        store.stage({A + b"kx": b"x"}, A)
        with pytest.raises(StorageError) as again:
            store.commit()
        recovered_while_full = store.try_recover()
    assert "slot 0 cannot write to" in str(failed.value) and "File too large" in str(failed.value)
    assert again.value is store.broken is failed.value, "refused with the first error until it reopens"
    assert recovered_while_full is False, "no reopen while the directory takes no write"
    assert store.try_recover() is True and store.broken is None
    assert [store.get(k) for k in (A + b"s", B + b"s", A + b"kx")] == [b"before", None, None], \
        "none of the failed batch is applied (one atomic WriteBatch)"
    committed(store, {A + b"s": b"after"})
    assert store.get(A + b"s") == b"after"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [str(failed.value)], "the fault is logged once"
    assert any("slot 0 is writable again" in r.getMessage() for r in caplog.records)


def test_a_reopen_that_fails_serves_errors_until_one_succeeds(store, tmp_path, caplog):
    committed(store, {A + b"s": b"kept"})
    with files_cannot_grow():
        store.stage({A + b"s": b"lost"}, A)
        with pytest.raises(StorageError):
            store.commit()
    current = tmp_path / "slot-0" / "CURRENT"
    saved = current.read_bytes()
    current.unlink()
    assert store.try_recover() is False
    broken = str(store.broken)
    assert "no LevelDB CURRENT file" in broken and "reads wait for it to reopen" in broken
    with pytest.raises(StorageError, match="reads wait for it to reopen"):
        store.get(A + b"s")
    assert store.try_recover() is False
    assert sum("no LevelDB CURRENT" in r.getMessage() for r in caplog.records) == 1, \
        "the same cause is logged once, not at every attempt"
    current.write_bytes(saved)
    assert store.try_recover() is True
    assert store.get(A + b"s") == b"kept"


def test_try_recover_on_a_healthy_store_is_true_and_does_nothing(store):
    db = store.db
    assert store.try_recover() is True and store.db is db


# -- opening -------------------------------------------------------------------------

def test_a_directory_with_files_but_no_current_is_not_started_empty(tmp_path):
    path = tmp_path / "slot-3"
    path.mkdir()
    (path / "000005.ldb").write_bytes(b"table")
    with pytest.raises(StorageError, match="slot 3: .* holds files but no LevelDB CURRENT file"):
        open_db(str(path), "slot 3")
    assert not (path / "CURRENT").exists()


def test_a_database_held_by_another_opener_is_reported_as_locked(store, tmp_path):
    with pytest.raises(StorageError, match="is locked by another process") as info:
        SlotStore(str(tmp_path / "slot-0"), fsync=False, what="slot 0")
    assert str(tmp_path / "slot-0") in str(info.value) and not info.value.transient


def test_a_new_directory_gets_an_empty_database(tmp_path):
    s = SlotStore(str(tmp_path / "fresh"), fsync=False)
    try:
        assert s.get(b"x") is None and list(s.range(b"", b"\xff")) == [] and s.broken is None
    finally:
        s.close()
    assert os.path.exists(tmp_path / "fresh" / "CURRENT")


def test_error_text_decodes_leveldbs_status(tmp_path):
    db = plyvel.DB(str(tmp_path / "x"), create_if_missing=True)
    try:
        with pytest.raises(plyvel.Error) as info:
            plyvel.DB(str(tmp_path / "x"))
    finally:
        db.close()
    assert "lock" in error_text(info.value) and not error_text(info.value).startswith("b'")
    assert error_text(ValueError("plain")) == "plain"


def test_the_tables_leveldb_writes_carry_bloom_filters(store, tmp_path):
    """open_db asks for BLOOM_FILTER_BITS (issue 19): a table written to disk holds
    LevelDB's built-in Bloom filter block, so a read of an absent key skips it."""
    committed(store, {A + b"s%06d" % i: b"v" * 100 for i in range(2000)})
    store.db.compact_range()               # the memtable out to a table file
    tables = [f for f in os.listdir(store.path) if f.endswith((".ldb", ".sst"))]
    assert tables, os.listdir(store.path)
    blocks = b"".join(open(os.path.join(store.path, f), "rb").read() for f in tables)
    assert b"filter.leveldb.BuiltinBloomFilter2" in blocks
    assert store.get(A + b"absent") is None and store.get(A + b"s000007") == b"v" * 100


def test_a_database_deleted_while_open_refuses_writes_for_good_and_serves_reads(store, tmp_path, caplog):
    committed(store, {A + b"k": b"1"})
    shutil.rmtree(tmp_path / "slot-0")
    with caplog.at_level(logging.ERROR, logger="actorsys.storage"):
        store.stage({A + b"k": b"2"}, A)
        with pytest.raises(StorageError, match="was deleted while open"):
            store.commit()
        assert store.deleted and store.get(A + b"k") == b"1", "the refused write reached LevelDB"
        store.flush_log()        # (a quiet tick: nothing to write anywhere)
        os.makedirs(tmp_path / "slot-0")      # even a writable, empty directory again:
        assert not store.try_recover(), "reopened an empty database in place of the data"
        store.stage({B + b"k": b"3"}, B)
        with pytest.raises(StorageError, match="was deleted while open"):
            store.commit()
    assert store.get(A + b"k") == b"1"
    assert sum("was deleted while open" in r.getMessage() for r in caplog.records) == 1, \
        "logged once, not once per refused commit"


def test_opening_a_missing_directory_names_it_not_a_lock(tmp_path):
    with pytest.raises(StorageError, match="directory is missing") as e:
        open_db(str(tmp_path / "gone" / "slot-0"), "slot 0")
    assert "locked" not in str(e.value)


def test_fsync_mode_syncs_the_directory_once_per_change_of_its_files(tmp_path, monkeypatch):
    """A fresh LevelDB log is named durably before a write acknowledged into it leaves
    (found by tests/node/test_power_loss.py's strict names): the slot's directory is
    fsynced at a commit whose files changed since, and only then."""
    from actorsys.storage import slot

    synced: list[str] = []
    real = slot.fsync_dir
    monkeypatch.setattr(slot, "fsync_dir", lambda path: (synced.append(path), real(path)))
    s = SlotStore(str(tmp_path / "slot-0"), fsync=True, write_buffer=64 * 1024)
    # opening a database it created syncs the directory and its parent (synced_open)
    assert synced == [s.path, str(tmp_path)]
    synced.clear()
    try:
        s.stage({b"a": b"1"}, b"a")
        s.commit()
        assert synced == [s.path]             # the first commit: the names as opened
        for i in range(3):
            s.stage({b"b%d" % i: b"x"}, b"b")
            s.commit()
        assert len(synced) == 1               # same files: no directory fsync
        logs = {n for n in os.listdir(s.path) if n.endswith(".log")}
        for i in range(400):                  # past the 64 KiB write buffer: a new log
            s.stage({b"c%d" % i: b"y" * 1024}, b"c")
            s.commit()
        assert {n for n in os.listdir(s.path) if n.endswith(".log")} != logs
        assert 1 < len(synced) < 400
    finally:
        s.close()
