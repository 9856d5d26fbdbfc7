"""``--drain``'s LEAVE request to the node's own router (actorsys/node/drain.py) against a
fake router socket in the test process, and the CLI's line for a cluster node's status."""
from __future__ import annotations

import threading
from typing import Any

import pytest
import zmq

from actorsys.config import NodeConfig, load_config
from actorsys.config.layout import NodeLayout
from actorsys.errors import BadRequest
from actorsys.node.cli import cluster_status_line
from actorsys.node.drain import Answer, LeaveRequest
from actorsys.protocol import wire


class FakeRouter:
    """A ROUTER at ``endpoint`` answering the first request with ``reply(rid)`` (None: no answer)."""

    def __init__(self, endpoint: str, reply: Any) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.got: list[Any] = []
        self.thread = threading.Thread(target=self._serve, args=(reply,), daemon=True)
        self.thread.start()

    def _serve(self, reply: Any) -> None:
        if self.sock.poll(10_000):
            frames = self.sock.recv_multipart()
            msg = wire.unpack(frames[-1])
            self.got.append(msg)
            payload = reply(msg[1])
            if payload is not None:
                self.sock.send_multipart([frames[0], payload])

    def close(self) -> None:
        self.thread.join(10)
        self.sock.close(0)
        self.ctx.term()


def node(tmp_path) -> tuple[NodeConfig, NodeLayout]:
    endpoint = f"ipc://{tmp_path}/router.sock"
    cfg = load_config({"node": {"data_dir": str(tmp_path / "data"), "endpoint": endpoint}})
    layout = NodeLayout(router=endpoint, workers=(f"ipc://{tmp_path}/w0.sock",))
    return cfg, layout


def test_leave_is_sent_and_its_answer_read(tmp_path):
    cfg, layout = node(tmp_path)
    router = FakeRouter(layout.router, lambda rid: wire.ok(rid, {"moved": 3}))
    req = LeaveRequest(cfg, layout)
    try:
        answer = Answer(False)
        for _ in range(200):
            answer = req.poll(0.05)
            if answer.done:
                break
        assert answer == Answer(True, {"moved": 3})
        assert router.got == [[wire.LEAVE, 1]]
    finally:
        req.close()
        router.close()


def test_a_refused_leave_raises_the_routers_error(tmp_path):
    cfg, layout = node(tmp_path)
    router = FakeRouter(layout.router,
                        lambda rid: wire.err(rid, BadRequest("this node is not in a cluster").to_wire()))
    req = LeaveRequest(cfg, layout)
    try:
        with pytest.raises(BadRequest, match="not in a cluster"):
            for _ in range(200):
                req.poll(0.05)
    finally:
        req.close()
        router.close()


def test_no_answer_yet_is_not_done(tmp_path):
    cfg, layout = node(tmp_path)
    router = FakeRouter(layout.router, lambda rid: None)
    req = LeaveRequest(cfg, layout)
    try:
        assert req.poll(0.05) == Answer(False)
    finally:
        req.close()
        router.close()


def test_a_cluster_nodes_status_line():
    assert cluster_status_line({"name": "prod", "node_id": "n1", "shards_owned": 1365,
                                "fenced": None, "members": 3}) == \
        "cluster prod  node n1  shards owned 1365  not fenced  members 3"
    assert "FENCED: node n1 could not renew its etcd lease" in cluster_status_line(
        {"name": "prod", "node_id": "n1", "shards_owned": 0,
         "fenced": "node n1 could not renew its etcd lease"})
