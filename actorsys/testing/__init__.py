"""Layer: testing. What the tests and the ``scripts/`` command lines share.

Nothing else in ``actorsys`` imports this package (import-linter's layers contract puts
it directly above :mod:`actorsys.node`), and it imports nothing of ``supervisors``: it
drives a node the way a user does, through :class:`actorsys.Node` and the clients, plus
raw ZeroMQ sockets where it means to send what a client never would.

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
"""
