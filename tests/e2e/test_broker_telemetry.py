"""Real-broker integration: telemetry batches through a topic and a consumer group."""
from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.common.kafka_probe import metadata_roundtrip
from controller.devtools.broker import EmbeddedBroker
from schemas import RequestRecord, TelemetryBatch, TelemetryMessage


def _batch(k: int, n: int = 50) -> TelemetryBatch:
    return TelemetryBatch.from_records(
        [RequestRecord(ts=1_700_000_000 + k + i / n, query_type="code" if i % 3 else "conversation",
                       input_tokens=100 + i, output_tokens=10 + i) for i in range(n)],
        producer=f"p{k}")


async def test_batches_roundtrip_through_consumer_group(broker: str) -> None:
    topic = f"telemetry-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()

    sent = [_batch(k) for k in range(20)]
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        for k, b in enumerate(sent):
            await producer.send_and_wait(topic, b.model_dump_json().encode(), key=str(k).encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, group_id=f"g-{topic}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list[TelemetryBatch] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < len(sent):
                batches = await consumer.getmany(timeout_ms=500)
                for msgs in batches.values():
                    for m in msgs:
                        got.append(TelemetryMessage.model_validate_json(
                            b'{"message":' + m.value + b"}").message)
        await consumer.commit()
    finally:
        await consumer.stop()

    assert sorted(b.producer for b in got) == sorted(b.producer for b in sent)
    assert sum(len(b) for b in got) == 20 * 50
    by_producer = {b.producer: b for b in got}
    assert by_producer["p7"] == sent[7]
    assert list(by_producer["p3"].records())[5].input_tokens == 105


def test_embedded_broker_stops_cleanly() -> None:
    b = EmbeddedBroker().start()
    pid, host, port = b.pid, b.host, b.port
    assert metadata_roundtrip(host, port)
    b.stop()
    assert not b.running
    assert not metadata_roundtrip(host, port, timeout=0.3)
    import os

    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "broker process survived stop()"
