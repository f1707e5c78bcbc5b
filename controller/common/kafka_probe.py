"""Who is the broker: a Kafka Metadata round-trip that every process uses to probe a broker.

The worker's broker watch (controller/common/broker_watch.py) tells a broker that came back
empty from one that was only unreachable by its cluster id; the embedded broker
(controller/devtools/broker.py) is ready once it answers. A plain socket request keeps the
probe independent of the Kafka clients' own reconnect logic.
"""
from __future__ import annotations

import socket
import struct

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
