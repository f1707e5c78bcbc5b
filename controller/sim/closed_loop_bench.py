"""The closed loop measured against baselines on identical arrivals (scripts/bench_closed_loop.py).

Everything runs in event time, in-process and deterministic: no Kafka and no wall clock, so a
15-minute trace takes seconds and two runs give the same figures (AGH's deadline aside). The
policies share one fleet simulator model (controller/sim/fleet_sim.py: make-before-break, cold
starts, deadline-aware shedding, cost integrated over replica time):

* `llmfleet`: the controller's own planning code, fed with what the simulated fleet reports,
  exactly as the worker feeds it: ingest state per window (controller/worker/windows/demand_window.py), the
  fast path on every burst interval (`Planner.on_burst`), `Planner.on_window` + `follow_up` on
  every window close; each event reaches the router window end + grace + its measured solve
  time later, and the real Router and ClosedLoop apply it (readiness included).
* `oracle`: every window planned on its own true demand (its busiest burst interval), applied
  warm at the window's start: perfect foresight, no transition cost.
* `static_peak` / `static_mean`: one plan for the trace's peak burst rates / mean rates, warm.
* `reactive`: an autoscaler in the style of Kubernetes HPA: the deployments of the mean plan,
  warm, fixed routing; every `sync_s` each deployment's replicas follow its observed load
  (desired = ceil(replicas x utilisation / target)), scale-up at once, scale-down after the
  highest recommendation of the last `stabilisation_s` allows it (HPA defaults: 15 s sync,
  300 s downscale stabilisation, 0.1 tolerance).
"""
from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from schemas import AllocationEvent, Catalog, DemandWindow, Plan, QueryDemand, RequestRecord, load_catalog

from controller.worker.windows import demand_window as dw
from solvers.cold_start import ColdStart
from controller.sim.fleet_sim import FleetSimulator, PerfTable
from controller.worker.windows.forecast import bin_rates
from controller.sim.loop_service import ClosedLoop
from controller.worker.planning.planner import Planner, new_planner_state
from controller.router.core import Router
from controller.common.settings import Settings
from controller.replay.trace_reader import Chunk, Columns, TraceOptions, TraceSource, bundled_sources, read_trace
from controller.worker.windows.window_assembly import fast_path_step

log = structlog.get_logger()
T0 = 1_700_000_000.0
FLEET = "default"


# ---- arrivals ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arrivals:
    """Requests in event-time order (columns), and what they are called."""

    name: str
    ts: np.ndarray
    query_type: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    @classmethod
    def from_chunk(cls, name: str, c: Chunk) -> Arrivals:
        order = np.argsort(c.ts, kind="stable")
        return cls(name, c.ts[order], c.query_type[order].astype(str), c.input_tokens[order].astype(np.int64),
                   c.output_tokens[order].astype(np.int64))

    def __len__(self) -> int:
        return len(self.ts)

    def records(self) -> list[RequestRecord]:
        return [RequestRecord.model_construct(ts=float(t), query_type=str(q), input_tokens=int(i),
                                              output_tokens=int(o), request_id=f"r{k}")
                for k, (t, q, i, o) in enumerate(zip(self.ts, self.query_type, self.input_tokens, self.output_tokens))]


def bundled(scale: float = 20.0, minutes: float = 15.0) -> Arrivals:
    """The bundled Azure code + conversation traces, scaled like the quickstart's."""
    c = Chunk.concat(list(read_trace(bundled_sources(), TraceOptions(scale=scale, start=T0, seed=0))))
    return Arrivals.from_chunk(f"azure-2023 code+conversation x{scale:g}, {minutes:g} min",
                               c.take(c.ts < T0 + minutes * 60))


