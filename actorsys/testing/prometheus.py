"""A real Prometheus server for the metrics tests (issue 17): Debian's ``prometheus``
(``/usr/bin/prometheus``, installed by ``scripts/setup-prometheus``), started on
loopback in a directory of its own, scraping the targets it is given every
``interval`` seconds, and gone at the end.

    with Prometheus(tmp_path, ["127.0.0.1:9464"]) as prom:
        prom.query('sum(actorsys_turns_total)')
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..config.layout import free_port
from .servers import Server

PROMETHEUS = os.environ.get("ACTORSYS_PROMETHEUS", "/usr/bin/prometheus")


class Prometheus(Server):
    """One Prometheus scraping ``targets`` (``HOST:PORT``, path ``/metrics``)."""

    name = "prometheus"

    def __init__(self, workdir: str, targets: list[str], interval: float = 1.0,
                 start_timeout: float = 30.0) -> None:
        super().__init__(PROMETHEUS, "scripts/setup-prometheus (Debian's prometheus)", workdir,
                         start_timeout)
        self.targets, self.interval = targets, interval
        self.listen = f"127.0.0.1:{free_port('127.0.0.1')}"
        self.url = f"http://{self.listen}"

    def prepare(self) -> None:
        config = {"global": {"scrape_interval": f"{self.interval:g}s",
                             "scrape_timeout": f"{self.interval:g}s"},
                  "scrape_configs": [{"job_name": "actorsys",
                                      "static_configs": [{"targets": self.targets}]}]}
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            json.dump(config, f)         # (JSON is YAML)

    def command(self) -> list[str]:
        return [PROMETHEUS, f"--config.file={os.path.join(self.dir, 'prometheus.yml')}",
                f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
                f"--web.listen-address={self.listen}", "--log.level=warn"]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """``/api/v1/<path>``'s ``data`` (RuntimeError if Prometheus says it failed)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5.0) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path} failed: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {labels}, "value": [time, "text"]}]``."""
        got: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return got

    def targets_health(self) -> list[dict[str, Any]]:
        """Each active target's ``health`` (up, down, unknown) and ``lastError``."""
        got: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return got
