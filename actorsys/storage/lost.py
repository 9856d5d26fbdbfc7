"""A worker slot whose LevelDB was lost, on a node with replicated shards (issue 16).

A slot's database is **lost** when:

* its directory was deleted: the slot has no database (or only what a failed creation
  leaves: ``LOCK``, ``LOG``) although the node's data directory existed before this run
  (``node.meta`` was there: :func:`.meta.load_or_create_meta` says ``created_now``
  otherwise); or
* it is damaged: opening it raised a non-transient :class:`StorageError` (no ``CURRENT``,
  corruption), other than a lock held by another process. The directory is then moved
  aside, never deleted (:func:`set_aside`: ``slot-<i>.damaged-<UTC time>``), and the slot
  starts empty: the first case.

Only a node whose shards are replicated (``[cluster] replicas`` > 1) does this: its
replicas rebuild the slot (``runtime/replication.py`` snapshots), and until a shard's
copy here is complete (its position is not ``[0, 0]``) the worker never serves it, even
if granted (``runtime/grants.py``). Without replication a damaged slot stops the node
as before, and a deleted one starts empty.

A lost slot is remembered by a marker file next to it, ``slot-<i>.lost`` (written and
fsynced before the slot serves anything), so a worker restarted later in the same run,
or the node started again, still knows: the slot was created empty by a run that had
data. It is removed once every shard homed on the slot has a complete copy here
(:func:`clear_marker`).
"""
from __future__ import annotations

import os
import time

from .meta import fsync_dir

#: what a failed creation of a LevelDB directory leaves behind (no data)
_NO_DATA = {"LOCK", "LOG", "LOG.old"}


def marker(path: str) -> str:
    """The marker file of the slot whose database is at ``path``."""
    return path + ".lost"


def has_no_database(path: str) -> bool:
    """The slot directory ``path`` is missing or holds no LevelDB files."""
    try:
        return not (set(os.listdir(path)) - _NO_DATA)
    except FileNotFoundError:
        return True


def is_lost(path: str, created_now: bool) -> bool:
    """Whether the slot at ``path`` lost its database (see the module docstring); reads
    the marker first, so a slot once lost stays lost until :func:`clear_marker`."""
    if os.path.exists(marker(path)):
        return True
    return not created_now and has_no_database(path)


def mark(path: str) -> None:
    """Write the marker of a lost slot, durably (file and directory fsynced)."""
    fd = os.open(marker(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"lost at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(os.path.dirname(path) or ".")


def clear_marker(path: str) -> None:
    """Every shard of the slot has a complete copy again: forget that it was lost."""
    try:
        os.unlink(marker(path))
    except FileNotFoundError:
        return
    fsync_dir(os.path.dirname(path) or ".")


def set_aside(path: str) -> str:
    """Rename the damaged slot directory ``path`` to ``<path>.damaged-<UTC time>`` (a
    suffix if that exists); returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside, n = f"{path}.damaged-{stamp}", 1
    while os.path.exists(aside):
        n += 1
        aside = f"{path}.damaged-{stamp}-{n}"
    os.rename(path, aside)
    fsync_dir(os.path.dirname(path) or ".")
    return aside
