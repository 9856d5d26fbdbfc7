"""A running supervisor of a node's supervision tree, from a blocking client:
``client.supervisor("root")`` (the asyncio client's is :class:`~.aio.AsyncSupervisorRef`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .blocking import Client


class SupervisorRef:
    """A running supervisor, from a blocking client: ``client.supervisor("root")``.

    The methods are OTP's; its ``{error, Reason}`` results are raised as exceptions:
    :class:`~actorsys.ChildNotFound`, :class:`~actorsys.AlreadyStarted`,
    :class:`~actorsys.AlreadyPresent`, :class:`~actorsys.ChildRunning`,
    :class:`~actorsys.StartFailed`, :class:`~actorsys.SupervisorNotFound`, and
    :class:`~actorsys.SupervisorError` for the rest.
    """

    __slots__ = ("client", "name")

    def __init__(self, client: Client, name: str) -> None:
        self.client, self.name = client, name

    def which_children(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """Every child in start order: ``{"id", "type", "status", "actor", "key", ...}``;
        ``status`` is ``running``, ``restarting`` or ``stopped``."""
        children: list[dict[str, Any]] = self.client.supervise(self.name, "which_children",
                                                               timeout=timeout)
        return children

    def count_children(self, *, timeout: float | None = None) -> dict[str, int]:
        """``{"specs", "active", "supervisors", "workers"}`` as in OTP."""
        counts: dict[str, int] = self.client.supervise(self.name, "count_children",
                                                       timeout=timeout)
        return counts

    def start_child(self, spec: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Add and start a child. ``spec`` is a child spec (``{"id", "actor", "key", ...}``),
        or for ``simple_one_for_one`` ``{"key", "args", "kwargs"}`` (extra start arguments
        after the template's; a fresh key if none). Returns the child's info, or for
        ``simple_one_for_one`` its key."""
        return self.client.supervise(self.name, "start_child", spec, timeout=timeout)

    def terminate_child(self, child_id: str, *, timeout: float | None = None) -> None:
        """Stop a child within its shutdown; it stays as a stopped spec (a temporary or
        ``simple_one_for_one`` child, whose id is its key, is removed)."""
        self.client.supervise(self.name, "terminate_child", child_id, timeout=timeout)

    def restart_child(self, child_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Start a stopped child again (ChildRunning if it runs)."""
        info: dict[str, Any] = self.client.supervise(self.name, "restart_child", child_id,
                                                     timeout=timeout)
        return info

    def delete_child(self, child_id: str, *, timeout: float | None = None) -> None:
        """Remove a stopped child's spec; its actor becomes an unsupervised actor."""
        self.client.supervise(self.name, "delete_child", child_id, timeout=timeout)

    def __repr__(self) -> str:
        return f"<SupervisorRef {self.name}>"
