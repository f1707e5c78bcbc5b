"""Feed a Router from the allocations topic (aiokafka, no consumer group).

Group-less on purpose: every router instance must see every plan, and reading from the
beginning of the (compacted, fleet-keyed) topic gives a freshly started router the latest
plan without coordination. The epoch rule in `Router.apply` makes replays harmless.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas import AllocationEvent, FleetStatus

from controller.common.async_tasks import cancel_and_wait
from controller.router.core import Router

log = structlog.get_logger()

DEFAULT_ALLOCATIONS_TOPIC = "llmfleet.allocations"  # controller.common.settings.Topics().allocations


class RouterService:
    """Consume allocation events into `router`; `stop()` ends the task and closes the consumer.

    `on_applied` callbacks run (synchronously, in the consumer task) after an event changed
    the plan in force. `caught_up` is set once the consumer reached the end offsets it saw
    at start, i.e. the router holds the latest published plan.
    """

    def __init__(self, bootstrap_servers: str, router: Router | None = None,
                 topic: str = DEFAULT_ALLOCATIONS_TOPIC, *, poll_timeout_ms: int = 200,
                 client_id: str = "llmfleet-router",
                 on_applied: list[Callable[[AllocationEvent], None]] | None = None,
                 status_topic: str | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.router = router or Router()
        self.topic = topic
        self.status_topic = status_topic   # fleets' readiness (schemas.FleetStatus); None: plan only
        self.poll_timeout_ms = poll_timeout_ms
        self.client_id = client_id
        self.on_applied = list(on_applied or [])
        self.invalid_events = 0
        self.consumed = 0
        self.caught_up = asyncio.Event()
        self._changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._end: dict[TopicPartition, int] | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        topics = [self.topic] + ([self.status_topic] if self.status_topic else [])
        self._consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=self.bootstrap_servers, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False, client_id=self.client_id)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"router-service:{self.topic}")
        log.info("router_service.started", topic=self.topic)

    async def reconnect(self) -> None:
        """Read the topic afresh with a new consumer, keeping the plan in force: after the broker
        came back as another cluster, the old consumer's positions belong to a log that is gone
        (and an empty broker need not report them out of range)."""
        await self.stop()
        self._end = None
        await self.start()
        log.info("router_service.reconnected", topic=self.topic, epochs={
            f: self.router.epoch(f) for f in self.router.fleets})

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
            log.info("router_service.stopped", topic=self.topic, consumed=self.consumed)

    async def __aenter__(self) -> RouterService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_caught_up(self, timeout: float = 10.0) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.caught_up.wait()
        return self.caught_up.is_set()

    async def wait_for_epoch(self, epoch: int, fleet_id: str | None = None,
                             timeout: float = 10.0) -> bool:
        """True once the epoch in force for the fleet is at least `epoch`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.router.epoch(fleet_id) >= epoch)
        return self.router.epoch(fleet_id) >= epoch

    def metrics(self) -> dict[str, Any]:
        return {**self.router.metrics(), "consumed": self.consumed,
                "invalid_events": self.invalid_events, "caught_up": self.caught_up.is_set()}

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            batches = await consumer.getmany(timeout_ms=self.poll_timeout_ms)
            changed = False
            for msgs in batches.values():
                for m in msgs:
                    self.consumed += 1
                    if m.topic == self.status_topic and m.topic != self.topic:
                        self._status(m.value, m.partition, m.offset)
                    else:
                        changed |= self._apply(m.value, m.partition, m.offset)
            if changed:
                async with self._changed:
                    self._changed.notify_all()
            if not self.caught_up.is_set():
                await self._check_caught_up(consumer)

    def _parse(self, model: Any, raw: bytes | None, partition: int, offset: int) -> Any:
        """`raw` as `model`; None for a tombstone or an invalid message (counted and logged)."""
        if raw is None:  # compaction tombstone
            return None
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            self.invalid_events += 1
            log.warning("router_service.invalid_message", kind=model.__name__, partition=partition, offset=offset,
                        errors=exc.error_count())
            return None

    def _status(self, raw: bytes | None, partition: int, offset: int) -> None:
        """A fleet's readiness report: route only to ready replicas (Router.set_status)."""
        status = self._parse(FleetStatus, raw, partition, offset)
        if status is not None:
            self.router.set_status(status)

    def _apply(self, raw: bytes | None, partition: int, offset: int) -> bool:
        event = self._parse(AllocationEvent, raw, partition, offset)
        if event is None:
            return False
        if not self.router.apply(event):
            return False
        for cb in self.on_applied:
            try:
                cb(event)
            except Exception:  # a faulty callback must not stop plan updates
                log.exception("router_service.callback_failed", epoch=event.epoch)
        return True

    async def _check_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        parts = consumer.assignment()
        if not parts:
            if self.topic not in await consumer.topics():
                self.caught_up.set()  # no such topic yet: the router is as current as it gets
            return
        if self._end is None:
            self._end = await consumer.end_offsets(list(parts))
        for tp, end in self._end.items():
            if await consumer.position(tp) < end:
                return
        self.caught_up.set()
        log.info("router_service.caught_up", topic=self.topic, epochs={
            f: self.router.epoch(f) for f in self.router.fleets})
