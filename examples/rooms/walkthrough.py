"""Chat rooms as durable actors: storage, alarms, listing, history and rewind, destroy.

Run it with ``scripts/demo rooms``. It starts an embedded node (data in a temp dir) and
narrates what happens.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import actorsys  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="actorsys-rooms-") as tmp:
        config = {"node": {"data_dir": os.path.join(tmp, "data"), "workers": 2,
                           "python_path": [HERE], "idle_timeout": 0.3},
                  "actors": {"Room": {"class": "app:Room", "history_window": 3600}}}
        with actorsys.Node(config) as node:
            c = node.client()
            lobby, games = c.ref("Room", "lobby"), c.ref("Room", "games")
            lobby.ask("post", "ada", "hello everyone")
            lobby.ask("post", "bob", "hi ada")
            games.ask("post", "cy", "anyone for chess?")
            print("lobby:", lobby.ask("recent"))
            print("rooms with data:", c.list_actors("Room"))

            print("\nwaiting for the digest alarms (the rooms go idle and are passivated first)...")
            time.sleep(1.2)
            print("lobby digest:", lobby.ask("digest"))
            print("games digest:", games.ask("digest"))

            lobby.ask("post", "mallory", "BUY CHEAP WATCHES")
            print("\nlobby after spam:", lobby.ask("recent"))
            history = lobby.history()
            print("lobby versions:", [h["version"] for h in history])
            before_spam = history[-2]["version"]
            print(f"rewind to version {before_spam}:", lobby.rewind(before_spam))
            print("lobby after rewind:", lobby.ask("recent"))

            print("\ndestroy games:", games.destroy())
            print("rooms with data:", c.list_actors("Room"))
        print("node stopped")


if __name__ == "__main__":
    main()
