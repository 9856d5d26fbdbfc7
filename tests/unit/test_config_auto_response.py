"""``auto_response`` in the config: ``[gateway]``'s and an actor type's, resolved per
type, and every bad value a ConfigError naming the file, the line and the key
(in-process, no node: the config is only read)."""
from __future__ import annotations

from typing import Any

import pytest

from actorsys.config import load_config
from actorsys.config.gateway import auto_responses
from actorsys.errors import ConfigError


def write(tmp_path: Any, actors: list[str], gateway: list[str] | None) -> str:
    """A node.toml with the given ``[actors]`` lines and ``[gateway]`` lines (None: no
    ``[gateway]`` table); returns its path."""
    lines = ["[node]", 'data_dir = "data"', "", "[actors]", *actors, ""]
    if gateway is not None:
        lines += ["[gateway]", 'listen = "127.0.0.1:0"', *gateway, ""]
    path = tmp_path / "node.toml"
    path.write_text("\n".join(lines))
    return str(path)


def line_of(path: str, text: str) -> int:
    """The 1-based number of the first line containing ``text``."""
    with open(path) as f:
        return next(i for i, line in enumerate(f, 1) if text in line)


PING = 'auto_response = { request = "ping", response = "pong" }'


def test_the_gateways_pair_applies_to_every_type_a_types_own_replaces_it_and_false_turns_it_off(tmp_path):
    path = write(tmp_path, [
        'Plain = "app:Plain"',
        '"Beat" = { class = "app:Beat", auto_response = { request = "hb", response = "ok" } }',
        '"Quiet" = { class = "app:Quiet", auto_response = false }',
    ], [PING])
    cfg = load_config(path)
    assert cfg.gateway is not None and cfg.gateway["auto_response"] == {"request": "ping", "response": "pong"}
    assert cfg.auto_response == {"Beat": {"request": "hb", "response": "ok"}, "Quiet": None}
    assert auto_responses(cfg.gateway, cfg.auto_response, cfg.actors) == {
        "Plain": ("ping", "pong"), "Beat": ("hb", "ok")}, \
        "Plain takes [gateway]'s pair, Beat its own, Quiet none"


def test_no_pair_anywhere_answers_nothing_and_a_type_may_have_one_alone(tmp_path):
    cfg = load_config(write(tmp_path, ['Plain = "app:Plain"'], []))
    assert cfg.gateway is not None and cfg.gateway["auto_response"] is None and cfg.auto_response == {}
    assert auto_responses(cfg.gateway, cfg.auto_response, cfg.actors) == {}
    path = write(tmp_path, ['Plain = "app:Plain"', "", "[actors.Beat]", 'class = "app:Beat"',
                            'auto_response = { request = "hb", response = "ok" }'], [])
    cfg = load_config(path)
    assert cfg.gateway is not None
    assert auto_responses(cfg.gateway, cfg.auto_response, cfg.actors) == {"Beat": ("hb", "ok")}, \
        "the [actors.TYPE] table form reads the same"


def test_the_gateway_table_form_reads_the_same(tmp_path):
    path = write(tmp_path, ['Plain = "app:Plain"'], ["", "[gateway.auto_response]",
                                                      'request = "ping"', 'response = "pong"'])
    cfg = load_config(path)
    assert cfg.gateway is not None and cfg.gateway["auto_response"] == {"request": "ping", "response": "pong"}


