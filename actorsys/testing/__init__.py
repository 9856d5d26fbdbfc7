"""Layer: testing. Testing actors with pytest, and what the tests and the ``scripts/``
command lines share.

Nothing else in ``actorsys`` imports this package (import-linter's layers contract puts
it directly above :mod:`actorsys.node`), and it imports nothing of ``supervisors``: it
drives a node the way a user does, through :class:`actorsys.Node` and the clients, plus
raw ZeroMQ sockets where it means to send what a client never would.

For users' tests (docs/concepts/testing.md; these names are importable from here):

* :mod:`.plugin`: the pytest plugin (entry point ``pytest11``): the ``actorsys_node``
  fixture, a factory of isolated nodes (:mod:`.factory`: :class:`NodeFactory`).
* :mod:`.inside`: :func:`run_in_actor` (a test's function in one of the actor's turns),
  :func:`fire_alarms` (its alarms now), :func:`kill_worker` (kill -9 of its worker).
* :mod:`.wsclient`: :func:`ws_connect`, a blocking WebSocket client of the gateway
  (:class:`WsClient`, :class:`WsClosed`, :class:`WsRefused`).

For this project's tests and harnesses:

* :mod:`.processes`: the processes a test or a harness starts, and their cleanup.
* :mod:`.nodes`: a node config for tests and harnesses, and helpers reading a running node
  (which worker owns a key, wait for a condition with a deadline, kill a worker).
* :mod:`.cluster`: a cluster of real nodes and etcd for tests, demos, chaos and benchmarks
  (network-namespace hosts, else loopback); :mod:`.clusternode`: one node's process tree
  (its start, the signals a test sends it, its stop, every pid it ever had).
* :mod:`.chaos`: chaos under load (``scripts/chaos``): the load, the fault injector and the
  audit of acknowledged writes and activation records; its actors.
* :mod:`.fuzz`: the frame fuzzer (``scripts/fuzz``): seeded generators, the oracles that say
  what the node must count and answer, raw peers, the run; its actor.
* :mod:`.bench`: what the benchmarks (``scripts/bench*.py``) share: their temp dirs and
  processes, pipelined asks, percentiles and the command line's frame.
* :mod:`.rawecho`: the benchmarks' raw pyzmq + msgpack baseline; it imports no actorsys
  code, and its server process is started by file path so it loads none either.

An actor module here needs no ``python_path``: a node imports it by its full name
(``actorsys.testing.chaos.actors:Tally``).

The names above are loaded at first use (PEP 562), so that importing the plugin, which
pytest does in every run, loads none of them.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..errors import NotTesting
    from .factory import NodeFactory
    from .inside import fire_alarms, function_ref, kill_worker, run_in_actor
    from .wsclient import WsClient, WsClosed, WsRefused, ws_connect

__all__ = ["NodeFactory", "run_in_actor", "fire_alarms", "kill_worker", "function_ref",
           "ws_connect", "WsClient", "WsClosed", "WsRefused", "NotTesting"]

_HOMES = {"NodeFactory": ".factory", "run_in_actor": ".inside", "fire_alarms": ".inside",
          "kill_worker": ".inside", "function_ref": ".inside", "ws_connect": ".wsclient",
          "WsClient": ".wsclient", "WsClosed": ".wsclient", "WsRefused": ".wsclient",
          "NotTesting": "..errors"}

if not TYPE_CHECKING:
    def __getattr__(name: str) -> Any:
        """A name of ``__all__``, imported at its first use and kept."""
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
