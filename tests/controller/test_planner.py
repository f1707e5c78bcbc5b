"""Planner decisions without Kafka: startup, keep, drift -> AGH, degraded surge, audits."""
from __future__ import annotations

import pytest

from controller.planner import Planner, audit_plan, bucket_tokens, new_planner_state
from controller.settings import Settings
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
    base = {"min_dwell_s": 0, "agh_deadline_s": 0.2, "audit_time_limit_s": 10} | kw
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
    d2 = pl.on_window(st, w2)
    (ev2,) = d2.events
    assert ev2.epoch == 2 and ev2.trigger == "drift" and ev2.method == "agh"
    assert any(r.startswith("relative_change") for r in d2.drift)
    _check(pl, w2, ev2)
    assert st["epoch"] == 2 and st["plan_demand"]["conversation"] == 30


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
    (ev,) = pl.on_window(st, surge).events
    assert ev.degraded and ev.trigger == "degraded" and ev.explanation
    assert ev.gpu_cost_per_hour <= 15.0 + 1e-6
    _check(pl, surge, ev)
    calm = _window(2, {"code": 2, "conversation": 4})
    (back,) = pl.on_window(st, calm).events
    assert not back.degraded and back.epoch == ev.epoch + 1
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
    assert st["plan_at"] is None, "the dwell time starts with the first real window"
    assert pl.on_startup(st, "f", now=1_700_000_001.0).events == [], "only once"
    d = pl.on_window(st, _window(0, {"code": 30, "conversation": 60}))
    assert d.events and d.events[0].trigger == "drift" and d.events[0].epoch == 2


def test_demand_hold_plans_for_the_recent_peak(catalog) -> None:
    pl = _planner(catalog, demand_hold_windows=3)
    st = new_planner_state()
    pl.on_window(st, _window(0, {"code": 20, "conversation": 10}))
    pl.on_window(st, _window(1, {"code": 2, "conversation": 10}))
    inst = pl.instance_for(_window(2, {"code": 1, "conversation": 12}), st["recent_rates"])
    rates = {q.id: q.arrival_rate for q in inst.query_types}
    assert rates["code"] == 20 and rates["conversation"] == 12, "peak over the last 3 windows"
    pl.on_window(st, _window(2, {"code": 1, "conversation": 12}))
    pl.on_window(st, _window(3, {"code": 1, "conversation": 12}))
    inst = pl.instance_for(_window(4, {"code": 1, "conversation": 5}), st["recent_rates"])
    assert {q.id: q.arrival_rate for q in inst.query_types}["code"] == 1, "the burst has aged out"
    assert len(st["recent_rates"]) == 3
