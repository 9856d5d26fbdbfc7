"""Every error actorsys raises derives from :class:`ActorError`.

Errors that cross the wire travel as a msgpack map ``{"code", "type", "message",
"traceback", ...}``; :func:`error_from_wire` turns one back into the right class.
"""
from __future__ import annotations

from typing import Any


class ActorError(Exception):
    """Base class of every actorsys error."""

    code = "error"

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "type": type(self).__name__, "message": str(self)}


class RemoteError(ActorError):
    """A handler raised: carries the remote exception's type name, message and traceback."""

    code = "remote"

    def __init__(self, remote_type: str, remote_message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return f"{self.remote_type}: {self.remote_message}"

    def to_wire(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "type": self.remote_type,
            "message": self.remote_message,
            "traceback": self.remote_traceback,
        }


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived before the ask's deadline."""

    code = "timeout"


class WorkerLost(ActorError):
    """The worker process hosting the actor died while the ask was in flight.

    The request may or may not have been processed; acknowledged writes are never lost.
    """

    code = "worker_lost"


class Overloaded(ActorError):
    """A bound was hit (mailbox length, pending asks); retry later."""

    code = "overloaded"


class UnknownActorType(ActorError):
    """The actor type is not registered in the node's config."""

    code = "unknown_type"


class UnknownMethod(ActorError):
    """The actor type has no public handler of that name."""

    code = "unknown_method"


class BadRequest(ActorError):
    """The request was malformed: wrong frames, undecodable or ill-typed payload."""

    code = "bad_request"


class BadArguments(BadRequest):
    """The arguments of an ask or tell do not fit the handler's signature (it did not run)."""


class NotTesting(BadRequest):
    """A request only a node started for testing serves (``[node] testing = true``): the
    asks behind :mod:`actorsys.testing`'s ``run_in_actor`` and ``fire_alarms``. Nothing of
    it ran."""

    code = "not_testing"


class Forbidden(ActorError):
    """The sender's key may not make this request (its role or its actor types, see
    ``actorsys/net/authz.py``); nothing of it ran."""

    code = "forbidden"


class MessageTooLarge(ActorError):
    """The message exceeds the node's ``max_message_bytes``."""

    code = "too_large"


class LimitExceeded(ActorError, ValueError):
    """A storage key or value, or an actor's state, is larger than the node allows."""

    code = "limit"


class WrongShard(ActorError):
    """The worker does not own the actor's shard (the client's map is stale)."""

    code = "wrong_shard"


class ShardUnavailable(ActorError):
    """The actor's shard belongs to a node of the cluster that cannot serve it now (it is
    down, or it could not renew its membership in time): the message names the node and
    why. Nothing of the request ran."""

    code = "shard_unavailable"


class StorageError(ActorError):
    """The turn could not be committed to storage; nothing of it was acknowledged."""

    code = "storage"

    def __init__(self, message: str = "", *, transient: bool = False) -> None:
        super().__init__(message)
        #: the cause may go away by itself (a full or read-only disk)
        self.transient = transient


class NodeUnavailable(ActorError, ConnectionError):
    """The node (router or workers) could not be reached before the deadline."""

    code = "unavailable"


class ConfigError(ActorError, ValueError):
    """A config file or dict is invalid. Names the file, the line and the key."""

    code = "config"

    def __init__(self, problem: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key, self.problem = file, line, key, problem
        where = file or "<config dict>"
        if line is not None:
            where += f", line {line}"
        if key is not None:
            where += f", key '{key}'"
        super().__init__(f"{where}: {problem}")


class Deadlock(ActorError):
    """An ask would close a cycle of actors waiting on each other, and the actor it comes
    back to refuses reentrant calls (``reentrant = False`` on its class): it fails at
    once, naming the cycle, instead of waiting until a timeout. Also raised at an ask
    whose call chain would grow past ``MAX_CHAIN`` actors (a runaway recursion)."""

    code = "deadlock"


class PartlyRun(ActorError):
    """A retried ask whose first run was interrupted after part of its turn committed
    (a nested turn of call-chain reentrancy commits the turn's changes so far): it is
    not run again, since that would apply the committed part twice."""

    code = "partly_run"


class ActorStopped(ActorError):
    """The actor is a supervised child that is not running (stopped by its supervisor,
    or exited and not restarted). Like a call to a dead process in Erlang (``noproc``)."""

    code = "stopped"


class SubscriptionClosed(ActorError):
    """A subscription (``client.subscribe(...)``) ended for a reason other than its own
    close or its actor's ``conn.close()`` with 1000: ``code`` and ``reason`` say why,
    in WebSocket close codes (``actorsys/client/subscriptions.py``): 1013 the subscriber
    did not read fast enough, 1011 its ``on_connect`` failed or the actor was
    unavailable, 1001 the gateway stopped, 1006 the connection to the gateway was lost
    (the gateway restarted or stopped answering), 1002 a protocol error, 1009 a message
    too large, 3000-4999 the actor's own ``conn.close(code, reason)``. The frames that
    arrived before it were delivered first."""

    code = "subscription_closed"

    def __init__(self, message: str = "", *, close_code: int = 1006, reason: str = "") -> None:
        super().__init__(message)
        #: the WebSocket close code (the class's ``code`` is its wire error code)
        self.close_code = close_code
        self.reason = reason


class SupervisorError(ActorError):
    """Base of the errors a supervisor's runtime API returns (OTP's ``{error, Reason}``)."""

    code = "supervisor"


class ChildNotFound(SupervisorError):
    """No child with that id (or, under ``simple_one_for_one``, that key): ``not_found``."""

    code = "not_found"


class AlreadyStarted(SupervisorError):
    """``start_child``: a child with that id is already running: ``already_started``."""

    code = "already_started"


class AlreadyPresent(SupervisorError):
    """``start_child``: a child spec with that id exists but is not running: ``already_present``."""

    code = "already_present"


class ChildRunning(SupervisorError):
    """``restart_child`` / ``delete_child`` of a child that is running: ``running``."""

    code = "running"


class StartFailed(SupervisorError):
    """A child's start (its ``on_start``) raised or timed out; the child is not running."""

    code = "start_failed"


class SupervisorNotFound(SupervisorError):
    """No supervisor of that name runs on the node."""

    code = "no_supervisor"


_BY_CODE: dict[str, type[ActorError]] = {
    cls.code: cls
    for cls in (AskTimeout, WorkerLost, Overloaded, UnknownActorType, UnknownMethod,
                BadRequest, NotTesting, Forbidden, MessageTooLarge, LimitExceeded, WrongShard, StorageError,
                NodeUnavailable, ShardUnavailable, SubscriptionClosed,
                ActorStopped, Deadlock, PartlyRun, SupervisorError, ChildNotFound, AlreadyStarted,
                AlreadyPresent, ChildRunning, StartFailed, SupervisorNotFound, ConfigError)
}


def error_from_wire(body: Any) -> ActorError:
    """Rebuild the exception a peer sent as an error body."""
    if not isinstance(body, dict):
        return BadRequest(f"malformed error reply: {body!r:.200}")
    code = body.get("code")
    message = str(body.get("message", ""))
    if code == "remote":
        return RemoteError(str(body.get("type", "Exception")), message, str(body.get("traceback", "")))
    cls = _BY_CODE.get(code, ActorError)  # type: ignore[arg-type]
    if cls is ConfigError:   # start_child with a bad spec: the message already says where
        err: ActorError = ConfigError.__new__(ConfigError)
        Exception.__init__(err, message)
        err.file = err.line = err.key = None  # type: ignore[attr-defined]
        err.problem = message  # type: ignore[attr-defined]
        return err
    err = cls(message)
    if code == "wrong_shard":
        err.epoch = body.get("epoch")  # type: ignore[attr-defined]
    return err
