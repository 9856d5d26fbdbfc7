"""CURVE keys: who may talk to a node over tcp.

In the user's words:

* A node on a tcp endpoint has a key pair (``curve_secret_key`` in ``[node]``). Every
  socket it binds (router, workers, supervision tree) is a CURVE server: traffic is
  encrypted, and only clients presenting an allowed public key are let in. Allowed are
  the node's own public key and every ``*.key`` file in the ``authorized_keys``
  directory (read when each process of the node starts).
* A client needs its own key pair and the node's public key:
  ``actorsys.connect(ep, key="me.key_secret", server_key="node.key")``, or on the
  command line ``--key`` / ``--server-key`` (env ``ACTORSYS_KEY`` / ``ACTORSYS_SERVER_KEY``).
* ``actorsys keygen DIR --name NAME`` (or :func:`keygen`) writes ``NAME.key`` (public:
  hand it out, put it in a node's ``authorized_keys``) and ``NAME.key_secret`` (secret:
  mode 0600, keep it). The files are ZeroMQ's certificate format (``zmq.auth``).
* ipc endpoints do not use CURVE (they are protected by their directory's mode), and
  plain tcp needs ``insecure = true``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import zmq
import zmq.auth
from zmq.utils import z85

from ..config import NodeConfig
from ..config.keyfiles import key_role, load_authorized_entries, load_public, load_secret
from ..errors import ConfigError
from .authz import Grant


@dataclass(frozen=True)
class CurveKeys:
    """The CURVE keys of a connecting socket (Z85 text): its own pair and the node's
    public key."""

    public: bytes
    secret: bytes
    server: bytes

    def __repr__(self) -> str:     # never print a secret key
        return f"CurveKeys(public={self.public.decode()!r}, server={self.server.decode()!r})"

    def for_server(self, server: bytes | None) -> "CurveKeys":
        """The same pair for a connection to the node whose public key is ``server``
        (Z85; None: this one's server): another node of a cluster (see :mod:`.members`)."""
        return self if server is None or server == self.server else replace(self, server=server)


@dataclass(frozen=True)
class NodeKeys:
    """A node's key pair, the raw (32-byte) public keys it lets in, and the grants of
    those that are not admins of every type (Z85 public key -> :class:`~.authz.Grant`;
    a key not in it is :data:`~.authz.ADMIN`)."""

    public: bytes
    secret: bytes
    allowed: frozenset[bytes]
    grants: Mapping[str, Grant] = field(default_factory=dict)

    @classmethod
    def make(cls, public: bytes, secret: bytes, authorized: list[bytes],
             grants: Mapping[str, Grant] | None = None) -> "NodeKeys":
        """The node's pair; allowed are its own public key and ``authorized`` (Z85)."""
        own = public.decode()
        return cls(public, secret, frozenset(z85.decode(k) for k in {public, *authorized}),
                   {k: g for k, g in (grants or {}).items() if k != own})

    @property
    def client(self) -> CurveKeys:
        """The keys the node's own processes connect with (its pair, its public key)."""
        return CurveKeys(self.public, self.secret, self.public)

    def __repr__(self) -> str:
        return f"NodeKeys(public={self.public.decode()!r}, allowed={len(self.allowed)} keys)"


def client_keys(key: "str | os.PathLike[str] | None",
                server_key: "str | os.PathLike[str] | None") -> CurveKeys | None:
    """A client's keys from its ``.key_secret`` file and the node's public ``.key`` file
    (None if neither is given)."""
    if key is None and server_key is None:
        return None
    if key is None or server_key is None:
        raise ValueError("CURVE needs both the client's key (its .key_secret file) and the "
                         "node's server_key (the node's public .key file)")
    public, secret = load_secret(key, private=False)
    return CurveKeys(public, secret, load_public(server_key))


def uses_curve(endpoint: str) -> bool:
    """CURVE applies to tcp endpoints; ipc endpoints rely on their directory's mode."""
    return not endpoint.startswith("ipc://")


def curve_client(sock: zmq.Socket[Any], endpoint: str, keys: CurveKeys | None) -> None:
    """Make ``sock`` a CURVE client of ``endpoint`` (before connecting); no-op for ipc or
    without keys."""
    if keys is not None and uses_curve(endpoint):
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server)


