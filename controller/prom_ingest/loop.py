"""The poll loop: source -> series -> deltas -> synthesised records -> telemetry batches.

`Ingest.poll_once` is one poll (what the tests drive); `Ingest.run` repeats it every `poll_s` of
wall time, retrying a failed source with exponential backoff (nothing is produced for a failed
poll; the next good one spans the gap). Counters say what was skipped and why; every skip, gap,
reset and source failure is also a structlog event.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import structlog

from schemas import TelemetryBatch
from schemas.prom_ingest import PromIngestMapping

from .deltas import Tracker
from .mapping import resolve
from .samples import SeriesKey, group
from .source import Poll, SourceError
from .synth import Records, synthesise, to_batches
from .vllm_metrics import REQUIRED

log = structlog.get_logger("llmfleet.prom_ingest")


class Source(Protocol):
    @property
    def name(self) -> str: ...

    async def fetch(self, session: aiohttp.ClientSession, t: float) -> Poll: ...


@dataclass
class Counters:
    polls: int = 0
    source_errors: int = 0
    target_failures: int = 0
    gaps: int = 0
    gap_s: float = 0.0
    resets: int = 0
    records: int = 0
    batches: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # series-polls skipped, by reason

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "skipped"}, "skipped": dict(self.skipped)}


class Ingest:
    """One source, one mapping, one memory of the series; `producer` marks the batches' source."""

    def __init__(self, source: Source, mapping: PromIngestMapping, known_query_types: Collection[str], *,
                 poll_s: float = 5.0, backoff_max_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s}")
        self.source = source
        self.mapping = mapping
        self.known = frozenset(known_query_types)
        self.poll_s = poll_s
        self.backoff_max_s = max(backoff_max_s, poll_s)
        self.clock = clock
        self.tracker = Tracker(gap_after_s=1.5 * poll_s)
        self.counters = Counters()
        self._logged_skips: set[tuple[SeriesKey, str]] = set()

    @property
    def producer(self) -> str:
        return self.source.name[:200]  # TelemetryBatch.producer's limit

    async def poll_once(self, session: aiohttp.ClientSession) -> list[TelemetryBatch]:
        """One poll: the batches of the requests finished since the previous one ([] on the first).
        Raises SourceError when the source cannot answer (nothing is remembered from that poll)."""
        t = self.clock()
        try:
            poll = await self.source.fetch(session, t)
        except SourceError:
            self.counters.source_errors += 1
            raise
        self.counters.polls += 1
        for target, why in poll.failed.items():
            self.counters.target_failures += 1
            log.warning("prom_ingest.target_failed", target=target, reason=why)
        groups = group(poll.samples)
        resolved: dict[SeriesKey, tuple[str, str | None]] = {}
        for key, hists in groups.items():
            r = resolve(key, self.mapping, self.known)
            if isinstance(r, str) or any(name not in hists for name in REQUIRED):
                self._skip(key, r if isinstance(r, str) else "incomplete")
                continue
            resolved[key] = r
        deltas = self.tracker.update({k: groups[k] for k in resolved}, t)
        parts: list[tuple[Records, str, str | None]] = []
        for d in deltas:
            deployment, qt = resolved[d.key]
            if d.resets:
                self.counters.resets += 1
                log.warning("prom_ingest.counter_reset", series=dict(d.key), histograms=list(d.resets),
                            note="the new value is taken as the delta")
            if d.gap_s:
                self.counters.gaps += 1
                self.counters.gap_s += d.gap_s
                log.warning("prom_ingest.gap", series=dict(d.key), gap_s=round(d.gap_s, 3), requests=d.requests,
                            note="the interval spans the gap; its requests are spread over it")
            rec = synthesise(d, self.mapping.pairing)
            if rec is not None:
                parts.append((rec, deployment, qt))
        batches = to_batches(parts, self.producer)
        n = sum(len(b) for b in batches)
        self.counters.records += n
        self.counters.batches += len(batches)
        log.debug("prom_ingest.poll", t=t, series=len(groups), mapped=len(resolved), records=n)
        return batches

    def _skip(self, key: SeriesKey, reason: str) -> None:
        self.counters.skipped[reason] += 1
        if (key, reason) not in self._logged_skips:  # once per series and reason, the counter counts every poll
            self._logged_skips.add((key, reason))
            log.warning("prom_ingest.series_skipped", series=dict(key), reason=reason)

    async def run(self, send: Callable[[TelemetryBatch], Awaitable[None]], stop: asyncio.Event,
                  max_polls: int | None = None) -> Counters:
        """Poll every `poll_s` until `stop` is set (or `max_polls` successful polls), sending each batch."""
        backoff = self.poll_s
        async with aiohttp.ClientSession() as session:
            while not stop.is_set() and (max_polls is None or self.counters.polls < max_polls):
                started = time.monotonic()
                try:
                    batches = await self.poll_once(session)
                except SourceError as exc:
                    log.error("prom_ingest.source_error", error=str(exc), retry_in_s=round(backoff, 2),
                              errors=self.counters.source_errors)
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                backoff = self.poll_s
                for b in batches:
                    await send(b)
                await _wait(stop, self.poll_s - (time.monotonic() - started))
        log.info("prom_ingest.stopped", **self.counters.as_dict())
        return self.counters


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