def from_file(path: str | Path, columns: str, *, time_unit: str = "s", query_type: str | None = None,
              scale: float = 1.0, minutes: float | None = None) -> Arrivals:
    """Any CSV/JSONL trace through a column mapping (controller.replay.trace_reader.Columns.parse, e.g.
    `ts=timestamp,input=input_length,output=output_length`); `time_unit` ms divides epoch
    timestamps by 1000; rows without a type column get `query_type`."""
    cols = Columns.parse(columns)
    if time_unit not in ("s", "ms"):
        raise ValueError(f"time unit must be s or ms, not {time_unit!r}")
    if cols.query_type is None and query_type is None:
        raise ValueError("the trace has no query-type column: give --query-type")
    if time_unit == "ms" and cols.ts_format == "auto":
        cols = Columns(**{**cols.__dict__, "ts_format": "epoch"})
    src = TraceSource(Path(path), query_type=query_type, columns=cols)
    opts = TraceOptions(scale=scale, start=T0, seed=0, speed=1000.0 if time_unit == "ms" else 1.0)
    c = Chunk.concat(list(read_trace([src], opts)))
    if minutes is not None:
        c = c.take(c.ts < T0 + minutes * 60)
    return Arrivals.from_chunk(f"{Path(path).name} x{scale:g}", c)


def synthetic(kind: str, *, minutes: float = 15.0, seed: int = 0, low: float = 20.0, high: float = 120.0,
              query_type: str = "conversation", tokens: tuple[int, int] = (1155, 211)) -> Arrivals:
    """Seeded Poisson arrivals of one query type: `step` (low, then high from a third of the
    way), `ramp` (low to high over the middle half) or `onoff` (high for 90 s every 5 min)."""
    rng = np.random.default_rng(seed)
    dur = minutes * 60.0
    grid = np.arange(0.0, dur, 1.0)
    if kind == "step":
        rate = np.where(grid < dur / 3, low, high)
    elif kind == "ramp":
        rate = low + (high - low) * np.clip((grid - dur / 4) / (dur / 2), 0, 1)
    elif kind == "onoff":
        rate = np.where((grid % 300.0) >= 150.0, np.where((grid % 300.0) < 240.0, high, low), low)
    else:
        raise ValueError(f"synthetic trace must be step, ramp or onoff, not {kind!r}")
    counts = rng.poisson(rate)
    ts = np.concatenate([s + np.sort(rng.random(n)) for s, n in zip(grid, counts)])
    n = len(ts)
    return Arrivals(f"synthetic {kind} {low:g}->{high:g} req/s ({query_type})", T0 + ts,
                    np.full(n, query_type, dtype=object).astype(str), np.full(n, tokens[0], dtype=np.int64),
                    np.full(n, tokens[1], dtype=np.int64))


# ---- results ----------------------------------------------------------------------------------
@dataclass
class PolicyResult:
    policy: str
    n: int
    outcomes: Counter[str]
    dollars: float
    hours: float
    gpus_switched: float
    windows: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0

    def summary(self, skip_windows: int = 0) -> dict[str, float]:
        ws = self.windows[skip_windows:]
        n = sum(w["n"] for w in ws) or 1
        hours = sum(w["hours"] for w in ws) or 1e-9
        return {"within_slo": sum(w["served"] for w in ws) / n, "rejected": sum(w["rejected"] for w in ws) / n,
                "cost_per_hour": sum(w["dollars"] for w in ws) / hours,
                "gpus_switched_per_hour": sum(w["switched"] for w in ws) / hours, "requests": n}


class _Meter:
    """Per-window outcomes and cost from a simulator's records and its cost integral."""

    def __init__(self, sim: FleetSimulator, t0: float, window_s: float) -> None:
        self.sim, self.window_s = sim, window_s
        self.k0 = math.floor(t0 / window_s)
        self.by_window: dict[int, Counter[str]] = {}
        self.cost_marks: list[tuple[float, dict[str, float]]] = []

    def mark_until(self, t: float) -> None:
        """Mark the cost at every window boundary up to `t` (in order: the integral only runs
        forward), and at `t` itself when it is the run's start."""
        if not self.cost_marks:
            self.cost_marks.append((t, self.sim.cost(t)))
        k = math.floor(self.cost_marks[-1][0] / self.window_s) + 1
        while k * self.window_s <= t:
            self.cost_marks.append((k * self.window_s, self.sim.cost(k * self.window_s)))
            k += 1

    def add(self, recs: Sequence[RequestRecord]) -> None:
        for r in recs:
            if r.outcome is not None:
                self.by_window.setdefault(math.floor(r.ts / self.window_s), Counter())[r.outcome] += 1

    def result(self, policy: str, t_end: float, events: int) -> PolicyResult:
        self.mark_until(t_end)
        marks = [*self.cost_marks, (t_end, self.sim.cost(t_end))]
        outcomes: Counter[str] = sum(self.by_window.values(), Counter())
        windows = []
        for j, ((a, start), (b, end)) in enumerate(zip(marks, marks[1:])):
            if b <= a and j > 0:
                continue
            k = math.floor(a / self.window_s)
            c = self.by_window.get(k, Counter())
            windows.append({"window": k - self.k0, "n": sum(c.values()), "served": c["served"],
                            "rejected": c["rejected"], "slo_missed": c["slo_missed"],
                            "hours": max(b - a, 0.0) / 3600.0, "dollars": end["dollars"] - start["dollars"],
                            "switched": (end["gpus_started"] + end["gpus_stopped"])
                            - (start["gpus_started"] + start["gpus_stopped"])})
        cost = marks[-1][1]
        hours = (t_end - marks[0][0]) / 3600.0
        return PolicyResult(policy, sum(outcomes.values()), outcomes, cost["dollars"], hours,
                            cost["gpus_started"] + cost["gpus_stopped"], windows, events)


