"""The fuzz run's "no traceback from the node" check reads the node's log: a failed
turn's traceback (logged under actorsys.turns by design, runtime/loud.py) is the actor's
failure, not the node's; any other traceback is the node's."""
from actorsys.testing.fuzz.oracle import tracebacks

LOG = """\
2026-12-06 04:45:22,341 INFO supervisor pid=1 supervisors.node: node running
2026-12-06 04:45:22,342 ERROR worker slot=0 pid=2 actorsys.turns: ask 'add' of T/k failed: TypeError: bad
a message of two lines
Traceback (most recent call last):
  File "x.py", line 1, in add
TypeError: bad

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "y.py", line 2, in z
ValueError: v
2026-12-06 04:45:22,343 ERROR worker slot=0 pid=2 actorsys.worker: crashed
Traceback (most recent call last):
  File "w.py", line 3, in run
KeyError: k
"""


def test_only_the_nodes_own_tracebacks_count(tmp_path):
    path = tmp_path / "node.log"
    path.write_text(LOG)
    found = tracebacks(str(path))
    assert list(found) == ['File "w.py", line 3, in run -> KeyError'], found
    assert found['File "w.py", line 3, in run -> KeyError']["count"] == 1
