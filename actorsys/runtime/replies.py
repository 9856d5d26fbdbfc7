"""A worker's replies, coalesced: one frame per peer per group commit.

The replies a worker sends to one peer between two turns of its loop (typically the asks
of one group commit, released together by the output gate: ``commit.py``) leave as one
``wire.BATCH`` frame of replies, a lone reply as itself. Only a peer that reads batches
gets one, and a peer says so by sending one: a peer that has sent this worker a
``BATCH`` (an actorsys transport coalescing its requests) is a *batch peer*; to any
other peer (a raw DEALER or REQ, or a transport that has sent only single messages)
every reply goes at once, alone, as always.

Rules:

* **When.** :meth:`ReplyBatches.flush` runs at the end of every release of committed
  output (``Output.kick``) and, for replies sent outside one (an immediate error, a
  system request's answer), in a ``call_soon`` scheduled by the first, which then
  re-checks the worker's socket (a send may take the FD's edge): never on a timer.
* **Order.** A peer's replies leave in the order sent.
* **Size.** A batch holds at most ``wire.MAX_BATCH`` replies and is at most the node's
  ``max_message_bytes``; a reply that would take it past either sends the batch first.
* **Failure.** A frame that cannot leave (the peer is gone: ``ROUTER_MANDATORY``; its
  queue is full) counts each of its replies in ``dropped_replies``, as a lone reply did.
* **Bounded.** At most :data:`MAX_BATCH_PEERS` batch peers are remembered, the least
  recently seen forgotten first (it is then sent single replies until its next batch).
"""
from __future__ import annotations

from typing import Any, Callable

import zmq

from ..protocol import wire

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_ITEM, _HEAD = wire.BATCH_ITEM_OVERHEAD, wire.BATCH_OVERHEAD
#: the batch peers a worker remembers (see the module docstring)
MAX_BATCH_PEERS = 4096


class ReplyBatches:
    """The replies waiting for the next flush, per peer routing id (see the module
    docstring). ``sock``: the worker's ROUTER; ``limit``: a frame's most bytes."""

    def __init__(self, sock: zmq.Socket[Any], limit: int,
                 call_soon: Callable[[Callable[[], None]], Any], counters: dict[str, int],
                 kick: Callable[[], None]) -> None:
        self.sock, self.limit, self.call_soon, self.counters = sock, limit, call_soon, counters
        #: re-check the worker's socket (after a flush of our own that sent something)
        self.kick = kick
        #: routing id -> [replies, the batch frame's size so far]
        self.waiting: dict[bytes, list[Any]] = {}
        #: the batch peers, least recently seen first (the values are unused)
        self.peers: dict[bytes, None] = {}
        self._scheduled = False

    def batch_peer(self, to: tuple[bytes, ...]) -> None:
        """The peer ``to`` sent a batch: it reads batches of replies."""
        if len(to) != 1:
            return
        peers = self.peers
        peers.pop(to[0], None)
        peers[to[0]] = None
        if len(peers) > MAX_BATCH_PEERS:
            del peers[next(iter(peers))]

    def send(self, to: tuple[bytes, ...], payload: bytes) -> None:
        """Send ``payload`` to the peer ``to`` (a ROUTER envelope): with the next flush if
        the peer reads batches, else now."""
        peer = to[0]
        if len(to) != 1 or peer not in self.peers:
            return self._send(to, payload, 1)
        q = self.waiting.get(peer)
        size = len(payload) + _ITEM
        if q is not None and (q[1] + size > self.limit or len(q[0]) >= wire.MAX_BATCH):
            del self.waiting[peer]
            self._out(peer, q[0])
            q = None
        if q is None:
            q = self.waiting[peer] = [[], _HEAD]
            if not self._scheduled:
                self._scheduled = True
                self.call_soon(self._flush_soon)
        q[0].append(payload)
        q[1] += size

    def flush(self) -> bool:
        """Send every peer's waiting replies now; whether there were any."""
        self._scheduled = False
        if not self.waiting:
            return False
        waiting, self.waiting = self.waiting, {}
        for peer, q in waiting.items():
            self._out(peer, q[0])
        return True

    def _flush_soon(self) -> None:
        if self.flush():
            self.kick()

    def _out(self, peer: bytes, replies: list[bytes]) -> None:
        if len(replies) == 1:
            self._send((peer,), replies[0], 1)
        else:
            self._send((peer,), wire.batch(replies), len(replies))

    def _send(self, to: tuple[bytes, ...], frame: bytes, n: int) -> None:
        send = self.sock.send
        try:
            for part in to:      # plain sends: send_multipart costs ~4 us more per frame
                send(part, _SNDMORE_NOBLOCK)
            send(frame, _NOBLOCK)
        except zmq.ZMQError:
            self.counters["dropped_replies"] += n