# ---- shared pieces ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchConfig:
    window_s: float = 60.0
    grace_s: float = 5.0
    burst_s: float = 10.0
    max_wait_s: float = 10.0
    pessimistic_s: float | None = None   # every cold start takes this long (None: the model)
    agh_deadline_s: float = 0.5

    def settings(self, **kw: Any) -> Settings:
        base: dict[str, Any] = {"window_s": self.window_s, "grace_s": self.grace_s, "burst_s": self.burst_s,
                                "audit_enabled": False, "gate_route": "off", "agh_deadline_s": self.agh_deadline_s}
        if self.pessimistic_s is not None:   # the planner is told what the fleet's starts take
            base |= {"cold_start_engine_s": self.pessimistic_s, "cold_start_load_gbps": 1e9}
        return Settings(**(base | kw))

    def cold_start(self, spec: dict[str, Any]) -> ColdStart:
        return ColdStart.fixed(self.pessimistic_s) if self.pessimistic_s is not None else ColdStart.from_spec(spec)


def _sim(catalog: Catalog, cfg: BenchConfig) -> FleetSimulator:
    spec = catalog.to_instance().to_spec()
    return FleetSimulator(PerfTable.from_instance(spec), cold_start_s=cfg.cold_start(spec), seed=0,
                          window_s=cfg.window_s, max_wait_s=cfg.max_wait_s, gate_route=False, shed_late=True)


def true_window(arr: Arrivals, lo: int, hi: int, k: int, cfg: BenchConfig) -> DemandWindow:
    """Window k's demand as the worker's ingest would publish it, from the true arrivals."""
    state = dw.new_state()
    if hi > lo:
        dw.add_records(state, 0, arr.ts[lo:hi], arr.query_type[lo:hi].astype(object),
                       arr.input_tokens[lo:hi].astype(float), arr.output_tokens[lo:hi].astype(float),
                       window_s=cfg.window_s, grace_s=0.0, burst_s=cfg.burst_s)
    parts = dw.close_ready(state, 0, window_s=cfg.window_s, grace_s=0.0, watermark=(k + 2) * cfg.window_s)
    return dw.combine(FLEET, k * cfg.window_s, (k + 1) * cfg.window_s, parts)


def _event(plan: Plan, epoch: int) -> AllocationEvent:
    return AllocationEvent(fleet_id=FLEET, epoch=epoch, trigger="window", method="agh", status="feasible",
                           plan=plan, cost_per_hour=0.0, gpu_cost_per_hour=0.0, demand={}, created_at=0.0)


def _plan_for(planner: Planner, window: DemandWindow) -> Plan:
    """The best plan (startup path: GH then AGH) for one window's demand, from nothing."""
    d = planner.on_window(new_planner_state(), window)
    return d.events[-1].plan


def _window_bounds(arr: Arrivals, window_s: float) -> list[tuple[int, int, int]]:
    ks = np.floor(arr.ts / window_s).astype(np.int64)
    out = []
    for k in range(int(ks[0]), int(ks[-1]) + 1):
        lo, hi = np.searchsorted(ks, k), np.searchsorted(ks, k + 1)
        out.append((k, int(lo), int(hi)))
    return out


