"""Planner decisions without Kafka: startup, keep, drift -> GH at once then AGH, degraded
surge, audits, per-query-type compile caching."""
from __future__ import annotations

import dataclasses

import pytest

from controller.worker.planning.planner import Planner, audit_plan, bucket_tokens, new_planner_state
from controller.common.settings import Settings
from schemas import AuditRequest, DemandWindow, QueryDemand, load_catalog
from solvers import check_plan, compile_instance


def _window(k: int, rates: dict[str, float], w: float = 60.0) -> DemandWindow:
    toks = {"code": (2048, 28), "conversation": (1155, 211)}
    return DemandWindow(window_start=k * w, window_end=(k + 1) * w, records=int(sum(rates.values()) * w),
                        demand=[QueryDemand(query_type=q, count=int(r * w), arrival_rate=r,
                                            input_tokens_mean=toks[q][0], input_tokens_p95=toks[q][0] * 2,
                                            output_tokens_mean=toks[q][1], output_tokens_p95=toks[q][1] * 2)
                                for q, r in rates.items()])


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _planner(catalog, **kw) -> Planner:
    """A planner that re-plans freely every window (the two-timescale policy and hysteresis
    have their own tests in test_two_timescales.py)."""
    base = {"min_dwell_s": 0, "agh_deadline_s": 0.2, "audit_time_limit_s": 10, "replan": "every_window",
            "scale_down_delay_s": 0, "fast_path": False, "gate_route": "auto"} | kw
    return Planner(catalog, Settings(**base))


def _check(planner: Planner, window: DemandWindow, event) -> None:
    spec = planner.instance_for(window).to_spec()
    rep = check_plan(compile_instance(spec), event.plan.to_spec(), spec)
    assert rep.feasible == (not event.degraded), [v.message for v in rep.violations]


def test_startup_keep_and_drift(catalog) -> None:
    pl = _planner(catalog)
    st = new_planner_state()
    w0 = _window(0, {"code": 3, "conversation": 6})
    d0 = pl.on_window(st, w0)
    (ev,) = d0.events
    assert ev.epoch == 1 and ev.trigger == "startup" and ev.method == "agh" and not ev.degraded
    _check(pl, w0, ev)
    assert d0.audits and d0.audits[0].epoch == 1
    d1 = pl.on_window(st, _window(1, {"code": 3.05, "conversation": 5.95}))
    assert d1.events == [] and d1.kept_reason
    w2 = _window(2, {"code": 12, "conversation": 30})
    d2 = pl.on_window(st, w2, closed_at=123.0)
    (gh,) = d2.events  # the window path publishes GH at once; AGH is left to the follow-up
    assert gh.epoch == 2 and gh.trigger == "window" and gh.method == "gh" and gh.window_closed_at == 123.0
    assert any(r.startswith("relative_change") for r in d2.drift)
    assert "agh" not in d2.stage_seconds and {"compile", "gh", "check", "event", "total"} <= set(d2.stage_seconds)
    assert d2.audits == [] and d2.follow_up is not None and d2.follow_up.epoch == 2
    _check(pl, w2, gh)
    d3 = pl.follow_up(st, d2.follow_up)
    (ev3,) = d3.events
    assert ev3.epoch == 3 and ev3.trigger == "drift" and ev3.method == "agh" and ev3.window_end == w2.window_end
    assert ev3.cost_per_hour <= gh.cost_per_hour * (1 + 1e-9)
    assert d3.stage_seconds["agh"] > 0 and d3.audits and d3.audits[0].epoch == 3
    _check(pl, w2, ev3)
    assert st.epoch == 3 and st.plan_demand["conversation"] == 30 and st.method == "agh"
    assert pl.follow_up(st, d2.follow_up).events == [], "a follow-up runs once per GH epoch"


def test_follow_up_is_dropped_when_superseded_or_worse(catalog) -> None:
    pl = _planner(catalog)
    st = new_planner_state()
    pl.on_window(st, _window(0, {"code": 3, "conversation": 6}))
    fu = pl.on_window(st, _window(1, {"code": 12, "conversation": 30})).follow_up
    assert fu is not None
    cheap_gh = dataclasses.replace(fu, gh_report=dataclasses.replace(fu.gh_report, cost_per_hour=1e-6))
    kept = pl.follow_up(st, cheap_gh)
    assert kept.events == [] and "GH plan is better" in kept.kept_reason and st.epoch == fu.epoch
    (newer,) = pl.on_window(st, _window(2, {"code": 1, "conversation": 2})).events  # demand falls: GH re-plans
    stale = pl.follow_up(st, fu)
    assert stale.events == [] and "superseded" in stale.kept_reason and st.epoch == newer.epoch


