#!/usr/bin/env python3
"""What the desired-state gauges cost a worker: observe per plan, /metrics render per scrape.

    python scripts/bench_desired_state_metrics.py [--reps 50]

For plans of growing size (fleets x deployments x query types, 4 routes per query type) it
times `Metrics.observe_event` and `Metrics.text()` (the worker's /metrics body) with the
desired-state collector registered, against the same worker metrics without it (the baseline,
same process), and prints one line per size and, last, a JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from controller.worker.metrics import Metrics  # noqa: E402
from schemas import AllocationEvent, Plan  # noqa: E402

SIZES = [(1, 6, 6), (1, 200, 50), (20, 50, 10)]   # (fleets, deployments, query types)


def event(epoch: int, n_dep: int, n_qt: int, fleet: str) -> AllocationEvent:
    deps = [{"id": f"m{k}.G{k % 7}.fp8.tp{1 + k % 4}pp1", "model": f"m{k}", "gpu": f"G{k % 7}", "precision": "fp8",
             "tp": 1 + k % 4, "pp": 1, "replicas": 1 + (k + epoch) % 5} for k in range(n_dep)]
    per = min(n_dep, 4)
    routes = [{"query_type": f"q{i}", "deployment": deps[(i * 3 + j) % n_dep]["id"], "fraction": 1 / per}
              for i in range(n_qt) for j in range(per)]
    return AllocationEvent(fleet_id=fleet, epoch=epoch, trigger="window", method="gh", status="optimal",
                           plan=Plan.model_validate({"deployments": deps, "routes": routes}), cost_per_hour=1.0,
                           gpu_cost_per_hour=1.0, demand={}, created_at=0.0)


def measure(with_collector: bool, fleets: int, n_dep: int, n_qt: int, reps: int) -> dict[str, float]:
    m = Metrics()
    if not with_collector:
        m.registry.unregister(m.desired)
    events = [event(e, n_dep, n_qt, f"f{f}") for e in (1, 2) for f in range(fleets)]
    t = time.perf_counter()
    for ev in events:
        m.observe_event(ev, {})
    observe = (time.perf_counter() - t) / len(events)
    t = time.perf_counter()
    for _ in range(reps):
        body = m.text()
    render = (time.perf_counter() - t) / reps
    return {"observe_ms": observe * 1e3, "render_ms": render * 1e3, "bytes": float(len(body))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=50, help="renders timed per size")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # no per-plan info lines
    out = {}
    for fleets, n_dep, n_qt in SIZES:
        base = measure(False, fleets, n_dep, n_qt, args.reps)
        new = measure(True, fleets, n_dep, n_qt, args.reps)
        key = f"{fleets}fleets_{n_dep}deployments_{n_qt}query_types"
        out[key] = {"observe_ms": round(new["observe_ms"], 3), "render_ms": round(new["render_ms"], 3),
                    "body_bytes": int(new["bytes"]), "baseline_render_ms": round(base["render_ms"], 3),
                    "baseline_body_bytes": int(base["bytes"]),
                    "render_ratio": round(new["render_ms"] / base["render_ms"], 2)}
        r = out[key]
        print(f"{key:40s} observe {r['observe_ms']:7.3f} ms  /metrics {r['render_ms']:7.3f} ms "
              f"({r['body_bytes']} B) vs {r['baseline_render_ms']:.3f} ms ({r['baseline_body_bytes']} B) "
              f"without the gauges: x{r['render_ratio']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
