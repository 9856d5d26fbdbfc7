"""What a restarted worker's LevelDB replays (issue 19): the write buffer of a slot (node
key ``leveldb_write_buffer``) reaches LevelDB and bounds the log, ``flush_log`` empties
it, and a bad value in node.toml is a ConfigError naming the file, the line and the key
(real LevelDB in tmp_path; the config is only read, no node)."""
from __future__ import annotations

import os

import pytest

from actorsys.config import load_config
from actorsys.errors import ConfigError
from actorsys.storage.slot import SlotStore, log_bytes

A = b"a\x00\x00A\x00a\x00"          # an actor's prefix


def write_and_watch(path: str, write_buffer: int | None, total: int) -> int:
    """Commit ``total`` bytes of values (1 KiB each, 16 a batch) to a SlotStore at ``path``;
    return the largest log size seen after a commit."""
    store = SlotStore(path, fsync=False, what="slot 0", write_buffer=write_buffer)
    largest = 0
    try:
        for b in range(total // (16 * 1024)):
            store.stage({A + b"k%06d" % (b * 16 + i): os.urandom(1024) for i in range(16)}, A)
            store.commit()
            largest = max(largest, log_bytes(path))
    finally:
        store.close()
    return largest


def test_the_write_buffer_bounds_the_log_and_the_data_survives_a_reopen(tmp_path):
    small, default = str(tmp_path / "small"), str(tmp_path / "default")
    # 3 MiB through a 64 KiB buffer: the log never grows far past it (LevelDB switches
    # to a new log when the memtable is full; its accounting lets it overshoot a little)
    assert write_and_watch(small, 64 * 1024, 3 << 20) < 256 * 1024
    # the same writes through LevelDB's default (4 MiB) buffer keep them all in the log
    assert write_and_watch(default, None, 3 << 20) > 3 << 20
    store = SlotStore(small, fsync=False, what="slot 0", write_buffer=64 * 1024)
    try:
        assert sum(1 for _ in store.range(A, A + b"\xff")) == (3 << 20) // 1024
    finally:
        store.close()


def line_of(path: str, text: str) -> int:
    with open(path) as f:
        return next(i for i, line in enumerate(f, 1) if text in line)


def test_the_default_and_a_size_string_are_bytes(tmp_path):
    assert load_config({}).leveldb_write_buffer == 1 << 20
    assert load_config({"node": {"leveldb_write_buffer": "256KiB"}}).leveldb_write_buffer == 256 * 1024


@pytest.mark.parametrize("value, words", [
    ('"lots"', "between 64KiB and 1GiB"),
    ('"1KiB"', "between 64KiB and 1GiB"),
    ('"2GiB"', "between 64KiB and 1GiB"),
    ("true", "size"),
], ids=["not a size", "too small", "too large", "not a number"])
def test_a_bad_write_buffer_names_file_line_and_key(tmp_path, value, words):
    path = tmp_path / "node.toml"
    path.write_text("\n".join(["[node]", 'data_dir = "data"', f"leveldb_write_buffer = {value}",
                               "", "[actors]", 'Plain = "app:Plain"', ""]))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    exc = info.value
    want = (str(path), line_of(str(path), "leveldb_write_buffer"), "node.leveldb_write_buffer")
    assert (exc.file, exc.line, exc.key) == want, str(exc)
    assert words in str(exc), str(exc)


def test_flush_log_leaves_nothing_to_replay_and_keeps_the_data(tmp_path):
    path = str(tmp_path / "slot-0")
    store = SlotStore(path, fsync=False, what="slot 0")
    try:
        store.stage({A + b"k%03d" % i: b"v" * 100 for i in range(100)}, A)
        store.commit()
        assert log_bytes(path) > 100 * 100
        store.flush_log()
        assert log_bytes(path) == 0
        store.stage({A + b"after": b"x"}, A)
        store.commit()
    finally:
        store.close()
    store = SlotStore(path, fsync=False, what="slot 0")
    try:
        assert sum(1 for _ in store.range(A, A + b"\xff")) == 101
    finally:
        store.close()
