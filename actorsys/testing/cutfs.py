"""A test filesystem whose power can be cut: a FUSE passthrough onto a backing directory
that drops, at each cut, every write not yet fsynced (the power-loss tests,
``tests/node/test_power_loss.py``; issue 20).

**What is durable** (the model, kept simple, checked by ``tests/unit/test_cutfs.py``):

- a file's *content* is durable as of its last ``fsync`` or ``fdatasync``: a cut
  reverts every file to that content (its size then, and the bytes then of every range
  written or truncated since: an undo log per file, so an append-only file such as
  LevelDB's log costs nothing to track);
- names, in one of two models. **Strict** (``--strict-names``, :class:`Names`; the
  power-loss test's default): POSIX's, a name created, renamed or unlinked since its
  directory's last fsync is undone (a new file vanishes, a replaced or unlinked file
  comes back from a trash directory beside the backing one); a file's own fsync makes
  no name durable. **Journaled** (the default here): a file created and never fsynced,
  nor its directory since, vanishes; its first fsync makes its name durable, and
  renames and unlinks are durable at once, as ext4 (``data=ordered``) and XFS do;
- directories themselves (mkdir, rmdir) are durable at once in both models.

Strict names found that LevelDB names a fresh log durably only at its next MANIFEST
sync (its directory fsync), after writes acknowledged into that log:
``SlotStore.commit`` now fsyncs the slot directory when its files changed (see
``docs/design-changes.md``).

**The cut**: the mount's lifetime is one powered-on period. SIGTERM to the filesystem
process (or unmounting it) ends it: libfuse unmounts, then the process reverts the
backing directory to its durable state, prints one JSON line ``{"reverted": files,
"dropped_bytes": n, "vanished": files, "names_reverted": n, "names_dropped": [...]}``
(the last two in strict mode: the names a cut changed, and the new files with data it
dropped) and exits 0. A test kills every process using
the mount first (kill -9: nothing of theirs reaches the disk after), and mounts a fresh
filesystem process on the same backing directory to power on again, so no page of the
old mount's kernel cache survives the cut. Attribute and entry caching are off (timeouts
0) and writes go through to this process at once (no ``writeback_cache``): what a
process wrote before its kill is what this process saw.

Run as ``python -m actorsys.testing.cutfs [--strict-names] BACKING MOUNTPOINT`` (root, ``/dev/fuse``,
Debian's ``fuse3``; the Python binding is ``mfusepy``, the test extra); :class:`CutFS`
drives it from a test. Single-threaded (``-s``): the bookkeeping needs no lock, and the
node's workers are throttled by their fsyncs anyway.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

#: seconds a mount or an unmount may take
MOUNT_TIMEOUT = 10.0

PR_SET_PDEATHSIG = 1


@dataclass
class Unsynced:
    """A file written since its last fsync: what a cut restores it to."""
    size: int                  #: its size as of its last fsync
    new: bool = False          #: created since the mount; neither it nor its directory synced
    undo: list[tuple[int, bytes]] = field(default_factory=list)  #: (offset, bytes before)


class Volatile:
    """The bookkeeping of unsynced writes, by backing inode (renames keep the inode)."""

    def __init__(self) -> None:
        self.files: dict[int, Unsynced] = {}

    def created(self, ino: int) -> None:
        self.files[ino] = Unsynced(size=0, new=True)

    def _entry(self, fd: int) -> Unsynced:
        st = os.fstat(fd)
        entry = self.files.get(st.st_ino)
        if entry is None:
            entry = self.files[st.st_ino] = Unsynced(size=st.st_size)
        return entry

    def before_write(self, fd: int, offset: int, length: int) -> None:
        """Keep the durable bytes that a write of ``length`` at ``offset`` overwrites."""
        entry = self._entry(fd)
        end = min(offset + length, entry.size)
        if offset < end:
            entry.undo.append((offset, os.pread(fd, end - offset, offset)))

    def before_truncate(self, fd: int, length: int) -> None:
        entry = self._entry(fd)
        if length < entry.size:
            entry.undo.append((length, os.pread(fd, entry.size - length, length)))

    def synced(self, fd: int, name_too: bool = True) -> None:
        """Its content is durable now; with ``name_too``, a new file's name as well."""
        ino = os.fstat(fd).st_ino
        entry = self.files.get(ino)
        if entry is not None and entry.new and not name_too:
            entry.size, entry.undo = os.fstat(fd).st_size, []
        else:
            self.files.pop(ino, None)

    def dir_synced(self, path: str) -> None:
        """The names in directory ``path`` are durable (their content is not)."""
        for name in os.listdir(path):
            try:
                st = os.lstat(os.path.join(path, name))
            except FileNotFoundError:
                continue
            entry = self.files.get(st.st_ino)
            if entry is not None:
                entry.new = False

    def cut(self, root: str, names_kept: bool = False) -> dict[str, int]:
        """Revert every file under ``root`` to its durable state (see the module docstring);
        ``names_kept``: :class:`Names` has put the names back already (strict mode)."""
        reverted = dropped = vanished = 0
        for top, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(top, name)
                st = os.lstat(path)
                entry = self.files.pop(st.st_ino, None)
                if entry is None or not os.path.isfile(path):
                    continue
                if entry.new and not names_kept:
                    os.unlink(path)
                    vanished += 1
                    dropped += st.st_size
                    continue
                reverted += 1
                dropped += max(0, st.st_size - entry.size) + sum(len(b) for _, b in entry.undo)
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, entry.size)
                    for offset, old in reversed(entry.undo):    # the oldest bytes last
                        os.pwrite(fd, old, offset)
                finally:
                    os.close(fd)
        self.files.clear()      # (entries of files unlinked since: gone either way)
        return {"reverted": reverted, "dropped_bytes": dropped, "vanished": vanished}


