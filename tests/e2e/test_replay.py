"""Trace replay against the real embedded broker: files -> telemetry, and via a trace topic."""
from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import defaultdict

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.replay.replay import load_trace_topic, publish, replay_from_topic
from controller.replay.trace_reader import Chunk, TraceOptions, bundled_sources, read_trace
from schemas import TelemetryBatch

pytestmark = pytest.mark.broker

LIMIT = 2500


async def _topic(broker: str, partitions: int) -> str:
    name = f"replay-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def _consume(broker: str, topic: str, records: int) -> dict[int, list[TelemetryBatch]]:
    """Batches per partition, in offset order, until `records` records arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest",
                                enable_auto_commit=False)  # no group: no rebalance wait
    await consumer.start()
    got: dict[int, list[TelemetryBatch]] = defaultdict(list)
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with asyncio.timeout(15):
            while sum(len(b) for bs in got.values() for b in bs) < records:
                for tp, msgs in (await consumer.getmany(timeout_ms=300)).items():
                    got[tp.partition] += [TelemetryBatch.model_validate_json(m.value) for m in msgs]
    finally:
        await consumer.stop()
    return got


def _rows(batches) -> list[tuple[float, int, int, str | None]]:
    return sorted((t, i, o, q) for b in batches
                  for t, i, o, q in zip(b.ts, b.input_tokens, b.output_tokens, b.query_type, strict=True))


def _expected(**opts: object) -> Chunk:
    return Chunk.concat(list(read_trace(bundled_sources(), TraceOptions(limit=LIMIT, **opts))))  # type: ignore[arg-type]


async def test_replay_bundled_slice_to_telemetry(broker: str) -> None:
    topic = await _topic(broker, 4)
    start = time.time()
    opts = TraceOptions(limit=LIMIT, start=start)
    stats = await publish(read_trace(bundled_sources(), opts), bootstrap_servers=broker, topic=topic,
                          pace=math.inf, progress=False)
    assert stats.records == LIMIT
    got = await _consume(broker, topic, LIMIT)
    assert set(got) == {0, 1, 2, 3}  # round robin reaches every partition
    batches = [b for bs in got.values() for b in bs]
    exp = _expected(start=start)
    assert sum(len(b) for b in batches) == LIMIT
    assert sum(sum(b.input_tokens) for b in batches) == int(exp.input_tokens.sum())
    assert sum(sum(b.output_tokens) for b in batches) == int(exp.output_tokens.sum())
    assert _rows(batches) == sorted(zip(exp.ts.tolist(), exp.input_tokens.tolist(),
                                        exp.output_tokens.tolist(), exp.query_type.tolist(), strict=True))
    for bs in got.values():  # event-time order within each partition
        ts = [t for b in bs for t in b.ts]
        assert ts == sorted(ts)
    assert min(min(b.ts) for b in batches) == start


async def test_trace_topic_load_once_then_replay(broker: str) -> None:
    trace_topic, telemetry = await _topic(broker, 1), await _topic(broker, 3)
    loaded = await load_trace_topic(read_trace(bundled_sources(), TraceOptions(limit=LIMIT)),
                                    bootstrap_servers=broker, topic=trace_topic, progress=False)
    assert loaded.loaded and loaded.records == LIMIT
    again = await load_trace_topic(read_trace(bundled_sources(), TraceOptions(limit=LIMIT)),
                                   bootstrap_servers=broker, topic=trace_topic, progress=False)
    assert not again.loaded  # written once

    stats = await replay_from_topic(bootstrap_servers=broker, trace_topic=trace_topic, topic=telemetry,
                                    pace=math.inf, key_by="query_type", progress=False)
    assert stats.records == LIMIT
    got = await _consume(broker, telemetry, LIMIT)
    batches = [b for bs in got.values() for b in bs]
    exp = _expected()
    assert _rows(batches) == sorted(zip(exp.ts.tolist(), exp.input_tokens.tolist(),
                                        exp.output_tokens.tolist(), exp.query_type.tolist(), strict=True))
    for bs in got.values():
        ts = [t for b in bs for t in b.ts]
        assert ts == sorted(ts)
        assert all(len(set(b.query_type)) == 1 for b in bs)


async def test_replay_from_topic_paces_and_rebases(broker: str) -> None:
    trace_topic, telemetry = await _topic(broker, 1), await _topic(broker, 2)
    await load_trace_topic(read_trace(bundled_sources(), TraceOptions(limit=300)),
                           bootstrap_servers=broker, topic=trace_topic, progress=False)
    exp = Chunk.concat(list(read_trace(bundled_sources(), TraceOptions(limit=300))))
    span = float(exp.ts[-1] - exp.ts[0])
    speed = span / 1.0  # one second of wall time
    t0 = time.monotonic()
    stats = await replay_from_topic(bootstrap_servers=broker, trace_topic=trace_topic, topic=telemetry,
                                    speed=speed, start=1_000_000.0, progress=False)
    wall = time.monotonic() - t0
    assert stats.records == 300 and stats.first_ts == 1_000_000.0
    assert stats.last_ts == pytest.approx(1_000_000.0 + 1.0, abs=1e-3)
    assert 0.9 <= wall < 5.0  # held back until event time / pace
    got = await _consume(broker, telemetry, 300)
    ts = np.sort([t for bs in got.values() for b in bs for t in b.ts])
    np.testing.assert_allclose(ts - 1_000_000.0, (exp.ts - exp.ts[0]) / speed, atol=1e-6)
