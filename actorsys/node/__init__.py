"""Layer: the node. Its processes and how a user starts one.

May import every layer of ``actorsys`` below it. ``supervisors`` (the node supervisor and
the supervision tree) builds on this package; nothing here imports ``supervisors``: the
node supervisor is started as a process, by module name.

* :mod:`.embedded`: :class:`Node`, a node started from this Python process.
* :mod:`.router`: the router process (the shard map's owner).
* :mod:`.claim`: the data directory's and endpoints' locks, taken before anything binds.
* :mod:`.cli`: the ``actorsys`` command.
"""
from .embedded import Node

__all__ = ["Node"]
