"""Scenario 7: a hostile producer, written with another Kafka client, next to a replayed trace.

The bundled trace is replayed as `llmfleet replay` cuts it (controller.replay.replay.Slicer, aiokafka).
Between its messages an outside client on confluent-kafka (librdkafka) writes to the same
partitions: far-future, 1e308, 0 and 1970 times, forged ticks (the bare form that used to close
windows early, and one with a bad signature), token counts as a string and a boolean, one
record sent three times with the same request_id, and batches of ten with one bad record.

Pass: the worker's /metrics answers throughout; windows keep closing from traffic alone (no
tick until the very end); every good record is counted exactly once and none is late; every
bad record is in the DLQ, matched by partition, offset and record index, with its reason; the
worker's memory stays bounded.
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

from controller.replay import trace_reader as tr
from controller.devtools.broker import free_port
from controller.replay.replay import Slicer
from controller.common.topic_admin import ensure_topics
from schemas import DeadLetter
from tests.e2e.harness import Cluster, collect
from tests.reliability.conftest import Figures, scaled
from tests.reliability.test_load import rss_mb

pytestmark = pytest.mark.broker
PARTITIONS = 4
GOOD = {"query_type": "code", "input_tokens": 900, "output_tokens": 20}


def _rec(ts: float, **kw: Any) -> bytes:
    return json.dumps({"kind": "request", "ts": ts, **GOOD, **kw}).encode()


def _one_bad_batch(ts: float) -> bytes:
    n = 10
    return json.dumps({"kind": "batch", "producer": "hostile", "ts": [ts] * n, "query_type": ["conversation"] * n,
                       "input_tokens": [500] * 4 + [-1] + [500] * 5, "output_tokens": [100] * n}).encode()


# kind -> (message for round r at event time t on partition p, reason predicate)
BAD: dict[str, tuple[Callable[[int, float, int], bytes], Callable[[str], bool]]] = {
    "year_2100": (lambda r, t, p: _rec(4_102_444_800.0), lambda s: "too far ahead of the worker's clock" in s),
    "ts_1e308": (lambda r, t, p: _rec(1e308), lambda s: "too far ahead of the worker's clock" in s),
    "ts_zero": (lambda r, t, p: _rec(0.0), lambda s: "before min_event_ts" in s),
    "ts_1970": (lambda r, t, p: _rec(86_400.0), lambda s: "before min_event_ts" in s),
    "bare_tick": (lambda r, t, p: json.dumps({"kind": "tick", "wm": t + 3600}).encode(),
                  lambda s: s.startswith("malformed tick")),
    "forged_tick": (lambda r, t, p: json.dumps({"kind": "tick", "partition": p, "wm": t + 600,
                                                "sig": f"{r:064x}"}).encode(), lambda s: s.startswith("forged tick")),
    "tokens_string": (lambda r, t, p: _rec(t, input_tokens="123"), lambda s: "input_tokens" in s),
    "tokens_bool": (lambda r, t, p: _rec(t, output_tokens=True), lambda s: "output_tokens" in s),
}


class Hostile:
    """The outside client: confluent-kafka, recording where each message landed."""

    def __init__(self, bootstrap: str) -> None:
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "linger.ms": 0,
                           "message.max.bytes": 2_000_000, "client.id": "hostile"})
        self.landed: list[tuple[str, int, int]] = []  # (kind, partition, offset)
        self.errors: list[str] = []

    def send(self, topic: str, kind: str, value: bytes, partition: int) -> None:
        def done(err: Any, msg: Any) -> None:
            if err is not None:
                self.errors.append(str(err))
            else:
                self.landed.append((kind, msg.partition(), msg.offset()))
        self.p.produce(topic, value=value, partition=partition, on_delivery=done)

    def flush(self) -> None:
        left = self.p.flush(30)
        assert left == 0, f"{left} hostile messages not delivered"


class MetricsProbe:
    """Polls /metrics every 0.5 s in a thread: answered, failed, slowest answer."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.ok = self.failed = 0
        self.slowest = 0.0
        self.last = ""
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    self.last = r.read().decode()
                self.ok += 1
                self.slowest = max(self.slowest, time.perf_counter() - t)
            except OSError:
                self.failed += 1

    def __enter__(self) -> MetricsProbe:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(10)

    def value(self, name: str) -> float:
        m = re.search(rf"^{name} ([0-9.e+]+)$", self.last, re.M)
        return float(m.group(1)) if m else float("nan")


