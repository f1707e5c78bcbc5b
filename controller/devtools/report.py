"""The run report: an HTML page with PNG plots and the raw CSV of what the controller published.

Input is what any consumer of the public topics sees (demand windows, allocation events,
audit reports), so the same report can be written for a live deployment.
"""
from __future__ import annotations

import csv
import html
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from schemas import AllocationEvent, AuditReport, Catalog, DemandWindow  # noqa: E402
from solvers import compile_instance  # noqa: E402
from solvers.plan_codec import from_plan  # noqa: E402


def plan_capacity(catalog: Catalog, event: AllocationEvent, budget: float | None = None) -> float:
    """Requests/s the plan can carry in its planned mix before any deployment passes max
    utilisation: demand x min over deployments of (U * replicas / load)."""
    demand = {q: {"arrival_rate": r} for q, r in event.demand.items() if q in {x.id for x in catalog.query_types}}
    for q in demand.values():
        if q["arrival_rate"] == 0:
            q["max_unserved"] = 1.0
    inst = catalog.to_instance(demand, budget_per_hour=budget).to_spec()
    ci = compile_instance(inst)
    rep, x = from_plan(ci, event.plan.to_spec())
    load = np.bincount(ci.route_cand, weights=ci.load_coef * x, minlength=ci.n_cand)
    used = load > 1e-12
    total = float(sum(event.demand.values()))
    if not used.any():
        return 0.0
    return total * float(np.min(ci.max_utilization * rep[used] / load[used]))


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


def write_report(out_dir: str | Path, catalog: Catalog, windows: Sequence[DemandWindow],
                 events: Sequence[AllocationEvent], audits: Sequence[AuditReport],
                 title: str = "llmfleet run", notes: Sequence[str] = ()) -> Path:
    """Write index.html, plots/*.png and data/*.csv; returns the index path."""
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(parents=True, exist_ok=True)
    windows = sorted(windows, key=lambda w: w.window_end)
    events = sorted(events, key=lambda e: e.epoch)
    qts = sorted({d.query_type for w in windows for d in w.demand})
    slo_rows = [(w, d) for w in windows for d in w.demand if d.slo_attainment is not None]
    plots: list[tuple[str, str]] = []
    if windows:
        plots.append(_save(_plot_demand_vs_capacity(catalog, windows, events, qts), out,
                           "demand_vs_capacity.png", "Demand vs capacity"))
    if events:
        plots.append(_save(_plot_cost(events), out, "cost_over_time.png", "Cost over time"))
        plots.append(_save(_plot_gpus(events), out, "gpus_by_type.png", "GPUs by type"))
    plots.append(_save(_plot_slo(slo_rows, qts), out, "slo_attainment.png", "SLO attainment"))
    plots.append(_save(_plot_solve_times(events, audits), out, "solve_times.png", "Solve times"))
    _write_data(out / "data", windows, events, audits)
    index = out / "index.html"
    index.write_text(_index_html(title, [*_summary(windows, events, audits, slo_rows), *notes], plots, events))
    return index


def _gpus(e: AllocationEvent) -> int:
    return sum(d.replicas * d.tp * d.pp for d in e.plan.deployments)


