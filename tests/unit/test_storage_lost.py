"""A worker slot's lost LevelDB (actorsys/storage/lost.py): what counts as lost, the
marker that outlives the process, and a damaged directory moved aside, never deleted."""
from __future__ import annotations

import os

import plyvel

from actorsys.storage import lost


def test_a_missing_or_empty_slot_is_lost_only_if_the_node_had_data_before(tmp_path) -> None:
    path = str(tmp_path / "slot-0")
    assert lost.is_lost(path, created_now=False), "deleted: the node's data existed"
    assert not lost.is_lost(path, created_now=True), "a new node: a new slot"
    os.makedirs(path)
    for name in ("LOCK", "LOG"):                  # what a failed creation leaves
        open(os.path.join(path, name), "w").close()
    assert lost.is_lost(path, created_now=False)
    os.unlink(os.path.join(path, "LOCK"))
    plyvel.DB(path, create_if_missing=True).close()
    assert not lost.is_lost(path, created_now=False), "a database: not lost"


def test_the_marker_keeps_a_slot_lost_until_cleared(tmp_path) -> None:
    path = str(tmp_path / "slot-1")
    plyvel.DB(path, create_if_missing=True).close()
    lost.mark(path)
    assert os.path.exists(path + ".lost")
    assert lost.is_lost(path, created_now=True), "the marker outlives the empty start"
    lost.clear_marker(path)
    lost.clear_marker(path)                       # (twice: no error)
    assert not lost.is_lost(path, created_now=False)


def test_a_damaged_slot_is_moved_aside_with_its_files(tmp_path) -> None:
    path = str(tmp_path / "slot-0")
    plyvel.DB(path, create_if_missing=True).close()
    os.unlink(os.path.join(path, "CURRENT"))
    first = lost.set_aside(path)
    assert not os.path.exists(path) and os.path.basename(first).startswith("slot-0.damaged-")
    assert os.listdir(first), "nothing deleted"
    os.makedirs(path)
    second = lost.set_aside(path)                 # (the same second: another name)
    assert second != first and os.path.isdir(first) and os.path.isdir(second)
