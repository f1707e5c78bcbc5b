#!/usr/bin/env python3
"""Self-calibration in the loop: a simulated fleet whose GPUs are faster / slower than the catalog.

    python scripts/bench_self_calibration.py [--windows 12] [--scale 20] [--seed 0] [--no-doc]

A small fluid simulation of its own (not controller/sim/fleet_sim.py, which serves every request at
the plan's operating point whatever the load): per window the real Planner plans on the
window's demand (code + conversation of the bundled catalog, Azure rates x `scale`); each
deployment's replicas then run its query types together at the concurrency b where Little's law
closes, sum_i rate_i L_true,i(b) = replicas x b, with L_true the catalog model's L(b) on the true hardware (every GPU-bound term:
compute, memory streaming and per-step overhead of the GPU's tiers at the true speed; the
interconnect as catalogued); beyond the memory bound the queue grows over the window. Requests get lognormal jitter (sigma 0.1) on
latency and TTFT; a request meets its SLO when both are within the query type's bounds.

Truth: GPU speeds differ from the catalog by x0.7 on one GPU type (times x1/0.7 = x1.43) and
x1.5 on the other (times x0.67). Three runs in this process, same demand and seeds:
  * off:    the planner plans on the catalog;
  * on:     LLMFLEET_SELF_CALIBRATION (controller/worker/planning/self_calibration.py, gain 0.5, bounds x2) learns
            a per-(GPU, precision) factor from the simulated telemetry;
  * oracle: the planner is given the true factors from the start.
Prints per window the factors, the prediction error (max over the routes served of
|predicted / true latency - 1|), SLO attainment (unserved demand counts as missed) and $/h;
a JSON last line. Updates the
self-calibration section of docs/benchmarks.md unless --no-doc.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_doc import machine, md_table, update_section  # noqa: E402

from controller.worker.planning.planner import Planner, new_planner_state  # noqa: E402
from controller.worker.planning.self_calibration import SelfCalibration, TierFactor, corrected_spec  # noqa: E402
from controller.common.settings import Settings  # noqa: E402
from schemas import Catalog, DemandWindow, QueryDemand, RequestRecord, TelemetryBatch, load_catalog  # noqa: E402
from solvers.perf import PerfInputError, route_times  # noqa: E402

WINDOW_S = 60.0
JITTER = 0.1
SPEED = {"H100-SXM": 0.7, "A100-80G-SXM": 1.5}   # true speed / catalog speed
GPUS = tuple(SPEED)
QTS = ("code", "conversation")
MODELS = ("llama-3.1-8b-instruct", "llama-3.1-70b-instruct", "qwen2.5-32b-instruct", "qwen2.5-72b-instruct")


def small_catalog() -> Catalog:
    cat = load_catalog()
    doc = cat.model_dump(mode="json")
    doc["gpus"] = [g for g in doc["gpus"] if g["id"] in GPUS]
    doc["models"] = [m for m in doc["models"] if m["id"] in MODELS]
    doc["query_types"] = [q for q in doc["query_types"] if q["id"] in QTS]
    for m in doc["models"]:
        m["error"] = {k: v for k, v in m["error"].items() if k in QTS}
    return Catalog.model_validate(doc)


def true_factors(cat: Catalog) -> dict[tuple[str, str], TierFactor]:
    """Time factor 1 / speed on every precision of each GPU."""
    return {(g.id, q): TierFactor(factor=1.0 / SPEED[g.id]) for g in cat.gpus for q in g.tflops}


class FluidFleet:
    """Serves one window of demand on a plan with the true speeds; returns records and SLO counts."""

    def __init__(self, cat: Catalog, rng: np.random.Generator) -> None:
        self.spec = cat.to_instance().to_spec()
        # the true hardware: every GPU-bound term (compute, memory, per-step overhead) of the
        # GPU's tiers runs at SPEED x the catalog's rate; interconnect figures are as catalogued
        self.true_spec = corrected_spec(self.spec, true_factors(cat))
        self.qts = {q.id: q for q in cat.query_types}
        self.rng = rng
        self._rt: dict[tuple[Any, ...], Any] = {}

    def times(self, d: dict[str, Any], h: float, f: float, true: bool = False) -> Any:
        key = (d["model"], d["gpu"], d["precision"], d["tp"], d["pp"], h, f)
        if (key, true) not in self._rt:
            self._rt[key, true] = route_times(self.true_spec if true else self.spec, *key)
        return self._rt[key, true]

    def serve(self, plan: dict[str, Any], rates: dict[str, float], t0: float) -> tuple[list[RequestRecord], int, int]:
        """Each deployment's replicas share its query types: b requests in flight per replica where
        sum_i rate_i L_i(b) = replicas x b (Little's law), each type at its own L_i(b)."""
        deps = {d["id"]: d for d in plan["deployments"]}
        records, ok, total = [], 0, 0
        self.served: list[dict[str, Any]] = []
        for did, d in deps.items():
            mine = [(self.qts[r["query_type"]], rates[r["query_type"]] * r["fraction"]) for r in plan["routes"]
                    if r["deployment"] == did and rates[r["query_type"]] * r["fraction"] > 0]
            if not mine:
                continue
            rts = [self.times(d, q.input_tokens, q.output_tokens, true=True) for q, _ in mine]
            load = lambda b: sum(lam * float(rt.latency([b])[0]) for (_, lam), rt in zip(mine, rts))  # noqa: E731
            b_cap = float(max(1, min(rt.b_max for rt in rts)))
            R = d["replicas"]
            overload = load(b_cap) > R * b_cap
            if overload:  # the queue grows over the window
                b, wait = b_cap, (1 - R * b_cap / load(b_cap)) * WINDOW_S / 2
            else:
                lo, hi = 1.0, b_cap
                if load(1.0) <= R:
                    hi = 1.0
                for _ in range(60):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if load(mid) > R * mid else (lo, mid)
                b, wait = hi, 0.0
            for (q, lam), rt in zip(mine, rts):
                n = int(self.rng.poisson(lam * WINDOW_S))
                if n == 0:
                    continue
                lat, ttft = float(rt.latency([b])[0]) + wait, rt.ttft_s + wait
                jl = lat * np.exp(JITTER * self.rng.standard_normal(n) - JITTER ** 2 / 2)
                jt = ttft * np.exp(JITTER * self.rng.standard_normal(n) - JITTER ** 2 / 2)
                met = (jl <= q.max_latency_s) & (jt <= (q.max_ttft_s or math.inf))
                self.served.append({"gpu": d["gpu"], "precision": d["precision"], "qt": q.id, "b": b,
                                    "route": (d, q.input_tokens, q.output_tokens), "attainment": float(met.mean())})
                ok += int(met.sum())
                total += n
                ts = t0 + np.sort(self.rng.uniform(0, WINDOW_S, n))
                records += [RequestRecord(ts=float(ts[k]), query_type=q.id, input_tokens=int(q.input_tokens),
                                          output_tokens=int(q.output_tokens), latency_s=float(jl[k]),
                                          ttft_s=float(jt[k]), deployment=did) for k in range(n)]
        return records, ok, total


def run(mode: str, windows: int, scale: float, seed: int) -> list[dict[str, Any]]:
    cat = small_catalog()
    s = Settings(audit_enabled=False, gate_route="off", self_calibration=mode != "off")
    planner = Planner(cat, s)
    sc = SelfCalibration(cat.to_instance().to_spec(), gain=s.self_calibration_gain,
                         max_factor=s.self_calibration_max_factor, min_requests=s.self_calibration_min_requests)
    if mode == "oracle":
        sc.factors.update(true_factors(cat))
        sc.gain = 1e-9  # keep the truth
    planner.self_calibration = sc if mode != "off" else None  # type: ignore[attr-defined]
    fleet = FluidFleet(cat, np.random.default_rng(seed))
    base = {q.id: q.arrival_rate * scale for q in cat.query_types}
    state = new_planner_state()
    out = []
    rng = np.random.default_rng(seed + 1)
    for w in range(windows):
        rates = {q: r * float(np.exp(0.05 * rng.standard_normal())) for q, r in base.items()}
        t0 = w * WINDOW_S
        window = DemandWindow(window_start=t0, window_end=t0 + WINDOW_S, records=0, demand=[
            QueryDemand(query_type=q.id, count=int(rates[q.id] * WINDOW_S), arrival_rate=rates[q.id],
                        input_tokens_mean=q.input_tokens, input_tokens_p95=q.input_tokens,
                        output_tokens_mean=q.output_tokens, output_tokens_p95=q.output_tokens)
            for q in cat.query_types])
        dec = planner.on_window(state, window)
        if dec.follow_up is not None:
            planner.follow_up(state, dec.follow_up)
        plan = state.plan
        used = {(d["gpu"], d["precision"]) for d in plan["deployments"]}
        factors = {t: (sc.factors.get(t, TierFactor()).factor if mode != "off" else 1.0) for t in used}
        predicted_spec = corrected_spec(fleet.spec, sc.factors if mode != "off" else {})
        records, ok, total = fleet.serve(plan, rates, t0 + WINDOW_S)  # served in the next window
        # prediction error: the planner's model (with its corrections) vs the true latency of each
        # route at the concurrency it ran at, worst over the plan's routes
        err = 0.0
        for sv in fleet.served:
            d, h, f = sv["route"]
            pred = route_times(predicted_spec, d["model"], d["gpu"], d["precision"], d["tp"], d["pp"], h, f)
            true = float(fleet.times(d, h, f, true=True).latency([sv["b"]])[0])
            err = max(err, abs(float(pred.latency([sv["b"]])[0]) / true - 1))
        routed = {q: sum(r["fraction"] for r in plan["routes"] if r["query_type"] == q) for q in rates}
        total += int(sum(rates[q] * max(0.0, 1 - routed[q]) * WINDOW_S for q in rates))  # unserved: missed
        if mode != "off" and records:
            sc.add_batch(TelemetryBatch.from_records(records))
        gpus = {}
        for d in plan["deployments"]:
            gpus[d["gpu"]] = gpus.get(d["gpu"], 0) + d["replicas"] * d["tp"] * d["pp"]
        out.append({"window": w, "attainment": ok / max(total, 1), "requests": total, "cost": state.plan_cost,
                    "routes": [(f"{x['qt']}@{x['gpu']}/{x['precision']}", round(x["b"], 1), round(x["attainment"], 3))
                               for x in fleet.served],
                    "gpus": gpus, "error": err,
                    "factors": {f"{g}/{q}": round(v, 3) for (g, q), v in sorted(factors.items())}})
    return out


def first_within(rows: list[dict[str, Any]], tol: float = 0.10) -> int | None:
    """First window from which the prediction error stays within tol."""
    for k in range(len(rows)):
        if all(r["error"] <= tol for r in rows[k:]):
            return k
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = {m: run(m, args.windows, args.scale, args.seed) for m in ("off", "on", "oracle")}
    secs = time.perf_counter() - t0
    rows = []
    for w in range(args.windows):
        on, off, orc = res["on"][w], res["off"][w], res["oracle"][w]
        rows.append([w, json.dumps(on["factors"]).replace('"', ""), f"{100 * on['error']:.1f} %",
                     f"{100 * off['error']:.1f} %", f"{100 * on['attainment']:.1f} %", f"{100 * off['attainment']:.1f} %",
                     f"{100 * orc['attainment']:.1f} %", f"{on['cost']:.2f}", f"{off['cost']:.2f}", f"{orc['cost']:.2f}"])
    head = ["window", "factors (on)", "pred. error on", "off", "SLO on", "off", "oracle", "$/h on", "off", "oracle"]
    table = md_table(head, rows)
    print(table)
    conv = first_within(res["on"])
    tail = max(1, args.windows // 3)
    att = {m: float(np.mean([r["attainment"] for r in res[m][-tail:]])) for m in res}
    cost = {m: float(np.mean([r["cost"] for r in res[m][-tail:]])) for m in res}
    errs = ", ".join(f"{100 * r['error']:.0f} %" for r in res["on"])
    summary = (f"Prediction error within 10 % from window {conv} on (gain 0.5; errors {errs}). SLO attainment over the last {tail} "
               f"windows: on {100 * att['on']:.1f} %, off {100 * att['off']:.1f} %, oracle {100 * att['oracle']:.1f} %; "
               f"$/h on {cost['on']:.2f}, off {cost['off']:.2f}, oracle {cost['oracle']:.2f}.")
    print(summary)
    if not args.no_doc:
        update_section("self_calibration", "\n".join([
            "## Self-calibration (scripts/bench_self_calibration.py)", "",
            f"True GPU speeds vs the catalog: {', '.join(f'{g} x{v}' for g, v in SPEED.items())}; code + conversation "
            f"at x{args.scale:g} the Azure rates (5 % noise per window), {args.windows} windows of {WINDOW_S:.0f} s, "
            f"seed {args.seed}. Prediction error = max over the routes served of |predicted / true latency - 1| at the "
            "concurrency each ran at (the planner's model with its corrections vs the simulated hardware); the plan "
            "of window w is served (and observed) in window w + 1. A tier entering the plan for the first time starts "
            "from its GPU's factor if another precision of that GPU was observed, else from 1 (the 50 % spikes).", "", table, "", summary, "",
            f"{secs:.1f} s on {machine()} (shared machine)."]))
    print(json.dumps({"windows": args.windows, "scale": args.scale, "seed": args.seed, "speed": SPEED,
                      "converged_from_window": conv, "attainment_tail": att, "cost_tail": cost,
                      "error_on": [r["error"] for r in res["on"]], "seconds": secs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
