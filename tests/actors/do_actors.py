"""Actors for tests/test_storage_api.py and tests/test_listing.py (the Durable Objects
parity surface: batch storage, transactions, delete_all, size, limits, listing, destroy).

Registered per test as ``"do_actors:ClassName"`` (see ``DO_ACTORS`` in those tests).
"""
from __future__ import annotations

import os
from typing import Any

import actorsys


class Boom(Exception):
    """Raised on purpose inside a transaction block or a turn."""


def _pairs(d: dict) -> list:
    """A dict as ``[[key, value], ...]``: the order survives the trip to the test."""
    return [[k, v] for k, v in d.items()]


class Box(actorsys.Actor):
    """Exposes ``self.storage`` (and a little state) to the tests, one call per handler."""

    def on_start(self) -> None:
        self.state["starts"] = self.state.get("starts", 0) + 1

    # -- plain storage ------------------------------------------------------------
    def get(self, key: Any, default: Any = None) -> Any:
        return self.storage.get(key, default)

    def put(self, key: Any, value: Any = None) -> None:
        self.storage.put(key, value)

    def delete(self, key: Any) -> Any:
        return self.storage.delete(key)

    def list(self, **kw: Any) -> list:
        return _pairs(self.storage.list(**kw))

    def call_error(self, method: str, *args: Any, encodable: bool = True) -> list:
        """``[exception type, message]`` of a storage call that should fail (with
        ``encodable=False`` the last argument is replaced by a set, which msgpack refuses)."""
        if not encodable:
            args = (*args[:-1], {1, 2})
        try:
            getattr(self.storage, method)(*args)
        except Exception as exc:
            return [type(exc).__name__, str(exc)]
        return ["no error", ""]

    def list_error(self, **kw: Any) -> list:
        """``[exception type, message]`` of a list call that should fail."""
        try:
            self.storage.list(**kw)
        except Exception as exc:
            return [type(exc).__name__, str(exc)]
        return ["no error", ""]

    def size(self) -> int:
        return self.storage.size()

    def put_then_size(self, key: str, value: Any) -> int:
        self.storage.put(key, value)
        return self.storage.size()

    def delete_all(self) -> int:
        return self.storage.delete_all()

    def delete_all_then_list(self) -> list:
        n = self.storage.delete_all()
        return [n, _pairs(self.storage.list())]

    def get_state(self) -> dict:
        return dict(self.state)

    def set_state(self, key: str, value: Any) -> None:
        self.state[key] = value

    def whoami(self) -> list:
        return [self.type_name, self.key]

    def pid(self) -> int:
        return os.getpid()

    def touch(self) -> str:
        """A write, so the actor has persisted data."""
        self.storage.put("touched", True)
        return self.key

    # -- reads within the turn see its writes -----------------------------------------
    def write_then_read(self, puts: dict, deletes: list, keys: list, **list_kw: Any) -> dict:
        """Batch put and delete, then read back: single gets, a batch get and a list."""
        self.storage.put(puts)
        deleted = self.storage.delete(deletes)
        return {"single": {k: self.storage.get(k, "<absent>") for k in keys},
                "batch": self.storage.get(keys),
                "list": _pairs(self.storage.list(**list_kw)),
                "deleted": deleted}

    def put_one_by_one_then_read(self, puts: dict, key: str) -> list:
        for k, v in puts.items():
            self.storage.put(k, v)
        return [self.storage.get(key), _pairs(self.storage.list())]

    def batch_put_catching(self, items: dict) -> list:
        """A batch put that should fail as a whole; the turn goes on and commits a marker."""
        try:
            self.storage.put(items)
        except Exception as exc:
            self.storage.put("marker", "after the failed batch")
            return [type(exc).__name__, isinstance(exc, ValueError), str(exc)]
        return ["no error", False, ""]

    def batch_put_unencodable(self) -> list:
        """A batch whose middle value msgpack cannot encode (an object)."""
        try:
            self.storage.put({"good1": 1, "bad": object(), "good2": 2})
        except Exception as exc:
            self.storage.put("marker", "after the failed batch")
            return [type(exc).__name__, str(exc)]
        return ["no error", ""]

    # -- failing turns --------------------------------------------------------------
    def put_then_fail(self, key: str, value: Any) -> None:
        self.state["failed_turn"] = True
        self.storage.put(key, value)
        raise Boom(f"failing after putting {key!r}")

    def put_marker_then(self, key: str, value: Any) -> None:
        """Write a marker (storage and state), then a put that may exceed a limit."""
        self.state["marker"] = True
        self.storage.put("marker", True)
        self.storage.put(key, value)

    def grow_state(self, nbytes: int) -> int:
        self.state["blob"] = b"x" * nbytes
        return nbytes

    # -- transactions ------------------------------------------------------------------
    def txn_rollback(self) -> dict:
        """Writes before a block, a block that raises, writes after; reports what the turn
        sees after the rollback."""
        self.storage.put("before", 1)
        self.state["before"] = 1
        self.storage.put("overwritten", "before")
        self.state["nested"] = {"kept": True}
        caught = None
        try:
            with self.storage.transaction():
                self.storage.put("inside", 1)
                self.storage.put("overwritten", "inside")
                self.storage.delete("before")
                self.state["inside"] = 1
                self.state["nested"]["kept"] = False
                self.set_alarm(3600, "inside_alarm", payload="x")
                raise Boom("undo the block")
        except Boom as exc:
            caught = str(exc)
        self.storage.put("after", 1)
        self.state["after"] = 1
        return {"caught": caught,
                "storage": _pairs(self.storage.list()),
                "state": {k: v for k, v in self.state.items() if k != "starts"},
                "alarms": sorted(self.alarms())}

    def txn_cancel_alarm_rollback(self, name: str) -> dict:
        """A block that cancels an alarm set by an earlier turn, then raises."""
        try:
            with self.storage.transaction():
                cancelled = self.cancel_alarm(name)
                raise Boom(f"cancelled={cancelled}")
        except Boom as exc:
            return {"caught": str(exc), "alarms": sorted(self.alarms())}

    def set_alarm_in(self, seconds: float, name: str) -> float:
        return self.set_alarm(seconds, name)

    def alarm_names(self) -> list:
        return sorted(self.alarms())

    def txn_nested(self) -> dict:
        """Outer block commits; an inner block raises and is caught inside the outer."""
        with self.storage.transaction():
            self.storage.put("outer", 1)
            self.state["outer"] = 1
            try:
                with self.storage.transaction():
                    self.storage.put("inner", 1)
                    self.storage.put("outer", "changed by inner")
                    self.state["inner"] = 1
                    raise Boom("inner")
            except Boom:
                pass
            self.storage.put("outer_after_inner", 1)
        return {"storage": _pairs(self.storage.list()),
                "state": {k: v for k, v in self.state.items() if k != "starts"}}

    def txn_ok(self) -> str:
        with self.storage.transaction() as txn:
            txn.put("in_ok_block", 1)
            self.state["in_ok_block"] = 1
            self.set_alarm(3600, "ok_alarm")
        return "ok"

    def txn_then_fail_turn(self) -> None:
        """A block that succeeds inside a turn that then raises: nothing commits."""
        with self.storage.transaction():
            self.storage.put("block_of_failed_turn", 1)
        raise Boom("the turn fails after its block")

    # -- the read cache ----------------------------------------------------------------
    def read_n(self, key: str, n: int) -> list:
        """``n`` reads of one key: every one must give the same value."""
        return [self.storage.get(key) for _ in range(n)]

    def read_put_read_fail(self, key: str, value: Any, n: int) -> None:
        """Read (caching the committed value), overwrite, read again, then fail the turn."""
        for _ in range(n):
            self.storage.get(key)
        self.storage.put(key, value)
        assert self.storage.get(key) == value
        raise Boom("roll this turn back")

    def read_txn_rollback_read(self, key: str, value: Any, n: int) -> list:
        """Read, overwrite inside a block that raises, read again n times (same turn)."""
        first = self.storage.get(key)
        try:
            with self.storage.transaction():
                self.storage.put(key, value)
                raise Boom("undo")
        except Boom:
            pass
        return [first] + [self.storage.get(key) for _ in range(n)]

    def put_read_n(self, key: str, value: Any, n: int) -> list:
        self.storage.put(key, value)
        return [self.storage.get(key) for _ in range(n)]

    # -- alarms (for destroy) -------------------------------------------------------------
    def arm(self, seconds: float, witness_key: str) -> float:
        self.state["witness"] = witness_key
        return self.set_alarm(seconds, "wake", payload=witness_key)

    def on_alarm(self, name: str, payload: Any) -> None:
        self.state["fired"] = self.state.get("fired", 0) + 1
        self.storage.put("fired", True)
        self.ref("Witness", payload).tell("record", self.type_name, self.key, name)


class Witness(actorsys.Actor):
    """A side channel: other actors tell it what happened."""

    def record(self, *what: Any) -> None:
        self.state.setdefault("seen", []).append(list(what))

    def seen(self) -> list:
        return self.state.get("seen", [])