def curve_server(sock: zmq.Socket[Any], keys: NodeKeys) -> None:
    """Make ``sock`` a CURVE server with the node's secret key (before binding)."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


def keygen(directory: "str | os.PathLike[str]", name: str = "node", *, role: str | None = None,
           types: "str | list[str] | None" = None) -> tuple[str, str]:
    """Write a new key pair ``DIR/NAME.key`` (public) and ``DIR/NAME.key_secret`` (mode
    0600); ``DIR`` is created with mode 0700 if missing. Returns ``(public, secret)``
    paths; refuses (FileExistsError) to overwrite an existing pair. ``role`` and
    ``types`` (a list, or comma-separated) go into the files' metadata: what a node
    that lists the public file in ``authorized_keys`` lets the key do (``authz.py``)."""
    directory = os.fspath(directory)
    metadata: dict[str, str] = {}
    if role is not None:
        metadata["role"] = f'"{role}"'
    if types is not None:
        metadata["types"] = '"' + (types if isinstance(types, str) else ",".join(types)) + '"'
    if metadata:
        key_role({k: v.strip('"') for k, v in metadata.items()}, "keygen")   # (ValueError if bad)
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"key name {name!r} must be a plain file name")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    targets = (os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.key_secret"))
    for t in targets:
        if os.path.lexists(t):
            raise FileExistsError(f"{t} already exists; not overwriting a key")
    # written in a private temporary directory, then linked into place: the secret file
    # is never readable by others, and an existing file is never replaced
    tmp = tempfile.mkdtemp(dir=directory, prefix=".keygen-")
    try:
        public, secret = zmq.auth.create_certificates(tmp, name, metadata=metadata or None)
        if metadata:     # (pyzmq writes metadata into the secret file only)
            with open(public, encoding="utf-8") as f:
                text = f.read()
            lines = "".join(f"    {k} = {v}\n" for k, v in metadata.items())
            with open(public, "w", encoding="utf-8") as f:
                f.write(text.replace("\nmetadata\n", "\nmetadata\n" + lines, 1))
        os.chmod(secret, 0o600)
        os.chmod(public, 0o644)
        os.link(secret, targets[1])
        try:
            os.link(public, targets[0])
        except BaseException:
            os.unlink(targets[1])
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return targets


#: handshake events a client watches on its connection to the router
CLIENT_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                           | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def handshake_problem(event: int, endpoint: str, keys: CurveKeys | None) -> tuple[bool, str]:
    """What a failed handshake seen by a client means: ``(final, message)``. ``final``:
    the node refused the client's key (ZeroMQ does not retry; neither should the client)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return True, (f"the node at {endpoint} refused this client's CURVE key "
                      f"(it is neither the node's key nor in its authorized_keys)")
    if keys is None:
        return False, (f"the handshake with {endpoint} failed: the node probably requires "
                       f"CURVE; pass key= and server_key= (command line: --key, --server-key)")
    return False, (f"the CURVE handshake with {endpoint} failed: is server_key the node's "
                   f"public key, and does the node use CURVE (not insecure = true)?")


def node_keys(cfg: NodeConfig) -> "NodeKeys | None":
    """The node's CURVE keys, loaded from their files (None: an ipc or insecure node).
    Each process of the node calls this when it starts."""
    if cfg.endpoint is None or not cfg.endpoint.startswith("tcp://") or cfg.curve_secret_key is None:
        return None
    try:
        public, secret = load_secret(cfg.curve_secret_key)
    except ValueError as exc:
        raise ConfigError(str(exc), file=cfg.source, key="node.curve_secret_key") from None
    try:
        entries = load_authorized_entries(cfg.authorized_keys) if cfg.authorized_keys else []
    except ValueError as exc:
        raise ConfigError(str(exc), file=cfg.source, key="node.authorized_keys") from None
    grants = {k.decode(): Grant(role, types, name) for name, k, role, types in entries
              if role != "admin" or types is not None}
    return NodeKeys.make(public, secret, [k for _, k, _, _ in entries], grants)