def test_moved_token_bucket_recompiles_one_query_type(catalog) -> None:
    pl = _planner(catalog)
    st = new_planner_state()
    pl.on_window(st, _window(0, {"code": 3, "conversation": 6}))
    before = pl.compile_cache.compiled
    w = _window(1, {"code": 3, "conversation": 6})
    longer = w.demand[0].model_copy(update={"input_tokens_mean": w.demand[0].input_tokens_mean * 1.2})
    pl.on_window(st, w.model_copy(update={"demand": [longer, w.demand[1]]}))
    assert pl.compile_cache.compiled == before + 1
    spec = pl.instance_for(w.model_copy(update={"demand": [longer, w.demand[1]]})).to_spec()
    got, want = pl.compiled(spec), compile_instance(spec)
    assert got.n_routes == want.n_routes and (got.mu == want.mu).all() and (got.route_cand == want.route_cand).all()


def test_dwell_time_blocks_voluntary_changes(catalog) -> None:
    pl = _planner(catalog, min_dwell_s=600)
    st = new_planner_state()
    pl.on_window(st, _window(0, {"code": 10, "conversation": 20}))
    d = pl.on_window(st, _window(1, {"code": 4, "conversation": 8}))  # drift down, still feasible
    assert d.events == [] and "dwell" in d.kept_reason


def test_infeasible_surge_is_degraded_then_recovers(catalog) -> None:
    pl = _planner(catalog, budget_per_hour=15.0)
    st = new_planner_state()
    pl.on_window(st, _window(0, {"code": 2, "conversation": 4}))
    surge = _window(1, {"code": 400, "conversation": 900})
    d = pl.on_window(st, surge)
    (ev,) = d.events
    assert ev.degraded and ev.trigger == "degraded" and ev.explanation and ev.method == "gh"
    assert ev.gpu_cost_per_hour <= 15.0 + 1e-6
    _check(pl, surge, ev)
    assert d.follow_up is not None, "AGH gets its chance after the degraded GH plan is out"
    for agh in pl.follow_up(st, d.follow_up).events:  # published only if it leaves less unserved
        assert agh.degraded and agh.method == "agh" and agh.epoch == ev.epoch + 1
        assert agh.gpu_cost_per_hour <= 15.0 + 1e-6
        _check(pl, surge, agh)
    calm = _window(2, {"code": 2, "conversation": 4})
    epoch = st.epoch
    (back,) = pl.on_window(st, calm).events
    assert not back.degraded and back.epoch == epoch + 1
    _check(pl, calm, back)


def test_audit_finds_gap_and_better_plans_are_adopted(catalog) -> None:
    pl = _planner(catalog, audit_adopt_threshold=0.0)
    st = new_planner_state()
    d = pl.on_window(st, _window(0, {"code": 5, "conversation": 11}))
    report = audit_plan(d.audits[0])
    assert report.status in ("optimal", "feasible") and report.bound is not None
    assert report.plan_cost == pytest.approx(d.events[0].cost_per_hour, rel=1e-6)
    assert report.gap is not None and report.gap >= 0
    if report.better_plan is not None:
        (ev,) = pl.on_audit(st, report).events
        assert ev.trigger == "audit" and ev.epoch == 2 and ev.cost_per_hour < d.events[0].cost_per_hour
    stale = report.model_copy(update={"epoch": 99})
    assert pl.on_audit(st, stale).events == []


def test_token_buckets_round_up() -> None:
    for n in (1, 28, 211, 1155, 2048, 7437):
        b = bucket_tokens(n)
        assert n <= b <= n * 1.05 + 1e-9
    assert bucket_tokens(1000) == bucket_tokens(1001) or bucket_tokens(1001) / bucket_tokens(1000) < 1.06


