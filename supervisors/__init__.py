"""Supervision, Erlang/OTP's way: the top layer, built on ``actorsys``.

Layer: the top. It may import any part of ``actorsys``; nothing imports it (``actorsys``
starts it by module name: ``python -m supervisors.node``). The modules, bottom to top:

* ``child.py``, ``host.py``, ``supervisor.py``: one OTP supervisor as a state machine (its
  child records and states; the ``ChildHost`` Protocol it talks to its children through),
  testable in-process against a fake host (``tests/unit``).
* ``store.py``, ``treehost.py``, ``tree.py``: the supervision tree process that runs every
  ``[supervisors.NAME]`` of a node: its LevelDB record; the real ``ChildHost`` (actor
  children through the workers, the index of supervised addresses); the process itself
  (its states, its event queue, its socket and the runtime API it serves).
* ``cluster.py``, ``etcdstore.py``, ``clustertree.py``: a cluster's one tree (``[cluster]``):
  the seat a node's tree process campaigns for, the tree's record in etcd, and the tree
  process that holds it or stands by.
* ``processes.py``, ``health.py``, ``node.py``: the node supervisor, the root process of
  a node (how each process starts; worker health checks; restarts and the stop order).
"""
