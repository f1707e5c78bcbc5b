"""Closed loop: request records in -> Router -> FleetSimulator -> observed telemetry out.

`ClosedLoop` is the pure part (no I/O): it keeps the simulator on the plan the router has in
force and turns each incoming record into the record a serving fleet would report.
`LoopService` runs it on Kafka: it consumes request telemetry or replayed traces from
`input_topic` and publishes observed `TelemetryBatch` messages to `output_topic`, which must
differ from the input so the loop never feeds on itself. Deployments the plan runs by
gate-and-route also report `IterationBatch` messages (iteration timings) on the output topic,
as their engines would; the controller fits its iteration model to them.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas import FleetStatus, RequestRecord, TelemetryBatch

from controller.common.async_tasks import cancel_and_wait
from controller.sim.fleet_sim import FleetSimulator
from controller.router.core import Router
from controller.router.service import RouterService

log = structlog.get_logger()

Classifier = Callable[[RequestRecord], str | None]


class ClosedLoop:
    """Route and simulate records in event-time order.

    A new epoch reaches the simulator at the event time of the first record processed after
    the router adopted it (plans arrive in wall time; the model runs in event time), with
    its gate-and-route parameters; the router's decode placement goes with each request. The
    first plan is applied warm: the fleet it describes is taken to be running already.
    `process` returns what the simulator knows at once: on a gate-and-route pool, the record
    with outcome None (the finished one comes out of `sim.drain()`).
    """

    def __init__(self, router: Router, sim: FleetSimulator, *, fleet_id: str | None = None,
                 classifier: Classifier | None = None, report_status: bool = True) -> None:
        self.router = router
        self.sim = sim
        self.fleet_id = fleet_id
        self.classifier = classifier
        self.report_status = report_status
        self.applied_epoch = 0
        self.processed = 0
        self.statuses: list[FleetStatus] = []     # readiness reports not yet published
        self.last_status: FleetStatus | None = None
        self._next_change = math.inf

    def process(self, rec: RequestRecord) -> RequestRecord:
        epoch = self.router.epoch(self.fleet_id)
        if epoch > self.applied_epoch:
            event = self.router.event(self.fleet_id)
            assert event is not None
            self.sim.apply_plan(event.plan, at=rec.ts, warm=self.applied_epoch == 0,
                                gate_route=event.gate_route)
            self.applied_epoch = epoch
            self._status(rec.ts, event.fleet_id)
        elif rec.ts >= self._next_change:
            self._status(rec.ts, None)
        qt = rec.query_type or (self.classifier(rec) if self.classifier else None)
        decision = self.router.decide(qt, self.fleet_id) if qt else None
        self.processed += 1
        if decision is None:
            return self.sim.submit(rec, None, qt)
        return self.sim.submit(rec, decision.deployment, qt, placement=decision.placement)

    def run(self, records: Iterable[RequestRecord]) -> list[RequestRecord]:
        return [self.process(r) for r in records]

    def _status(self, at: float, fleet_id: str | None) -> None:
        """The fleet's readiness at `at`, to the router (and out, as a fleet would report it)."""
        if not self.report_status:
            return
        fid = fleet_id or self.fleet_id or (self.router.event(None).fleet_id  # type: ignore[union-attr]
                                             if self.router.event(None) else "default")
        st = self.sim.status(at, fleet_id=fid, epoch=self.applied_epoch)
        self.router.set_status(st)
        self.statuses.append(st)
        self.last_status = st
        del self.statuses[:-64]
        self._next_change = self.sim.next_change()


def decode_records(raw: bytes | None) -> Iterator[RequestRecord]:
    """Records of one telemetry message (single record or columnar batch); ticks and
    iteration timings yield none."""
    if raw is None:
        return
    head = json.loads(raw)
    kind = head.get("kind") if isinstance(head, dict) else None
    if kind in ("tick", "iterations"):
        return
    if kind == "batch":
        yield from TelemetryBatch.model_validate(head).records()
    elif kind in ("request", None):
        yield RequestRecord.model_validate(head)
    else:
        raise ValueError(f"unknown message kind {kind!r}")