def _serve_fixed(name: str, arr: Arrivals, catalog: Catalog, cfg: BenchConfig,
                 plan_at: Callable[[int, float], Plan | None],
                 on_record: Callable[[FleetSimulator, Router, float, str, str | None], None] | None = None
                 ) -> PolicyResult:
    """Serve `arr` with plans decided from outside the loop (foresight or fixed): at each
    window start `plan_at(k, t)` may give a plan, applied warm."""
    sim, router = _sim(catalog, cfg), Router(fleet_id=FLEET, seed=0)
    meter = _Meter(sim, float(arr.ts[0]), cfg.window_s)
    recs = arr.records()
    epoch = 0
    for k, lo, hi in _window_bounds(arr, cfg.window_s):
        t = max(k * cfg.window_s, float(arr.ts[0]))
        meter.mark_until(t)
        plan = plan_at(k, t)
        if plan is not None:
            epoch += 1
            router.apply(_event(plan, epoch))
            sim.apply_plan(plan, at=t, warm=True)
        for r in recs[lo:hi]:
            if on_record is not None:
                on_record(sim, router, r.ts, r.query_type, None)
            dec = router.decide(r.query_type, FLEET)
            out = sim.submit(r, dec.deployment, r.query_type)
            if on_record is not None:
                on_record(sim, router, r.ts, r.query_type, dec.deployment)
            meter.add([out])
    sim.finish()
    return meter.result(name, float(arr.ts[-1]), epoch)


# ---- policies ---------------------------------------------------------------------------------
def run_oracle(arr: Arrivals, catalog: Catalog, cfg: BenchConfig) -> PolicyResult:
    planner = Planner(catalog, cfg.settings(min_dwell_s=0))
    bounds = {k: (lo, hi) for k, lo, hi in _window_bounds(arr, cfg.window_s)}
    return _serve_fixed("oracle", arr, catalog, cfg,
                        lambda k, t: _plan_for(planner, true_window(arr, *bounds[k], k, cfg)))


