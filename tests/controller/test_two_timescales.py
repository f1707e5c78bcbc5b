"""The planner's two timescales with hand-built windows: replica counts follow demand within the
composition in force; a new composition only when it pays its priced switch; scale-down only
after demand stayed lower for scale_down_delay_s; the fast path grows the fleet inside a window;
the first plan comes from observed traffic."""
from __future__ import annotations

import time

import numpy as np
import pytest

from controller.worker.planning import composition
from controller.worker.windows.demand_window import partial_window
from controller.worker.windows.forecast import bin_rates, trend_forecast
from controller.worker.planning.planner import Planner, PlannerState, new_planner_state
from controller.common.settings import Settings
from schemas import AllocationEvent, DemandWindow, Plan, load_catalog
from solvers import check_plan, to_plan
from solvers.plan_codec import cand_key
from tests.controller.test_planner import _window as window

TOKS = {"code": (2048, 28), "conversation": (1155, 211)}
L40S = "qwen2.5-14b-instruct.L40S.fp8.tp1pp1"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def planner(catalog, **kw) -> Planner:
    base = {"min_dwell_s": 0, "agh_deadline_s": 0.2, "audit_enabled": False, "fast_path": False,
            "composition_dwell_s": 0, "scale_down_delay_s": 0} | kw
    return Planner(catalog, Settings(**base))


def gpus(state: PlannerState) -> int:
    return sum(d["replicas"] * d["tp"] * d["pp"] for d in state.plan["deployments"])


def deployments(state: PlannerState) -> set[str]:
    return {d["id"] for d in state.plan["deployments"]}


def force_l40s_plan(pl: Planner, state: PlannerState, w: DemandWindow) -> float:
    """Put a valid but costly plan in force: the cheapest one on L40S replicas only."""
    spec = pl.instance_for(w).to_spec()
    ci = pl.compiled(spec)
    one = np.zeros(ci.n_cand, dtype=np.int64)
    one[[d for d in range(ci.n_cand) if cand_key(ci, d) == ("qwen2.5-14b-instruct", "L40S", "fp8", 1, 1)]] = 1
    res = composition.within_composition(ci, one)
    assert res is not None
    plan = Plan.model_validate(to_plan(ci, res))
    assert {d.id for d in plan.deployments} == {L40S}
    ev = AllocationEvent(fleet_id="default", epoch=1, trigger="startup", method="milp", status="feasible", plan=plan,
                         cost_per_hour=res.objective, gpu_cost_per_hour=res.objective,
                         demand={q: r.arrival_rate for q, r in zip(TOKS, w.demand)}, created_at=time.time())
    pl.adopt(state, ev, w.window_end)
    return res.objective


def test_composition_moves_only_when_it_pays(catalog) -> None:
    w0, w1 = window(0, {"code": 30, "conversation": 150}), window(1, {"code": 30, "conversation": 150})
    moved = {}
    for payback in (60.0, 3600.0):
        pl = planner(catalog, switch_payback_s=payback)
        st = new_planner_state()
        in_force = force_l40s_plan(pl, st, w0)
        d = pl.on_window(st, w1)
        moved[payback] = deployments(st) != {L40S}
        if moved[payback]:
            assert d.events[-1].cost_per_hour < in_force
    assert moved == {60.0: False, 3600.0: True}, "a cheaper composition is taken only when it pays back in time"
    # ... and not before the composition was held for its dwell time
    pl = planner(catalog, switch_payback_s=3600.0, composition_dwell_s=600.0)
    st = new_planner_state()
    force_l40s_plan(pl, st, w0)
    pl.on_window(st, w1)
    assert deployments(st) == {L40S}


def test_switch_price_counts_cold_starts_and_overlap(catalog) -> None:
    pl = planner(catalog)
    spec = pl.instance_for(window(0, {"code": 30, "conversation": 150})).to_spec()
    ci = pl.compiled(spec)
    cold = composition.cold_seconds(ci, pl.cold_start)
    prev, new = np.zeros(ci.n_cand, dtype=np.int64), np.zeros(ci.n_cand, dtype=np.int64)
    prev[0], new[1] = 2, 1
    got = composition.switch_price(ci, cold, prev, new, risk_per_gpu=0.5)
    want = cold[1] * ci.cand_cost[1] / 3600 + 0.5 * ci.cand_ngpu[1] + 2 * ci.cand_cost[0] * cold[1] / 3600
    assert got == pytest.approx(want)
    assert composition.switch_price(ci, cold, prev, prev, 0.5) == 0.0
    assert cold[np.argmax(ci.cand_ngpu)] > 0 and pl.switch_per_gpu(ci) > 0.5  # priced from the catalog


def test_scale_down_waits_for_the_hysteresis(catalog) -> None:
    high, low = {"code": 20, "conversation": 60}, {"code": 2, "conversation": 6}
    kept_for = {}
    for delay in (0.0, 300.0):
        pl = planner(catalog, scale_down_delay_s=delay)
        st = new_planner_state()
        pl.on_window(st, window(0, high))
        top = gpus(st)
        k = 1
        while gpus(st) >= top and k < 12:
            pl.on_window(st, window(k, low))
            k += 1
        kept_for[delay] = k - 1
    assert kept_for[0.0] == 1, "without hysteresis the first low window scales down"
    assert kept_for[300.0] == 5, "with 300 s of 60 s windows the fifth low window scales down"


