"""The default planning on real worker processes: the first plan from observed traffic, a step
answered by the fast path before its window closes, contiguous epochs, valid plans."""
from __future__ import annotations

from pathlib import Path

import pytest

from schemas import AllocationEvent
from tests.e2e.harness import Cluster, batch, collect, produce

T1 = 1_700_000_010.0  # a multiple of the 30 s window
pytestmark = pytest.mark.broker

DEFAULTS = {"LLMFLEET_REPLAN": "two_timescales", "LLMFLEET_FAST_PATH": "true", "LLMFLEET_STARTUP_PLAN": "observed",
            "LLMFLEET_SCALE_DOWN_DELAY_S": "300", "LLMFLEET_WINDOW_S": "30", "LLMFLEET_BURST_S": "5",
            "LLMFLEET_WARM_START_S": "5", "LLMFLEET_GRACE_S": "1"}


async def test_observed_startup_and_fast_path(broker: str, tmp_path: Path) -> None:
    c = Cluster(broker, tmp_path, **DEFAULTS)
    try:
        t = c.topics
        values = batch(T1, 40, {"code": 4, "conversation": 8})
        values += batch(T1, 50, {"code": 40, "conversation": 8}, start=40)   # step at 40 s
        await produce(c.bootstrap, t.telemetry, values)
        c.start_worker()
        got = await collect(c.bootstrap, [t.demand, t.allocations],
                            lambda g: len(g[t.demand]) >= 2 and any(e["trigger"] == "burst" for e in g[t.allocations]),
                            timeout=90)
        events = [AllocationEvent.model_validate(e) for e in got[t.allocations]]
        assert [e.epoch for e in events] == list(range(1, len(events) + 1)), c.logs()
        first = events[0]
        assert first.trigger == "startup" and first.window_end is not None and first.window_end < T1 + 30
        assert first.demand["code"] == pytest.approx(4, rel=0.3), "sized on the traffic seen, not the catalog"
        burst = [e for e in events if e.trigger == "burst"]
        assert burst and burst[0].window_end <= T1 + 60, "answered before the step's window closed"
        assert burst[0].demand["code"] >= 30
        # every plan passed the planner's validator for the demand it names
        assert all(not e.degraded and e.status in ("optimal", "feasible") for e in events)
        gpus = [sum(d.replicas * d.tp * d.pp for d in e.plan.deployments) for e in events]
        assert gpus[events.index(burst[0])] > gpus[0], "the burst plan adds capacity"
    finally:
        c.close()