class LoopService:
    """Kafka runner of a ClosedLoop; bounded (one poll of at most `max_poll_records` in flight)
    and stoppable (`stop()` cancels the task, flushes pending telemetry, closes clients).

    With `router_service`, the service owns it (starts and stops it) and waits up to
    `plan_timeout_s` for it to catch up before consuming input, so early records meet the
    latest plan rather than being rejected for lack of one. `group_id` None reads the input
    from `auto_offset_reset` without committing (replays, tests); set it to share the input
    among several loop instances.
    """

    def __init__(self, bootstrap_servers: str, loop: ClosedLoop, input_topic: str,
                 output_topic: str, *, router_service: RouterService | None = None,
                 group_id: str | None = None, auto_offset_reset: str = "earliest",
                 max_poll_records: int = 500, poll_timeout_ms: int = 200,
                 plan_timeout_s: float = 10.0, key: bytes | None = None,
                 status_topic: str | None = None) -> None:
        if input_topic == output_topic:
            raise ValueError("input_topic and output_topic must differ (the loop would feed itself)")
        self.bootstrap_servers = bootstrap_servers
        self.loop = loop
        self.input_topic = input_topic
        self.output_topic = output_topic
        self.router_service = router_service
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.max_poll_records = max_poll_records
        self.poll_timeout_ms = poll_timeout_ms
        self.plan_timeout_s = plan_timeout_s
        self.key = key if key is not None else (loop.fleet_id or "fleet-sim").encode()
        self.status_topic = status_topic
        self.published_statuses = 0
        self.invalid_messages = 0
        self.published_records = 0
        self.published_batches = 0
        self.published_iteration_batches = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()

    async def start(self) -> None:
        if self._task is not None:
            return
        if self.router_service is not None:
            await self.router_service.start()
        await self._start_clients()

    async def _start_clients(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers,
                                          enable_idempotence=False, linger_ms=5)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            self.input_topic, bootstrap_servers=self.bootstrap_servers, group_id=self.group_id,
            auto_offset_reset=self.auto_offset_reset, enable_auto_commit=False,
            max_poll_records=self.max_poll_records)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"loop-service:{self.input_topic}")
        log.info("loop_service.started", input=self.input_topic, output=self.output_topic)

    async def reconnect(self) -> None:
        """New clients (and a new router-service consumer) after the broker came back as another
        cluster; the router's plan and the simulated fleet carry on. Input is read from the
        new cluster's committed offsets, or `auto_offset_reset` (it has none)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._stop_clients()
        if self.router_service is not None:
            await self.router_service.reconnect()
        await self._start_clients()
        log.info("loop_service.reconnected", input=self.input_topic)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        try:
            if self._producer is not None:
                self.loop.sim.finish()            # no more input: complete requests in flight
                await self._publish(flush=True)
        finally:
            await self._stop_clients()
            if self.router_service is not None:
                await self.router_service.stop()
        log.info("loop_service.stopped", processed=self.loop.processed,
                 published=self.published_records)

    async def _stop_clients(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None

    async def __aenter__(self) -> LoopService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_published(self, n: int, timeout: float = 10.0) -> bool:
        """True once at least `n` observed records were published."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(lambda: self.published_records >= n)
        return self.published_records >= n

    def metrics(self) -> dict[str, Any]:
        return {"processed": self.loop.processed, "published_records": self.published_records,
                "published_batches": self.published_batches,
                "published_iteration_batches": self.published_iteration_batches,
                "invalid_messages": self.invalid_messages, "epoch_applied": self.loop.applied_epoch,
                "router": self.loop.router.metrics(), "sim": self.loop.sim.metrics(),
                "cost": self.loop.sim.cost(),
                "status": self.loop.last_status.model_dump() if self.loop.last_status else None}

    async def _run(self) -> None:
        assert self._consumer is not None
        if self.router_service is not None and not await self.router_service.wait_caught_up(
                self.plan_timeout_s):
            log.warning("loop_service.no_plan_yet", waited_s=self.plan_timeout_s)
        while True:
            batches = await self._consumer.getmany(timeout_ms=self.poll_timeout_ms,
                                                   max_records=self.max_poll_records)
            for msgs in batches.values():
                for m in msgs:
                    self._consume(m.value, m.partition, m.offset)
            await self._publish(flush=True)
            if batches and self.group_id is not None:
                try:
                    await self._consumer.commit()
                except KafkaError as exc:  # broker away or group rebalanced: the next commit covers it
                    log.warning("loop_service.commit_failed", error=repr(exc)[:200])

    def _consume(self, raw: bytes | None, partition: int, offset: int) -> None:
        try:
            records = list(decode_records(raw))
        except (ValidationError, ValueError, TypeError) as exc:
            self.invalid_messages += 1
            log.warning("loop_service.invalid_message", partition=partition, offset=offset,
                        error=str(exc)[:300])
            return
        for rec in records:
            self.loop.process(rec)

    async def _publish(self, flush: bool) -> None:
        assert self._producer is not None
        batches = self.loop.sim.drain(flush=flush)
        iterations = self.loop.sim.drain_iterations(flush=flush)
        for b in [*batches, *iterations]:
            await self._producer.send(self.output_topic, b.model_dump_json().encode(), key=self.key)
        self.published_iteration_batches += len(iterations)
        statuses, self.loop.statuses = self.loop.statuses, []
        if self.status_topic is not None:
            for st in statuses:
                await self._producer.send(self.status_topic, st.model_dump_json().encode(),
                                          key=st.fleet_id.encode())
            self.published_statuses += len(statuses)
        if batches or iterations:
            await self._producer.flush()
            async with self._progress:
                self.published_batches += len(batches)
                self.published_records += sum(len(b) for b in batches)
                self._progress.notify_all()
