"""The planner: one decision per closed demand window, and one per audit report.

Pure of Kafka: `Planner.on_window(state, window)` takes the fleet's `PlannerState` (kept in a
changelog-backed table by the faust app) and returns the messages to publish. Rules:

* GH runs on every window close, as a repair of the plan in force (its replicas kept, idle
  ones trimmed), so plans change by adding and removing replicas rather than swapping
  deployments whose new replicas would start cold. Its plan is published when there is no plan in force,
  when the plan in force is infeasible for the new demand, or when GH is cheaper than the
  plan in force by more than `improve_threshold` (after the minimum dwell time).
* The window -> event path runs GH only, so its latency is GH-bound: on drift (drift.py,
  subject to the same dwell time unless the plan in force is infeasible), and when the plan
  in force is infeasible and GH finds no valid plan, GH's plan is published at once (trigger
  "window", or "degraded") and `on_window` hands back a `FollowUp`. `Planner.follow_up` then
  runs AGH, warm-started from that GH plan, with the switch cost of spec section 6 (against
  the plan in force before it) damping churn, and publishes its plan as the next epoch
  (trigger "drift" after drift) unless GH's plan is better (see `follow_up`); a follow-up
  whose GH epoch has been superseded is dropped. Only the very first plan (nothing in force)
  runs AGH inline.
* When no valid plan exists, GH's degraded plan (within budget and inventory) is published
  in the same window, flagged, with the explanation; AGH's follow-up replaces it when valid,
  or when it leaves less demand unserved within budget, inventory and capacity.
* Every AGH plan (and the first plan) is sent for a background exact audit; an audit that
  finds a plan cheaper by more than `audit_adopt_threshold` may be adopted.
* Compiled routes are cached per query type and token bucket (solvers.compile.CompileCache),
  so a window recompiles only the query types whose buckets moved. `Decision.stage_seconds`
  records where each decision's time went.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from schemas import AllocationEvent, AuditReport, AuditRequest, Catalog, DemandWindow, Instance, Plan
from solvers import check_plan, check_result, compile_instance, from_plan, solve, to_plan
from solvers.methods import METHODS
from solvers.compile import CompileCache, CompiledInstance
from solvers.explain import route_reasons
from solvers.result import SolveResult, objective
from solvers.robust import with_margins
from solvers.validate import Report

from controller.worker.planning import composition

from controller.worker.windows import drift

from controller.worker.windows import forecast
from solvers.cold_start import ColdStart
from controller.worker.planning.self_calibration import constants_in_force
from controller.common.settings import Settings

log = structlog.get_logger()
TOKEN_BUCKET = 1.05  # token means are rounded UP to powers of this (conservative, cacheable)


def bucket_tokens(n: float) -> float:
    """Round a mean token count up to the next 5 % log bucket: longer requests are slower,
    so the plan stays safe, and stable traffic maps to the same compiled instance."""
    return float(round(TOKEN_BUCKET ** math.ceil(math.log(max(n, 1.0)) / math.log(TOKEN_BUCKET) - 1e-9), 3))


@dataclass(slots=True)
class PlannerState:
    """What the planner keeps between windows for one fleet; only this module writes it.

    Kept in the worker's fleet-state table (controller/worker/fleet_state.py serialises it for
    the changelog). Every field is JSON-able: plan is a spec plan dict, detectors the drift
    detectors' state, held [[at, {query type: rate}], ...] the rates the scale-down delay holds,
    bins the fast path's per-interval history."""

    epoch: int = 0
    plan: dict[str, Any] | None = None
    plan_cost: float | None = None
    plan_demand: dict[str, float] | None = None
    plan_at: float | None = None
    method: str | None = None
    detectors: dict[str, Any] = field(default_factory=dict)
    recent_rates: list[Any] = field(default_factory=list)
    composition_at: float | None = None
    held: list[Any] = field(default_factory=list)
    bins: dict[str, Any] = field(default_factory=dict)


def new_planner_state() -> PlannerState:
    return PlannerState()


@dataclass(frozen=True)
class FollowUp:
    """AGH still to run for a window whose GH plan was published at once (Planner.follow_up)."""

    epoch: int                 # epoch of that GH plan: once another plan is adopted, AGH is stale
    trigger: str               # trigger of the AGH event, if it is published
    window: DemandWindow
    closed_at: float | None
    instance: Instance
    ci: CompiledInstance
    prev_replicas: Any             # replicas of the plan in force before the GH plan
    gh: SolveResult
    gh_report: Report


