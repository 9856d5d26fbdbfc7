"""One LevelDB database per worker slot: reads, the staged overlay, group commit and
recovery from storage faults (key layout: :mod:`.keys`; an actor's view: :mod:`.view`).

Values are msgpack. A turn's writes are buffered in its :class:`Storage` view; at the end
of the turn they are staged in the slot's pending overlay, and the worker's group commit
writes everything staged in one atomic ``WriteBatch`` (fsynced with ``durability =
"fsync"``) before any reply leaves (the output gate).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator

import plyvel

from ..errors import StorageError
from ..log import get_logger
from .meta import fsync_dir
from .overlay import MISSING, merge

log = get_logger("storage")

#: the longest storage key, in bytes of UTF-8 (Durable Objects: 2 KiB)
MAX_STORAGE_KEY_BYTES = 16 * 1024


#: default largest stored value (state, storage entry, alarm payload), node key ``max_value_bytes``
DEFAULT_MAX_VALUE_BYTES = 512 * 1024


#: committed values an activation keeps in memory for repeated reads
CACHE_ENTRIES = 512


#: free bytes beyond twice the log's size before a read-only store tries to reopen
REOPEN_HEADROOM = 1 << 20


#: bits per key of the Bloom filter in each table LevelDB writes: a read of a key that is
#: not there (each new actor's state and request marker: two per activation) then skips
#: the tables that cannot hold it instead of reading their blocks. 10 bits is LevelDB's
#: own advice (about 1% false positives); tables written without filters are read as
#: before. Measured: activations at 200k resident actors 1.5x (BENCHMARKS.md, issue 19).
BLOOM_FILTER_BITS = 10


#: LevelDB errors that go away by themselves (space freed, the disk made writable)
_TRANSIENT = ("No space left on device", "Read-only file system", "Disk quota exceeded")


def synced_open(path: str, **options: Any) -> "plyvel.DB":
    """``plyvel.DB(path, **options)``, then its directory fsynced (and, for a database it
    created, the parent's). LevelDB 1.22 names each open's new MANIFEST in ``CURRENT`` by
    a rename it does not sync, and a database it creates starts with a MANIFEST it never
    syncs: a power cut soon after could leave ``CURRENT`` naming that empty MANIFEST
    ("no meta-nextfile entry in descriptor": found by the power-loss test's strict
    names). Raises plyvel's errors, and OSError if the fsync fails."""
    created = not os.path.exists(path)
    db = plyvel.DB(path, **options)
    try:
        fsync_dir(path)
        if created:
            fsync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError:
        db.close()
        raise
    return db


def open_db(path: str, what: str, write_buffer: int | None = None) -> "plyvel.DB":
    """Open (or create) the LevelDB database at ``path``; ``what`` names its owner in errors;
    ``write_buffer``: LevelDB's ``write_buffer_size`` in bytes (None: LevelDB's 4 MiB). The
    write buffer bounds the log, which the next open replays and writes out as a table: a
    worker restarted after a kill -9 does that before it serves (node key
    ``leveldb_write_buffer``, whose default says why its value).

    A directory that already holds files is opened, never re-created: LevelDB would
    silently start an empty database where ``CURRENT`` is missing. Opening checks the
    log and the manifest (``paranoid_checks``); tables it writes carry Bloom filters
    (:data:`BLOOM_FILTER_BITS`). Every failure is a :class:`StorageError`
    naming ``what`` and the path: locked by another process, damaged, or unreadable.
    """
    try:
        # a database whose creation failed (a full disk) leaves only these behind
        existing = bool(set(os.listdir(path)) - {"LOCK", "LOG", "LOG.old"})
    except FileNotFoundError:
        existing = False
    except OSError as exc:
        raise StorageError(f"{what}: cannot read its LevelDB directory {path}: {exc}") from None
    if existing and not os.path.exists(os.path.join(path, "CURRENT")):
        raise StorageError(f"{what}: {path} holds files but no LevelDB CURRENT file: the "
                           f"database is damaged or is not a LevelDB directory; restore it "
                           f"from a backup (or move it away to start this slot empty)")
    try:
        options = {} if write_buffer is None else {"write_buffer_size": write_buffer}
        return synced_open(path, create_if_missing=not existing, paranoid_checks=True,
                         bloom_filter_bits=BLOOM_FILTER_BITS, **options)
    except (plyvel.Error, OSError) as exc:
        text = error_text(exc)
        if any(t in text for t in _TRANSIENT):
            raise StorageError(f"{what}: the LevelDB database at {path} cannot be opened "
                               f"now: {text}", transient=True) from None
        if "NotFound" in text or "No such file" in text:
            why = ("cannot be opened: its directory is missing (deleted while the node ran?); "
                   "restore it from a backup")
        elif "lock" in text.lower():
            why = "is locked by another process (is another node or tool using it?)"
        elif isinstance(exc, plyvel.CorruptionError):
            why = "is damaged (LevelDB reports corruption); restore it from a backup"
        else:
            why = "cannot be opened"
        raise StorageError(f"{what}: the LevelDB database at {path} {why}: {text}") from None


def error_text(exc: BaseException) -> str:
    """plyvel's message of an error (it carries LevelDB's status as bytes)."""
    arg = exc.args[0] if len(exc.args) == 1 else None
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(exc)


class _Unavailable:
    """Stands in for a database that could not be reopened: every use raises."""

    closed = True

    def __init__(self, error: StorageError) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        raise self.error


def log_bytes(path: str) -> int:
    """The size of the log file(s) of the LevelDB database at ``path``: what its next open
    replays (and rewrites as a table). Raises OSError if the directory cannot be read. A
    log LevelDB deletes meanwhile (its compaction thread, after a memtable is written
    out) counts as empty."""
    total = 0
    for e in os.scandir(path):
        if e.name.endswith(".log"):
            try:
                total += e.stat().st_size
            except FileNotFoundError:
                pass
    return total


def room_to_reopen(path: str) -> bool:
    """The directory of the database at ``path`` takes a test write and has room to
    reopen it (LevelDB rewrites its log into a table when it opens)."""
    try:
        logs = log_bytes(path)
        st = os.statvfs(path)
        if st.f_bavail * st.f_frsize < 2 * logs + REOPEN_HEADROOM:
            return False
        # beside the database, not in it: a probe left by a kill must not look like data
        probe = path.rstrip(os.sep) + ".write-probe"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, bytes(64 * 1024))
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError:
        return False
    return True