def _save(fig: Any, out: Path, name: str, title: str) -> tuple[str, str]:
    fig.savefig(out / "plots" / name, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return name, title


def _plot_demand_vs_capacity(catalog: Catalog, windows: Sequence[DemandWindow],
                             events: Sequence[AllocationEvent], qts: list[str]) -> Any:
    def plan_at(t: float) -> AllocationEvent | None:
        cur = None
        for e in events:
            if (e.window_end or 0) <= t:
                cur = e
        return cur

    fig, ax = plt.subplots(figsize=(9, 4))
    x = [_ts(w.window_end) for w in windows]
    bottom = np.zeros(len(windows))
    for q in qts:
        rate = np.array([next((d.arrival_rate for d in w.demand if d.query_type == q), 0.0) for w in windows])
        ax.fill_between(x, bottom, bottom + rate, step="pre", alpha=0.6, label=f"demand: {q}")
        bottom += rate
    caps = []
    for w in windows:  # the plan in force DURING the window: published before it started
        e = plan_at(w.window_start)
        caps.append(plan_capacity(catalog, e) if e is not None and not e.degraded else np.nan)
    ax.step(x, caps, where="pre", color="black", lw=2, label="capacity of the plan in force during the window")
    ax.set_ylabel("requests / s")
    ax.set_title("Demand per query type vs planned capacity")
    ax.legend(fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    return fig


def _plot_cost(events: Sequence[AllocationEvent]) -> Any:
    fig, ax = plt.subplots(figsize=(9, 4))
    ex = [_ts(e.window_end or e.created_at) for e in events]
    ax.step(ex, [e.cost_per_hour for e in events], where="post", label="objective ($/h)")
    ax.step(ex, [e.gpu_cost_per_hour for e in events], where="post", label="GPU rental ($/h)")
    for e, t in zip(events, ex):
        ax.annotate(f"{e.epoch}:{e.trigger}/{e.method}", (t, e.cost_per_hour), fontsize=6, rotation=45)
    ax.set_ylabel("$ / hour")
    ax.set_title("Cost of the plan in force (annotated epoch:trigger/method)")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return fig


def _plot_gpus(events: Sequence[AllocationEvent]) -> Any:
    ex = [_ts(e.window_end or e.created_at) for e in events]
    gpu_types = sorted({d.gpu for e in events for d in e.plan.deployments})
    fig, ax = plt.subplots(figsize=(9, 4))
    if gpu_types:
        counts = np.array([[sum(d.replicas * d.tp * d.pp for d in e.plan.deployments if d.gpu == g)
                            for e in events] for g in gpu_types])
        ax.stackplot(ex, counts, labels=gpu_types, step="post")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_ylabel("GPUs")
    ax.set_title("GPUs by type in the plan in force")
    fig.autofmt_xdate()
    return fig


def _plot_slo(slo_rows: Sequence[tuple[DemandWindow, Any]], qts: list[str]) -> Any:
    fig, ax = plt.subplots(figsize=(9, 4))
    for q in qts:
        pts = [(_ts(w.window_end), d.slo_attainment * 100) for w, d in slo_rows if d.query_type == q]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=q)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of requests meeting latency and TTFT SLOs")
    ax.set_title("SLO attainment (observed telemetry)" if slo_rows else "SLO attainment (no outcomes observed)")
    if slo_rows:
        ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return fig


def _plot_solve_times(events: Sequence[AllocationEvent], audits: Sequence[AuditReport]) -> Any:
    fig, ax = plt.subplots(figsize=(9, 4))
    for method in sorted({e.method for e in events}):
        pts = [(e.epoch, e.solve_seconds * 1e3) for e in events if e.method == method]
        ax.scatter(*zip(*pts), label=f"{method} (plan)", s=18)
    if audits:
        ax.scatter([a.epoch for a in audits], [a.seconds * 1e3 for a in audits], marker="x", label="exact audit")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ms")
    ax.set_title("Solve times")
    ax.legend(fontsize=8)
    return fig


def _write_data(data: Path, windows: Sequence[DemandWindow], events: Sequence[AllocationEvent],
                audits: Sequence[AuditReport]) -> None:
    _csv(data / "windows.csv", ["window_start", "window_end", "query_type", "count", "arrival_rate",
                                "input_tokens_mean", "output_tokens_mean", "latency_s_mean",
                                "ttft_s_mean", "slo_attainment", "late_records"],
         [[w.window_start, w.window_end, d.query_type, d.count, d.arrival_rate, d.input_tokens_mean,
           d.output_tokens_mean, d.latency_s_mean, d.ttft_s_mean, d.slo_attainment, w.late_records]
          for w in windows for d in w.demand])
    _csv(data / "events.csv", ["epoch", "trigger", "method", "status", "degraded", "cost_per_hour",
                               "gpu_cost_per_hour", "switch_cost", "gpus", "solve_seconds",
                               "window_end", "explanation", "plan_json"],
         [[e.epoch, e.trigger, e.method, e.status, e.degraded, e.cost_per_hour, e.gpu_cost_per_hour,
           e.switch_cost, _gpus(e), e.solve_seconds, e.window_end, " | ".join(e.explanation),
           json.dumps(e.plan.to_spec())] for e in events])
    _csv(data / "audits.csv", ["epoch", "method", "status", "plan_cost", "best_cost", "bound", "gap", "seconds"],
         [[a.epoch, a.method, a.status, a.plan_cost, a.best_cost, a.bound, a.gap, a.seconds] for a in audits])


def _summary(windows: Sequence[DemandWindow], events: Sequence[AllocationEvent], audits: Sequence[AuditReport],
             slo_rows: Sequence[tuple[DemandWindow, Any]]) -> list[str]:
    summary = [f"{len(windows)} demand windows, {sum(w.records for w in windows):,} requests counted, "
               f"{len(events)} allocation events, {len(audits)} audits."]
    if events:
        last = events[-1]
        summary.append(f"Plan in force: epoch {last.epoch} ({last.trigger}/{last.method}), "
                       f"${last.cost_per_hour:,.2f}/h, {_gpus(last)} GPUs.")
    gaps = [a.gap for a in audits if a.gap is not None]
    if gaps:
        summary.append(f"Audit gap of the audited plans: median {np.median(gaps):.2%}, max {max(gaps):.2%}.")
    if slo_rows:
        tot = sum(d.count for _, d in slo_rows)
        att = sum(d.slo_attainment * d.count for _, d in slo_rows) / max(tot, 1)
        summary.append(f"SLO attainment over observed requests: {att:.1%}.")
    return summary


def _index_html(title: str, paragraphs: Sequence[str], plots: Sequence[tuple[str, str]],
                events: Sequence[AllocationEvent]) -> str:
    body = "".join(f"<p>{html.escape(s)}</p>" for s in paragraphs)
    rows = "".join(
        f"<tr><td>{e.epoch}</td><td>{e.trigger}</td><td>{e.method}</td><td>{e.status}</td>"
        f"<td>{e.cost_per_hour:,.2f}</td><td>{_gpus(e)}</td>"
        f"<td>{html.escape('; '.join(f'{d.replicas}x {d.model} on {d.tp * d.pp}x{d.gpu}/{d.precision}' for d in e.plan.deployments))}</td></tr>"
        for e in events)
    figs = "".join(f'<h2>{html.escape(t)}</h2><img src="plots/{f}" alt="{html.escape(t)}" style="max-width:100%">'
                   for f, t in plots)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}td,th{padding:2px 6px;"
            "border-bottom:1px solid #ddd;font-size:12px}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{body}{figs}<h2>Allocation events</h2><table><tr><th>epoch</th>"
            "<th>trigger</th><th>method</th><th>status</th><th>$/h</th><th>GPUs</th><th>deployments</th></tr>"
            f"{rows}</table><p>Raw data: <a href='data/windows.csv'>windows.csv</a>, <a href='data/events.csv'>"
            "events.csv</a>, <a href='data/audits.csv'>audits.csv</a>.</p>"
            "<p>Traces: Azure LLM Inference Trace 2023 (Microsoft Azure, CC BY 4.0), truncated copy; "
            "see controller/replay/traces/README.md.</p></body></html>\n")


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
