#!/usr/bin/env python3
"""The closed loop against an oracle, static plans and a reactive autoscaler, on one trace.

    python scripts/bench_closed_loop.py                       # bundled traces, quickstart scale, 15 min
    python scripts/bench_closed_loop.py --synthetic step      # or ramp, onoff
    python scripts/bench_closed_loop.py --trace t.jsonl --columns ts=timestamp,input=input_length,output=output_length \\
        --time-unit ms --query-type conversation
    python scripts/bench_closed_loop.py --quick               # short synthetic burst, llmfleet + oracle, checks

Every policy serves identical arrivals on the same fleet simulator (controller/sim/closed_loop_bench.py
says what each one is). Prints, per policy, the share of requests within SLO, rejected, $/h
integrated over replica time, GPUs switched per hour, over the whole trace and over its steady
state (from the third window on), a per-window table, the targets of issue #20 and, last, one
JSON line. `--cold-start pessimistic` runs every replica start at 300 s. A PNG goes to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from controller.sim import closed_loop_bench as clb  # noqa: E402
from controller.common.logging_setup import configure_logging  # noqa: E402
from schemas import load_catalog  # noqa: E402

STEADY_FROM = 2  # windows left out of the steady-state figures (a trace that starts from nothing)


def plot(results: dict[str, clb.PolicyResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name, r in results.items():
        x = [w["window"] for w in r.windows]
        a1.plot(x, [w["served"] / w["n"] if w["n"] else float("nan") for w in r.windows], marker=".", label=name)
        a2.plot(x, [w["dollars"] / w["hours"] if w["hours"] else float("nan") for w in r.windows], marker=".",
                label=name)
    a1.set_ylabel("within SLO")
    a1.set_ylim(0, 1.02)
    a2.set_ylabel("$/h (replica time)")
    a2.set_xlabel("window")
    a1.legend(fontsize=8)
    a1.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, help="CSV/JSONL trace (with --columns)")
    ap.add_argument("--columns", default="ts=timestamp,input=input_length,output=output_length",
                    help="column mapping KEY=COLUMN (ts, input, output, type)")
    ap.add_argument("--time-unit", choices=("s", "ms"), default="s")
    ap.add_argument("--query-type", help="query type of every row of a trace without a type column")
    ap.add_argument("--synthetic", choices=("step", "ramp", "onoff"))
    ap.add_argument("--scale", type=float, default=20.0, help="arrival-rate multiplier of the trace")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--cold-start", choices=("model", "pessimistic"), default="model")
    ap.add_argument("--policies", default=",".join(clb.POLICIES))
    ap.add_argument("--quick", action="store_true", help="short synthetic burst, llmfleet + oracle, invariants")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "closed_loop")
    args = ap.parse_args(argv)
    configure_logging(level="WARNING")
    console = Console(stderr=True)
    policies = ["llmfleet", "oracle"] if args.quick else [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = set(policies) - set(clb.POLICIES)
    if unknown:
        ap.error(f"unknown policies {sorted(unknown)}; choose from {list(clb.POLICIES)}")
    try:
        if args.quick:
            arr = clb.synthetic("onoff", minutes=6.0, low=10.0, high=50.0)
        elif args.synthetic:
            arr = clb.synthetic(args.synthetic, minutes=args.minutes)
        elif args.trace:
            arr = clb.from_file(args.trace, args.columns, time_unit=args.time_unit, query_type=args.query_type,
                                scale=1.0 if args.scale == 20.0 else args.scale, minutes=args.minutes)
        else:
            arr = clb.bundled(args.scale, args.minutes)
    except (ValueError, OSError) as exc:
        console.print(f"[red]cannot read the trace:[/red] {exc}")
        return 2
    if len(arr) == 0:
        console.print("[red]the trace holds no request[/red]")
        return 2
    cfg = clb.BenchConfig(pessimistic_s=300.0 if args.cold_start == "pessimistic" else None)
    catalog = load_catalog()
    results: dict[str, clb.PolicyResult] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{len(arr):,} requests", total=len(policies))
        for p in policies:
            progress.update(task, description=f"{p}: {len(arr):,} requests")
            results[p] = clb.run_all(arr, cfg, [p], catalog)[p]
            progress.advance(task)
    problems = [m for r in results.values() for m in clb.check_invariants(arr, r)]

    out = Console()
    title = f"{arr.name}, cold starts: {args.cold_start}"
    t = Table(title=title)
    for col in ("policy", "within SLO", "rejected", "$/h", "GPUs switched/h", "steady: within", "steady: $/h",
                "vs oracle $"):
        t.add_column(col, justify="right")
    oracle = results.get("oracle")
    for p, r in results.items():
        a, b = r.summary(), r.summary(STEADY_FROM)
        ratio = a["cost_per_hour"] / oracle.summary()["cost_per_hour"] if oracle else float("nan")
        t.add_row(p, f"{a['within_slo']:.1%}", f"{a['rejected']:.1%}", f"{a['cost_per_hour']:.2f}",
                  f"{a['gpus_switched_per_hour']:.0f}", f"{b['within_slo']:.1%}", f"{b['cost_per_hour']:.2f}",
                  f"{ratio:.2f}x")
    out.print(t)
    w = Table(title="per window: within SLO / $/h")
    w.add_column("window", justify="right")
    for p in results:
        w.add_column(p, justify="right")
    for k in range(max(len(r.windows) for r in results.values())):
        row = [str(k)]
        for r in results.values():
            x = r.windows[k] if k < len(r.windows) else None
            row.append(f"{x['served'] / x['n']:.0%} / {x['dollars'] / x['hours']:.1f}"
                       if x and x["n"] and x["hours"] else "-")
        w.add_row(*row)
    out.print(w)
    tg = clb.targets(results)
    tg_steady = clb.targets(results, STEADY_FROM)
    for name, v in tg.items():
        out.print(f"target {name}: {'met' if v['met'] else 'MISSED'} "
                  + ", ".join(f"{k} {x:.3f}" for k, x in v.items() if isinstance(x, float)))
    if problems:
        out.print("[red]invariants broken:[/red] " + "; ".join(problems))
    png = args.out / f"closed_loop_{'quick' if args.quick else (args.synthetic or (args.trace.stem if args.trace else 'bundled'))}_{args.cold_start}.png"
    plot(results, png, title)
    out.print(f"plot: {png}")
    print(json.dumps({"trace": arr.name, "cold_start": args.cold_start, "requests": len(arr),
                      "policies": {p: r.summary() for p, r in results.items()},
                      "steady_state": {p: r.summary(STEADY_FROM) for p, r in results.items()},
                      "targets": tg, "targets_steady_state": tg_steady, "invariants_ok": not problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
