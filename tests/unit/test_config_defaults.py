"""The one defaults table: NodeConfig, the loader and the gateway table all take their
defaults from actorsys.config.defaults (in-process, no node)."""
from __future__ import annotations

import dataclasses

import pytest

from actorsys.config import ALARM_RETRY, NodeConfig, load_config
from actorsys.config.defaults import ACTOR_OPTIONS, DEFAULTS, GATEWAY, NODE, Kind, default, section
from actorsys.config.values import kind_problem, parse_size
from actorsys.errors import ConfigError


def test_every_node_key_is_a_config_field_with_the_tables_default():
    fields = {f.name: f for f in dataclasses.fields(NodeConfig)}
    cfg = NodeConfig(data_dir="d")
    for key, spec in NODE.items():
        assert key in fields, f"[node] {key} has no NodeConfig field"
        if key in ("data_dir", "alarm_retry"):
            continue
        assert getattr(cfg, key) == spec.default, \
            f"NodeConfig.{key} defaults to {getattr(cfg, key)!r}, the table says {spec.default!r}"
    assert cfg.alarm_retry == dict(ALARM_RETRY) == {"initial": 1.0, "max": 60.0, "attempts": 6}


def test_a_config_with_no_keys_gets_every_default():
    cfg = load_config({})
    for key, spec in NODE.items():
        if key in ("data_dir", "python_path", "alarm_retry"):
            continue                   # made absolute / filled from its own keys
        assert getattr(cfg, key) == spec.default, f"{key}: {getattr(cfg, key)!r} != {spec.default!r}"
    assert cfg.alarm_retry == dict(ALARM_RETRY)
    assert cfg.gateway is None and cfg.supervisors == {} and cfg.source is None


def test_the_gateway_table_gets_every_default_and_owns_its_lists():
    a = load_config({"gateway": {}}).gateway
    b = load_config({"gateway": {}}).gateway
    assert a is not None and b is not None
    assert list(a) == list(GATEWAY), "every [gateway] key, in the table's order"
    assert {k: v for k, v in a.items()} == {k: s.default for k, s in GATEWAY.items()}
    a["allowed_origins"].append("https://x.example")
    assert b["allowed_origins"] == [] and GATEWAY["allowed_origins"].default == [], \
        "a config's lists are its own, not the table's"


def test_sections_are_the_keys_one_level_down():
    assert list(section("node.alarm_retry")) == ["initial", "max", "attempts"]
    assert list(ACTOR_OPTIONS) == ["class", "on_error", "history_window", "auto_response"]
    assert list(section("gateway.auto_response")) == ["request", "response"]
    assert "alarm_retry.initial" not in NODE and "alarm_retry" in NODE
    assert all(k.split(".")[0] in ("node", "actors", "gateway", "cluster") for k in DEFAULTS)
    fresh = default("node.python_path")
    assert fresh == [] and fresh is not NODE["python_path"].default


def test_an_unknown_actor_option_is_named_and_reentrant_is_sent_to_the_class():
    base = {"node": {"data_dir": "d"}}
    with pytest.raises(ConfigError, match=r"key 'actors\.A': unknown actor option\(s\) \['reentrant'\] "
                                          r"\(expected: class, .*\); reentrant = False is a class "
                                          r"attribute of the actor"):
        load_config({**base, "actors": {"A": {"class": "m:A", "reentrant": False}}})
    with pytest.raises(ConfigError, match=r"\['colour'\] \(expected: [^;]*\)$"):
        load_config({**base, "actors": {"A": {"class": "m:A", "colour": "red"}}})


@pytest.mark.parametrize("kind,good,bad,words", [
    (Kind.INT, 3, True, "integer"),
    (Kind.NUMBER, 2.5, True, "number"),
    (Kind.STR, "x", 3, "string"),
    (Kind.BOOL, False, 0, "true or false"),
    (Kind.STRINGS, ["a"], ["a", 1], "list of strings"),
    (Kind.SIZE, "64MiB", 1.5, "size in bytes"),
    (Kind.TABLE, {}, [], "table"),
])
def test_each_kind_accepts_its_values_and_names_what_it_wants(kind, good, bad, words):
    assert kind_problem(kind, "k", good) is None
    problem = kind_problem(kind, "k", bad)
    assert problem is not None and words in problem, problem


def test_a_table_key_names_its_shape():
    assert kind_problem(Kind.TABLE, "backoff", 3) == \
        "must be a table { initial = SECONDS, max = SECONDS, jitter = FRACTION }"
    assert kind_problem(Kind.TABLE, "alarm_retry", 3) == \
        "must be a table { initial = SECONDS, max = SECONDS, attempts = N }"


@pytest.mark.parametrize("text,value", [("512", 512), ("2KiB", 2048), ("1.5MB", 1_500_000),
                                        ("1gib", 1 << 30), (0, 0), (7, 7)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["lots", "5 parsecs", -1])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_an_error_in_a_dict_names_the_dotted_key_and_no_line():
    with pytest.raises(ConfigError) as info:
        load_config({"node": {"alarm_retry": {"initial": 5.0, "max": 1.0}}})
    assert (info.value.key, info.value.line, info.value.file) == ("node.alarm_retry.max", None, None)
    assert "max must be at least initial" in str(info.value)
