"""Closed loop on the embedded broker: trace topic -> replay -> router + fleet simulator ->
telemetry -> controller worker -> allocations -> router."""
from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.sim.fleet_sim import FleetSimulator, PerfTable
from controller.sim.loop_service import ClosedLoop, LoopService
from controller.replay.replay import load_trace_topic, replay_from_topic
from controller.router.core import Router
from controller.router.service import RouterService
from controller.common.topic_admin import ensure_topics
from controller.replay.trace_reader import TraceOptions, bundled_sources, read_trace
from schemas import AllocationEvent, DemandWindow, load_catalog
from tests.e2e.harness import Cluster, collect
from tests.e2e.test_controller import _valid

pytestmark = pytest.mark.broker
T0 = 1_700_000_000.0


async def test_trace_topic_replay_closes_the_loop(broker: str, tmp_path: Path) -> None:
    c = Cluster(broker, tmp_path, LLMFLEET_WINDOW_S="30", LLMFLEET_GRACE_S="2")
    t = c.topics
    try:
        await ensure_topics(c.settings, broker)
        opts = TraceOptions(scale=5, start=T0, seed=0, limit=None)
        chunks = [ch.take(ch.ts < T0 + 180) for ch in read_trace(bundled_sources(), opts)]
        loaded = await load_trace_topic(iter(chunks), bootstrap_servers=broker, topic=t.trace, progress=False)
        assert loaded.records > 2000
        catalog = load_catalog()
        router = Router(seed=0)
        sim = FleetSimulator(PerfTable.from_instance(catalog.to_instance().to_spec()), cold_start_s=5.0, window_s=30)
        loop = LoopService(broker, ClosedLoop(router, sim), t.requests, t.telemetry,
                           router_service=RouterService(broker, router, topic=t.allocations), plan_timeout_s=0.2)
        w = c.start_worker()
        await loop.start()
        try:
            from controller.devtools.quickstart import Observed, wait_ready

            obs = Observed()
            watch = asyncio.create_task(_first_event(broker, t.allocations, obs))
            await wait_ready(c.settings, obs, T0 - 3600, w, tmp_path / "worker0.log")
            await watch
            # event time runs 30x faster than wall time: a 30 s window every second
            stats = await replay_from_topic(bootstrap_servers=broker, trace_topic=t.trace, topic=t.requests,
                                            pace=30.0, progress=False)
            assert stats.records == loaded.records
            await collect(broker, [t.demand], lambda g: len(g[t.demand]) >= 5, timeout=60)
            c.kill(w)  # no more plans: the router must end on the newest one published
            events = (await collect(broker, [t.allocations], lambda g: False, timeout=3))[t.allocations]
            assert await loop.router_service.wait_for_epoch(events[-1]["epoch"], timeout=10)
        finally:
            await loop.stop()
        ends = {e["window_end"] for e in events if e["window_end"] is not None}
        windows = (await collect(broker, [t.demand], lambda g: ends <= {w["window_end"] for w in g[t.demand]},
                                 timeout=20))[t.demand]
        assert len(windows) >= 5 and events, c.logs()
        epochs = [e["epoch"] for e in events]
        assert epochs == sorted(set(epochs)) and epochs[0] == 1
        _valid(c, windows, events)
        assert router.epoch() == epochs[-1], "the router follows the newest epoch"
        m = loop.metrics()
        assert m["published_records"] == loaded.records, "every request comes back as telemetry"
        # the controller counted exactly the simulated telemetry in the closed windows
        assert sum(w["records"] for w in windows) <= loaded.records
        reported = [d["slo_attainment"] for w in windows[1:] for d in w["demand"]]
        assert reported and all(a is not None and 0 <= a <= 1 for a in reported)
        assert any(a > 0 for a in reported), "some simulated requests met their SLO"
        assert AllocationEvent.model_validate(events[-1]).plan.deployments
        assert DemandWindow.model_validate(windows[-1]).records > 0
    finally:
        c.close()


async def _first_event(broker: str, topic: str, obs) -> None:
    got = await collect(broker, [topic], lambda g: bool(g[topic]), timeout=90)
    obs.events.extend(AllocationEvent.model_validate(e) for e in got[topic])


def test_quickstart_short_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "report"
    res = subprocess.run([sys.executable, "-m", "controller.cli", "--log-level", "WARNING", "quickstart",
                          "--short", "--no-live", "--report", str(report)],
                         capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    index = report / "index.html"
    assert index.exists() and f"report: {index.resolve()}" in res.stdout.replace("\n", "")
    pngs = sorted(p.name for p in (report / "plots").glob("*.png"))
    assert len(pngs) >= 4 and all((report / "plots" / p).stat().st_size > 5000 for p in pngs)
    html = index.read_text()
    assert all(f"plots/{p}" in html for p in pngs) and "CC BY 4.0" in html
    with (report / "data" / "events.csv").open(newline="") as fh:
        events = list(csv.DictReader(fh))
    assert events, "at least one allocation event was published"
    assert json.loads(events[0]["plan_json"])["deployments"]
    assert events[0]["trigger"] == "startup"
