"""The multi-host harness (actorsys/testing/netns.py): namespace hosts reach each other
over their bridge (a real tcp connection), and everything made is gone at the end."""
from __future__ import annotations

import subprocess
import sys
import time

from actorsys.testing.netns import Hosts

SERVER = ("import socket; s = socket.socket(); s.settimeout(10); s.bind(({addr!r}, 7000)); "
          "s.listen(); c, _ = s.accept(); c.sendall(b'hello from ' + {addr!r}.encode())")
CLIENT = ("import socket, time\n"
          "for _ in range(100):\n"
          "    try:\n"
          "        s = socket.create_connection(({addr!r}, 7000), timeout=2); break\n"
          "    except OSError: time.sleep(0.05)\n"
          "print(s.recv(100).decode())")


def test_hosts_reach_each_other_and_are_removed():
    with Hosts(2, prefix="astest") as hosts:
        a, b = hosts
        server = b.popen([sys.executable, "-c", SERVER.format(addr=b.address)])
        try:
            r = subprocess.run(a.command([sys.executable, "-c", CLIENT.format(addr=b.address)]),
                               capture_output=True, text=True, timeout=20)
        finally:
            server.wait(15)
        assert r.stdout.strip() == f"hello from {b.address}", f"{a.address} -> {b.address}: {r}"
        # nothing outside the hosts is reachable from them: no route out
        r = subprocess.run(a.command([sys.executable, "-c",
                                      "import socket; s = socket.socket(); s.settimeout(1);"
                                      "print(s.connect_ex(('192.0.2.1', 80)))"]),
                           capture_output=True, text=True, timeout=10)
        assert r.stdout.strip() != "0", r
    time.sleep(0.1)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "astest-" not in left, left
    links = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert "astest-" not in links, links
