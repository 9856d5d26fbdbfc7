"""``[gateway]`` config errors: each names the file, the line and the key."""
from __future__ import annotations

import pytest

import actorsys
from actorsys.errors import ConfigError
from helpers import ACTORS_DIR


def write_config(tmp_path, gateway_lines: list[str]) -> str:
    """A node.toml with the Echo actor and the given ``[gateway]`` lines; returns its path."""
    text = "\n".join([
        "[node]",
        'data_dir = "data"',
        f"python_path = [{ACTORS_DIR!r}]",
        "",
        "[actors]",
        'Echo = "ws_actors:Echo"',
        "",
        "[gateway]",
        *gateway_lines,
        "",
    ])
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def line_of(path: str, start: str) -> int:
    """The 1-based number of the line that starts with ``start``."""
    with open(path) as f:
        return next(i for i, line in enumerate(f, 1) if line.startswith(start))


CASES = [
    # (id, [gateway] lines, the bad key, words the message must contain)
    ("unknown key", ['listen = "127.0.0.1:0"', 'colour = "red"'], "colour", "unknown key"),
    ("listen without a port", ['listen = "localhost"'], "listen", "HOST:PORT"),
    ("listen port too large", ['listen = "127.0.0.1:70000"'], "listen", "HOST:PORT"),
    ("listen not a string", ["listen = 8080"], "listen", "HOST:PORT"),
    ("static dir missing", ['static = "no-such-dir"'], "static", "no such directory"),
    ("origin with a path", ['allowed_origins = ["https://ok.example", "https://x.example/app"]'],
     "allowed_origins", "no path"),
    ("origin without a scheme", ['allowed_origins = ["example.com"]'], "allowed_origins", "SCHEME"),
    ("origins not a list", ['allowed_origins = "*"'], "allowed_origins", "list"),
    ("expose an unknown type", ['expose = ["Echo", "Ghost"]'], "expose", "Ghost"),
    ("auth not module:function", ['auth = "not a path"'], "auth", "module:function"),
    ("max_message_bytes too small", ["max_message_bytes = 100"], "max_message_bytes", "1KiB"),
    ("max_message_bytes too large", ['max_message_bytes = "128MiB"'], "max_message_bytes", "64MiB"),
    ("max_message_bytes not a size", ['max_message_bytes = "lots"'], "max_message_bytes", "1KiB"),
    ("max_connections_per_actor zero", ["max_connections_per_actor = 0"],
     "max_connections_per_actor", "positive"),
    ("metrics not a boolean", ['metrics = "yes"'], "metrics", "true"),
    ("max_connections_per_address zero", ["max_connections_per_address = 0"],
     "max_connections_per_address", "positive"),
    ("header_timeout too short", ["header_timeout = 0.01"], "header_timeout", "seconds"),
    ("body_timeout not a number", ['body_timeout = "30s"'], "body_timeout", "seconds"),
    ("fd_reserve negative", ["fd_reserve = -1"], "fd_reserve", "file descriptors"),
]


@pytest.mark.parametrize("lines, key, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gateway_config_error_names_file_line_and_key(tmp_path, lines, key, words):
    path = write_config(tmp_path, lines)
    with pytest.raises(ConfigError) as info:
        actorsys.load_config(path)
    exc = info.value
    want = (path, line_of(path, key), f"gateway.{key}")
    assert (exc.file, exc.line, exc.key) == want, \
        f"expected the error to name (file, line, key) = {want}, got {(exc.file, exc.line, exc.key)}: {exc}"
    assert words in str(exc), f"expected the message to say {words!r}, got: {exc}"


@pytest.mark.parametrize("value", ['"localhost"', '"127.0.0.1:99999"', "9464", "true"])
def test_node_metrics_must_be_host_port(tmp_path, value):
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\ndata_dir = "data"\nmetrics = {value}\n\n[actors]\nEcho = "ws_actors:Echo"\n')
    with pytest.raises(ConfigError) as info:
        actorsys.load_config(str(path))
    assert (info.value.file, info.value.line, info.value.key) == (str(path), 3, "node.metrics")
    assert "HOST:PORT" in str(info.value) or "a string" in str(info.value)


def test_gateway_config_defaults_and_static_relative_to_the_file(tmp_path):
    (tmp_path / "www").mkdir()
    path = write_config(tmp_path, ['listen = "127.0.0.1:0"', 'static = "www"'])
    g = actorsys.load_config(path).gateway
    assert g["static"] == str(tmp_path / "www"), \
        f"static is relative to the config file's directory, got {g['static']}"
    assert (g["allowed_origins"], g["max_message_bytes"], g["max_connections_per_actor"],
            g["expose"], g["auth"]) == ([], 65536, 1000, None, None), f"unexpected defaults: {g}"


@pytest.mark.parametrize("spec", ["ws_actors:no_such_hook", "no_such_module_xyz:hook"])
def test_auth_hook_that_cannot_be_imported_fails_node(tmp_path, spec):
    path = write_config(tmp_path, ['listen = "127.0.0.1:0"', f'auth = "{spec}"'])
    with pytest.raises(ConfigError) as info:
        actorsys.Node(path)
    exc = info.value
    want = (path, line_of(path, "auth"), "gateway.auth")
    assert (exc.file, exc.line, exc.key) == want, \
        f"an auth hook {spec!r} that cannot be imported: expected {want}, " \
        f"got {(exc.file, exc.line, exc.key)}: {exc}"
