"""CURVE between the nodes of a cluster (issue 15): who is let in, and which server key
a connection to another node uses.

Incoming. Every node of a CURVE cluster publishes its public key (Z85) in its
membership record in etcd (``actorsys.cluster.membership.Member.public_key``). Each
process of a node that binds tcp (router, workers, tree, gateway) lets in, besides the
node's own key and ``authorized_keys``, the keys of the cluster's live members:

* the router learns them from its membership (:func:`member_keys` of the records, every
  change) and sends the whole set, as a list of Z85 strings, to each worker in every
  SHARDS ``grant`` (``args["keys"]``), and to the tree and the gateway in a SHARDS
  ``keys`` command (``{"keys": [...]}``);
* the process hands them to its guard with :func:`apply_member_keys`, which replaces
  the previous set: a member that left (its lease expired) is refused at its next
  handshake. ``keys`` absent leaves the set as it is (a grant from a router that does
  not send keys).

etcd is trusted: whoever may write the cluster's keys there may admit a key.

Outgoing. A socket connecting to another node's worker (or router) must name THAT
node's public key as its server key. The cluster map carries each node's key in
``nodes[k]["public_key"]`` with its global slots ``nodes[k]["slots"] = [first, count]``
and router ``nodes[k]["endpoint"]``; :func:`server_keys` turns it into endpoint ->
server key, and :meth:`~.keys.CurveKeys.for_server` gives the socket's keys. An
endpoint the map does not name (a single node's) keeps the client's own server key.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from zmq.utils import z85

from ..errors import BadRequest
from .guard import Guard

_KEY_CHARS = 40        # a Curve25519 public key as Z85 text


def decode_key(key: Any) -> bytes:
    """The raw 32-byte key of a Z85 public key (str or bytes); BadRequest if it is not one."""
    text = key.encode("ascii", "replace") if isinstance(key, str) else key
    if not isinstance(text, bytes) or len(text) != _KEY_CHARS:
        raise BadRequest(f"a member key must be a Z85 public key ({_KEY_CHARS} characters), "
                         f"not {type(key).__name__} {str(key)[:48]!r}")
    try:
        raw: bytes = z85.decode(text)
    except Exception:
        raise BadRequest(f"member key {text[:48]!r} is not valid Z85") from None
    return raw


def member_keys(public_keys: Iterable[str | None], own: str | None = None) -> list[str]:
    """The Z85 keys to send to a node's processes: every member's key but ``own`` (the
    node's own is always let in) and None (an insecure member), sorted, once each."""
    return sorted({k for k in public_keys if k is not None and k != own})


def apply_member_keys(guard: Guard | None, keys: Any) -> int:
    """Let the members' ``keys`` (a list of Z85 strings, from the router) through
    ``guard`` from now on, instead of the previous members' (see the module docstring).
    Returns how many keys are let in. ``keys`` None: nothing changes. ``guard`` None (an
    ipc or insecure node: no CURVE): nothing to do, the keys are still checked. Every
    key is checked before any is applied: BadRequest leaves the guard as it was."""
    if keys is None:
        return len(guard.extra) if guard is not None else 0
    if not isinstance(keys, (list, tuple)):
        raise BadRequest(f"member keys must be a list of Z85 strings, not {type(keys).__name__}")
    raw = {decode_key(k) for k in keys}
    if guard is None:
        return 0
    guard.admit_extra(raw)
    return len(raw)


def server_keys(nodes: Iterable[Mapping[str, Any]] | None, endpoints: list[str]) -> dict[str, bytes]:
    """endpoint -> Z85 server key of the node behind it (its router and its worker slots'
    endpoints), from a cluster map's ``nodes`` and ``endpoints``; nodes without a valid
    ``public_key`` (insecure ones) are left out: their endpoints keep the client's own
    server key. Empty for a single node's map (no nodes)."""
    out: dict[str, bytes] = {}
    for node in nodes or ():
        key = node.get("public_key")
        key_bytes = key.encode("ascii", "replace") if isinstance(key, str) else key
        try:
            decode_key(key_bytes)
        except BadRequest:
            continue
        assert isinstance(key_bytes, bytes)
        if node.get("endpoint"):
            out[str(node["endpoint"])] = key_bytes
        first, count = node.get("slots") or (0, 0)
        for slot in range(int(first), min(int(first) + int(count), len(endpoints))):
            out[endpoints[slot]] = key_bytes
    return out