async def test_hostile_producer_cannot_wedge_poison_or_steer(broker: str, tmp_path: Path, figures: Figures) -> None:
    loops, every = int(scaled(1, 3)), int(scaled(6, 4))  # a hostile round after every `every` replay messages
    port = free_port()
    c = Cluster(broker, tmp_path)
    t = c.topics
    await ensure_topics(c.settings, broker)
    w = c.start_worker(LLMFLEET_WEB_PORT=str(port))
    window_s = float(c.env["LLMFLEET_WINDOW_S"])
    hostile = Hostile(broker)
    prod = AIOKafkaProducer(bootstrap_servers=broker, max_request_size=2_000_000)
    await prod.start()
    rss: list[tuple[float, float]] = []
    try:
        for _ in range(120):  # the worker's web server is up (it consumes from the earliest offset)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
                    break
            except OSError:
                await asyncio.sleep(0.5)
        rss0 = rss_mb(w.pid)
        slicer = Slicer(max_records=1000, slice_s=1.0, partitions=PARTITIONS)
        replayed = rounds = 0
        expected_letters: dict[tuple[int, int, int | None], tuple[str, Callable[[str], bool]]] = {}
        t_start = time.monotonic()
        with MetricsProbe(port) as probe:
            chunks = tr.read_trace(tr.bundled_sources(), tr.TraceOptions(loop=loops))
            last_t = 0.0
            for chunk in chunks:
                for k, m in enumerate(slicer.push(chunk)):
                    await prod.send_and_wait(t.telemetry, m.value, key=m.key, partition=m.partition)
                    replayed += m.records
                    last_t = m.t_last
                    if k % every:
                        continue
                    p, r = int(m.partition or 0), rounds
                    rounds += 1
                    for kind, (make, _) in BAD.items():
                        hostile.send(t.telemetry, kind, make(r, m.t_last, p), p)
                    for _ in range(3):  # a producer's retries: counted once
                        hostile.send(t.telemetry, "duplicate", _rec(m.t_last, request_id=f"retry-{r}"), p)
                    hostile.send(t.telemetry, "one_bad_batch", _one_bad_batch(m.t_last), p)
                    hostile.send(t.telemetry, "untyped", _rec(m.t_last, query_type=None), p)
                    await asyncio.to_thread(hostile.flush)  # stays in order with the replay on p
                    if rounds % 20 == 0:
                        rss.append((time.monotonic() - t_start, rss_mb(w.pid)))
            for m in slicer.flush():
                await prod.send_and_wait(t.telemetry, m.value, key=m.key, partition=m.partition)
                replayed += m.records
                last_t = max(last_t, m.t_last)
            replay_s = time.monotonic() - t_start
            assert not hostile.errors, hostile.errors[:3]
            # windows keep closing from traffic alone: before any real tick, the windows up to
            # the replay's end (less the last partition's open ones) come out
            mid = await collect(broker, [t.demand], lambda g: any(
                d["window_end"] >= last_t - 3 * window_s for d in g[t.demand]), timeout=scaled(90, 900))
            caught_up_s = time.monotonic() - t_start - replay_s
            top = max((d["window_end"] for d in mid[t.demand]), default=None)
            assert top is not None and top >= last_t - 3 * window_s, (
                f"windows stopped closing: newest window end {top}, replay's last record {last_t}, "
                f"{len(mid[t.demand])} windows\n{c.logs()[-2000:]}")
            windows_before_tick = len(mid[t.demand])
            await prod.send_and_wait(t.telemetry, c.tick(0, last_t + 60), partition=0)  # the worker's own key
            for part in range(1, PARTITIONS):
                await prod.send_and_wait(t.telemetry, c.tick(part, last_t + 60), partition=part)

            good = replayed + rounds * (1 + 9 + 1)
            for kind, part, off in hostile.landed:
                if kind in BAD:
                    expected_letters[(part, off, None)] = (kind, BAD[kind][1])
                elif kind == "one_bad_batch":
                    expected_letters[(part, off, 4)] = (kind, lambda s: "input_tokens" in s)
            got = await collect(broker, [t.demand, t.dlq], lambda g: sum(d["records"] for d in g[t.demand]) >= good
                                and len(g[t.dlq]) >= len(expected_letters), timeout=scaled(120, 400))
            await asyncio.sleep(1.5)  # one more /metrics answer after the last window
        counted = sum(d["records"] for d in got[t.demand])
        late = sum(d["late_records"] for d in got[t.demand])
        letters = [DeadLetter.model_validate(d) for d in got[t.dlq]]
        by_pos = {(d.partition, d.offset, d.record_index): d for d in letters}
        assert len(by_pos) == len(letters), "one dead letter per bad record"
        missing = set(expected_letters) - set(by_pos)
        extra = set(by_pos) - set(expected_letters)
        assert not missing, f"{len(missing)} bad records never reached the DLQ\n{c.logs()[-3000:]}"
        assert not extra, f"good records dead-lettered: {[by_pos[k].reason for k in list(extra)[:5]]}"
        wrong = [(kind, by_pos[pos].reason) for pos, (kind, ok) in expected_letters.items() if not ok(by_pos[pos].reason)]
        assert not wrong, wrong[:5]
        assert counted == good, f"good records counted {counted} != sent {good}"
        assert late == 0, "a forged tick closed a window early (its records came late)"
        assert probe.failed == 0 and probe.ok >= 3, (probe.ok, probe.failed)
        assert probe.value("llmfleet_records_duplicate_total") == 2 * rounds
        rss_end = rss_mb(w.pid)
        assert rss_end < rss0 + 300, f"worker RSS grew from {rss0:.0f} to {rss_end:.0f} MB"
        assert w.poll() is None, c.logs()

        figures.add("replayed trace records", replayed, note=f"bundled trace x{loops}, {replay_s:.1f} s")
        figures.add("hostile rounds", rounds, note="each: " + ", ".join(BAD) + ", 3x duplicate, "
                    "one-bad-record batch of 10, untyped record; confluent-kafka client")
        figures.add("good records counted", f"{counted} of {good}", note="exactly once; 0 late")
        figures.add("bad records in the DLQ", f"{len(expected_letters)} of {len(expected_letters)}",
                    note="matched by partition, offset and record index; every reason names the fault")
        figures.add("duplicates dropped", int(probe.value("llmfleet_records_duplicate_total")))
        figures.add("windows closed before the final tick", windows_before_tick,
                    note=f"traffic alone closed them; the last one {caught_up_s:.1f} s after the replay's end; "
                         "forged ticks were dead-lettered")
        figures.add("/metrics answered", f"{probe.ok} of {probe.ok + probe.failed}",
                    note=f"slowest {probe.slowest * 1e3:.0f} ms")
        figures.add("worker RSS", f"{rss0:.0f} -> {rss_end:.0f}", "MB",
                    note=f"max {max([v for _, v in rss] + [rss_end]):.0f} MB during the run")
    finally:
        await prod.stop()
        c.close()
