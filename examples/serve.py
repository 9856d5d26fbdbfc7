"""Serve one of the real-time demos (drawing, chat, poll) on an embedded node.

``scripts/demo drawing`` runs ``python examples/serve.py drawing``: it starts a node from
``examples/drawing/node.toml`` (a supervisor, a router, two workers and the HTTP/WebSocket
gateway, all real processes), prints the address to open in a browser, and runs until
Ctrl-C. The actors' data stays in ``examples/<name>/data/``, so a restart keeps it.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

import actorsys

HERE = os.path.dirname(os.path.abspath(__file__))
DEMOS = {"drawing": "a shared drawing board", "chat": "a chat room with presence",
         "poll": "a live coffee poll"}


def main() -> int:
    p = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=sorted(DEMOS))
    p.add_argument("--listen", default=None, help="HOST:PORT for the gateway (default: the "
                                                  "example's node.toml, 127.0.0.1:8080)")
    a = p.parse_args()
    path = os.path.join(HERE, a.name, "node.toml")
    config = actorsys.load_config(path)
    if a.listen:
        assert config.gateway is not None
        config.gateway["listen"] = a.listen
    with actorsys.Node(config) as node:
        print(f"\n  {DEMOS[a.name]}: open {node.gateway_url}/ in two browser tabs"
              f"\n  (the node's data is in {config.data_dir}; Ctrl-C stops it)\n", flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