class SlotStore:
    """A worker slot's LevelDB database plus the overlay of staged, uncommitted writes.

    Reads (:meth:`get`, :meth:`range`) see what is staged; :meth:`stage` adds a turn's
    writes to the overlay; :meth:`commit` writes the whole overlay in one atomic
    ``WriteBatch`` (the group commit) and empties it, whether or not it succeeds.

    Storage faults. When a commit fails (disk full, a read-only or failing disk), the
    store turns *read-only*: :attr:`broken` holds the error, turns that would write are
    refused with it, and reads go on from the open database. The failed batch may have
    left a torn record at the end of LevelDB's log, after which LevelDB would still
    accept writes that a crash then loses; so no write is accepted until
    :meth:`try_recover` has reopened the database (which replays the log, drops the torn
    record and starts a new log). It reopens only when the directory takes a test write
    and has room for the reopen (:func:`room_to_reopen`), since reopening on a full disk
    fails and would leave no database to read from. The fault and the reopen are logged
    (logger ``actorsys.storage``).

    A deleted database (its directory or its ``CURRENT`` file gone while open: ``rm -rf``
    of the data directory) is no fault LevelDB reports: it goes on writing to files that
    no longer have a name, and every write would be lost at the next open. So each commit
    first checks that ``CURRENT`` is still there (one ``stat``), and again after the write
    (a deletion during it): once it is gone the store is *deleted* (:attr:`deleted`, the
    ``broken`` error says so) and refuses every write for good; reads go on from what
    LevelDB still has open (the last copy of the data: read it out to save it), and the
    store never reopens (it would be empty). Only a batch written while the deletion ran
    is refused although LevelDB applied it (a later read can see it).
    """

    def __init__(self, path: str, fsync: bool,
                 max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES, what: str | None = None,
                 write_buffer: int | None = None) -> None:
        self.what = what or "storage"
        self.path = path
        #: LevelDB's write buffer, bytes (None: LevelDB's default): see :func:`open_db`
        self.write_buffer = write_buffer
        #: the error of the commit that failed, while writes are refused (see the class doc)
        self.broken: StorageError | None = None
        #: the database was deleted while open: writes are refused for good (class doc)
        self.deleted = False
        self._current = os.path.join(path, "CURRENT")
        self.db: Any
        try:
            self.db = open_db(path, self.what, write_buffer)
        except StorageError as exc:
            if not exc.transient:
                raise
            # a full or read-only disk: serve errors, and open once it can (try_recover)
            log.error("%s", exc)
            self.broken = exc
            self.db = _Unavailable(exc)
        self.fsync = fsync
        self.max_value_bytes = max_value_bytes
        #: staged writes, not yet committed (None deletes); the group commit writes them all
        self.pending: dict[bytes, bytes | None] = {}
        #: the actors (prefixes) with staged writes: a range within any other actor needs
        #: no merge with the overlay (which costs a pass over everything staged)
        self.pending_actors: set[bytes] = set()
        self.commits = 0
        self.committed_writes = 0
        #: the directory's file names as of its last fsync (fsync mode: :meth:`_sync_names`)
        self._synced_names: frozenset[str] = frozenset()
        #: told of each commit that wrote: (seconds it took, keys written); None: nobody
        self.on_commit: Callable[[float, int], None] | None = None

    def get(self, k: bytes) -> bytes | None:
        """The value of ``k``, staged or committed (None: absent)."""
        v = self.pending.get(k, MISSING)
        if v is MISSING:
            try:
                found: bytes | None = self.db.get(k, verify_checksums=True)
            except plyvel.Error as exc:
                raise self._read_error(exc) from None
            return found
        return v  # type: ignore[return-value]

    def _read_error(self, exc: Exception) -> StorageError:
        return StorageError(f"{self.what}: reading the LevelDB database at {self.path} "
                            f"failed: {error_text(exc)}")

    def range(self, lo: bytes, hi: bytes, reverse: bool = False, actor: bytes | None = None,
              committed: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Committed and staged entries in ``[lo, hi)``; ``actor``: the range lies within
        that actor's prefix (so it is unaffected by other actors' staged writes);
        ``committed``: leave out what is staged."""
        it = self._checked(self.db.iterator(start=lo, stop=hi, reverse=reverse, verify_checksums=True))
        if committed or not self.pending or (actor is not None and actor not in self.pending_actors):
            return it
        return merge(it, self.pending, lo, hi, reverse)

    def _checked(self, it: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from it
        except plyvel.Error as exc:
            raise self._read_error(exc) from None

    def stage(self, writes: dict[bytes, bytes | None], actor: bytes) -> None:
        """Stage an actor's writes (and its index entries) for the next commit."""
        self.pending.update(writes)
        self.pending_actors.add(actor)

    def discard(self) -> None:
        """Drop everything staged, unwritten (a commit refused past a cluster node's
        fencing deadline)."""
        self.pending = {}
        self.pending_actors = set()

    def commit(self) -> None:
        """Write everything staged in one atomic batch. Raises StorageError on failure
        (and from then on until :meth:`try_recover` succeeds); what was staged is dropped
        either way."""
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        self.pending_actors = set()
        if self.broken is not None:
            raise self.broken
        self._check_present()
        started = time.perf_counter()
        try:
            with self.db.write_batch(sync=self.fsync, transaction=True) as wb:
                for k, v in pending.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
            self._check_present()
            if self.fsync:
                self._sync_names()
        except StorageError:
            raise
        except Exception as exc:
            self.broken = StorageError(
                f"{self.what} cannot write to {self.path} ({error_text(exc)}); until it can, turns that "
                f"write are refused and reads are served"
                + ("; a batch whose fsync failed may still be applied" if self.fsync else ""))
            log.error("%s", self.broken)
            raise self.broken from None
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - started, len(pending))
        self.commits += 1
        self.committed_writes += len(pending)

    def _check_present(self) -> None:
        """Raise (and turn :attr:`deleted`) if the database's ``CURRENT`` file is gone."""
        if not self._present():
            raise self.broken  # type: ignore[misc]

    def _present(self) -> bool:
        """False (and :attr:`deleted`, logged once) if the database's ``CURRENT`` is gone."""
        if self.deleted:
            return False
        try:
            os.stat(self._current)
            return True
        except FileNotFoundError:
            pass
        except OSError:
            return True     # (a failing disk: the write meets it, or already has)
        self.deleted = True
        self.broken = StorageError(
            f"{self.what}: its LevelDB database at {self.path} was deleted while open; every "
            f"write is refused from now on (LevelDB would write to files without a name, lost "
            f"at the next start). Reads are served from what is still open: read out what "
            f"must be saved, then restore the directory from a backup and restart the node "
            f"(without it, this slot starts empty or the node does not start)")
        log.error("%s", self.broken)
        return False

    def _sync_names(self) -> None:
        """fsync the slot's directory if LevelDB added or removed a file since the last
        time. LevelDB fsyncs a fresh log's data with each ``sync=True`` write, but the
        directory entry naming it only at its next MANIFEST sync (once the old memtable is
        written out): on a filesystem that keeps a new name only with its directory's
        fsync (POSIX; ext4 and XFS keep it with the file's), the writes acknowledged into
        that log in between would be lost with it. Found by the power-loss test's strict
        mode (``ACTORSYS_POWER_STRICT=1``). A listdir per commit, microseconds beside its
        fsync; the directory's fsync only when a name changed."""
        names = frozenset(os.listdir(self.path))
        if names != self._synced_names:
            fsync_dir(self.path)
            self._synced_names = names

    def flush_log(self) -> None:
        """Write LevelDB's memtable out as a table and start an empty log, so that the next
        open (a worker restarted after a kill -9) has nothing to replay. Costs a table
        write of at most the write buffer; the worker calls it when it has been quiet for
        a tick (issue 19). Does nothing while the store is read-only; a failure is logged
        and otherwise ignored (the next commit meets the disk's problem)."""
        if self.broken is not None or self.db.closed or not self._present():
            return
        started = time.perf_counter()
        try:
            # an empty range past every key (no key starts with 0xff): LevelDB flushes
            # its memtable first, then has no table to compact
            self.db.compact_range(start=b"\xff\xff", stop=b"\xff\xff\xff")
        except plyvel.Error as exc:
            log.warning("%s: writing its LevelDB memtable out failed: %s", self.what, error_text(exc))
            return
        took = time.perf_counter() - started
        if took > 0.05:
            log.info("%s: writing its LevelDB memtable out took %.0f ms", self.what, took * 1e3)

    def try_recover(self) -> bool:
        """After a failed commit: reopen the database if the directory is writable again
        and has room; True once writes are accepted again."""
        if self.broken is None:
            return True
        if self.deleted or not room_to_reopen(self.path):
            return False
        if not self.db.closed:
            self.db.close()
        try:
            self.db = open_db(self.path, self.what, self.write_buffer)
        except StorageError as exc:
            said = str(self.broken)
            self.broken = StorageError(f"{exc}; reads wait for it to reopen", transient=exc.transient)
            self.db = _Unavailable(self.broken)
            if str(self.broken) != said:          # once per cause, not once per attempt
                log.error("%s", self.broken)
            return False
        self.broken = None
        log.info("%s is writable again (reopened %s)", self.what, self.path)
        return True

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()
