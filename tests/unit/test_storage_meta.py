"""node.meta below a node: written atomically, read back, a damaged file and a changed
shard count refused with a ConfigError."""
from __future__ import annotations

import os

import msgpack
import pytest

from actorsys.errors import ConfigError
from actorsys.storage import rebalance
from actorsys.storage.meta import LISTING_INDEX, META_FILE, load_or_create_meta, read_meta, write_meta


def test_write_then_read_gives_the_same_meta_and_leaves_no_temporary_file(tmp_path):
    meta = {"shards": 4, "workers": 2, "epoch": 3, "owner": [0, 1, 0, 1], "listing": LISTING_INDEX}
    write_meta(str(tmp_path), meta)
    assert read_meta(str(tmp_path)) == meta
    write_meta(str(tmp_path), {**meta, "epoch": 4})
    assert read_meta(str(tmp_path))["epoch"] == 4, "replaced"
    assert sorted(os.listdir(tmp_path)) == [META_FILE]


def test_a_damaged_meta_file_is_a_config_error_naming_it(tmp_path):
    (tmp_path / META_FILE).write_bytes(b"\xc1 not msgpack")
    with pytest.raises(ConfigError, match=f"corrupt node metadata {tmp_path / META_FILE}"):
        read_meta(str(tmp_path))
    (tmp_path / META_FILE).write_bytes(msgpack.packb({"shards": 4})[:-2])     # cut short
    with pytest.raises(ConfigError, match="corrupt node metadata"):
        read_meta(str(tmp_path))


def test_the_first_start_creates_the_meta_and_the_next_reads_it(tmp_path, monkeypatch):
    data = str(tmp_path / "data")
    meta = load_or_create_meta(data, shards=6, workers=4)
    assert meta == {"shards": 6, "workers": 4, "epoch": 1, "owner": [0, 1, 2, 3, 0, 1],
                    "listing": LISTING_INDEX, "created_now": True}
    assert read_meta(data) == {k: v for k, v in meta.items() if k != "created_now"}, \
        "created_now is about this run only: never stored"
    meta.pop("created_now")
    assert oct(os.stat(data).st_mode & 0o777) == "0o700"

    def no_move(*args, **kwargs):
        raise AssertionError("same worker count: no rebalancing process")
    monkeypatch.setattr(rebalance.subprocess, "run", no_move)
    assert load_or_create_meta(data, shards=6, workers=4) == meta


def test_a_changed_shard_count_is_refused(tmp_path):
    data = str(tmp_path)
    load_or_create_meta(data, shards=6, workers=2)
    with pytest.raises(ConfigError, match="created with shards = 6; the config says 8") as info:
        load_or_create_meta(data, shards=8, workers=2)
    assert info.value.key == "node.shards"
