"""A new leader finds the last epoch and window on the topics without reading them whole."""
from __future__ import annotations

import json
import uuid

import pytest

from controller.worker import recovery
from controller.common.settings import Settings
from controller.common.topic_admin import ensure_topics
from tests.e2e.harness import produce

pytestmark = pytest.mark.broker


async def test_last_published_reads_the_tail_and_falls_back_to_the_whole_topic(
        broker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(bootstrap_servers=broker, web_port=0, fleet_id="mine",
                 topics={"allocations": f"sync-{uuid.uuid4().hex[:8]}.allocations"})
    await ensure_topics(s, broker)
    starts: list[int] = []
    scan = recovery._scan_for_highest

    async def recording(c, tp, start, end, field, fleet_id):  # type: ignore[no-untyped-def]
        starts.append(start)
        return await scan(c, tp, start, end, field, fleet_id)

    monkeypatch.setattr(recovery, "_scan_for_highest", recording)
    topic = s.topics.allocations
    n = recovery.LAST_PUBLISHED_TAIL + 200
    ours = [json.dumps({"fleet_id": "mine", "epoch": k}).encode() for k in range(1, 6)]
    others = [json.dumps({"fleet_id": "other", "epoch": k}).encode() for k in range(1, n)]
    await produce(broker, topic, ours + others, partitions=1)
    # the tail holds only the other fleet's events: the whole topic is read
    found = await recovery.last_published(broker, topic, "epoch", "mine")
    assert found is not None and found["epoch"] == 5 and found["fleet_id"] == "mine"
    assert starts[-1] == 0 and len(starts) == 2 and starts[0] > 0
    starts.clear()
    await produce(broker, topic, [json.dumps({"fleet_id": "mine", "epoch": 6}).encode(), b"{not json"],
                  partitions=1)
    found = await recovery.last_published(broker, topic, "epoch", "mine")
    assert found is not None and found["epoch"] == 6
    assert len(starts) == 1 and starts[0] > 0, "found in the tail: the topic is not read whole"


async def test_last_published_reads_every_partition_of_a_wider_topic(broker: str) -> None:
    """A demand topic auto-created by a consumer that subscribed before the workers has the
    broker's default width; the fleet's windows then sit on whichever partition its key hashes
    to, and a new leader must still find the last one (else it publishes that window again)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    s = Settings(bootstrap_servers=broker, web_port=0, fleet_id="mine",
                 topics={"demand": f"sync-{uuid.uuid4().hex[:8]}.demand"})
    topic = s.topics.demand
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        await admin.close()
    # produce() spreads round-robin: partition k % 4. Ours land on partitions 1 and 3,
    # the highest window end on 3; another fleet's later windows on 0 and 2.
    msgs = []
    for k in range(8):
        fleet, end = ("mine", 10.0 * k) if k % 2 else ("other", 1000.0 + k)
        msgs.append(json.dumps({"fleet_id": fleet, "window_end": end}).encode())
    await produce(broker, topic, msgs, partitions=4)
    found = await recovery.last_published(broker, topic, "window_end", "mine")
    assert found is not None and found["fleet_id"] == "mine" and found["window_end"] == 70.0


async def test_ensure_topics_reports_a_topic_of_another_width_and_leaves_it(broker: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from structlog.testing import capture_logs

    from controller.common.settings import Topics

    tag = uuid.uuid4().hex[:8]
    s = Settings(bootstrap_servers=broker, web_port=0,
                 topics=Topics(**{f: f"width-{tag}.{f}" for f in Topics.model_fields}))
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(s.topics.demand, 3, 1)])
        with capture_logs() as logs:
            await ensure_topics(s, broker)
        (desc,) = await admin.describe_topics([s.topics.demand])
    finally:
        await admin.close()
    differ = [e for e in logs if e["event"] == "topics.partitions_differ"]
    assert [(e["topic"], e["planned"], e["actual"]) for e in differ] == [(s.topics.demand, 1, 3)], \
        "only the demand topic, created 3 wide before, differs; the others were created now"
    assert len(desc["partitions"]) == 3, "the existing topic is left as it is"
