"""Bounds: a full mailbox is an error the caller sees at once, not unbounded memory."""
import asyncio

import pytest

import actorsys


def test_full_mailbox_answers_overloaded_and_keeps_serving(config):
    async def flood(endpoint):
        async with actorsys.connect_async(endpoint, timeout=30) as c:
            ref = c.ref("Counter", "busy")
            # one slow turn occupies the actor; the next five fill its mailbox
            results = await asyncio.gather(*(ref.ask("slow_add", 1, 0.5) for _ in range(20)),
                                           return_exceptions=True)
            return results, await ref.ask("get")

    with actorsys.Node(config(mailbox_limit=5)) as node:
        results, final = asyncio.run(flood(node.endpoint))
    overloaded = [r for r in results if isinstance(r, actorsys.Overloaded)]
    done = [r for r in results if isinstance(r, int)]
    assert len(overloaded) == 20 - 6, f"expected 14 Overloaded (1 running + 5 queued), got {results}"
    assert "mailbox" in str(overloaded[0]), str(overloaded[0])
    assert len(done) == 6 and final == 6, f"the admitted turns all ran: {results}, final {final}"


def test_client_refuses_a_message_over_the_node_limit_before_sending(config):
    with actorsys.Node(config(max_message_bytes=4096)) as node:
        ref = node.client().ref("Log", "big")
        with pytest.raises(actorsys.MessageTooLarge, match="4096"):
            ref.ask("append", "x" * 10_000)
        assert ref.ask("append", "small") == 1, "the node keeps serving after the refusal"
