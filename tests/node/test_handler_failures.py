"""Whatever a handler raises, only its own turn fails: the worker and other actors go on."""
import asyncio

import pytest

import actorsys


def test_system_exit_in_a_handler_fails_that_turn_not_the_worker(node):
    ref = node.client().ref("Misbehaving", "exit")
    ref.ask("add")
    pid = ref.ask("pid")
    with pytest.raises(actorsys.RemoteError) as info:
        ref.ask("exit_process")
    assert info.value.remote_type == "SystemExit", info.value
    assert ref.ask("pid") == pid, "the worker process should have survived the handler's SystemExit"
    assert ref.ask("add") == 2, "the failed turn's state change was discarded"


@pytest.mark.parametrize("method", ["raise_cancelled", "await_cancelled_task"])
def test_cancelled_error_in_a_handler_fails_the_turn_and_frees_the_actor(node, method):
    ref = node.client().ref("Misbehaving", method)
    with pytest.raises(actorsys.RemoteError) as info:
        ref.ask(method, timeout=5)
    assert info.value.remote_type == "CancelledError", info.value
    assert ref.ask("add", timeout=5) == 1, "the actor should take its next message at once"


def test_a_crashing_message_does_not_hold_back_others_in_the_same_batch(node):
    async def run():
        async with actorsys.connect_async(node.endpoint, timeout=5) as c:
            bad = c.ref("Misbehaving", "batch-bad")
            good = c.ref("Misbehaving", "batch-good")
            return await asyncio.gather(good.ask("add"), bad.ask("raise_cancelled"), good.ask("add"),
                                        return_exceptions=True)

    first, crashed, second = asyncio.run(run())
    assert (first, second) == (1, 2), f"the innocent actor's asks were answered: {first}, {second}"
    assert isinstance(crashed, actorsys.RemoteError), crashed


def test_a_reply_over_the_size_limit_fails_the_turn_with_a_clear_error(config):
    with actorsys.Node(config(max_message_bytes=4096)) as node:
        ref = node.client().ref("Misbehaving", "big")
        with pytest.raises(actorsys.RemoteError, match="max_message_bytes") as info:
            ref.ask("big_reply", 10_000)
        assert info.value.remote_type == "MessageTooLarge"
        assert ref.ask("add") == 1, "the oversized turn was not committed"


def test_a_tell_over_the_size_limit_fails_the_sending_turn(config):
    with actorsys.Node(config(max_message_bytes=4096)) as node:
        with pytest.raises(actorsys.RemoteError, match="max_message_bytes"):
            node.client().ref("Misbehaving", "teller").ask("big_tell", 10_000)


def test_public_methods_of_mixins_are_handlers(node):
    assert node.client().ref("Misbehaving", "m").ask("greet", "ann") == "hello ann from m"
