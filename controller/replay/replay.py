"""Replay a trace onto the telemetry topic as `TelemetryBatch` messages, paced by event time.

Records are cut into messages by event-time slices (at most `max_records` records and one
`slice_s` slice each), so every message is what a router would have flushed at the end of that
slice, and each partition receives its messages in event-time order (the controller's
per-partition watermarks rely on that). Pacing holds each message until the wall clock reaches
its last record's event time (scaled by `pace`; `pace=inf` publishes as fast as possible).

A *trace topic* stores a trace once (one batch per message, one partition, event-time order) so
a replay can come from Kafka instead of files: `load_trace_topic`, then `replay_from_topic`.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from schemas.telemetry import TelemetryBatch

from controller.replay.trace_reader import Chunk, TraceError, retime

log = structlog.get_logger()

KeyBy = Literal["round_robin", "query_type", "single"]
PRODUCER = "llmfleet-replay"


@dataclass(frozen=True)
class Outgoing:
    """One message to send: its value, key, partition (None: by key) and records."""

    value: bytes
    key: bytes | None
    partition: int | None
    records: int
    t_last: float


@dataclass
class ReplayStats:
    records: int = 0
    messages: int = 0
    wall_s: float = 0.0
    first_ts: float | None = None
    last_ts: float | None = None
    loaded: bool = True  # load_trace_topic: False when the topic already held a trace

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s if self.wall_s > 0 else math.inf


def _batch_bytes(c: Chunk, producer: str) -> bytes:
    qt = c.query_type.tolist()
    batch = TelemetryBatch(producer=producer, ts=c.ts.tolist(), input_tokens=c.input_tokens.tolist(),
                           output_tokens=c.output_tokens.tolist(),
                           query_type=qt if any(q is not None for q in qt) else None)
    return batch.model_dump_json(exclude_none=True).encode()


class Slicer:
    """Cuts a time-ordered chunk stream into messages by event-time slice (pure; no I/O).

    The last, possibly incomplete slice of each pushed chunk is held until a later record
    (or `flush`) closes it, so a slice never spans two messages unless it exceeds max_records.
    """

    def __init__(self, *, max_records: int = 1000, slice_s: float = 1.0,
                 key_by: KeyBy = "round_robin", partitions: int = 1, producer: str = PRODUCER) -> None:
        if max_records < 1 or not slice_s > 0:
            raise ValueError("max_records must be >= 1 and slice_s > 0")
        self.max_records, self.slice_s, self.key_by = max_records, slice_s, key_by
        self.partitions, self.producer = max(1, partitions), producer
        self._held = Chunk.empty()
        self._seq = 0
        self._last_ts = -math.inf

    def push(self, c: Chunk) -> list[Outgoing]:
        if not len(c):
            return []
        if c.ts[0] < self._last_ts or (len(c) > 1 and (np.diff(c.ts) < 0).any()):
            raise TraceError("records must arrive in event-time order")
        self._last_ts = float(c.ts[-1])
        allc = Chunk.concat([self._held, c]) if len(self._held) else c
        ids = np.floor(allc.ts / self.slice_s)
        last_start = int(np.searchsorted(ids, ids[-1], side="left"))
        self._held = allc.take(slice(last_start, None))
        return self._emit(allc.take(slice(0, last_start)), ids[:last_start])

    def flush(self) -> list[Outgoing]:
        held, self._held = self._held, Chunk.empty()
        return self._emit(held, np.floor(held.ts / self.slice_s))

    def _emit(self, c: Chunk, ids: np.ndarray) -> list[Outgoing]:
        out: list[Outgoing] = []
        if not len(c):
            return out
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(ids)) + 1, [len(c)]))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            sl = c.take(slice(int(a), int(b)))
            if self.key_by == "query_type":
                groups = sorted({q for q in sl.query_type.tolist()}, key=lambda q: (q is None, q or ""))
                for q in groups:
                    sel = np.asarray([v == q for v in sl.query_type], dtype=bool)
                    out.extend(self._pieces(sl.take(sel), (q or "unclassified").encode()))
            else:
                out.extend(self._pieces(sl, None))
        return out

    def _pieces(self, c: Chunk, key: bytes | None) -> Iterator[Outgoing]:
        for a in range(0, len(c), self.max_records):
            p = c.take(slice(a, a + self.max_records))
            if self.key_by == "round_robin":
                part: int | None = self._seq % self.partitions
            else:
                part = 0 if self.key_by == "single" else None
            self._seq += 1
            yield Outgoing(_batch_bytes(p, self.producer), key, part, len(p), float(p.ts[-1]))


def make_producer(bootstrap_servers: str, max_request_size: int = 1_048_576) -> AIOKafkaProducer:
    """Plain producer: no idempotence (the embedded broker rejects InitProducerId)."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, client_id=PRODUCER, acks=1,
                            enable_idempotence=False, linger_ms=5, max_batch_size=512 * 1024,
                            max_request_size=max_request_size)