@dataclass
class Decision:
    """What one window (or audit, or follow-up) produced."""

    events: list[AllocationEvent] = field(default_factory=list)
    audits: list[AuditRequest] = field(default_factory=list)
    solve_seconds: dict[str, float] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per planning stage
    compiled_query_types: int = 0  # query types whose routes were compiled (cache misses)
    drift: list[str] = field(default_factory=list)
    kept_reason: str | None = None
    follow_up: FollowUp | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to stage_seconds[name]."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - t0


class Planner:
    def __init__(self, catalog: Catalog, settings: Settings, improve_threshold: float = 0.05,
                 cache_size: int = 128) -> None:
        self.catalog = catalog
        self.s = settings
        self.improve_threshold = improve_threshold
        self._compile = CompileCache(max_query_types=cache_size)
        self.cold_start = ColdStart.from_spec(catalog.to_instance().to_spec(),
                                              engine_s=settings.cold_start_engine_s,
                                              load_gbps=settings.cold_start_load_gbps)

    @property
    def compile_cache(self) -> CompileCache:
        """Counters: `compiled` / `reused` query-type route blocks."""
        return self._compile

    def compiled(self, spec: dict[str, Any]) -> CompiledInstance:
        """CompiledInstance of `spec`. Routes are kept per query type and token bucket, so a
        window recompiles only the query types whose buckets moved (rates are not compiled)."""
        if self.s.latency_headroom != 1.0 or self.s.error_margin != 1.0:  # plan as if slower / less accurate
            spec = with_margins(spec, self.s.latency_headroom, self.s.error_margin)
        return self._compile(spec)

    @property
    def hold_windows(self) -> int:
        """Windows whose peak rates a plan is sized for: scale up at once, scale down only once
        demand stayed lower for scale_down_delay_s (hysteresis), or demand_hold_windows."""
        return max(self.s.demand_hold_windows, math.ceil(self.s.scale_down_delay_s / self.s.window_s - 1e-9))

    def held_rates(self, state: PlannerState, now: float) -> list[dict[str, float]]:
        """Rates of the startup and burst plans of the last scale_down_delay_s (hysteresis: a
        window's plan does not scale down below them until they are that old)."""
        held = [h for h in state.held if h[0] >= now - self.s.scale_down_delay_s]
        state.held = held
        return [h[1] for h in held]

    def _hold(self, state: PlannerState, at: float, rates: dict[str, float]) -> None:
        state.held.append([at, {q: float(r) for q, r in rates.items()}])

    # ---- instance of one window -------------------------------------------------------------
    def planning_rates(self, window: DemandWindow) -> dict[str, float]:
        """The rate each query type is sized for: its busiest burst interval's rate when the
        window measured one and burst_s is on (a window mean hides the bursts that break short
        SLOs), else the window mean."""
        use_peak = self.s.burst_s > 0
        return {d.query_type: max(d.arrival_rate, d.arrival_rate_peak or 0.0) if use_peak else d.arrival_rate
                for d in window.demand}

    def instance_for(self, window: DemandWindow, recent: list[dict[str, float]] | None = None,
                     extra: list[dict[str, float]] | None = None) -> Instance:
        """The instance planned for a window, at its planning rates; with `recent` (earlier
        windows' planning rates, newest last) each query type is planned at its highest over the
        last `demand_hold_windows` windows."""
        demand: dict[str, dict[str, float]] = {}
        known = {q.id for q in self.catalog.query_types}
        hold = self.hold_windows
        held = (recent[-(hold - 1):] if recent and hold > 1 else []) + list(extra or [])
        rates = self.planning_rates(window)
        for d in window.demand:
            if d.query_type not in known:
                continue
            peak = max([rates[d.query_type]] + [r.get(d.query_type, 0.0) for r in held])
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
        inst = self.catalog.to_instance(demand, name=f"{window.fleet_id}@{window.window_end:.0f}",
                                        budget_per_hour=self.s.budget_per_hour,
                                        performance_model=self.s.performance_model)
        corr = getattr(self, "self_calibration", None)  # issue 16: per-tier speed correction
        return corr.apply(inst) if corr is not None else inst

    # ---- decisions ----------------------------------------------------------------------------
    def on_window(self, state: PlannerState, window: DemandWindow,
                  closed_at: float | None = None, *, instance: Instance | None = None,
                  startup: bool = False) -> Decision:
        out = Decision()
        t_start = time.perf_counter()
        recent = state.recent_rates
        corr = getattr(self, "self_calibration", None)  # issue 16: learn from the window's latencies
        if corr is not None and not startup:
            corr.close_window(state.plan, window.window_end - window.window_start)
        with out.stage("instance"):
            inst = instance or self.instance_for(window, recent, self.held_rates(state, window.window_end))
            if not startup:
                recent.append(self.planning_rates(window))
                del recent[:-max(1, self.hold_windows)]
            spec = inst.to_spec()
        with out.stage("compile"):
            before = self._compile.compiled
            ci = self.compiled(spec)
            out.compiled_query_types = self._compile.compiled - before
        rates = {q: float(r) for q, r in zip(ci.qt_ids, ci.lam)}
        if not startup:
            with out.stage("drift"):
                out.drift = drift.detect(state.detectors, rates, state.plan_demand,
                                         threshold=self.s.drift_threshold, delta=self.s.drift_ph_delta,
                                         lam=self.s.drift_ph_lambda, method=self.s.drift_method)
        in_force = state.plan
        in_force_ok, in_force_cost = False, None
        if in_force is not None:
            with out.stage("check_plan"):
                rep = check_plan(ci, in_force, spec)
            in_force_ok, in_force_cost = rep.feasible, rep.cost_per_hour
        dwell_ok = state.plan_at is None or window.window_end - state.plan_at >= self.s.min_dwell_s

        warm, gh, gh_report = self._repair(out, ci, in_force)
        gh_ok = gh.has_solution and gh_report.feasible
        if in_force is not None and warm is not None and self.s.replan == "two_timescales":
            chosen = self._two_timescales(out, state, window, ci, warm[0], gh if gh_ok else None,
                                          in_force_cost if in_force_ok else None)
            if chosen is not None:
                result, report, trigger, agh_trigger = chosen
                self._publish_then_agh(out, state, window, closed_at, inst, ci, result, report, trigger, startup,
                                       agh_trigger, warm[0], result)
            out.stage_seconds["total"] = time.perf_counter() - t_start
            return out
        trigger, agh_trigger = self._trigger(in_force is None, bool(out.drift), dwell_ok, in_force_ok,
                                             in_force_cost, gh.objective if gh_ok else None)
        if trigger is None:
            out.kept_reason = "plan in force still feasible" + ("" if dwell_ok else " (dwell)")
            out.stage_seconds["total"] = time.perf_counter() - t_start
            return out

        result, report = gh, gh_report
        if trigger == "startup":  # nothing is in force, so nothing to publish before AGH
            agh = self._agh(out, ci, state.epoch, None)
            with out.stage("check"):
                agh_report = check_result(ci, agh)
            if (agh.has_solution and agh_report.feasible) or not gh_ok:
                result, report = agh, agh_report
        self._publish_then_agh(out, state, window, closed_at, inst, ci, result, report, trigger, startup,
                               agh_trigger, warm[0] if warm is not None else None, gh)
        out.stage_seconds["total"] = time.perf_counter() - t_start
        return out

    def _repair(self, out: Decision, ci: CompiledInstance, in_force: dict[str, Any] | None
                ) -> tuple[Any, SolveResult, Report]:
        """GH as a repair of the plan in force (its replicas kept as paid capacity, idle ones
        trimmed): a cold plan could replace whole deployments, and new replicas start cold. When
        the kept replicas block the budget a fresh plan needs, a fresh GH plan is taken instead.
        Returns (the plan in force as a warm start or None, GH's result, its report)."""
        with out.stage("gh"):
            warm = from_plan(ci, in_force) if in_force is not None else None
            gh = solve(ci, "gh", warm_start=warm)
        with out.stage("check"):
            gh_report = check_result(ci, gh)
        if warm is not None and not (gh.has_solution and gh_report.feasible):
            with out.stage("gh"):
                fresh = solve(ci, "gh")
            with out.stage("check"):
                fresh_report = check_result(ci, fresh)
            if fresh.has_solution and fresh_report.feasible:
                gh, gh_report = fresh, fresh_report
        out.solve_seconds["gh"] = gh.seconds
        return warm, gh, gh_report

    def _trigger(self, startup: bool, drift_seen: bool, dwell_ok: bool, in_force_ok: bool,
                 in_force_cost: float | None, gh_cost: float | None) -> tuple[str | None, str | None]:
        """(trigger of the GH plan or None to keep the plan in force, trigger of the AGH that
        follows it or None); `gh_cost` None: GH found no valid plan."""
        if startup:
            return "startup", None
        if drift_seen and (dwell_ok or not in_force_ok):
            return "window", "drift"
        if not in_force_ok:
            return "window", None if gh_cost is not None else "window"
        if gh_cost is not None and dwell_ok and in_force_cost is not None and \
                gh_cost < in_force_cost * (1 - self.improve_threshold):
            return "window", None
        return None, None

    def _publish_then_agh(self, out: Decision, state: PlannerState, window: DemandWindow, closed_at: float | None,
                          inst: Instance, ci: CompiledInstance, result: SolveResult, report: Report, trigger: str,
                          startup: bool, agh_trigger: str | None, prev_replicas: Any, gh: SolveResult) -> None:
        """Publish `result`; with `agh_trigger`, leave AGH to the follow-up, warm-started from `gh`."""
        self._publish_plan(out, state, window, closed_at, inst, ci, result, report, trigger, startup)
        if agh_trigger is not None:
            out.follow_up = FollowUp(epoch=state.epoch, trigger=agh_trigger, window=window,
                                     closed_at=closed_at, instance=inst, ci=ci, prev_replicas=prev_replicas,
                                     gh=gh, gh_report=report)

    def _two_timescales(self, out: Decision, state: PlannerState, window: DemandWindow,
                        ci: CompiledInstance, prev: Any, gh: SolveResult | None, in_force_cost: float | None
                        ) -> tuple[SolveResult, Report, str, str | None] | None:
        """The plan to publish for a window while a plan is in force (controller/worker/planning/composition.py):
        replica counts and routing follow the demand within the composition in force; a new
        composition (GH's, then AGH's on drift) only once the composition has been held for
        composition_dwell_s and its saving pays its priced switch within switch_payback_s, or when the
        composition in force cannot serve the demand. A plan in force that is still valid
        (`in_force_cost` not None) is kept unless the new plan saves improve_threshold of it.
        None: keep the plan in force."""
        with out.stage("within"):
            within = composition.within_composition(ci, prev)
        out.solve_seconds["within"] = within.seconds if within is not None else 0.0
        held_s = window.window_end - (state.composition_at or state.plan_at or window.window_end)
        free = gh
        if within is not None and held_s >= self.s.composition_dwell_s:
            with out.stage("gh"):  # GH's repair keeps the replicas in force; a fresh GH may not
                fresh = solve(ci, "gh")
            if fresh.has_solution and check_result(ci, fresh).feasible and (
                    free is None or self._horizon(ci, prev, fresh) < self._horizon(ci, prev, free)):
                free = fresh
        if within is not None and free is not None:
            may_move = held_s >= self.s.composition_dwell_s and \
                self._horizon(ci, prev, free) < self._horizon(ci, prev, within)
            if not may_move or composition.composition(free.replicas) == composition.composition(within.replicas):
                free = None
        if within is not None and free is None:
            if in_force_cost is not None and within.objective >= in_force_cost * (1 - self.improve_threshold):
                out.kept_reason = "plan in force still valid in its composition"
                return None
            with out.stage("check"):
                report = check_result(ci, within)
            # a drift may still find a cheaper composition: AGH follows once the dwell allows it
            agh_next = "drift" if out.drift and held_s >= self.s.composition_dwell_s else None
            return within, report, "window", agh_next
        if free is None:           # neither the composition in force nor GH serves the demand
            assert gh is None
            fallback = solve(ci, "gh")
            with out.stage("check"):
                report = check_result(ci, fallback)
            return fallback, report, "window", "window"
        with out.stage("check"):
            report = check_result(ci, free)
        return free, report, "window", "drift" if out.drift else None

    def follow_up(self, state: PlannerState, fu: FollowUp) -> Decision:
        """AGH for a window whose GH plan is already out (drift, or no valid GH plan), warm-started
        from that GH plan, with the switch cost counted against the replicas in force before it.
        Its plan is published as the next epoch unless GH's is better: a valid AGH plan goes out
        when its cost plus switch cost is no more than GH's (or GH's is invalid); when neither is
        valid, AGH's goes out if it leaves `improve_threshold` less demand unserved."""
        out = Decision()
        t_start = time.perf_counter()
        if state.epoch != fu.epoch:
            out.kept_reason = "AGH of a superseded epoch"
            return out
        ci = fu.ci
        agh = self._agh(out, ci, fu.epoch - 1, (fu.gh.replicas, fu.gh.x), fu.prev_replicas)
        with out.stage("check"):
            report = check_result(ci, agh)
        per_gpu = self.switch_per_gpu(ci)
        switch = lambda rep: per_gpu * float(  # noqa: E731
            np.abs(np.asarray(rep) - fu.prev_replicas) @ ci.cand_ngpu)
        if self.s.replan == "two_timescales" and agh.has_solution and report.feasible and fu.gh_report.feasible:
            extra = (self._horizon(ci, fu.prev_replicas, agh) - self._horizon(ci, fu.prev_replicas, fu.gh)
                     - (agh.objective - fu.gh.objective) * self.s.switch_payback_s / 3600.0)
            better = self._horizon(ci, fu.prev_replicas, agh) < self._horizon(ci, fu.prev_replicas, fu.gh)
        else:
            extra = switch(agh.replicas) - switch(fu.gh.replicas)
            better = None
        if not (better if better is not None else self._better(ci, report if agh.has_solution else None,
                                                                fu.gh_report, extra)):
            out.kept_reason = "the GH plan is better than AGH's"
        else:
            self._publish_plan(out, state, fu.window, fu.closed_at, fu.instance, ci, agh, report,
                               fu.trigger, startup=False)
        out.stage_seconds["total"] = time.perf_counter() - t_start
        return out

    def _cold_seconds(self, ci: CompiledInstance) -> Any:
        """Each candidate's expected cold start, once per compiled candidate set (a Python loop
        over every candidate; a window asks for it up to four times)."""
        return ci.derived("cold_seconds", lambda: composition.cold_seconds(ci, self.cold_start))

    def _horizon(self, ci: CompiledInstance, prev: Any, result: SolveResult) -> float:
        """$ over switch_payback_s of moving from replicas `prev` to `result` and running it."""
        return composition.horizon_cost(ci, self._cold_seconds(ci), prev, result.replicas,
                                        result.objective, self.s.switch_risk_per_gpu, self.s.switch_payback_s)

    def switch_per_gpu(self, ci: CompiledInstance) -> float:
        """AGH's switch cost per GPU: the setting, or priced from the catalog's cold starts."""
        if self.s.switch_cost_per_gpu is not None:
            return self.s.switch_cost_per_gpu
        return composition.per_gpu_switch_cost(ci, self._cold_seconds(ci),
                                               self.s.switch_risk_per_gpu)

    def _agh(self, out: Decision, ci: CompiledInstance, seed: int, warm: tuple[Any, Any] | None,
             prev_replicas: Any = None) -> SolveResult:
        """AGH from a warm start, with the switch cost against `prev_replicas` damping churn."""
        with out.stage("agh"):
            work = {} if self.s.agh_work is None else {"work": self.s.agh_work}
            agh = solve(ci, "agh", deadline_s=self.s.agh_deadline_s, seed=seed, warm_start=warm,
                        prev_replicas=prev_replicas, **work,
                        switch_cost_per_gpu=self.switch_per_gpu(ci) if prev_replicas is not None else 0.0)
        out.solve_seconds["agh"] = agh.seconds
        return agh

    def _better(self, ci: CompiledInstance, new: Report | None, old: Report, extra_switch: float) -> bool:
        """Should AGH's plan `new` replace GH's plan `old` (both for the same window)?
        `extra_switch`: AGH's switch cost minus GH's, both against the plan in force before."""
        if new is None:
            return False
        if new.feasible != old.feasible:
            return new.feasible
        if new.feasible:  # AGH's own objective; it starts from GH's plan, so ties are common
            return new.cost_per_hour + extra_switch <= old.cost_per_hour * (1 + 1e-9) + 1e-9
        if any(v.constraint not in ("served", "accuracy") for v in new.violations):
            return False  # a degraded plan still keeps budget, inventory and capacity
        unserved = lambda r: sum(ci.lam[i] * max(0.0, 1.0 - r.served.get(q, 0.0))  # noqa: E731
                                 for i, q in enumerate(ci.qt_ids))
        return unserved(new) < unserved(old) * (1 - self.improve_threshold) - 1e-9

    def _publish_plan(self, out: Decision, state: PlannerState, window: DemandWindow,
                      closed_at: float | None, inst: Instance, ci: CompiledInstance, result: SolveResult,
                      report: Report, trigger: str, startup: bool) -> None:
        """Append the plan's AllocationEvent (epoch + 1, adopted as the plan in force) and,
        for AGH plans, its audit request."""
        degraded = not (result.has_solution and report.feasible)
        explanation = list(result.explanation)
        if degraded:
            trigger = "degraded"
            explanation = explanation or route_reasons(ci) or [
                "demand exceeds what the budget and GPU inventory can serve"]
        with out.stage("gate_route"):
            gate_route = self._gate_route(ci, result, inst) if not degraded else None
        with out.stage("event"):
            event = AllocationEvent(
                fleet_id=window.fleet_id, epoch=state.epoch + 1, trigger=trigger,
                method=result.method if result.method in METHODS else "gh",
                status=result.status.value, plan=Plan.model_validate(to_plan(ci, result)),
                cost_per_hour=report.cost_per_hour, gpu_cost_per_hour=report.gpu_cost_per_hour,
                switch_cost=float(result.stats.get("switch_cost", 0.0)), degraded=degraded,
                explanation=explanation, demand={q: float(r) for q, r in zip(ci.qt_ids, ci.lam)},
                window_end=None if startup and not window.demand else window.window_end, created_at=time.time(),
                solve_seconds=result.seconds, gate_route=gate_route, window_closed_at=closed_at,
                performance_constants=constants_in_force(inst.to_spec(), to_plan(ci, result), getattr(
                    getattr(self, "self_calibration", None), "factors", None)))
            self.adopt(state, event, None if startup else window.window_end)
            out.events.append(event)
            if self.s.audit_enabled and event.method == "agh" and not degraded:
                out.audits.append(AuditRequest(
                    fleet_id=window.fleet_id, epoch=event.epoch, instance=inst, plan=event.plan,
                    method=self.s.audit_method, time_limit_s=self.s.audit_time_limit_s,
                    created_at=time.time()))

    def on_startup(self, state: PlannerState, fleet_id: str, now: float,
                   observed: DemandWindow | None = None) -> Decision:
        """The first plan. With `observed` (the first warm_start_s of traffic, a partial window),
        it is sized on what the fleet really receives; without, on the catalog's default rates,
        so routers have a plan before any traffic (startup_plan "catalog")."""
        if state.plan is not None or state.epoch > 0:
            return Decision()
        if observed is not None and observed.demand:
            inst = self.instance_for(observed)
            window = observed.model_copy(update={"fleet_id": fleet_id})
            self._hold(state, observed.window_end, self.planning_rates(observed))
            return self.on_window(state, window, None, instance=inst, startup=True)
        defaults = DemandWindow(fleet_id=fleet_id, window_start=max(0.0, now - 1.0), window_end=now,
                                records=0, demand=[])
        demand = {q.id: {"arrival_rate": q.arrival_rate} for q in self.catalog.query_types}
        inst = self.catalog.to_instance(demand, name=f"{fleet_id}@startup", budget_per_hour=self.s.budget_per_hour,
                                        performance_model=self.s.performance_model)
        return self.on_window(state, defaults, None, instance=inst, startup=True)

    def on_burst(self, state: PlannerState, partial: DemandWindow, closed_at: float | None = None,
                 bins: dict[str, list[tuple[float, float]]] | None = None) -> Decision:
        """The fast path, on a window still open (`partial`: its traffic so far, its rates over
        the burst intervals already complete). Without a plan in force it makes the first plan
        (startup_plan "observed"). With one, when a query type's rate outran the rate the plan
        was sized for by more than burst_tolerance, it re-plans at once, GH-fast: the plan in
        force grown within its composition (or GH's repair when the composition cannot serve
        it), published as an epoch with trigger "burst"; it only adds capacity."""
        if state.plan is None:
            if self.s.startup_plan == "observed" and \
                    partial.window_end - partial.window_start >= self.s.warm_start_s - 1e-9:
                return self.on_startup(state, partial.fleet_id, partial.window_end, observed=partial)
            return Decision()
        out = Decision()
        if not self.s.fast_path:
            return out
        planned = state.plan_demand or {}
        # only complete burst intervals: a mean over a few seconds is noise
        rates = {d.query_type: d.arrival_rate_peak for d in partial.demand if d.arrival_rate_peak is not None}
        if bins and self.s.forecast:  # a climbing rate is planned where it will be once replicas are up
            lead = self.s.burst_s + max((self.cold_start.seconds((d["model"], d["gpu"], d["precision"], d["tp"], d["pp"]))
                                         for d in state.plan["deployments"]), default=self.s.cold_start_engine_s)
            history = state.bins
            for q, pts in bins.items():
                seen = {float(t): float(r) for t, r in history.get(q, [])}
                seen.update({float(t): float(r) for t, r in pts})
                history[q] = sorted(seen.items())[-6:]
                ahead = forecast.trend_forecast(history[q], lead)
                if ahead is not None and q in rates:
                    rates[q] = max(rates[q], ahead)
        partial = partial.model_copy(update={"demand": [
            d.model_copy(update={"arrival_rate_peak": rates[d.query_type]})
            for d in partial.demand if d.query_type in rates]})
        rising = sorted(q for q, r in rates.items()
                        if r > planned.get(q, 0.0) * (1 + self.s.burst_tolerance) + 1e-9)
        if not rising:
            return out
        t_start = time.perf_counter()
        with out.stage("instance"):
            inst = self.instance_for(partial, state.recent_rates, self.held_rates(state, partial.window_end))
            spec = inst.to_spec()
        with out.stage("compile"):
            ci = self.compiled(spec)
        with out.stage("check_plan"):
            fits = check_plan(ci, state.plan, spec).feasible
        if fits:
            out.kept_reason = "plan in force carries the burst"
            return out
        prev = from_plan(ci, state.plan)
        with out.stage("within"):
            within = composition.within_composition(ci, np.maximum(prev[0], 0))
        if within is not None:  # grow only: replicas never fall below the plan in force
            within = self._grown(ci, within, prev[0])
        with out.stage("gh"):  # GH's repair keeps every replica in force and adds where cheapest
            result = solve(ci, "gh", warm_start=prev)
        with out.stage("check"):
            report = check_result(ci, result)
        if within is not None and (not (result.has_solution and report.feasible)
                                   or within.objective <= result.objective):
            result = within
            with out.stage("check"):
                report = check_result(ci, result)
        out.solve_seconds[result.method] = result.seconds
        out.drift = rising
        self._hold(state, partial.window_end, rates)
        self._publish_plan(out, state, partial, closed_at, inst, ci, result, report, "burst", startup=False)
        out.stage_seconds["total"] = time.perf_counter() - t_start
        return out

    @staticmethod
    def _grown(ci: CompiledInstance, result: SolveResult, floor: Any) -> SolveResult:
        """`result` with at least the replicas of `floor` (a burst plan never scales down)."""
        rep = np.maximum(result.replicas, np.asarray(floor))
        if np.array_equal(rep, result.replicas):
            return result
        return SolveResult(status=result.status, method=result.method, replicas=rep, x=result.x,
                           objective=objective(ci, rep, result.x), seconds=result.seconds,
                           explanation=result.explanation, stats=result.stats)

    def on_audit(self, state: PlannerState, report: AuditReport, instance: Instance | None = None) -> Decision:
        """Adopt an audited plan when it is cheaper by more than the threshold."""
        out = Decision()
        if not self.s.audit_adopt or report.better_plan is None or report.best_cost is None:
            return out
        if report.epoch != state.epoch or state.plan_cost is None:
            out.kept_reason = "audit of a superseded epoch"
            return out
        if report.best_cost >= state.plan_cost * (1 - self.s.audit_adopt_threshold):
            return out
        event = AllocationEvent(
            fleet_id=report.fleet_id, epoch=state.epoch + 1, trigger="audit", method=report.method,
            status="feasible", plan=report.better_plan, cost_per_hour=report.best_cost,
            gpu_cost_per_hour=report.best_cost, optimality_gap=report.gap, demand=state.plan_demand or {},
            window_end=state.plan_at, created_at=time.time())
        self.adopt(state, event, state.plan_at or 0.0)
        out.events.append(event)
        return out

    @staticmethod
    def restore(state: PlannerState, published: AllocationEvent | None, published_epoch: int) -> bool:
        """A new leader's state against what is published: continue after the highest epoch
        on the allocations topic, and take the published plan when the table lost it or holds
        an older one. True when the published plan was adopted."""
        adopted = published is not None and (state.plan is None or published.epoch > state.epoch)
        if adopted:
            Planner.adopt(state, published, published.window_end)
        state.epoch = max(state.epoch, published_epoch)
        return adopted

    @staticmethod
    def adopt(state: PlannerState, event: AllocationEvent, at: float | None) -> None:
        """Make `event`'s plan the plan in force of `state` (`at`: its window end)."""
        old = {d["id"] for d in state.plan["deployments"]} if state.plan else None
        if old != {d.id for d in event.plan.deployments}:
            state.composition_at = at   # the composition changed: its dwell starts now
        state.epoch = event.epoch
        state.plan = event.plan.to_spec()
        state.plan_cost = event.cost_per_hour
        state.plan_demand = dict(event.demand)
        state.plan_at = at
        state.method = event.method

    def _gate_route(self, ci: Any, result: Any, inst: Instance) -> dict[str, dict[str, Any]] | None:
        """Gate-and-route parameters per deployment (see controller/worker/planning/gate_route_params.py), for
        the planned instance's query types (the window's measured token lengths).

        `iteration_telemetry` (an IterationTelemetry the Controller attaches; absent: spec
        models only) supplies iteration models fitted to the engines' reported timings."""
        if self.s.gate_route == "off":
            return None
        from controller.worker.planning.gate_route_params import gate_route_for_plan  # imports the fluid LP only when used

        return gate_route_for_plan(self.catalog, ci, result, force=self.s.gate_route == "on",
                                   iterations=getattr(self, "iteration_telemetry", None),
                                   query_types=inst.query_types) or None


