#!/usr/bin/env python3
"""Sizing on the window mean vs the busiest burst: SLO attainment and cost on the bundled traces.

    python scripts/bench_burst_sizing.py [--bursts 0,10,5] [--scale 20] [--minutes 7]

Each window of the bundled Azure traces (scaled like the quickstart) is planned on its own
true demand by the controller's Planner (GH, then AGH on drift) and applied warm, with no cold
start, to the fleet simulator's FCFS pools; the window's requests are then routed and served.
This isolates sizing from the closed loop's lag: what is measured is whether a plan made with
perfect knowledge of a window's demand keeps the SLOs. Burst 0 plans on each window's mean
rate; burst B > 0 on the busiest B seconds of the window (LLMFLEET_BURST_S). Prints one line
per burst length and, last, a JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controller.worker.windows import demand_window as dw  # noqa: E402
from controller.sim.fleet_sim import FleetSimulator, PerfTable  # noqa: E402
from controller.common.logging_setup import configure_logging  # noqa: E402
from controller.worker.planning.planner import Planner, new_planner_state  # noqa: E402
from controller.router.core import Router  # noqa: E402
from controller.common.settings import Settings  # noqa: E402
from controller.replay.trace_reader import Chunk, TraceOptions, bundled_sources, read_trace  # noqa: E402
from schemas import DemandWindow, RequestRecord, load_catalog  # noqa: E402

T0 = 1_700_000_000.0


def load(scale: float, minutes: float) -> Chunk:
    """The bundled traces scaled like the quickstart's, in event-time order, first `minutes`."""
    trace = Chunk.concat(list(read_trace(bundled_sources(), TraceOptions(scale=scale, start=T0, seed=0))))
    return trace.take(trace.ts < T0 + minutes * 60)


def window_demand(w: Chunk, a: float, window_s: float, burst_s: float) -> DemandWindow:
    """One window's DemandWindow as the controller's ingest would publish it (one partition)."""
    state = dw.new_state()
    dw.add_records(state, 0, w.ts, w.query_type.astype(object), w.input_tokens.astype(float),
                   w.output_tokens.astype(float), window_s=window_s, grace_s=0.0, burst_s=burst_s)
    parts = dw.close_ready(state, 0, window_s=window_s, grace_s=0.0, watermark=a + 2 * window_s)
    return dw.combine("default", a, a + window_s, parts)


def run(burst_s: float, trace: Chunk, window_s: float, minutes: float) -> dict:
    catalog = load_catalog()
    planner = Planner(catalog, Settings(window_s=window_s, min_dwell_s=0, burst_s=burst_s, gate_route="off"))
    sim = FleetSimulator(PerfTable.from_instance(catalog.to_instance().to_spec()), cold_start_s=0.0, seed=0,
                         window_s=window_s, max_wait_s=10.0, gate_route=False)
    router = Router(fleet_id="default", seed=0)
    state, costs = new_planner_state(), []
    for k in range(int(minutes * 60 // window_s)):
        a = T0 + k * window_s
        w = trace.take((trace.ts >= a) & (trace.ts < a + window_s))
        decision = planner.on_window(state, window_demand(w, a, window_s, burst_s))
        if decision.follow_up is not None:
            decision.events += planner.follow_up(state, decision.follow_up).events
        if decision.events:
            event = decision.events[-1]
            router.apply(event)
            sim.apply_plan(event.plan, at=a, warm=True)
        costs.append(router.event("default").cost_per_hour)  # type: ignore[union-attr]
        for t, q, n_in, n_out in zip(w.ts, w.query_type, w.input_tokens, w.output_tokens):
            q = str(q)
            rec = RequestRecord(ts=float(t), query_type=q, input_tokens=int(n_in), output_tokens=int(n_out))
            choice = router.decide(q, "default")
            sim.submit(rec, choice.deployment if choice else None, q)
    sim.finish()
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for batch in sim.drain(flush=True):
        for q, oc in zip(batch.query_type or [], batch.outcome or []):
            outcomes[q][oc] += 1
    return {"burst_s": burst_s, "mean_cost_per_hour": float(np.mean(costs)),
            "within_slo": {q: c["served"] / sum(c.values()) for q, c in sorted(outcomes.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bursts", default="0,10,5", help="burst lengths in s (0 = the window mean)")
    ap.add_argument("--scale", type=float, default=20.0, help="arrival-rate multiplier (the quickstart's)")
    ap.add_argument("--minutes", type=float, default=7.0)
    ap.add_argument("--window", type=float, default=60.0)
    args = ap.parse_args()
    configure_logging(level="WARNING")
    trace = load(args.scale, args.minutes)
    results = []
    for b in (float(x) for x in args.bursts.split(",")):
        r = run(b, trace, args.window, args.minutes)
        results.append(r)
        label = "window mean" if b == 0 else f"busiest {b:g} s"
        print(f"{label:>14}: ${r['mean_cost_per_hour']:.2f}/h, within SLO "
              + ", ".join(f"{q} {v:.1%}" for q, v in r["within_slo"].items()))
    print(json.dumps({"scale": args.scale, "minutes": args.minutes, "window_s": args.window, "results": results}))


if __name__ == "__main__":
    main()
