"""Scenario 6: sustained telemetry at the benchmark rate, with the worker's memory sampled.

A producer paces 1000-record batches at RATE records/s of event time and wall time for the
scenario's duration; the worker must count every record and its resident memory must level
off (no growth proportional to the records seen).
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.harness import Cluster, collect
from tests.reliability.conftest import Figures, scaled

RATE = 50_000   # records/s: the ingest target for one worker
BATCH = 1_000
PARTITIONS = 4
T0 = 1_700_000_000.0
pytestmark = pytest.mark.broker


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _templates() -> tuple[str, str, str]:
    rng = np.random.default_rng(0)
    qt = rng.choice(["code", "conversation", "summarization"], size=BATCH, p=[0.3, 0.5, 0.2])
    inp = np.where(qt == "code", 1200, np.where(qt == "conversation", 800, 3000)) + rng.integers(0, 200, BATCH)
    out = np.where(qt == "code", 30, np.where(qt == "conversation", 200, 150)) + rng.integers(0, 20, BATCH)
    return json.dumps(qt.tolist()), json.dumps(inp.tolist()), json.dumps(out.tolist())


async def test_sustained_load_bounded_memory(broker: str, tmp_path: Path, figures: Figures) -> None:
    duration = int(scaled(45, 300))
    c = Cluster(broker, tmp_path, LLMFLEET_BUDGET_PER_HOUR="1000000", LLMFLEET_AUDIT_ENABLED="false")
    t = c.topics
    qt, inp, out = _templates()
    step = BATCH / RATE  # event seconds per batch
    try:
        w = c.start_worker()
        await asyncio.sleep(3)
        samples: list[tuple[float, float]] = []
        p = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5, max_request_size=2_000_000)
        await p.start()
        sent = 0
        t_start = time.monotonic()
        next_sample = 0.0
        try:
            k = 0
            while (now := time.monotonic() - t_start) < duration:
                due = int(now / step) + 1
                futs = []
                while k < due:
                    ts = json.dumps((T0 + k * step + np.arange(BATCH) * (step / BATCH)).round(6).tolist())
                    value = (f'{{"kind":"batch","producer":"load","ts":{ts},"query_type":{qt},'
                             f'"input_tokens":{inp},"output_tokens":{out}}}').encode()
                    futs.append(await p.send(t.telemetry, value, partition=k % PARTITIONS))
                    k += 1
                    sent += BATCH
                if futs:
                    await asyncio.gather(*futs)
                if now >= next_sample:
                    samples.append((now, rss_mb(w.pid)))
                    next_sample += 1.0
                await asyncio.sleep(0.005)
            end_wm = T0 + k * step + 60
            for part in range(PARTITIONS):
                await p.send_and_wait(t.telemetry, c.tick(part, end_wm), partition=part)
        finally:
            await p.stop()
        produce_s = time.monotonic() - t_start

        got = await collect(broker, [t.demand], lambda g: sum(x["records"] for x in g[t.demand]) >= sent,
                            timeout=scaled(90, 300))
        caught_up_s = time.monotonic() - t_start - produce_s
        samples.append((time.monotonic() - t_start, rss_mb(w.pid)))
        counted = sum(x["records"] for x in got[t.demand])
        assert counted == sent, f"{counted} of {sent} records counted\n{c.logs()}"
        assert w.poll() is None, c.logs()

        rss = np.array([r for _, r in samples])
        quarter = max(1, len(rss) // 4)
        warm = float(np.median(rss[quarter:2 * quarter]))   # after start-up and the first plans
        late = float(np.median(rss[-quarter:]))
        assert late <= warm * 1.15 + 30, f"RSS kept growing: {warm:.0f} MB -> {late:.0f} MB"
        figures.add("offered load", f"{RATE:,}", "records/s", f"{duration} s, batches of {BATCH}")
        figures.add("achieved produce rate", f"{sent / produce_s:,.0f}", "records/s")
        figures.add("records counted", f"{counted:,} of {sent:,}")
        figures.add("windows closed", len(got[t.demand]))
        figures.add("catch-up after the producer stopped", round(caught_up_s, 1), "s")
        figures.add("worker RSS at start / 2nd quarter / last quarter / max",
                    f"{rss[0]:.0f} / {warm:.0f} / {late:.0f} / {rss.max():.0f}", "MB")
        figures.add_series("worker_rss_mb", samples)
    finally:
        c.close()
