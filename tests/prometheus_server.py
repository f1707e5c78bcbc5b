"""A real Prometheus server for integration tests (the Debian package `prometheus`).

Tests that need one use the `prometheus_server` fixture (tests/conftest.py); it skips, with the
reason, when no `prometheus` binary is on PATH. `./scripts/test` says so before pytest starts, and
`.ci/run` installs the package where apt-get exists.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """One Prometheus process scraping `targets` (host:port strings) every `scrape_interval_s`.

    `query(promql)` runs an instant query and returns the result vector as
    [(labels, value)]; `wait_for(promql, predicate)` polls until the predicate holds.
    """

    def __init__(self, targets: Sequence[str], scrape_interval_s: float = 1.0,
                 metrics_path: str = "/metrics", job: str = "llmfleet",
                 binary: str | None = None) -> None:
        self.binary = binary or shutil.which("prometheus")
        if self.binary is None:
            raise FileNotFoundError("no `prometheus` binary on PATH (Debian: apt-get install -y prometheus)")
        self.targets = list(targets)
        self.scrape_interval_s = scrape_interval_s
        self.metrics_path = metrics_path
        self.job = job
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="llmfleet-prom-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        interval = f"{max(1, int(round(self.scrape_interval_s * 1000)))}ms"
        return json.dumps({  # JSON is YAML
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": self.job, "metrics_path": self.metrics_path,
                                "scrape_interval": interval, "scrape_timeout": interval,
                                "static_configs": [{"targets": self.targets}]}],
        })

    def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        cfg = self._dir / "prometheus.yml"
        cfg.write_text(self._config())
        log = open(self._dir / "prometheus.log", "wb")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            [self.binary, f"--config.file={cfg}", f"--storage.tsdb.path={self._dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"prometheus not ready within {timeout_s}s: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        p = self._dir / "prometheus.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else ""

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5) as r:
            body: dict[str, Any] = json.loads(r.read())
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(dict(s["metric"]), float(s["value"][1])) for s in data["result"]]

    def targets_up(self) -> dict[str, float]:
        return {labels.get("instance", "?"): v for labels, v in self.query(f'up{{job="{self.job}"}}')}

    def wait_for(self, promql: str, predicate: Any, timeout_s: float = 30.0,
                 poll_s: float = 0.5) -> list[tuple[dict[str, str], float]]:
        """Poll `promql` until `predicate(result)` is true; the last result on timeout is in the error."""
        deadline = time.monotonic() + timeout_s
        last: list[tuple[dict[str, str], float]] = []
        while time.monotonic() < deadline:
            last = self.query(promql)
            if predicate(last):
                return last
            time.sleep(poll_s)
        raise TimeoutError(f"{promql!r} did not satisfy the condition in {timeout_s}s; last: {last}; "
                           f"targets up: {self.targets_up()}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
