"""The supervision tree's store across a power cut (issue 20): in ``durability = "fsync"``
what the tree acknowledged (a child added or stopped at run time) is fsynced before the
answer, so it survives a cut; in ``process`` mode the same writes may be lost, and are
on this filesystem (``actorsys/testing/cutfs.py``: unsynced writes dropped at the cut).
The writer is a separate process, killed -9 before the cut, as a node's tree would be."""
from __future__ import annotations

import os
import subprocess
import sys
import pytest
from test_power_loss import cutfs  # noqa: F401  (the fixture: a powered-on cutfs)

from actorsys.testing.cutfs import CutFS
from supervisors.store import TreeStore

pytestmark = pytest.mark.timeout(60)

WRITER = """
import os, signal, sys
from actorsys.config.supervision import ChildSpec
from supervisors.store import TreeStore
s = TreeStore(sys.argv[1], sync=sys.argv[2] == "1")
s.put_dynamic("root", 1, ChildSpec(id="c1", actor="Counter", key="k1"))
s.set_stopped("root", "c0", True)
print("written", flush=True)
os.kill(os.getpid(), signal.SIGKILL)       # (no close: what the kill leaves)
"""


@pytest.mark.parametrize("sync", [True, False], ids=["fsync", "process"])
def test_what_the_tree_wrote_survives_a_cut_only_when_synced(cutfs: CutFS, sync: bool) -> None:  # noqa: F811
    path = os.path.join(cutfs.mountpoint, "tree")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", WRITER, path, "1" if sync else "0"],
                          capture_output=True, timeout=30, env=env)
    assert done.stdout.strip() == b"written", done.stderr.decode()[-2000:]
    cutfs.cut()
    cutfs.power_on()
    store = TreeStore(path)
    try:
        kept = ([seq for seq, _ in store.dynamic("root")], store.is_stopped("root", "c0"))
    finally:
        store.db.close()
    assert kept == (([1], True) if sync else ([], False)), kept