class Names:
    """Strict POSIX names (``--strict-names``): a directory's entries are durable as of
    its last fsync. Before the first change to a directory since then its listing is
    kept; an unlinked or replaced file goes to a trash directory beside the backing one,
    so a cut can put it back. A cut makes each such directory hold its kept listing
    again: names added since are dropped, names removed or renamed away come back (with
    the content of their last fsync: :class:`Volatile` reverts it after). A file's own
    fsync makes no name durable here. Subdirectories are left as they are (mkdir and
    rmdir durable at once: nothing here renames or removes one while serving)."""

    def __init__(self, root: str) -> None:
        self.root, self.trash = root, root.rstrip("/") + ".cutfs-trash"
        os.makedirs(self.trash, exist_ok=True)
        self.kept: dict[int, dict[str, int]] = {}      # directory inode -> name -> inode
        self.moved = 0
        #: the last cut's names dropped that held data (``slot-0/000067.log: 812 bytes``)
        self.dropped: list[str] = []

    @staticmethod
    def listing(path: str) -> dict[str, int]:
        out = {}
        for entry in os.scandir(path):
            if not entry.is_dir(follow_symlinks=False):
                out[entry.name] = entry.inode()
        return out

    def changing(self, directory: str) -> None:
        """``directory``'s entries are about to change: keep its durable listing."""
        ino = os.lstat(directory).st_ino
        if ino not in self.kept:
            self.kept[ino] = self.listing(directory)

    def synced(self, directory: str) -> None:
        self.kept.pop(os.lstat(directory).st_ino, None)

    def discard(self, path: str) -> None:
        """Unlink ``path``, keeping its file in the trash for a cut to bring back."""
        self.moved += 1
        os.rename(path, os.path.join(self.trash, f"{os.lstat(path).st_ino}-{self.moved}"))

    def cut(self) -> int:
        """Put every kept listing back; returns how many names changed."""
        where: dict[int, str] = {}           # file inode -> a path it is at now
        dirs: dict[int, str] = {}
        for top, _subdirs, files in os.walk(self.root):
            dirs[os.lstat(top).st_ino] = top
            for name in files:
                where[os.lstat(os.path.join(top, name)).st_ino] = os.path.join(top, name)
        for name in os.listdir(self.trash):
            where[os.lstat(os.path.join(self.trash, name)).st_ino] = os.path.join(self.trash, name)
        changed = 0
        self.dropped = []
        for dir_ino, kept in self.kept.items():
            directory = dirs.get(dir_ino)
            if directory is None:
                continue                     # the directory itself is gone (rmdir: durable)
            for name, ino in self.listing(directory).items():
                if kept.get(name) != ino:    # added since: away to the trash
                    size = os.lstat(os.path.join(directory, name)).st_size
                    if size and kept.get(name) is None:
                        rel = os.path.relpath(os.path.join(directory, name), self.root)
                        self.dropped.append(f"{rel}: {size} bytes")
                    self.moved += 1
                    aside = os.path.join(self.trash, f"{ino}-{self.moved}")
                    os.rename(os.path.join(directory, name), aside)
                    where[ino] = aside
                    changed += 1
            for name, ino in kept.items():
                path = os.path.join(directory, name)
                if os.path.lexists(path) or ino not in where:
                    continue
                os.rename(where[ino], path)  # removed or renamed away since: back
                where[ino] = path
                changed += 1
        self.kept.clear()
        for name in os.listdir(self.trash):
            os.unlink(os.path.join(self.trash, name))
        return changed