def _rates(arr: Arrivals, cfg: BenchConfig, peak: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, lo, hi in _window_bounds(arr, cfg.window_s):
        w = true_window(arr, lo, hi, k, cfg)
        for d in w.demand:
            r = max(d.arrival_rate, d.arrival_rate_peak or 0.0) if peak else d.count
            out[d.query_type] = max(out.get(d.query_type, 0.0), r) if peak else out.get(d.query_type, 0.0) + r
    if not peak:
        span = float(arr.ts[-1] - arr.ts[0]) or 1.0
        out = {q: n / span for q, n in out.items()}
    return out


def _static_plan(arr: Arrivals, catalog: Catalog, cfg: BenchConfig, peak: bool) -> Plan:
    planner = Planner(catalog, cfg.settings(min_dwell_s=0, burst_s=0.0))
    toks = {q: (float(arr.input_tokens[arr.query_type == q].mean()), float(arr.output_tokens[arr.query_type == q].mean()))
            for q in np.unique(arr.query_type)}
    rates = _rates(arr, cfg, peak)
    w = DemandWindow(fleet_id=FLEET, window_start=0.0, window_end=cfg.window_s, records=1, demand=[
        QueryDemand(query_type=q, count=max(1, int(r * cfg.window_s)), arrival_rate=r,
                    input_tokens_mean=toks[q][0], input_tokens_p95=toks[q][0],
                    output_tokens_mean=toks[q][1], output_tokens_p95=toks[q][1]) for q, r in sorted(rates.items())])
    return _plan_for(planner, w)


def run_static(arr: Arrivals, catalog: Catalog, cfg: BenchConfig, peak: bool) -> PolicyResult:
    plan = _static_plan(arr, catalog, cfg, peak)
    return _serve_fixed("static_peak" if peak else "static_mean", arr, catalog, cfg,
                        lambda k, t: plan if t <= float(arr.ts[0]) + 1e-9 else None)


@dataclass
class Reactive:
    """HPA-style replica control of a fixed set of deployments (Kubernetes HPA defaults)."""

    sync_s: float = 15.0
    target: float = 0.7
    tolerance: float = 0.1
    stabilisation_s: float = 300.0


def run_reactive(arr: Arrivals, catalog: Catalog, cfg: BenchConfig, hpa: Reactive = Reactive()) -> PolicyResult:
    base = _static_plan(arr, catalog, cfg, peak=False)
    perf = PerfTable.from_instance(catalog.to_instance().to_spec())
    mu = {(r.query_type, r.deployment): perf.get(r.query_type, next(
        (d.model, d.gpu, d.precision, d.tp, d.pp) for d in base.deployments if d.id == r.deployment))
        for r in base.routes}
    replicas = {d.id: d.replicas for d in base.deployments}
    seen: Counter[tuple[str, str]] = Counter()
    history: dict[str, deque[tuple[float, int]]] = {d: deque() for d in replicas}
    state = {"next": float(arr.ts[0]) + hpa.sync_s, "epoch": 1}

    def on_record(sim: FleetSimulator, router: Router, t: float, qt: str, dep: str | None) -> None:
        if dep is not None:
            seen[(qt, dep)] += 1
            return
        if t < state["next"]:
            return
        changed = False
        for d in replicas:
            load = sum(n / hpa.sync_s / mu[(q, dd)].mu for (q, dd), n in seen.items() if dd == d and mu.get((q, dd)))
            util = load / max(replicas[d], 1)
            want = replicas[d] if abs(util / hpa.target - 1) <= hpa.tolerance else \
                max(1, math.ceil(replicas[d] * util / hpa.target))
            h = history[d]
            h.append((t, want))
            while h and h[0][0] < t - hpa.stabilisation_s:
                h.popleft()
            new = want if want > replicas[d] else max(w for _, w in h)   # down only when the window agrees
            if new != replicas[d]:
                replicas[d], changed = new, True
        seen.clear()
        state["next"] = t + hpa.sync_s
        if changed:
            plan = base.model_copy(update={"deployments": [d.model_copy(update={"replicas": replicas[d.id]})
                                                           for d in base.deployments]})
            state["epoch"] += 1
            router.apply(_event(plan, state["epoch"]))
            sim.apply_plan(plan, at=t)
            router.set_status(sim.status(t, FLEET, state["epoch"]))
        elif state["epoch"] > 1:
            router.set_status(sim.status(t, FLEET, state["epoch"]))

    return _serve_fixed("reactive", arr, catalog, cfg, lambda k, t: base if t <= float(arr.ts[0]) + 1e-9 else None,
                        on_record)


def run_llmfleet(arr: Arrivals, catalog: Catalog, cfg: BenchConfig, **settings: Any) -> PolicyResult:
    """The controller's planning code in the loop, fed by the simulated fleet's own telemetry."""
    s = cfg.settings(**settings)
    planner = Planner(catalog, s)
    sim, router = _sim(catalog, cfg), Router(fleet_id=FLEET, seed=0)
    loop = ClosedLoop(router, sim, fleet_id=FLEET)
    meter = _Meter(sim, float(arr.ts[0]), cfg.window_s)
    meter.mark_until(float(arr.ts[0]))
    state = new_planner_state()
    ingest = dw.new_state()
    pending: list[tuple[float, AllocationEvent]] = []
    offset = 0
    events = 0
    step = fast_path_step(s)
    last_step: list[int | None] = [None]

    def decide(call: Callable[[], Any], at: float) -> None:
        nonlocal events
        t0 = time.perf_counter()
        d = call()
        evs = list(d.events)
        fu = getattr(d, "follow_up", None)
        if fu is not None:
            evs += planner.follow_up(state, fu).events
        for e in evs:
            pending.append((at + time.perf_counter() - t0, e))
            events += 1
        pending.sort(key=lambda p: p[0])

    def observe(recs: list[RequestRecord]) -> None:
        nonlocal offset
        if not recs:
            return
        meter.add(recs)
        offset += 1
        dw.add_records(ingest, offset, np.array([r.ts for r in recs]), np.array([r.query_type for r in recs], dtype=object),
                       np.array([r.input_tokens for r in recs], float), np.array([r.output_tokens for r in recs], float),
                       window_s=s.window_s, grace_s=s.grace_s, burst_s=s.burst_s)
        now = max(r.ts for r in recs)
        for part in dw.close_ready(ingest, 0, window_s=s.window_s, grace_s=s.grace_s):
            k = part["window"]
            w = dw.combine(FLEET, k * s.window_s, (k + 1) * s.window_s, [part])
            decide(lambda w=w: planner.on_window(state, w, closed_at=None), now)
        mark = math.floor(now / step)
        if (s.fast_path or s.startup_plan == "observed") and mark != last_step[0]:
            last_step[0] = mark
            pr = next(iter(dw.progress(ingest, 0, window_s=s.window_s)), None)  # one fleet
            pw = dw.partial_window(FLEET, pr["window"], s.window_s, now, [pr]) if pr else None
            if pw is not None:
                bins = {q: bin_rates(pr["window"], s.window_s, now, a["sub_n"])
                        for q, a in pr["aggs"].items() if a.get("sub_n")}
                decide(lambda: planner.on_burst(state, pw, bins=bins), now)

    if s.startup_plan == "catalog":
        decide(lambda: planner.on_startup(state, FLEET, float(arr.ts[0])), float(arr.ts[0]))
    for r in arr.records():
        while pending and pending[0][0] <= r.ts:
            router.apply(pending.pop(0)[1])
        meter.mark_until(r.ts)
        loop.process(r)
        observe([rec for b in sim.drain(flush=True) for rec in b.records()])
    sim.finish()
    meter.add([rec for b in sim.drain(flush=True) for rec in b.records()])
    return meter.result("llmfleet", float(arr.ts[-1]), events)


POLICIES = ("llmfleet", "oracle", "static_peak", "static_mean", "reactive")


def run_all(arr: Arrivals, cfg: BenchConfig, policies: Sequence[str] = POLICIES,
            catalog: Catalog | None = None) -> dict[str, PolicyResult]:
    catalog = catalog or load_catalog()
    runners: dict[str, Callable[[], PolicyResult]] = {
        "llmfleet": lambda: run_llmfleet(arr, catalog, cfg),
        "oracle": lambda: run_oracle(arr, catalog, cfg),
        "static_peak": lambda: run_static(arr, catalog, cfg, peak=True),
        "static_mean": lambda: run_static(arr, catalog, cfg, peak=False),
        "reactive": lambda: run_reactive(arr, catalog, cfg),
    }
    return {p: runners[p]() for p in policies}


def targets(res: dict[str, PolicyResult], skip: int = 0) -> dict[str, Any]:
    """The issue's targets, and by how much each is met or missed."""
    s = {p: r.summary(skip) for p, r in res.items()}
    me = s.get("llmfleet")
    out: dict[str, Any] = {}
    if me is None:
        return out
    out["within_slo>=0.99"] = {"value": me["within_slo"], "met": me["within_slo"] >= 0.99,
                               "gap": max(0.0, 0.99 - me["within_slo"])}
    if "oracle" in s:
        ratio = me["cost_per_hour"] / max(s["oracle"]["cost_per_hour"], 1e-9)
        out["cost<=1.15x_oracle"] = {"value": ratio, "met": ratio <= 1.15, "gap": max(0.0, ratio - 1.15)}
    for base in ("reactive", "static_peak"):
        if base in s:
            b = s[base]
            saving = 1 - me["cost_per_hour"] / max(b["cost_per_hour"], 1e-9)
            need = min(b["within_slo"], 0.99)
            out[f">=25%_cheaper_than_{base}"] = {
                "saving": saving, "attainment_ok": me["within_slo"] >= need - 1e-9,
                "met": saving >= 0.25 and me["within_slo"] >= need - 1e-9, "gap": max(0.0, 0.25 - saving)}
    return out


def check_invariants(arr: Arrivals, res: PolicyResult) -> list[str]:
    """Every request accounted for exactly once; per-window cost adds up to the total."""
    problems = []
    if res.n != len(arr):
        problems.append(f"{res.policy}: {res.n} outcomes for {len(arr)} requests")
    if sum(w["n"] for w in res.windows) != res.n:
        problems.append(f"{res.policy}: per-window outcomes do not add up")
    if abs(sum(w["dollars"] for w in res.windows) - res.dollars) > 1e-6 * max(1.0, res.dollars):
        problems.append(f"{res.policy}: per-window cost {sum(w['dollars'] for w in res.windows)} != {res.dollars}")
    return problems
