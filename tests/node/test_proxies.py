"""Typed proxies against a real node (worker processes, ZeroMQ, LevelDB): the blocking
client's, the asyncio client's and a handler's (``self.proxy``), with the classes the node
runs (``tests/actors/proxy_actors.py``). Semantics under test: ``actorsys/proxy.py``."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from typing import Iterator

import pytest
from helpers import ACTORS_DIR, make_config, module_node

import actorsys
from actorsys.testing.nodes import wait_until


def load_actors():
    """tests/actors/proxy_actors.py, loaded by path (it imports only actorsys)."""
    spec = importlib.util.spec_from_file_location("proxy_actors",
                                                  os.path.join(ACTORS_DIR, "proxy_actors.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


actors = load_actors()
Account, Teller = actors.Account, actors.Teller


class Unregistered(actorsys.Actor):
    def hello(self) -> str:
        return "hi"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    """One node for the module: Account (also registered as Tally) and Teller."""
    cfg = make_config(str(tmp_path_factory.mktemp("proxies") / "data"))
    cfg["actors"] = {"Account": "proxy_actors:Account", "Tally": "proxy_actors:Account",
                     "Teller": "proxy_actors:Teller"}
    yield from module_node(cfg)


@pytest.fixture(scope="module")
def client(node: actorsys.Node) -> Iterator[actorsys.Client]:
    with node.client() as c:
        yield c


def test_a_blocking_proxy_asks_and_returns_the_result(client):
    account = client.proxy(Account, "b1")
    assert isinstance(account, actorsys.Proxy)
    assert account.deposit(5) == 5 and account.deposit(amount=2) == 7
    assert account.tell.deposit(3) is None
    assert account.balance() == 10, "a tell then an ask from one client arrive in order"
    assert client.ref("Account", "b1").ask("balance") == 10, "a proxy sends to the ref's address"
    assert account.options(timeout=9.5, retry=True) == [9.5, True], \
        "a handler's own timeout and retry keywords reach the handler"


def test_with_options_sets_the_deadline_of_each_call(client):
    slow = client.proxy(Account, "b2").with_options(timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(actorsys.AskTimeout):
        slow.sleep(1.5)
    assert time.monotonic() - t0 < 1.2, "the proxy's deadline, not the client's 30 s"
    patient = client.proxy(Account, "b2").with_options(retry=True)
    assert patient.deposit(1) == 1, "(waits for the sleep: the client's deadline)"


def test_the_type_name_sent_is_the_given_one_else_the_class_name(client):
    assert client.proxy(Account, "b3").whoami() == ["Account", "b3"]
    assert client.proxy(Account, "b3", type_name="Tally").whoami() == ["Tally", "b3"]
    with pytest.raises(actorsys.UnknownActorType, match="Unregistered"):
        client.proxy(Unregistered, "b3").hello()


@pytest.mark.parametrize("name", ["withdraw", "on_start", "on_alarm", "stop", "_secret", "state"])
def test_a_name_that_is_not_a_handler_is_refused_and_nothing_is_sent(client, name):
    key = f"never-{name}"
    account = client.proxy(Account, key)
    with pytest.raises(AttributeError):
        getattr(account, name)(1)
    with pytest.raises(AttributeError):
        getattr(account.tell, name)(1)
    with pytest.raises(TypeError, match=r"Account\.deposit\(\): too many positional arguments"):
        account.deposit(1, 2)
    assert key not in client.list_actors("Account"), \
        "the actor was never activated (its on_start writes state, which would list it)"


def test_an_async_proxy_sends_at_the_call_and_its_future_gives_the_result(node):
    async def main() -> list:
        async with actorsys.connect_async(node.endpoint) as ac:
            account = ac.proxy(Account, "a1")
            assert isinstance(account, actorsys.AsyncProxy)
            first = account.deposit(1)           # sent now, awaited below
            account.tell.deposit(2)
            got = [await first, await account.balance(), await account.slow_deposit(3, 0.05)]
            with pytest.raises(actorsys.AskTimeout):
                await account.with_options(timeout=0.3).sleep(1.0)
            with pytest.raises(AttributeError, match="lifecycle hook"):
                account.on_stop()
            return got

    assert asyncio.run(main()) == [1, 3, 6]


def test_a_handler_awaits_its_proxys_asks(client):
    teller = client.proxy(Teller, "t1")
    assert teller.deposit_to("h1", 2) == [2, 4, 4], \
        "awaited one by one and gathered, in the order sent"
    assert teller.deposit_as("Tally", "h2", 3) == 3
    assert client.proxy(Account, "h2", type_name="Tally").balance() == 3
    assert client.proxy(Account, "h2").balance() == 0, "Tally/h2 and Account/h2 are two actors"


def test_a_handlers_proxy_has_its_own_deadline(client):
    with pytest.raises(actorsys.RemoteError) as err:
        client.proxy(Teller, "t2").slow_at("h3", 1.5, 0.3)
    assert err.value.remote_type == "AskTimeout", f"the inner ask timed out: {err.value}"


def test_a_handlers_proxy_tells_leave_when_its_turn_commits(client):
    teller, account = client.proxy(Teller, "t3"), client.proxy(Account, "h4")
    assert teller.tell_to("h4", 5) == "told"
    wait_until(lambda: account.balance() == 5, timeout=10, what="the tell delivered")
    with pytest.raises(actorsys.RemoteError, match="the turn fails after its tell"):
        teller.tell_to("h4", 100, fail=True)
    teller.tell_to("h4", 1)
    wait_until(lambda: account.balance() != 5, timeout=10, what="the next tell delivered")
    assert account.balance() == 6, "the failed turn's tell was dropped with the turn"


def test_a_synchronous_handler_cannot_ask_through_a_proxy(client):
    teller = client.proxy(Teller, "t4")
    with pytest.raises(actorsys.RemoteError) as err:
        teller.ask_in_sync("h5")
    assert err.value.remote_type == "TypeError" and "ask needs an async handler" in str(err.value)
    with pytest.raises(actorsys.RemoteError) as err:
        teller.touch("h5", "on_start")
    assert err.value.remote_type == "AttributeError" and "lifecycle hook" in str(err.value)
    assert "h5" not in client.list_actors("Account"), "neither sent anything to Account/h5"
