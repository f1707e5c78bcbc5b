"""A new leader finds the last epoch and window on the topics without reading them whole."""
from __future__ import annotations

import json
import uuid

import pytest

from controller import app as app_module
from controller.app import Controller
from controller.settings import Settings
from controller.topic_admin import ensure_topics
from tests.e2e.harness import produce

pytestmark = pytest.mark.broker


async def test_last_published_reads_the_tail_and_falls_back_to_the_whole_topic(broker: str) -> None:
    s = Settings(bootstrap_servers=broker, web_port=0, fleet_id="mine",
                 topics={"allocations": f"sync-{uuid.uuid4().hex[:8]}.allocations"})
    await ensure_topics(s, broker)
    ctl = Controller(s)
    starts: list[int] = []
    scan = ctl._scan_for_highest

    async def recording(c, tp, start, end, field):  # type: ignore[no-untyped-def]
        starts.append(start)
        return await scan(c, tp, start, end, field)

    ctl._scan_for_highest = recording  # type: ignore[method-assign]
    topic = s.topics.allocations
    n = app_module.LAST_PUBLISHED_TAIL + 200
    ours = [json.dumps({"fleet_id": "mine", "epoch": k}).encode() for k in range(1, 6)]
    others = [json.dumps({"fleet_id": "other", "epoch": k}).encode() for k in range(1, n)]
    await produce(broker, topic, ours + others, partitions=1)
    # the tail holds only the other fleet's events: the whole topic is read
    found = await ctl._last_published(topic, "epoch")
    assert found is not None and found["epoch"] == 5 and found["fleet_id"] == "mine"
    assert starts[-1] == 0 and len(starts) == 2 and starts[0] > 0
    starts.clear()
    await produce(broker, topic, [json.dumps({"fleet_id": "mine", "epoch": 6}).encode(), b"{not json"],
                  partitions=1)
    found = await ctl._last_published(topic, "epoch")
    assert found is not None and found["epoch"] == 6
    assert len(starts) == 1 and starts[0] > 0, "found in the tail: the topic is not read whole"
