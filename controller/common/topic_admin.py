"""Create llmfleet's topics with the right partition counts (and compaction where it helps).

Faust refuses a table whose changelog and source topic disagree on partitions, and a broker
may auto-create topics with its own default, so every topic is created up front.
"""
from __future__ import annotations

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from controller.common.settings import Settings

log = structlog.get_logger()


def topic_plan(s: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """name -> (partitions, config). Allocations are compacted: a new router gets the latest plan."""
    t = s.topics
    compact = {"cleanup.policy": "compact"}
    return {
        t.telemetry: (s.telemetry_partitions, {}),
        t.windows: (s.windows_partitions, {}),
        t.demand: (1, {}),
        t.allocations: (1, compact),
        t.shadow_allocations: (1, compact),
        t.audit_requests: (2, {}),
        t.audits: (s.windows_partitions, {}),
        t.dlq: (1, {}),
        t.trace: (1, {}),
        t.requests: (s.telemetry_partitions, {}),
        t.fleet_status: (1, compact),
    }


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, in order (partition 0 alone when the broker does not know
    it): fetches metadata of all topics first, since a consumer without a subscription has none."""
    await consumer.topics()
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]


async def ensure_topics(s: Settings, bootstrap: str) -> list[str]:
    """Create missing topics; retries without configs if the broker rejects them (tansu)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    created = []
    try:
        existing = set(await admin.list_topics())
        plan = topic_plan(s)
        await _report_width_mismatches(admin, {n: p for n, (p, _) in plan.items() if n in existing})
        for name, (parts, cfg) in plan.items():
            if name in existing:
                continue
            for config in (cfg, {}):
                try:
                    await admin.create_topics([NewTopic(name, parts, 1, topic_configs=config)])
                    created.append(name)
                    break
                except TopicAlreadyExistsError:
                    break
                except Exception as exc:  # broker without compaction support
                    if not config:
                        raise
                    log.warning("topics.config_rejected", topic=name, config=config, error=str(exc))
    finally:
        await admin.close()
    if created:
        log.info("topics.created", topics=created)
    return created


async def _report_width_mismatches(admin: AIOKafkaAdminClient, planned: dict[str, int]) -> None:
    """Warn about existing topics whose partition count differs from the plan.

    Nothing is changed: repartitioning a live topic reorders keys, which is the operator's
    call. llmfleet copes with a wider output topic (a fleet's messages share a key, and a new
    leader reads every partition for the last epoch and window); a telemetry topic that differs
    from `telemetry_partitions` is what faust's table co-partitioning cannot take."""
    if not planned:
        return
    try:
        descs = await admin.describe_topics(sorted(planned))
    except Exception as exc:  # a diagnostic: never the reason a worker does not start
        log.warning("topics.describe_failed", topics=sorted(planned), error=str(exc))
        return
    for desc in descs:
        name, actual = desc.get("topic"), len(desc.get("partitions") or [])
        if name in planned and actual and actual != planned[name]:
            log.warning("topics.partitions_differ", topic=name, planned=planned[name], actual=actual,
                        hint="created earlier by broker auto-creation or by hand; see docs/deploy.md")
