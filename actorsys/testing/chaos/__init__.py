"""Chaos under load: kill -9 parts of a node while clients keep counting, then audit.

``scripts/chaos`` is the command line (what a run does and prints is in its docstring);
this package is the harness it drives, in the order of a run:

* :mod:`.actors`: ``Tally``, a counter that records every activation that counted in its
  own storage, in the turn of the count; ``Inbox``, which keeps the numbered messages
  its WebSockets send and acknowledges each after its commit; ``Probe``, which answers
  with its worker's pid.
  A node imports them by full name (:data:`.audit.ACTORS`), no ``python_path`` needed.
* :mod:`.load`: a client process keeping asks in flight and counting, per actor, what it
  sent and what was acknowledged, and the alarms it scheduled (a small fraction of its
  asks) (``python -m actorsys.testing.chaos.load``).
* :mod:`.wsload`: the WebSocket client process: sockets on the node's (a cluster: random
  nodes') gateway to ``Inbox`` actors, sending numbered messages and recording which
  were acknowledged, connecting again when a socket ends.
* :mod:`.faults`: the fault injector: SIGKILL of a worker, the router or all the node
  supervisor's children, and the time until each answers again from a new process.
* :mod:`.audit`: per actor, acknowledged <= count <= attempted and activation records
  that tile ``1 .. count`` (two activations at once would break that); every alarm the
  load scheduled and got acknowledged fired exactly once (none twice); every WebSocket
  message acknowledged is in its ``Inbox`` actor's state exactly once (none twice); the
  node's health.
* :mod:`.run`: one run, from the node's start to the cleanup of everything it started.
* :mod:`.cluster`: a run against a cluster of nodes (``scripts/chaos --cluster N``), from
  the cluster's start to its cleanup; its parts:

  * :mod:`.clusterfaults`: the faults of a node (kill -9 of a worker, its router or all
    of it, SIGSTOP and a network cut past its lease, a node joining then leaving) and
    the time until it answers again;
  * :mod:`.clusterprobe`: who serves where: a ``Probe`` actor per node slot, statuses,
    views, the settled view the run and the faults wait for;
  * :mod:`.clusteraudit`: what the audit adds, every node's health and the ownership.
"""
