"""Scenario: many fleets planned across two workers; the worker leading some fleets is killed.

The windows topic is partitioned by fleet (LLMFLEET_WINDOWS_PARTITIONS), so Kafka's assignment
spreads the fleets' planning over the group. Mid-stream, kill -9 a worker that has published
plans for some fleets and start another. Afterwards, for every fleet: its allocation epochs run
1, 2, 3, ... with no gap or repeat, it got plans after the kill, its demand windows follow each
other and count every record produced for it exactly once.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from schemas import TelemetryBatch
from tests.e2e.harness import Cluster, collect, produce
from tests.reliability.conftest import Figures, scaled

pytestmark = pytest.mark.broker
FLEETS = [f"fleet-{k}" for k in range(6)]
PARTITIONS = 4


def _batches(fleet: str, t0: float, start_s: int, seconds: int, rng: np.random.Generator) -> list[bytes]:
    """One batch per event-time second: 3-6 requests of two query types."""
    out = []
    for k in range(start_s, start_s + seconds):
        n = int(rng.integers(3, 7))
        out.append(TelemetryBatch.model_validate({
            "producer": "test", "fleet": fleet, "ts": sorted((t0 + k + rng.random(n)).tolist()),
            "query_type": rng.choice(["code", "conversation"], n).tolist(),
            "input_tokens": rng.integers(200, 2000, n).tolist(),
            "output_tokens": rng.integers(10, 300, n).tolist()}).model_dump_json().encode())
    return out


def _fleets_of(c: Cluster, k: int) -> set[str]:
    text = (c.tmp / f"worker{k}.log").read_text(errors="replace")
    return {m.group(1) for line in text.splitlines() if "plan.published" in line
            for m in [re.search(r'"fleet": "([^"]+)"', line)] if m}


async def test_killing_a_leader_of_some_fleets_keeps_every_fleets_epochs_contiguous(
        broker: str, tmp_path: Path, figures: Figures) -> None:
    c = Cluster(broker, tmp_path, LLMFLEET_WINDOWS_PARTITIONS="4")
    t = c.topics
    rng = np.random.default_rng(11)
    t0 = float(np.floor(time.time() / 10) * 10 - 5000)
    seconds = int(scaled(90, 400))
    produced: dict[str, int] = defaultdict(int)

    async def feed(start_s: int, n: int) -> None:
        for s in range(start_s, start_s + n, 5):  # 5 event seconds per fleet at a time, interleaved
            msgs = []
            for f in FLEETS:
                chunk = _batches(f, t0, s, min(5, start_s + n - s), rng)
                produced[f] += sum(len(json.loads(m)["ts"]) for m in chunk)
                msgs += chunk
            await produce(broker, t.telemetry, msgs, partitions=PARTITIONS)
            await asyncio.sleep(0.25)

    try:
        c.start_worker()
        c.start_worker()
        await feed(0, seconds // 2)
        got = await collect(broker, [t.allocations], lambda g: {e["fleet_id"] for e in g[t.allocations]} >= set(FLEETS),
                            timeout=120)
        assert {e["fleet_id"] for e in got[t.allocations]} >= set(FLEETS), c.logs()
        split = [_fleets_of(c, k) for k in range(2)]
        victim = max(range(2), key=lambda k: len(split[k]))
        assert split[victim], f"the killed worker leads some fleets: {split}"
        c.kill(c.procs[victim], hard=True)
        killed_at = time.time()
        c.start_worker()
        await feed(seconds // 2, seconds - seconds // 2)
        wm = time.time() + 3000  # every partition past the last window
        await produce(broker, t.telemetry, [c.tick(p, wm) for p in range(PARTITIONS)], partitions=PARTITIONS)

        def done(g: dict) -> bool:
            counted: dict[str, int] = defaultdict(int)
            for w in g[t.demand]:
                counted[w["fleet_id"]] += w["records"]
            return all(counted[f] >= produced[f] for f in FLEETS)

        got = await collect(broker, [t.demand, t.allocations], done, timeout=scaled(120, 400))
        by_fleet: dict[str, list[dict]] = defaultdict(list)
        for e in got[t.allocations]:
            by_fleet[e["fleet_id"]].append(e)
        windows: dict[str, list[dict]] = defaultdict(list)
        for w in got[t.demand]:
            windows[w["fleet_id"]].append(w)
        for f in FLEETS:
            epochs = [e["epoch"] for e in by_fleet[f]]
            assert epochs == list(range(1, len(epochs) + 1)), f"{f}: epochs {epochs}\n{c.logs()}"
            assert any(e["created_at"] > killed_at for e in by_fleet[f]), f"{f}: no plan after the kill"
            ws = sorted(windows[f], key=lambda w: w["window_start"])
            assert len({w["window_start"] for w in ws}) == len(ws), f"{f}: a window published twice"
            assert all(a["window_end"] == b["window_start"] for a, b in zip(ws, ws[1:])), f"{f}: a window missing"
            counted = sum(w["records"] for w in ws)
            assert counted == produced[f], f"{f}: {counted} of {produced[f]} records counted\n{c.logs()}"
        moved = split[victim]
        figures.add("fleets", len(FLEETS), note="windows topic of 4 partitions, two workers")
        figures.add("fleets led by the killed worker", len(moved), note=", ".join(sorted(moved)))
        figures.add("epochs per fleet", ", ".join(f"{f}: 1..{len(by_fleet[f])}" for f in FLEETS),
                    note="contiguous, none repeated")
        figures.add("records counted", sum(produced.values()), note="every fleet's, exactly once")
    finally:
        c.close()
