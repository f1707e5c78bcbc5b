"""Scenario 4: a demand surge beyond the budget, then calm again.

The controller must publish a degraded plan, flagged and explained, for the first surge
window (not later), and a normal plan for the first calm window after it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.worker.planning.planner import Planner
from schemas import AllocationEvent, DemandWindow, load_catalog
from solvers import check_plan, compile_instance
from tests.e2e.harness import Cluster, batch, collect, produce
from tests.reliability.conftest import Figures, scaled

T0 = 1_700_000_000.0
BUDGET = 20.0  # $/h: calm traffic costs about 3, the surge about 100
pytestmark = pytest.mark.broker


async def test_surge_degrades_within_one_window_and_recovers(broker: str, tmp_path: Path, figures: Figures) -> None:
    calm, surge = {"code": 10, "conversation": 10}, {"code": 300, "conversation": 300}
    surge_s = int(scaled(20, 120))
    c = Cluster(broker, tmp_path, LLMFLEET_BUDGET_PER_HOUR=str(BUDGET))
    t = c.topics
    try:
        values = batch(T0, 30, calm) + batch(T0, surge_s, surge, start=30) + batch(T0, 40, calm, start=30 + surge_s)
        await produce(broker, t.telemetry, values)
        c.start_worker()
        surge_end = T0 + 30 + surge_s
        got = await collect(broker, [t.allocations, t.demand],
                            lambda g: any(e["window_end"] and e["window_end"] > surge_end and not e["degraded"]
                                          for e in g[t.allocations]), timeout=scaled(90, 300))
        events = [AllocationEvent.model_validate(e) for e in got[t.allocations]]
        windows = {w["window_end"]: DemandWindow.model_validate(w) for w in got[t.demand]}
        assert events, c.logs()
        degraded = [e for e in events if e.degraded]
        assert degraded, "the surge produced a degraded plan\n" + c.logs()
        first = degraded[0]
        assert first.window_end == T0 + 40, "flagged for the first surge window, not later"
        assert first.trigger == "degraded" and first.explanation
        assert any("budget" in x for x in first.explanation), first.explanation
        assert first.gpu_cost_per_hour <= BUDGET + 1e-6, "a degraded plan still keeps the budget"
        recovered = [e for e in events if e.window_end and e.window_end > surge_end and not e.degraded]
        assert recovered, "a normal plan returns when demand falls\n" + c.logs()
        back = recovered[0]
        assert back.window_end == surge_end + 10, "the first calm window re-plans"
        assert all(e.epoch == k + 1 for k, e in enumerate(events)), "epochs contiguous"
        planner = Planner(load_catalog(), c.settings)
        for e in (first, back):  # both judged by the outside rules on their own window's demand
            spec = planner.instance_for(windows[e.window_end]).to_spec()
            rep = check_plan(compile_instance(spec), e.plan.to_spec(), spec)
            assert rep.feasible == (not e.degraded), [v.message for v in rep.violations]

        figures.add("budget", BUDGET, "$/h", "calm demand 20 req/s, surge 600 req/s")
        figures.add("surge window -> degraded plan", "same window", note=f"epoch {first.epoch}, window end "
                    f"+{first.window_end - T0:.0f} s, published {1e3 * (first.created_at - (first.window_closed_at or first.created_at)):.0f} ms after close")
        figures.add("degraded plan cost", round(first.gpu_cost_per_hour, 2), "$/h", "within budget")
        figures.add("explanation", first.explanation[0][:120])
        figures.add("first calm window -> normal plan", "same window",
                    note=f"epoch {back.epoch}, trigger {back.trigger}, {back.cost_per_hour:.2f} $/h")
    finally:
        c.close()