def test_replicas_follow_demand_within_the_composition(catalog) -> None:
    pl = planner(catalog, composition_dwell_s=10_000.0)  # the composition is held: only replicas move
    st = new_planner_state()
    pl.on_window(st, window(0, {"code": 5, "conversation": 20}))
    first, n0 = deployments(st), gpus(st)
    for k, rates in enumerate(({"code": 8, "conversation": 40}, {"code": 12, "conversation": 60}), start=1):
        w = window(k, rates)
        d = pl.on_window(st, w)
        assert d.events and d.events[0].trigger == "window" and d.events[0].method == "milp"
        assert deployments(st) <= first, "the composition in force is kept"
        spec = pl.instance_for(w).to_spec()
        assert check_plan(pl.compiled(spec), st.plan, spec).feasible
    assert gpus(st) > n0


def partial(rates: dict[str, float], upto: float, k: int = 2, w: float = 60.0, bins: int = 6) -> tuple:
    """Window k's progress until `upto` s into it, `rates` per s spread evenly."""
    aggs = {}
    for q, r in rates.items():
        sub = [int(r * w / bins) if (j + 1) * w / bins <= upto else int(r * (upto - j * w / bins))
               if j * w / bins < upto else 0 for j in range(bins)]
        n = sum(sub)
        aggs[q] = {"n": n, "in_sum": n * TOKS[q][0], "out_sum": n * TOKS[q][1], "in_hist": [0] * 63 + [n],
                   "out_hist": [0] * 63 + [n], "lat_n": 0, "lat_sum": 0.0, "ttft_n": 0, "ttft_sum": 0.0,
                   "slo_n": 0, "slo_ok": 0, "sub_n": sub, "t_min": k * w}
    msg = {"kind": "progress", "partition": 0, "window": k, "wm": k * w + upto, "aggs": aggs}
    pw = partial_window("default", k, w, k * w + upto, [msg])
    return pw, {q: bin_rates(k, w, k * w + upto, a["sub_n"]) for q, a in aggs.items()}


def test_fast_path_grows_the_fleet_inside_a_window(catalog) -> None:
    pl = planner(catalog, fast_path=True, forecast=False)
    st = new_planner_state()
    pl.on_window(st, window(0, {"code": 5, "conversation": 20}))
    pl.on_window(st, window(1, {"code": 5, "conversation": 20}))
    before = gpus(st)
    calm, calm_bins = partial({"code": 5, "conversation": 20}, 25.0)
    assert pl.on_burst(st, calm, bins=calm_bins).events == []
    burst, burst_bins = partial({"code": 40, "conversation": 20}, 25.0)
    (ev,) = pl.on_burst(st, burst, bins=burst_bins).events
    assert ev.trigger == "burst" and gpus(st) > before and st.plan_demand["code"] >= 40 - 1e-6
    spec = pl.instance_for(burst).to_spec()
    assert check_plan(pl.compiled(spec), st.plan, spec).feasible
    # the next closed window does not scale back down below the burst while it is held
    pl2 = planner(catalog, fast_path=True, forecast=False, scale_down_delay_s=300.0)
    st2 = new_planner_state()
    pl2.on_window(st2, window(0, {"code": 5, "conversation": 20}))
    pl2.on_burst(st2, burst, bins=burst_bins)
    grown = gpus(st2)
    pl2.on_window(st2, window(2, {"code": 6, "conversation": 20}))
    assert gpus(st2) >= grown


def test_first_plan_from_observed_traffic(catalog) -> None:
    pl = planner(catalog, fast_path=True, warm_start_s=10.0)
    st = new_planner_state()
    early, _ = partial({"conversation": 50}, 5.0, k=0)
    assert early is None, "no burst interval complete yet: nothing to size on"
    seen, bins = partial({"conversation": 50}, 12.0, k=0)
    (ev,) = pl.on_burst(st, seen, bins=bins).events
    assert ev.trigger == "startup" and ev.demand["conversation"] == pytest.approx(50, rel=0.1)
    catalog_rate = next(q.arrival_rate for q in catalog.query_types if q.id == "conversation")
    assert ev.demand["conversation"] > 3 * catalog_rate


def test_trend_forecast() -> None:
    ramp = [(10.0 * j, 10.0 + 5.0 * j) for j in range(5)]          # +0.5 req/s per s
    assert trend_forecast(ramp, 60.0) == pytest.approx(30.0 + 30.0)
    assert trend_forecast(ramp[:2], 60.0) is None
    assert trend_forecast([(10.0 * j, 30.0 - j) for j in range(5)], 60.0) is None
    assert trend_forecast(ramp, 1e4) == pytest.approx(2.0 * 30.0)      # capped
    noise = [(0.0, 100.0), (10.0, 96.0), (20.0, 99.0), (30.0, 101.0), (40.0, 104.0)]
    assert trend_forecast(noise, 60.0) is None, "a few per cent of noise is not a climb"


def test_planning_margins_and_work_budget_reach_the_solvers(catalog) -> None:
    w = window(0, {"code": 10, "conversation": 40})
    nominal = planner(catalog).on_window(new_planner_state(), w).events[0]
    robust = planner(catalog, latency_headroom=1.5).on_window(new_planner_state(), w).events[0]
    assert robust.cost_per_hour > nominal.cost_per_hour, "planning for 1.5x latencies buys more capacity"
    a = planner(catalog, agh_work=200.0, agh_deadline_s=30.0).on_window(new_planner_state(), w).events[0]
    b = planner(catalog, agh_work=200.0, agh_deadline_s=30.0).on_window(new_planner_state(), w).events[0]
    assert a.plan == b.plan and a.method == "agh"
