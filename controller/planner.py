"""The planner: one decision per closed demand window, and one per audit report.

Pure of Kafka: `Planner.on_window(state, window)` takes the planner's JSON state (kept in a
changelog-backed table by the faust app) and returns the messages to publish. Rules:

* GH runs on every window close, as a repair of the plan in force (its replicas kept, idle
  ones trimmed), so plans change by adding and removing replicas rather than swapping
  deployments whose new replicas would start cold. Its plan is published when there is no plan in force,
  when the plan in force is infeasible for the new demand, or when GH is cheaper than the
  plan in force by more than `improve_threshold` (after the minimum dwell time).
* Drift (drift.py) triggers AGH, warm-started from the plan in force with the switch cost
  of spec section 6 damping churn, subject to the same dwell time (unless the plan in
  force is infeasible, which always re-plans).
* When no valid plan exists, a degraded plan (least unserved within budget and inventory)
  is published in the same window, flagged, with the explanation.
* Every AGH plan (and the first plan) is sent for a background exact audit; an audit that
  finds a plan cheaper by more than `audit_adopt_threshold` may be adopted.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from schemas import AllocationEvent, AuditReport, AuditRequest, Catalog, DemandWindow, Instance, Plan
from solvers import check_plan, check_result, compile_instance, from_plan, solve, to_plan
from solvers.explain import route_reasons

from . import drift
from .settings import Settings

log = structlog.get_logger()
TOKEN_BUCKET = 1.05  # token means are rounded UP to powers of this (conservative, cacheable)


def bucket_tokens(n: float) -> float:
    """Round a mean token count up to the next 5 % log bucket: longer requests are slower,
    so the plan stays safe, and stable traffic maps to the same compiled instance."""
    return float(round(TOKEN_BUCKET ** math.ceil(math.log(max(n, 1.0)) / math.log(TOKEN_BUCKET) - 1e-9), 3))


def new_planner_state() -> dict[str, Any]:
    return {"epoch": 0, "plan": None, "plan_cost": None, "plan_demand": None, "plan_at": None,
            "method": None, "detectors": {}, "wm": {}, "pending": {}, "late_extra": 0,
            "closed_upto": None, "windows_closed": 0, "recent_rates": []}


@dataclass
class Decision:
    """What one window (or audit) produced."""

    events: list[AllocationEvent] = field(default_factory=list)
    audits: list[AuditRequest] = field(default_factory=list)
    solve_seconds: dict[str, float] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)
    kept_reason: str | None = None


class Planner:
    def __init__(self, catalog: Catalog, settings: Settings, improve_threshold: float = 0.05,
                 cache_size: int = 32) -> None:
        self.catalog = catalog
        self.s = settings
        self.improve_threshold = improve_threshold
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self.cache_hits = 0
        self.cache_misses = 0

    def compiled(self, spec: dict[str, Any]) -> Any:
        """CompiledInstance of `spec`, reused across windows whose token buckets agree
        (nothing compiled depends on arrival rates, which are swapped in afterwards)."""
        key_doc = {k: v for k, v in spec.items() if k not in ("name", "query_types")}
        key_doc["q"] = [{k: v for k, v in q.items() if k != "arrival_rate"} for q in spec["query_types"]]
        key = repr(key_doc)
        ci = self._cache.get(key)
        if ci is None:
            self.cache_misses += 1
            ci = compile_instance(spec)
            self._cache[key] = ci
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self.cache_hits += 1
            self._cache.move_to_end(key)
        return ci.with_demand(np.array([q["arrival_rate"] for q in spec["query_types"]], dtype=np.float64))

    # ---- instance of one window -------------------------------------------------------------
    def instance_for(self, window: DemandWindow, recent: list[dict[str, float]] | None = None) -> Instance:
        """The instance planned for a window; with `recent` (earlier windows' rates, newest last)
        each query type is planned at its peak over the last `demand_hold_windows` windows."""
        demand: dict[str, dict[str, float]] = {}
        known = {q.id for q in self.catalog.query_types}
        held = recent[-(self.s.demand_hold_windows - 1):] if recent and self.s.demand_hold_windows > 1 else []
        for d in window.demand:
            if d.query_type not in known:
                continue
            peak = max([d.arrival_rate] + [r.get(d.query_type, 0.0) for r in held])
            row: dict[str, float] = {"arrival_rate": peak}
            if d.count > 0:
                row["input_tokens"] = bucket_tokens(d.input_tokens_mean)
                row["output_tokens"] = bucket_tokens(d.output_tokens_mean)
            demand[d.query_type] = row
        for q in known - set(demand):
            peak = max([r.get(q, 0.0) for r in held], default=0.0)
            if peak > 0:
                demand[q] = {"arrival_rate": peak}
        for q in known:  # no demand: nothing to serve, so nothing is required
            if demand.setdefault(q, {"arrival_rate": 0.0})["arrival_rate"] == 0.0:
                demand[q]["max_unserved"] = 1.0
        return self.catalog.to_instance(demand, name=f"{window.fleet_id}@{window.window_end:.0f}",
                                        budget_per_hour=self.s.budget_per_hour)

    # ---- decisions ----------------------------------------------------------------------------
    def on_window(self, state: dict[str, Any], window: DemandWindow,
                  closed_at: float | None = None, *, instance: Instance | None = None,
                  startup: bool = False) -> Decision:
        out = Decision()
        recent = state.setdefault("recent_rates", [])
        inst = instance or self.instance_for(window, recent)
        if not startup:
            recent.append({d.query_type: d.arrival_rate for d in window.demand})
            del recent[:-max(1, self.s.demand_hold_windows)]
        spec = inst.to_spec()
        ci = self.compiled(spec)
        rates = {q: float(r) for q, r in zip(ci.qt_ids, ci.lam)}
        if not startup:
            out.drift = drift.detect(state["detectors"], rates, state["plan_demand"],
                                     threshold=self.s.drift_threshold, delta=self.s.drift_ph_delta,
                                     lam=self.s.drift_ph_lambda, method=self.s.drift_method)
        in_force = state["plan"]
        in_force_ok, in_force_cost = False, None
        if in_force is not None:
            rep = check_plan(ci, in_force, spec)
            in_force_ok, in_force_cost = rep.feasible, rep.cost_per_hour
        dwell_ok = state["plan_at"] is None or window.window_end - state["plan_at"] >= self.s.min_dwell_s

        # GH repairs the plan in force (its replicas kept as paid capacity, idle ones trimmed):
        # a cold plan could replace whole deployments, and new replicas start cold
        warm = from_plan(ci, in_force) if in_force is not None else None
        gh = solve(ci, "gh", prev=warm) if warm is not None else solve(ci, "gh")
        gh_ok = gh.has_solution and check_result(ci, gh).feasible
        if warm is not None and not gh_ok:  # kept replicas can block the budget a fresh plan needs
            fresh = solve(ci, "gh")
            if fresh.has_solution and check_result(ci, fresh).feasible:
                gh, gh_ok = fresh, True
        out.solve_seconds["gh"] = gh.seconds
        result, trigger = None, None
        if in_force is None:
            result, trigger = gh, "startup"
        elif out.drift and (dwell_ok or not in_force_ok):
            result, trigger = gh, "drift"
        elif not in_force_ok:
            result, trigger = gh, "window"
        elif gh_ok and dwell_ok and in_force_cost is not None and \
                gh.objective < in_force_cost * (1 - self.improve_threshold):
            result, trigger = gh, "window"
        if result is None:
            out.kept_reason = "plan in force still feasible" + ("" if dwell_ok else " (dwell)")
            return out

        if trigger in ("drift", "startup") or not gh_ok:
            agh = solve(ci, "agh", deadline_s=self.s.agh_deadline_s, seed=state["epoch"],
                        warm_start=warm, prev_replicas=warm[0] if warm is not None else None,
                        switch_cost_per_gpu=self.s.switch_cost_per_gpu if warm is not None else 0.0)
            out.solve_seconds["agh"] = agh.seconds
            agh_ok = agh.has_solution and check_result(ci, agh).feasible
            if agh_ok or not gh_ok:
                result = agh
        report = check_result(ci, result)
        degraded = not (result.has_solution and report.feasible)
        explanation = list(result.explanation)
        if degraded:
            trigger = "degraded"
            explanation = explanation or route_reasons(ci) or [
                "demand exceeds what the budget and GPU inventory can serve"]
        event = AllocationEvent(
            fleet_id=window.fleet_id, epoch=state["epoch"] + 1, trigger=trigger,
            method=result.method if result.method in ("gh", "agh", "milp", "cpsat") else "gh",
            status=result.status.value, plan=Plan.model_validate(to_plan(ci, result)),
            cost_per_hour=report.cost_per_hour, gpu_cost_per_hour=report.gpu_cost_per_hour,
            switch_cost=float(result.stats.get("switch_cost", 0.0)), degraded=degraded,
            explanation=explanation, demand=rates, window_end=None if startup else window.window_end,
            created_at=time.time(), solve_seconds=result.seconds,
            gate_route=self._gate_route(ci, result) if not degraded else None,
            window_closed_at=closed_at)
        self._adopt(state, event, None if startup else window.window_end)
        out.events.append(event)
        if self.s.audit_enabled and event.method == "agh" and not degraded:
            out.audits.append(AuditRequest(
                fleet_id=window.fleet_id, epoch=event.epoch, instance=inst, plan=event.plan,
                method=self.s.audit_method, time_limit_s=self.s.audit_time_limit_s,
                created_at=time.time()))
        return out

    def on_startup(self, state: dict[str, Any], fleet_id: str, now: float) -> Decision:
        """A first plan from the catalog's default demand, so routers have one before the first
        window closes (the first real window then re-plans on drift if demand differs)."""
        if state["plan"] is not None or state["epoch"] > 0:
            return Decision()
        defaults = DemandWindow(fleet_id=fleet_id, window_start=max(0.0, now - 1.0), window_end=now,
                                records=0, demand=[])
        demand = {q.id: {"arrival_rate": q.arrival_rate} for q in self.catalog.query_types}
        inst = self.catalog.to_instance(demand, name=f"{fleet_id}@startup", budget_per_hour=self.s.budget_per_hour)
        return self.on_window(state, defaults, None, instance=inst, startup=True)

    def on_audit(self, state: dict[str, Any], report: AuditReport, instance: Instance | None = None) -> Decision:
        """Adopt an audited plan when it is cheaper by more than the threshold."""
        out = Decision()
        if not self.s.audit_adopt or report.better_plan is None or report.best_cost is None:
            return out
        if report.epoch != state["epoch"] or state["plan_cost"] is None:
            out.kept_reason = "audit of a superseded epoch"
            return out
        if report.best_cost >= state["plan_cost"] * (1 - self.s.audit_adopt_threshold):
            return out
        event = AllocationEvent(
            fleet_id=report.fleet_id, epoch=state["epoch"] + 1, trigger="audit", method=report.method,
            status="feasible", plan=report.better_plan, cost_per_hour=report.best_cost,
            gpu_cost_per_hour=report.best_cost, optimality_gap=report.gap, demand=state["plan_demand"] or {},
            window_end=state["plan_at"], created_at=time.time())
        self._adopt(state, event, state["plan_at"] or 0.0)
        out.events.append(event)
        return out

    @staticmethod
    def _adopt(state: dict[str, Any], event: AllocationEvent, at: float | None) -> None:
        state["epoch"] = event.epoch
        state["plan"] = event.plan.to_spec()
        state["plan_cost"] = event.cost_per_hour
        state["plan_demand"] = dict(event.demand)
        state["plan_at"] = at
        state["method"] = event.method

    def _gate_route(self, ci: Any, result: Any) -> dict[str, dict[str, Any]] | None:
        """Gate-and-route parameters per deployment (see controller/gate_route_params.py)."""
        if self.s.gate_route == "off":
            return None
        from .gate_route_params import gate_route_for_plan  # imports the fluid LP only when used

        return gate_route_for_plan(self.catalog, ci, result, force=self.s.gate_route == "on") or None


def audit_plan(request: AuditRequest) -> AuditReport:
    """Run the exact solver on an audit request (called in a separate process)."""
    t0 = time.perf_counter()
    spec = request.instance.to_spec()
    ci = compile_instance(spec)
    plan = request.plan.to_spec()
    plan_cost = check_plan(ci, plan, spec).cost_per_hour
    warm = from_plan(ci, plan)
    res = solve(ci, request.method, time_limit_s=request.time_limit_s, warm_start=warm)
    better = None
    best = res.objective if res.has_solution else None
    if res.has_solution and check_result(ci, res).feasible and res.objective < plan_cost - 1e-9:
        better = Plan.model_validate(to_plan(ci, res))
    gap = None
    if res.bound is not None and plan_cost > 0:
        gap = max(0.0, (plan_cost - res.bound) / plan_cost)
    return AuditReport(fleet_id=request.fleet_id, epoch=request.epoch, method=request.method,
                       status=res.status.value, plan_cost=plan_cost, best_cost=best,
                       bound=res.bound if res.bound is None or np.isfinite(res.bound) else None,
                       gap=gap, better_plan=better, seconds=time.perf_counter() - t0,
                       created_at=time.time())