GATEWAY_CASES = [
    # (id, [gateway] lines, the key the error names, the text on its line, words in the message)
    ("not a table", ['auto_response = "ping"'], "gateway.auto_response", "auto_response",
     "{ request = TEXT, response = TEXT }"),
    ("false is for types only", ["auto_response = false"], "gateway.auto_response", "auto_response",
     "must be a table"),
    ("unknown key", ['auto_response = { request = "ping", response = "pong", reply = "x" }'],
     "gateway.auto_response.reply", "auto_response", "unknown key 'reply'"),
    ("missing response", ['auto_response = { request = "ping" }'], "gateway.auto_response",
     "auto_response", "response is missing"),
    ("empty request", ['auto_response = { request = "", response = "pong" }'],
     "gateway.auto_response.request", "auto_response", "non-empty string"),
    ("request not a string", ['auto_response = { request = 1, response = "pong" }'],
     "gateway.auto_response.request", "auto_response", "non-empty string"),
    ("response over the frame limit", ["max_message_bytes = 1024",
                                       f'auto_response = {{ request = "ping", response = "{"x" * 1025}" }}'],
     "gateway.auto_response.response", "auto_response", "1025 bytes"),
    ("a table's key on its own line", ["", "[gateway.auto_response]", 'request = "ping"', "response = 7"],
     "gateway.auto_response.response", "response = 7", "non-empty string"),
]


@pytest.mark.parametrize("lines, key, where, words", [c[1:] for c in GATEWAY_CASES],
                         ids=[c[0] for c in GATEWAY_CASES])
def test_a_bad_gateway_auto_response_names_file_line_and_key(tmp_path, lines, key, where, words):
    path = write(tmp_path, ['Plain = "app:Plain"'], lines)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    exc = info.value
    want = (path, line_of(path, where), key)
    got = (exc.file, exc.line, exc.key)
    assert got == want, f"expected {want}, got {got}: {exc}"
    assert words in str(exc), f"expected the message to say {words!r}: {exc}"


TYPE_CASES = [
    # (id, the Beat type's line, [gateway] lines or None, the key, words in the message)
    ("not a table", '"Beat" = { class = "app:Beat", auto_response = "hb" }', [],
     "actors.Beat.auto_response", "or false"),
    ("true", '"Beat" = { class = "app:Beat", auto_response = true }', [],
     "actors.Beat.auto_response", "or false"),
    ("unknown key",
     '"Beat" = { class = "app:Beat", auto_response = { request = "hb", response = "ok", x = 1 } }', [],
     "actors.Beat.auto_response.x", "unknown key 'x'"),
    ("missing request", '"Beat" = { class = "app:Beat", auto_response = { response = "ok" } }', [],
     "actors.Beat.auto_response", "request is missing"),
    ("empty response", '"Beat" = { class = "app:Beat", auto_response = { request = "hb", response = "" } }',
     [], "actors.Beat.auto_response.response", "non-empty string"),
    ("over the frame limit",
     f'"Beat" = {{ class = "app:Beat", auto_response = {{ request = "{"é" * 600}", response = "ok" }} }}',
     ["max_message_bytes = 1024"], "actors.Beat.auto_response.request", "1200 bytes"),
    ("no gateway", '"Beat" = { class = "app:Beat", auto_response = { request = "hb", response = "ok" } }',
     None, "actors.Beat.auto_response", "needs a [gateway] table"),
    ("not exposed", '"Beat" = { class = "app:Beat", auto_response = false }', ['expose = ["Plain"]'],
     "actors.Beat.auto_response", "not in [gateway] expose"),
    ("a misspelt option", '"Beat" = { class = "app:Beat", auto_respond = false }', [],
     "actors.Beat", "auto_response"),
]


@pytest.mark.parametrize("line, gateway, key, words", [c[1:] for c in TYPE_CASES],
                         ids=[c[0] for c in TYPE_CASES])
def test_a_bad_type_auto_response_names_file_line_and_key(tmp_path, line, gateway, key, words):
    path = write(tmp_path, ['Plain = "app:Plain"', line], gateway)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    exc = info.value
    want = (path, line_of(path, '"Beat"'), key)
    got = (exc.file, exc.line, exc.key)
    assert got == want, f"expected {want}, got {got}: {exc}"
    assert words in str(exc), f"expected the message to say {words!r}: {exc}"


def test_a_dict_config_names_the_dotted_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config({"node": {"data_dir": str(tmp_path)}, "actors": {"Plain": "app:Plain"},
                     "gateway": {"auto_response": {"request": "ping", "response": ["pong"]}}})
    exc = info.value
    assert (exc.file, exc.line, exc.key) == (None, None, "gateway.auto_response.response"), exc