def operations(root: str, volatile: Volatile, names: Names | None = None) -> Any:
    """The mfusepy operations of a passthrough onto ``root`` that tells ``volatile`` (and
    ``names``, in strict mode)."""
    import mfusepy       # the test extra's; loads libfuse3

    def real(path: str) -> str:
        return os.path.join(root, path.lstrip("/"))

    def changing(path: str) -> None:
        if names is not None:
            names.changing(os.path.dirname(real(path)))

    def remove(path: str) -> None:
        if names is not None and os.path.lexists(real(path)):
            names.discard(real(path))
        else:
            os.unlink(real(path))

    class Passthrough(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            st = os.fstat(fh) if fh is not None else os.lstat(real(path))
            keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino",
                    "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blocks", "st_blksize")
            out = {k.removesuffix("_ns"): getattr(st, k) for k in keys}
            return out

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(real(path))]

        def access(self, path: str, amode: int) -> int:
            if not os.access(real(path), amode):
                raise mfusepy.FuseOSError(errno.EACCES)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            sv = os.statvfs(real(path))
            return {k: getattr(sv, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize",
                                                "f_favail", "f_ffree", "f_files", "f_flag",
                                                "f_frsize", "f_namemax")}

        def open(self, path: str, flags: int) -> int:
            # read-write underneath, whatever was asked: the undo log reads what a write
            # overwrites (the kernel still enforces the caller's access mode)
            fd = os.open(real(path), (flags & ~os.O_ACCMODE & ~os.O_TRUNC) | os.O_RDWR)
            if flags & os.O_TRUNC:
                volatile.before_truncate(fd, 0)
                os.ftruncate(fd, 0)
            return fd

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            changing(path)
            fd = os.open(real(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
            volatile.created(os.fstat(fd).st_ino)
            return fd

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            volatile.before_write(fh, offset, len(data))
            return os.pwrite(fh, data, offset)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            fd = fh if fh is not None else os.open(real(path), os.O_RDWR)
            try:
                volatile.before_truncate(fd, length)
                os.ftruncate(fd, length)
            finally:
                if fh is None:
                    os.close(fd)
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            volatile.synced(fh, name_too=names is None)
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            volatile.dir_synced(real(path))
            if names is not None:
                names.synced(real(path))
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def unlink(self, path: str) -> int:
            changing(path)
            remove(path)
            return 0

        def rename(self, old: str, new: str) -> int:
            changing(old)
            changing(new)
            if names is not None and os.path.lexists(real(new)) and not os.path.isdir(real(new)):
                remove(new)          # (the file it replaces, kept for a cut)
            os.rename(real(old), real(new))
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            os.mkdir(real(path), mode)
            return 0

        def rmdir(self, path: str) -> int:
            os.rmdir(real(path))
            return 0

        def chmod(self, path: str, mode: int) -> int:
            os.chmod(real(path), mode)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            os.chown(real(path), uid, gid)
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            if times is None:
                os.utime(real(path))
            else:
                os.utime(real(path), ns=times)
            return 0

        def symlink(self, target: str, source: str) -> int:
            changing(target)
            os.symlink(source, real(target))
            return 0

        def readlink(self, path: str) -> str:
            return os.readlink(real(path))

    return Passthrough()


def serve(backing: str, mountpoint: str, strict: bool = False) -> dict[str, Any]:
    """Mount, serve until unmounted or SIGTERM, then cut: revert ``backing`` (``strict``:
    names too, :class:`Names`)."""
    import mfusepy

    volatile = Volatile()
    names = Names(backing) if strict else None
    try:
        mfusepy.FUSE(operations(backing, volatile, names), mountpoint, foreground=True, nothreads=True,
                     attr_timeout=0, entry_timeout=0, negative_timeout=0, fsname="cutfs")
    except RuntimeError as exc:
        # fuse_main's status 8: its loop ended by a signal (the SIGTERM of a cut)
        if exc.args != (8,):
            raise
    renamed = names.cut() if names is not None else 0
    result = volatile.cut(backing, names_kept=names is not None)
    return {**result, "names_reverted": renamed,
            "names_dropped": names.dropped if names is not None else []}


def mounted(mountpoint: str) -> bool:
    """Whether ``mountpoint`` is a mount point now (``/proc/self/mounts``)."""
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


class CutFS:
    """A :mod:`cutfs <actorsys.testing.cutfs>` filesystem on ``mountpoint`` over
    ``backing`` (both directories): :meth:`power_on` mounts it, :meth:`cut` cuts the
    power (the caller killed every process using it first) and returns what was dropped,
    :meth:`close` makes sure it is unmounted and its process gone (idempotent; a
    fixture's finalizer calls it, whatever happened)."""

    def __init__(self, backing: str, mountpoint: str, log_path: str,
                 strict_names: bool = False) -> None:
        self.backing, self.mountpoint, self.log_path = backing, mountpoint, log_path
        self.strict_names = strict_names
        self.proc: subprocess.Popen[bytes] | None = None
        self.cuts: list[dict[str, Any]] = []

    def power_on(self) -> None:
        assert self.proc is None, "already powered on"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "actorsys.testing.cutfs", self.backing, self.mountpoint,
                 *(["--strict-names"] if self.strict_names else [])],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not mounted(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                with open(self.log_path, errors="replace") as f:
                    raise RuntimeError(f"cutfs did not mount {self.mountpoint}:\n{f.read()[-3000:]}")
            time.sleep(0.02)

    def cut(self) -> dict[str, Any]:
        """Power off: SIGTERM the filesystem process, which unmounts and reverts."""
        proc, self.proc = self.proc, None
        assert proc is not None and proc.stdout is not None, "not powered on"
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=MOUNT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc = proc
            self.close()
            raise RuntimeError("cutfs did not unmount within its timeout") from None
        if proc.returncode != 0 or mounted(self.mountpoint):
            self.proc = proc
            self.close()
            raise RuntimeError(f"cutfs exited {proc.returncode} (still mounted: "
                               f"{mounted(self.mountpoint)}); see {self.log_path}")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        self.cuts.append(result)
        return result

    def close(self) -> None:
        """Unmount (lazily if busy) and end the process, whatever state it is in."""
        if mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if mounted(self.mountpoint):
                subprocess.run(["umount", "-l", self.mountpoint], check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.wait(MOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()


def main(argv: list[str]) -> int:
    strict = "--strict-names" in argv
    argv = [a for a in argv if a != "--strict-names"]
    if len(argv) != 2:
        print("usage: python -m actorsys.testing.cutfs [--strict-names] BACKING MOUNTPOINT",
              file=sys.stderr)
        return 2
    # a test process that dies (kill -9) still gets its mount back: SIGTERM unmounts
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    result = serve(os.path.abspath(argv[0]), os.path.abspath(argv[1]), strict)
    try:
        print(json.dumps(result), flush=True)
    except BrokenPipeError:      # (its parent is gone: nobody to tell)
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