class _Progress:
    """A rich progress bar on a TTY (records, rate, ETA), nothing otherwise."""

    def __init__(self, enabled: bool | None, total: int | None, label: str) -> None:
        console = Console(stderr=True)
        self.bar: Progress | None = None
        if enabled if enabled is not None else console.is_terminal:
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]} rec/s"), TimeElapsedColumn(),
                                TextColumn("ETA"), TimeRemainingColumn(), console=console)
            self.task = self.bar.add_task(label, total=total, rate="-")
            self.bar.start()

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)
            speed = self.bar.tasks[0].speed
            self.bar.update(self.task, rate=f"{speed:,.0f}" if speed else "-")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


async def _aiter(chunks: Iterable[Chunk] | AsyncIterable[Chunk]) -> AsyncIterator[Chunk]:
    """Async view of a chunk stream; file parsing runs in a thread so sends keep flowing."""
    if isinstance(chunks, AsyncIterable):
        async for c in chunks:
            yield c
        return
    it = iter(chunks)
    end = object()
    while (c := await asyncio.to_thread(next, it, end)) is not end:
        yield c  # type: ignore[misc]


async def publish(chunks: Iterable[Chunk] | AsyncIterable[Chunk], *, bootstrap_servers: str, topic: str,
                  pace: float = 1.0, key_by: KeyBy = "round_robin", max_records: int = 1000,
                  slice_s: float = 1.0, progress: bool | None = None, total: int | None = None,
                  producer_name: str = PRODUCER, max_in_flight: int = 256,
                  max_request_size: int = 1_048_576) -> ReplayStats:
    """Publish a time-ordered chunk stream to `topic`; wall time follows event time / pace."""
    if not pace > 0:
        raise ValueError(f"pace must be > 0 (inf = as fast as possible), not {pace}")
    producer = make_producer(bootstrap_servers, max_request_size)
    await producer.start()
    stats = ReplayStats()
    bar = _Progress(progress, total, f"replay -> {topic}")
    pending: deque[asyncio.Future[object]] = deque()
    wall0 = time.monotonic()
    try:
        parts = len(await producer.partitions_for(topic)) if key_by == "round_robin" else 1
        slicer = Slicer(max_records=max_records, slice_s=slice_s, key_by=key_by, partitions=parts,
                        producer=producer_name)

        async def send(msgs: list[Outgoing]) -> None:
            for m in msgs:
                if math.isfinite(pace) and stats.first_ts is not None:
                    wait = wall0 + (m.t_last - stats.first_ts) / pace - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                pending.append(await producer.send(topic, m.value, key=m.key, partition=m.partition))
                while len(pending) > max_in_flight:
                    await pending.popleft()
                stats.messages += 1
                stats.records += m.records
                stats.last_ts = m.t_last
                bar.advance(m.records)

        async for c in _aiter(chunks):
            if stats.first_ts is None and len(c):
                stats.first_ts, wall0 = float(c.ts[0]), time.monotonic()
            await send(slicer.push(c))
        await send(slicer.flush())
        await producer.flush()
        for f in pending:
            await f
    finally:
        bar.close()
        await producer.stop()
    stats.wall_s = time.monotonic() - wall0
    log.info("replay.published", topic=topic, records=stats.records, messages=stats.messages,
             wall_s=round(stats.wall_s, 3), records_per_s=round(stats.records_per_s, 1))
    return stats


# ---------------------------------------------------------------------------------------------
# trace topics