def audit_plan(request: AuditRequest, deadline_at: float | None = None,
               on_partial: Callable[[AuditReport], None] | None = None) -> AuditReport:
    """Run the exact solver on an audit request (called in a separate process).

    With `deadline_at` (a time.time() instant) the solve gets what remains of the time limit.
    For the MILP, the LP relaxation is solved first and handed to `on_partial` as a report
    with a proven bound (and so the plan's gap), so an audit cut short at its deadline still
    reports how far from optimal the plan in force can be.
    """
    t0 = time.perf_counter()
    deadline_at = deadline_at if deadline_at is not None else time.time() + request.time_limit_s
    spec = request.instance.to_spec()
    ci = compile_instance(spec)
    plan = request.plan.to_spec()
    plan_cost = check_plan(ci, plan, spec).cost_per_hour

    def report(status: str, best: float | None, bound: float | None, better: Plan | None) -> AuditReport:
        bound = bound if bound is not None and np.isfinite(bound) else None
        gap = max(0.0, (plan_cost - bound) / plan_cost) if bound is not None and plan_cost > 0 else None
        return AuditReport(fleet_id=request.fleet_id, epoch=request.epoch, method=request.method,
                           status=status, plan_cost=plan_cost, best_cost=best, bound=bound, gap=gap,
                           better_plan=better, seconds=time.perf_counter() - t0, created_at=time.time())

    lb = None
    if request.method == "milp" and on_partial is not None:
        from solvers.cpsat import lp_bound

        lb = lp_bound(ci, time_limit_s=max(0.05, deadline_at - time.time()))
        # the plan in force is a feasible incumbent (the MILP starts from it), so this is
        # already a "feasible" audit: no better plan known yet, and a proven bound
        on_partial(report("feasible", plan_cost, lb, None))
    warm = from_plan(ci, plan)
    # leave a twentieth of the limit for reading the solution back and reporting it
    limit = max(0.05, deadline_at - time.time() - 0.05 * request.time_limit_s)
    res = solve(ci, request.method, deadline_s=limit, warm_start=warm)
    better = None
    if res.has_solution and check_result(ci, res).feasible and res.objective < plan_cost - 1e-9:
        better = Plan.model_validate(to_plan(ci, res))
    bounds = [b for b in (lb, res.bound) if b is not None and np.isfinite(b)]
    return report(res.status.value, res.objective if res.has_solution else None,
                  max(bounds) if bounds else None, better)
