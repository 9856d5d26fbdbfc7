"""The Savina micro-benchmarks that measure an actor runtime rather than an algorithm
(Imam and Sarkar, "Savina - An Actor Benchmark Suite", AGERE! 2014), for
``scripts/bench --peers`` (``scripts/bench_peers.py``).

* :mod:`.workloads`: the eight workloads, their published parameters and ours (scaled to
  a 2-core machine), what each rate counts, and the one check of each result that every
  runtime's run must pass.
* :mod:`.behaviours`: the workloads' actors as plain Python objects behind a small
  "send a message" interface, which the peers' adapters host (the actorsys side is written
  as actorsys actors in ``scripts/savina_actors.py``, the same logic).
* one runner per runtime, each with the same shape (``start``, ``run(name, params,
  deadline)``, ``stop``): :mod:`.on_actorsys`, :mod:`.on_pykka`, :mod:`.on_thespian`,
  :mod:`.on_ray`.
"""
