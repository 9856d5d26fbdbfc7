"""An embedded node: ``with actorsys.Node("node.toml") as node: ...``.

``Node`` validates the config (importing every registered actor class, so a typo is a
:class:`~actorsys.ConfigError` here and not a crash loop later), then, at start, plans
the node's endpoints (:class:`~actorsys.config.NodeLayout`), claims its data directory
and endpoints, and starts the node supervisor as a child process with the config and the
layout; the supervisor starts the router and the workers. The node is ready when the
router and every worker answer. Leaving the ``with`` block stops the node within
``shutdown_timeout`` and leaves no process behind.

The node's processes log to this process's standard error, as this process's
environment says (``ACTORSYS_LOG_LEVEL``, ``ACTORSYS_LOG_JSON``: see :mod:`actorsys.log`);
this process's own logging is left alone.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

from ..actor.classes import check_actor_classes
from ..client import Client, connect
from ..config import NodeConfig, NodeLayout, load_config
from ..config.layout import FAILURE_FILE, plan_layout
from ..errors import NodeUnavailable
from .claim import claim_node
from .launch import supervisor_command


class Node:
    """A node started from this process: router and workers as real child processes.

    ``config`` is a TOML file path or the same content as a dict (see
    :mod:`actorsys.config`). Use it as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(self, config: "str | os.PathLike[str] | dict[str, Any] | NodeConfig") -> None:
        self.config = load_config(config)
        check_actor_classes(self.config)
        self._proc: subprocess.Popen[bytes] | None = None
        #: where the started node's processes listen (None: not started, or stopped with
        #: its temporary socket directory gone)
        self._layout: NodeLayout | None = None
        self._last_layout: NodeLayout | None = None     # a restart keeps its chosen ports
        #: the gateway's HTTP address, kept after a stop (None: never started, no gateway)
        self._gateway_listen: str | None = None
        #: the node's metrics listener's address, kept after a stop (None: none)
        self._metrics_listen: str | None = None
        self._client: Client | None = None
        self._reports: int | None = None     # pipe: why the supervisor stopped the node
        self._report = ""

    @property
    def endpoint(self) -> str:
        """The router's endpoint: give it to ``actorsys.connect`` in any process."""
        if self._layout is not None:
            return self._layout.router
        if self.config.endpoint is None:
            raise NodeUnavailable("node is not started")
        return self.config.endpoint

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL (``http://HOST:PORT``), once started with a ``[gateway]``."""
        if self._gateway_listen is None:
            raise NodeUnavailable("this node has no gateway, or is not started")
        return "http://" + self._gateway_listen

    @property
    def metrics_url(self) -> str:
        """The node's Prometheus endpoint (``http://HOST:PORT/metrics``), once started with
        ``[node] metrics``."""
        if self._metrics_listen is None:
            raise NodeUnavailable("this node has no metrics listener ([node] metrics), or is "
                                  "not started")
        return f"http://{self._metrics_listen}/metrics"

    @property
    def pid(self) -> int | None:
        """The node supervisor's pid."""
        return self._proc.pid if self._proc else None

    def start(self) -> "Node":
        if self._proc is not None:
            return self
        self._layout = layout = plan_layout(self.config, self._last_layout)
        self._last_layout = layout
        self._gateway_listen = layout.gateway_listen
        self._metrics_listen = layout.metrics_listen
        try:
            for fd in claim_node(self.config, layout):  # a clear error now; the supervisor holds the locks
                os.close(fd)
        except BaseException:
            self._forget_layout()
            raise
        self._report = ""
        self._reports, report_w = os.pipe()
        os.set_blocking(self._reports, False)
        # (ACTORSYS_LOG_LEVEL and ACTORSYS_LOG_JSON go with the environment: the node logs
        # as asked)
        cmd, env = supervisor_command(self.config, layout, "--watch-parent", str(os.getpid()),
                                      "--report-fd", str(report_w))
        try:
            self._proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, pass_fds=(report_w,))
        finally:
            os.close(report_w)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise NodeUnavailable(f"node supervisor exited with status {self._proc.returncode} "
                                      f"during start ({self._failure() or 'see its messages above'})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeUnavailable(f"node did not become ready within {self.config.start_timeout:g} s")
            try:
                key, server_key = self._keys()
                client = connect(self.endpoint, connect_timeout=min(remaining, 1.0),
                                 timeout=self.config.ask_timeout, key=key, server_key=server_key)
            except NodeUnavailable:
                continue
            try:
                # a short wait per round, so a supervisor that gives up is noticed above
                client.ping_workers(timeout=min(max(deadline - time.monotonic(), 0.1), 1.0))
                processes = client.status()["processes"]
                supervisor = next((p["pid"] for p in processes if p["role"] == "supervisor"), None)
                tree = next((p for p in processes if p["role"] == "tree"), None)
                # standby: a cluster's tree held by another node; forming: a cluster's
                # holder waiting for the shards to have owners (bootstrap_expect)
                if self.config.supervisors and (tree is None or tree.get("state") not in
                                                ("running", "standby", "forming")):
                    client.close()
                    time.sleep(0.02)      # the tree is still starting its children
                    continue
                gateway = next((p for p in processes if p["role"] == "gateway"), None)
                if self.config.gateway is not None and not (gateway and gateway["up"]):
                    client.close()
                    time.sleep(0.02)      # the gateway is still starting
                    continue
            except NodeUnavailable as exc:
                client.close()
                if time.monotonic() >= deadline:
                    raise NodeUnavailable(f"node did not become ready within "
                                          f"{self.config.start_timeout:g} s ({exc})") from None
                continue
            except BaseException:
                client.close()
                raise
            if self._proc is not None and supervisor != self._proc.pid:
                client.close()
                raise NodeUnavailable(f"{self.endpoint} is served by another node "
                                      f"(supervisor pid {supervisor})")
            # not kept as client(): its connect_timeout of at most 1 s would also be how
            # long that client tolerates an unreachable node (see actorsys/client/reachability.py)
            client.close()
            return

    def _failure(self) -> str | None:
        """Why the node stopped by itself (its supervisor's report, or the supervision
        tree's failure file), if it did."""
        if self._reports is not None:
            try:
                self._report += os.read(self._reports, 65536).decode("utf-8", "replace")
            except OSError:
                pass
        if self._report:
            return self._report
        try:
            with open(os.path.join(self.config.data_dir, FAILURE_FILE)) as f:
                return f.read()
        except OSError:
            return None

    def wait(self, timeout: float) -> int:
        """Wait until the node stops by itself (a supervision tree that gave up or shut
        down); returns the node supervisor's exit status. NodeUnavailable at the deadline."""
        if self._proc is None:
            raise NodeUnavailable("node is not started")
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise NodeUnavailable(f"node still running after {timeout:g} s") from None

    @property
    def failure(self) -> str | None:
        """Why the supervision tree stopped the node (a top-level supervisor failed), or None."""
        return self._failure()

    def _keys(self) -> tuple[str | None, str | None]:
        """``(key, server_key)`` to connect with: the node's own key pair (tcp with
        CURVE), which the node lets in; ``(None, None)`` otherwise."""
        secret = self.config.curve_secret_key
        if secret is None or not self.endpoint.startswith("tcp://"):
            return None, None
        return secret, secret

    def client(self) -> Client:
        """A blocking client of this node (one shared client per Node); on a tcp node
        with CURVE it uses the node's own key pair."""
        if self._client is None:
            key, server_key = self._keys()
            self._client = connect(self.endpoint, timeout=self.config.ask_timeout, key=key,
                                   server_key=server_key)
        return self._client

    def status(self) -> dict[str, Any]:
        """``{"processes": [{"role", "pid", "slot", ...}], ...}`` for every process of the node."""
        return self.client().status()

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop the node (SIGTERM to its supervisor; SIGKILL at the deadline). Idempotent."""
        if self._client is not None:
            self._client.close()
            self._client = None
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            timeout = self.config.shutdown_timeout + 6.0 if timeout is None else timeout
            if proc.poll() is None:
                proc.terminate()
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(5)
        if self._reports is not None:
            self._failure()          # keep what it reported for .failure
            os.close(self._reports)
            self._reports = None
        self._forget_layout()
        return code

    def _forget_layout(self) -> None:
        """The node is stopped: its temporary socket directory goes, and its endpoint with
        it (:attr:`gateway_url` keeps the last address)."""
        layout, self._layout = self._layout, None
        if layout is not None and layout.run_dir is not None:
            shutil.rmtree(layout.run_dir, ignore_errors=True)

    def __enter__(self) -> "Node":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
