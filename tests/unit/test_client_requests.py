"""What the transport keeps about a request in flight, and how its errors read (no sockets)."""
from __future__ import annotations

import asyncio

import pytest

from actorsys.client.blocking import _BlockingWording
from actorsys.client.requests import MAX_RESENDS, RESENDABLE, Pending, Wording, describe, no_answer
from actorsys.errors import AskTimeout, NodeUnavailable
from actorsys.protocol import wire
from actorsys.protocol.messages import Ask, Control, ListActors, Spawn, Stop, Sup, Tell

ASK = Ask(7, "Counter", "k", "add", [1], {})


@pytest.mark.parametrize("request_, words", [
    (ASK, "ask Counter/k.add"),
    (Spawn(1, "Counter", "k"), "spawn Counter/k"),
    (Stop(1, "Counter", "k", {"forget": True}), "stop Counter/k"),
    (ListActors(1, "Counter", None, 10), "list Counter"),
    (Control(wire.PING, 1), "ping"),
    (Control(wire.STATUS, 1), "status"),
    (Sup(1, "root", "which_children", None), "which_children of supervisor root"),
])
def test_a_request_in_words(request_, words):
    assert describe(request_) == words


def test_the_transport_wording_is_the_asyncio_clients():
    w = Wording()
    assert w.timed_out(ASK, 0.25) == "ask Counter/k.add: no reply within 0.25 s"
    assert w.lost(ASK, 1) == ("worker slot 1 went away while the request was in flight; "
                              "it may or may not have been processed")


def test_the_blocking_client_keeps_its_own_wording():
    w = _BlockingWording()
    assert w.timed_out(ASK, 0.25) == "ask Counter/k.add: no reply before the deadline"
    assert w.timed_out(Spawn(1, "Counter", "k"), 3) == "spawn Counter/k: no reply before the deadline"
    assert w.lost(ListActors(1, "Counter", None, 5), 0) == (
        "list Counter: worker slot 0 went away while the request was in flight; "
        "it may or may not have been processed")


def test_no_answer_names_who_and_the_failed_handshake():
    assert str(no_answer("router", 2.0)("")) == "router did not answer within 2 s"
    exc = no_answer("the supervision tree", 0.5, AskTimeout)(" (the CURVE handshake failed)")
    assert isinstance(exc, AskTimeout)
    assert str(exc) == "the supervision tree did not answer within 0.5 s (the CURVE handshake failed)"
    assert isinstance(no_answer("x", 1)(""), NodeUnavailable)


def test_a_pending_entry_is_an_immutable_record():
    loop = asyncio.new_event_loop()
    try:
        p = Pending(loop.create_future(), 1, ASK, 30.0)
        assert (p.slot, p.request, p.timeout, p.retries, p.timer) == (1, ASK, 30.0, 0, None)
        with pytest.raises(AttributeError):
            p.retries = 1          # type: ignore[misc]
    finally:
        loop.close()


def test_only_actor_requests_are_resent():
    assert MAX_RESENDS == 20
    assert all(isinstance(r, RESENDABLE) for r in (ASK, Spawn(1, "T", "k"), Stop(1, "T", "k", {})))
    assert not any(isinstance(r, RESENDABLE) for r in (Tell(0, "T", "k", "m", [], {}),
                                                       Control(wire.MAP, 1),
                                                       ListActors(1, "T", None, 1)))
