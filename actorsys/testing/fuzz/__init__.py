"""The frame fuzzer: hostile ZeroMQ traffic at a live node, then proof it is unharmed.

``scripts/fuzz`` is the command line (what a run sends and checks is in its docstring);
this package is the fuzzer it drives:

* :mod:`.actors`: ``FuzzBox``, the embedded node's actor: small, bounded handlers that take
  any arguments. A node imports it by full name, no ``python_path`` needed.
* :mod:`.hostile`: what the frames are made of: seeded draws of hostile names, keys,
  methods and arguments, msgpack values of every type (hand-encoded ext types too), and
  well-formed requests of every op.
* :mod:`.mutator`: the seeded frame generators (random bytes, truncated and bit-flipped
  requests, wrong shapes, ext types, deep nesting, invalid UTF-8, multipart, oversized,
  well-formed requests with hostile names and arguments).
* :mod:`.oracle`: what the node must do with a frame (count it as bad, answer it
  well-formed), the well-formed check asks that must keep their counts, and the
  tracebacks a node printed.
* :mod:`.peers`: raw peers of one endpoint (DEALER, REQ, ROUTER), and odd ones
  (incompatible socket types, duplicate identities, raw stream bytes and bent ZMTP).
* :mod:`.run`: one fuzzing run against a node, and its report.
"""
