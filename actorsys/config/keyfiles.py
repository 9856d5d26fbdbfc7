"""Reading CURVE key files (ZeroMQ's certificate format, ``zmq.auth``), with errors that
say which file and what is wrong. The config checks a node's key files with these when
it loads; :mod:`actorsys.net.keys` builds sockets' keys from them.
"""
from __future__ import annotations

import glob
import os
import stat

import zmq
import zmq.auth
from zmq.utils import z85

_KEY_CHARS = 40          # a Curve25519 key in Z85 text


def _check_key(key: bytes | None, what: str, path: str) -> bytes:
    if key is None or len(key) != _KEY_CHARS:
        raise ValueError(f"{path}: no valid {what} (expected {_KEY_CHARS} Z85 characters)")
    try:
        z85.decode(key)
    except Exception:
        raise ValueError(f"{path}: the {what} is not valid Z85 text") from None
    return key


def _read(path: str) -> tuple[bytes | None, bytes | None]:
    try:
        with open(path, "rb"):
            pass
        return zmq.auth.load_certificate(path)
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a key file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read key file ({exc.strerror or exc})") from None
    except ValueError:
        raise ValueError(f"{path}: not a key file (no public-key line; make one with "
                         f"'actorsys keygen')") from None


def load_secret(path: "str | os.PathLike[str]", *, private: bool = True) -> tuple[bytes, bytes]:
    """``(public, secret)`` from a ``.key_secret`` file; ValueError saying what is wrong.

    With ``private`` (a node's key), a file that other users can read is refused."""
    path = os.fspath(path)
    public, secret = _read(path)
    public = _check_key(public, "public key", path)
    if secret is None:
        raise ValueError(f"{path}: holds no secret key (a public .key file? "
                         f"use the .key_secret file)")
    secret = _check_key(secret, "secret key", path)
    if zmq.curve_public(secret) != public:
        raise ValueError(f"{path}: its public key does not belong to its secret key")
    if private:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            raise ValueError(f"{path}: the secret key file is open to other users (mode {mode:o}); "
                             f"chmod 600 it")
    return public, secret


def load_public(path: "str | os.PathLike[str]") -> bytes:
    """The public key in a ``.key`` file (a ``.key_secret`` file's public key also works)."""
    path = os.fspath(path)
    return _check_key(_read(path)[0], "public key", path)


def load_metadata(path: "str | os.PathLike[str]") -> dict[str, str]:
    """The ``metadata`` section of a key file (ZeroMQ's certificate format: indented
    ``name = "value"`` lines under a ``metadata`` line), values unquoted."""
    out: dict[str, str] = {}
    section = None
    with open(os.fspath(path), encoding="utf-8", errors="replace") as f:
        for line in f:
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if not line[0].isspace():
                section = stripped
            elif section == "metadata" and "=" in stripped:
                name, value = stripped.split("=", 1)
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                out[name.strip()] = value
    return out


def load_authorized(directory: "str | os.PathLike[str]") -> list[bytes]:
    """The public keys of every ``*.key`` file in ``directory`` (ZeroMQ's convention)."""
    return [public for _, public, _, _ in load_authorized_entries(directory)]


#: the roles a key file's metadata may give (``actorsys/net/authz.py``)
ROLES = ("client", "admin")
AuthorizedKey = tuple[str, bytes, str, "frozenset[str] | None"]


def load_authorized_entries(directory: "str | os.PathLike[str]") -> list[AuthorizedKey]:
    """``(name, public key, role, types)`` of every ``*.key`` file in ``directory``
    (name: the file's name without ``.key``; role and types from its metadata, see
    :func:`key_role`)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"{directory}: not a directory (authorized_keys names a directory "
                         f"of clients' public .key files)")
    out = []
    for p in sorted(glob.glob(os.path.join(directory, "*.key"))):
        role, types = key_role(load_metadata(p), p)
        out.append((os.path.basename(p)[:-4], load_public(p), role, types))
    return out


def key_role(metadata: dict[str, str], where: str) -> tuple[str, "frozenset[str] | None"]:
    """``(role, types)`` from a key file's metadata: ``role`` is ``client`` or ``admin``
    (absent: ``admin``, the power every allowed key had before roles existed); ``types``
    a comma-separated list of actor types (absent: every type). ValueError naming
    ``where`` if either is bad."""
    role = metadata.get("role", "admin")
    if role not in ROLES:
        raise ValueError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r:.100}")
    types = metadata.get("types")
    if types is None:
        return role, None
    names = frozenset(t.strip().strip("'\"") for t in types.strip().strip("[]").split(","))
    names -= {""}
    if not names:
        raise ValueError(f"{where}: types names no actor type (leave it out for every type)")
    return role, names
