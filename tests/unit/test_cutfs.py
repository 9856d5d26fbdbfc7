"""The power-cut model of :mod:`actorsys.testing.cutfs` (its ``Volatile`` bookkeeping, on
plain files: what FUSE calls it with is a passthrough): a cut reverts each file to its
content as of its last fsync, and a new file neither it nor its directory synced
vanishes. (The mounted filesystem is exercised by ``tests/node/test_power_loss.py``.)"""
from __future__ import annotations

import os
from pathlib import Path

from actorsys.testing.cutfs import Names, Volatile


def write(v: Volatile, path: Path, data: bytes, offset: int, new: bool = False) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    if new:
        v.created(os.fstat(fd).st_ino)
    v.before_write(fd, offset, len(data))
    os.pwrite(fd, data, offset)
    return fd


def test_a_cut_keeps_what_was_fsynced_and_drops_the_rest(tmp_path: Path) -> None:
    v = Volatile()
    log = tmp_path / "000003.log"
    fd = write(v, log, b"synced", 0, new=True)
    v.synced(fd)                      # its name and its 6 bytes are durable now
    v.before_write(fd, 6, 4)
    os.pwrite(fd, b"lost", 6)         # appended, not synced
    v.before_write(fd, 0, 2)
    os.pwrite(fd, b"XX", 0)           # overwrote synced bytes, not synced
    v.before_write(fd, 1, 3)
    os.pwrite(fd, b"YYY", 1)          # and again, over its own unsynced bytes
    os.close(fd)
    assert v.cut(str(tmp_path)) == {"reverted": 1, "dropped_bytes": 4 + 2 + 3, "vanished": 0}
    assert log.read_bytes() == b"synced"


def test_a_truncation_since_the_fsync_is_undone(tmp_path: Path) -> None:
    v = Volatile()
    f = tmp_path / "MANIFEST-000002"
    f.write_bytes(b"0123456789")       # there before the mount: durable as it is
    fd = os.open(f, os.O_RDWR)
    v.before_truncate(fd, 3)
    os.ftruncate(fd, 3)
    v.before_write(fd, 3, 2)
    os.pwrite(fd, b"ab", 3)
    os.close(fd)
    v.cut(str(tmp_path))
    assert f.read_bytes() == b"0123456789"


def test_new_files_vanish_unless_they_or_their_directory_were_synced(tmp_path: Path) -> None:
    v = Volatile()
    os.close(write(v, tmp_path / "LOG", b"info", 0, new=True))       # never synced
    synced = write(v, tmp_path / "dbtmp", b"MANIFEST-000002\n", 0, new=True)
    v.synced(synced)
    os.close(synced)
    os.rename(tmp_path / "dbtmp", tmp_path / "CURRENT")    # renames are durable at once
    sub = tmp_path / "slot-0"
    sub.mkdir()
    os.close(write(v, sub / "000005.log", b"unsynced", 0, new=True))
    v.dir_synced(str(sub))            # the name is durable, its content is not
    result = v.cut(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["CURRENT", "slot-0"]
    assert (tmp_path / "CURRENT").read_bytes() == b"MANIFEST-000002\n"
    assert (sub / "000005.log").read_bytes() == b""
    assert result == {"reverted": 1, "dropped_bytes": 4 + 8, "vanished": 1}


def test_a_cut_forgets_the_past_period(tmp_path: Path) -> None:
    v = Volatile()
    f = tmp_path / "a"
    os.close(write(v, f, b"one", 0, new=True))
    v.cut(str(tmp_path))
    assert not f.exists() and v.files == {}


def test_strict_names_undo_renames_and_unlinks_since_the_directory_fsync(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "CURRENT").write_bytes(b"MANIFEST-000001\n")
    (root / "MANIFEST-000001").write_bytes(b"old")
    names, v = Names(str(root)), Volatile()
    # LevelDB's switch to a new manifest: new file synced, temp file synced and renamed
    # over CURRENT, the old manifest deleted; the directory never fsynced after
    names.changing(str(root))
    os.close(write(v, root / "MANIFEST-000002", b"new", 0, new=True))
    tmp = write(v, root / "000002.dbtmp", b"MANIFEST-000002\n", 0, new=True)
    v.synced(tmp, name_too=False)
    os.close(tmp)
    names.discard(str(root / "CURRENT"))
    os.rename(root / "000002.dbtmp", root / "CURRENT")
    names.discard(str(root / "MANIFEST-000001"))
    assert names.cut() == 4
    v.cut(str(root), names_kept=True)
    assert sorted(os.listdir(root)) == ["CURRENT", "MANIFEST-000001"]
    assert (root / "CURRENT").read_bytes() == b"MANIFEST-000001\n"
    assert (root / "MANIFEST-000001").read_bytes() == b"old"
    assert os.listdir(names.trash) == []


def test_strict_names_keep_what_the_directory_fsync_made_durable(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    names, v = Names(str(root)), Volatile()
    names.changing(str(root))
    fd = write(v, root / "node.meta.tmp", b"meta", 0, new=True)
    v.synced(fd, name_too=False)
    os.close(fd)
    os.rename(root / "node.meta.tmp", root / "node.meta")
    names.synced(str(root))
    v.dir_synced(str(root))
    assert names.cut() == 0
    v.cut(str(root), names_kept=True)
    assert (root / "node.meta").read_bytes() == b"meta"