def test_audit_request_roundtrip(catalog) -> None:
    pl = _planner(catalog)
    d = pl.on_window(new_planner_state(), _window(0, {"code": 1, "conversation": 1}))
    req = d.audits[0]
    assert AuditRequest.model_validate_json(req.model_dump_json()) == req


def test_gate_route_parameters_for_shared_pools(catalog) -> None:
    w = _window(0, {"code": 20, "conversation": 40})
    ev = _planner(catalog).on_window(new_planner_state(), w).events[0]
    shared = {d for d in {r.deployment for r in ev.plan.routes}
              if sum(r.deployment == d and r.fraction > 1e-9 for r in ev.plan.routes) > 1}
    assert set(ev.gate_route or {}) == shared
    for did, params in (ev.gate_route or {}).items():
        rep = next(d.replicas for d in ev.plan.deployments if d.id == did)
        assert params["mixed_replicas"] + params["solo_replicas"] == rep
        assert set(params["classes"]) <= {"code", "conversation"}
    off = _planner(catalog, gate_route="off").on_window(new_planner_state(), w).events[0]
    assert off.gate_route is None
    forced = _planner(catalog, gate_route="on").on_window(new_planner_state(), w).events[0]
    assert set(forced.gate_route or {}) == {d.id for d in forced.plan.deployments}


def test_startup_plan_from_catalog_defaults(catalog) -> None:
    pl = _planner(catalog)
    st = new_planner_state()
    (ev,) = pl.on_startup(st, "f", now=1_700_000_000.0).events
    assert ev.trigger == "startup" and ev.epoch == 1 and ev.window_end is None and not ev.degraded
    assert ev.demand == {q.id: q.arrival_rate for q in catalog.query_types}
    assert st.plan_at is None, "the dwell time starts with the first real window"
    assert pl.on_startup(st, "f", now=1_700_000_001.0).events == [], "only once"
    d = pl.on_window(st, _window(0, {"code": 30, "conversation": 60}))
    assert d.events and d.events[0].method == "gh" and d.events[0].epoch == 2
    assert d.follow_up is not None and d.follow_up.trigger == "drift"


def test_demand_hold_plans_for_the_recent_peak(catalog) -> None:
    pl = _planner(catalog, demand_hold_windows=3)
    st = new_planner_state()
    pl.on_window(st, _window(0, {"code": 20, "conversation": 10}))
    pl.on_window(st, _window(1, {"code": 2, "conversation": 10}))
    inst = pl.instance_for(_window(2, {"code": 1, "conversation": 12}), st.recent_rates)
    rates = {q.id: q.arrival_rate for q in inst.query_types}
    assert rates["code"] == 20 and rates["conversation"] == 12, "peak over the last 3 windows"
    pl.on_window(st, _window(2, {"code": 1, "conversation": 12}))
    pl.on_window(st, _window(3, {"code": 1, "conversation": 12}))
    inst = pl.instance_for(_window(4, {"code": 1, "conversation": 5}), st.recent_rates)
    assert {q.id: q.arrival_rate for q in inst.query_types}["code"] == 1, "the burst has aged out"
    assert len(st.recent_rates) == 3


def test_each_query_type_is_sized_for_its_peak_burst_unless_burst_s_is_0(catalog) -> None:
    w = _window(0, {"code": 5, "conversation": 10})
    bursty = w.model_copy(update={"demand": [
        d.model_copy(update={"arrival_rate_peak": 30.0 if d.query_type == "code" else 9.0}) for d in w.demand]})
    peak = _planner(catalog).instance_for(bursty)
    mean = _planner(catalog, burst_s=0).instance_for(bursty)
    assert {q.id: q.arrival_rate for q in peak.query_types if q.id in ("code", "conversation")} == \
        {"code": 30.0, "conversation": 10.0}, "the peak where it is higher, never below the mean"
    assert {q.id: q.arrival_rate for q in mean.query_types if q.id in ("code", "conversation")} == \
        {"code": 5.0, "conversation": 10.0}
    st = new_planner_state()
    pl = _planner(catalog, demand_hold_windows=2)
    pl.on_window(st, bursty)
    assert st.recent_rates[-1]["code"] == 30.0, "held windows keep the rate that was planned"


def test_burst_s_longer_than_the_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="burst_s"):
        Settings(window_s=10, burst_s=20, agh_deadline_s=0.2)