async def _trace_consumer(bootstrap_servers: str, topic: str) -> tuple[AIOKafkaConsumer, TopicPartition, int]:
    """A group-less consumer of the trace topic's single partition, and that partition's end offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                client_id=PRODUCER, auto_offset_reset="earliest")
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            raise TraceError(f"trace topic {topic!r} does not exist (load it with load_trace_topic "
                             f"or `llmfleet replay ... --to-topic`)")
        parts = consumer.partitions_for_topic(topic) or set()
        if len(parts) != 1:
            raise TraceError(f"trace topic {topic!r} has {len(parts)} partitions; a trace topic needs "
                             f"exactly one to keep event-time order")
        tp = TopicPartition(topic, next(iter(parts)))
        end = (await consumer.end_offsets([tp]))[tp]
    except BaseException:
        await consumer.stop()
        raise
    return consumer, tp, end


async def load_trace_topic(chunks: Iterable[Chunk] | AsyncIterable[Chunk], *, bootstrap_servers: str,
                           topic: str, if_loaded: Literal["skip", "append", "error"] = "skip",
                           max_records: int = 1000, slice_s: float = 1.0,
                           progress: bool | None = None, total: int | None = None) -> ReplayStats:
    """Write a trace once into a one-partition trace topic (one batch per message, time order).

    A topic that already holds messages is left alone (`skip`), appended to, or an error.
    """
    consumer, _tp, end = await _trace_consumer(bootstrap_servers, topic)
    await consumer.stop()
    if end > 0 and if_loaded != "append":
        if if_loaded == "error":
            raise TraceError(f"trace topic {topic!r} already holds {end} messages")
        log.info("trace_topic.already_loaded", topic=topic, messages=end)
        return ReplayStats(messages=end, loaded=False)
    return await publish(chunks, bootstrap_servers=bootstrap_servers, topic=topic, pace=math.inf,
                         key_by="single", max_records=max_records, slice_s=slice_s, progress=progress,
                         total=total, producer_name="llmfleet-trace")


async def read_trace_topic(bootstrap_servers: str, topic: str) -> AsyncIterator[Chunk]:
    """The trace stored in a trace topic, as chunks, up to the end offset seen at the start.

    Every fetched record is kept, even past that end offset: tansu reports the end offset of a
    partition as (base offset of its last record batch) + 1, short of the real end when the
    producer batched several messages, and fetches return whole batches.
    """
    consumer, tp, end = await _trace_consumer(bootstrap_servers, topic)
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        idle = 0
        while await consumer.position(tp) < end:
            got = (await consumer.getmany(tp, timeout_ms=500, max_records=500)).get(tp, [])
            idle = 0 if got else idle + 1
            if idle >= 20:
                raise TraceError(f"trace topic {topic!r}: no data for 10 s below end offset {end}")
            for msg in got:
                b = TelemetryBatch.model_validate_json(msg.value)
                qt = b.query_type if b.query_type is not None else [None] * len(b)
                yield Chunk(np.asarray(b.ts, np.float64), np.asarray(b.input_tokens, np.int64),
                            np.asarray(b.output_tokens, np.int64), np.asarray(qt, dtype=object))
    finally:
        await consumer.stop()


async def replay_from_topic(*, bootstrap_servers: str, trace_topic: str, topic: str, speed: float = 1.0,
                            start: float | None = None, pace: float = 1.0, key_by: KeyBy = "round_robin",
                            max_records: int = 1000, slice_s: float = 1.0, progress: bool | None = None,
                            limit: int | None = None) -> ReplayStats:
    """Replay a trace topic onto `topic`: event time sped up by `speed` and rebased to `start`."""
    if not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"speed must be a positive finite number, not {speed}")

    async def chunks() -> AsyncIterator[Chunk]:
        t0: float | None = None
        left = math.inf if limit is None else limit
        async with contextlib.aclosing(read_trace_topic(bootstrap_servers, trace_topic)) as stored:
            async for c in stored:
                if left <= 0:
                    return
                c = c.take(slice(0, int(min(left, len(c)))))
                left -= len(c)
                t0 = float(c.ts[0]) if t0 is None else t0
                yield retime(c, t0, speed, start)

    return await publish(chunks(), bootstrap_servers=bootstrap_servers, topic=topic, pace=pace,
                         key_by=key_by, max_records=max_records, slice_s=slice_s, progress=progress,
                         total=limit)
