#!/usr/bin/env python3
"""Solver sweep: GH, AGH, LPR, DVR, HF and the exact MILP on generated instances.

    .venv/bin/python scripts/bench_solvers.py [--quick] [--sizes 6,6,10 20,20,20]
        [--seeds 3] [--exact-time-limit 600] [--agh-deadline 0.5] [--no-docs]

Per instance: compile time, each method's `seconds` (solve on the compiled instance, compile
excluded) and cost, MILP status/time/objective/bound warm-started from AGH and cold, gaps
against the best proven bound and against the proven optimum. Writes a CSV and PNG plots to
docs/figures/ and the "Solvers" section of docs/benchmarks.md (between markers).
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_doc import update_section  # noqa: E402
from schemas import load_catalog  # noqa: E402
from solvers.adaptive import solve_agh  # noqa: E402
from solvers.baselines import solve_dvr, solve_hf, solve_lpr  # noqa: E402
from solvers.compile import compile_instance  # noqa: E402
from solvers.generator import generate_instance  # noqa: E402
from solvers.greedy import solve_gh  # noqa: E402
from solvers.milp import solve_milp  # noqa: E402
from solvers.plan_codec import to_plan  # noqa: E402
from solvers.result import Status  # noqa: E402
from solvers.validate import check_result  # noqa: E402

FIG = REPO / "docs" / "figures"
QUIET = "log_to_console = false"
HEUR = ("gh", "agh", "lpr", "dvr", "hf")


def _checker():
    import importlib.util
    path = REPO.parent / "shared" / "spec" / "check_plan.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("spec_check_plan", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_instance(cat: dict, size: tuple[int, int, int], seed: int, args, chk) -> dict:
    inst = generate_instance(cat, *size, seed=seed, scenario=args.scenario)
    t = time.perf_counter()
    ci = compile_instance(inst)
    row: dict = {"size": "x".join(map(str, size)), "seed": seed, "routes": ci.n_routes,
                 "candidates": ci.n_cand, "compile_s": time.perf_counter() - t}
    solve_gh(ci)  # first-call import/JIT noise out of the timings
    res = {"gh": solve_gh(ci), "agh": solve_agh(ci, deadline_s=args.agh_deadline, seed=seed),
           "lpr": solve_lpr(ci), "dvr": solve_dvr(ci), "hf": solve_hf(ci)}
    for k, r in res.items():
        valid = check_result(ci, r).feasible
        if chk is not None and r.has_solution:
            valid = valid and chk.check(inst, to_plan(ci, r))["feasible"]
        row[f"{k}_s"] = r.seconds
        row[f"{k}_cost"] = r.objective
        row[f"{k}_valid"] = bool(valid and r.has_solution)
    agh = res["agh"]
    for tag, warm in (("warm", (agh.replicas, agh.x)), ("cold", None)):
        m = solve_milp(ci, time_limit_s=args.exact_time_limit, warm_start=warm, params=QUIET)
        row[f"milp_{tag}_status"] = m.status.value
        row[f"milp_{tag}_s"] = m.seconds
        row[f"milp_{tag}_cost"] = m.objective if m.has_solution else math.nan
        row[f"milp_{tag}_bound"] = m.bound if m.bound is not None else math.nan
    bounds = [row[f"milp_{t}_bound"] for t in ("warm", "cold") if not math.isnan(row[f"milp_{t}_bound"])]
    row["best_bound"] = max(bounds) if bounds else math.nan
    opt = [row[f"milp_{t}_cost"] for t in ("warm", "cold") if row[f"milp_{t}_status"] == Status.OPTIMAL.value]
    row["optimum"] = min(opt) if opt else math.nan
    feas = [row[f"{k}_cost"] for k in HEUR if row[f"{k}_valid"]] + \
        [row[f"milp_{t}_cost"] for t in ("warm", "cold") if not math.isnan(row[f"milp_{t}_cost"])]
    row["best_known"] = min(feas) if feas else math.nan
    for k in HEUR:
        c = row[f"{k}_cost"]
        row[f"{k}_gap_bound"] = (c - row["best_bound"]) / c if c > 0 and not math.isnan(row["best_bound"]) else math.nan
        row[f"{k}_gap_opt"] = c / row["optimum"] - 1 if not math.isnan(row["optimum"]) else math.nan
    row["agh_speedup_vs_cold"] = row["milp_cold_s"] / max(row["agh_s"], 1e-9)
    return row


def _med(vals: list[float]) -> float:
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for size in dict.fromkeys(r["size"] for r in rows):
        rs = [r for r in rows if r["size"] == size]
        s = {"size": size, "n": len(rs), "compile_s": _med([r["compile_s"] for r in rs])}
        for k in HEUR:
            s[f"{k}_s"] = _med([r[f"{k}_s"] for r in rs])
            s[f"{k}_cost"] = _med([r[f"{k}_cost"] for r in rs])
            s[f"{k}_valid"] = sum(r[f"{k}_valid"] for r in rs)
            s[f"{k}_gap_opt_max"] = max([r[f"{k}_gap_opt"] for r in rs if not math.isnan(r[f"{k}_gap_opt"])], default=math.nan)
            s[f"{k}_gap_bound"] = _med([r[f"{k}_gap_bound"] for r in rs])
        for t in ("warm", "cold"):
            s[f"milp_{t}_s"] = _med([r[f"milp_{t}_s"] for r in rs])
            s[f"milp_{t}_optimal"] = sum(r[f"milp_{t}_status"] == "optimal" for r in rs)
            s[f"milp_{t}_cost"] = _med([r[f"milp_{t}_cost"] for r in rs])
        s["proven"] = sum(not math.isnan(r["optimum"]) for r in rs)
        s["agh_speedup"] = _med([r["agh_speedup_vs_cold"] for r in rs])
        out.append(s)
    return out


def _fmt(v: float, p: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, p)


def table_md(summary: list[dict]) -> str:
    head = ("| size | n | compile s | GH s | AGH s | LPR s | DVR s | HF s | MILP cold s (opt/n) | "
            "MILP warm s (opt/n) | GH $/h | AGH $/h | LPR $/h | DVR $/h | HF $/h | MILP $/h | "
            "AGH max gap vs opt | GH max gap vs opt | AGH gap vs bound | AGH speedup vs cold MILP |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summary:
        lines.append(
            f"| {s['size']} | {s['n']} | {_fmt(s['compile_s'])} | {_fmt(s['gh_s'], '.4f')} | "
            f"{_fmt(s['agh_s'])} | {_fmt(s['lpr_s'])} | {_fmt(s['dvr_s'], '.4f')} | {_fmt(s['hf_s'])} | "
            f"{_fmt(s['milp_cold_s'], '.1f')} ({s['milp_cold_optimal']}/{s['n']}) | "
            f"{_fmt(s['milp_warm_s'], '.1f')} ({s['milp_warm_optimal']}/{s['n']}) | "
            f"{_fmt(s['gh_cost'], '.2f')} | {_fmt(s['agh_cost'], '.2f')} | {_fmt(s['lpr_cost'], '.2f')} | "
            f"{_fmt(s['dvr_cost'], '.2f')} | {_fmt(s['hf_cost'], '.2f')} | {_fmt(s['milp_warm_cost'], '.2f')} | "
            f"{_fmt(100 * s['agh_gap_opt_max'], '.2f')}% ({s['proven']} proven) | "
            f"{_fmt(100 * s['gh_gap_opt_max'], '.1f')}% | {_fmt(100 * s['agh_gap_bound'], '.1f')}% | "
            f"{_fmt(s['agh_speedup'], '.0f')}x |")
    return "\n".join(lines)


def print_rich(summary: list[dict]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(table_md(summary))
        return
    t = Table(title="Solver sweep (medians; gaps: max over proven-optimal instances)")
    for c in ("size", "GH s", "AGH s", "LPR s", "DVR s", "HF s", "MILP cold s", "opt/n",
              "GH $", "AGH $", "MILP $", "AGH gap", "GH gap", "speedup"):
        t.add_column(c, justify="right")
    for s in summary:
        t.add_row(s["size"], _fmt(s["gh_s"], ".4f"), _fmt(s["agh_s"]), _fmt(s["lpr_s"]),
                  _fmt(s["dvr_s"], ".4f"), _fmt(s["hf_s"]), _fmt(s["milp_cold_s"], ".1f"),
                  f"{s['milp_cold_optimal']}/{s['n']}", _fmt(s["gh_cost"], ".2f"),
                  _fmt(s["agh_cost"], ".2f"), _fmt(s["milp_warm_cost"], ".2f"),
                  _fmt(100 * s["agh_gap_opt_max"], ".2f") + "%",
                  _fmt(100 * s["gh_gap_opt_max"], ".1f") + "%", _fmt(s["agh_speedup"], ".0f") + "x")
    Console(width=220).print(t)


def plots(rows: list[dict], summary: list[dict]) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIG.mkdir(parents=True, exist_ok=True)
    sizes = [s["size"] for s in summary]
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, lab in (("gh_s", "GH"), ("agh_s", "AGH"), ("lpr_s", "LPR"), ("dvr_s", "DVR"),
                   ("hf_s", "HF"), ("milp_cold_s", "MILP (cold)"), ("milp_warm_s", "MILP (warm)")):
        ax.plot(sizes, [s[k] for s in summary], marker="o", label=lab)
    ax.set_yscale("log")
    ax.set_xlabel("(I, J, K)")
    ax.set_ylabel("median solve seconds (log)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(FIG / "solvers_runtime.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    w = 0.15
    for n, k in enumerate(HEUR):
        vals = [100 * (_med([r[f"{k}_cost"] / r["best_known"] - 1 for r in rows if r["size"] == s])) for s in sizes]
        ax.bar([i + (n - 2) * w for i in range(len(sizes))], vals, w, label=k.upper())
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set_ylabel("median cost above best known plan (%)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(FIG / "solvers_cost_gap.png", dpi=120)
    plt.close(fig)
    return ["solvers_runtime.png", "solvers_cost_gap.png"]


def write_doc(summary: list[dict], rows: list[dict], args, figs: list[str]) -> None:
    big = next((s for s in summary if s["size"] == "20x20x20"), None)
    agh_gaps = [r["agh_gap_opt"] for r in rows if not math.isnan(r["agh_gap_opt"])]
    gh_gaps = [r["gh_gap_opt"] for r in rows if not math.isnan(r["gh_gap_opt"])]
    lines = ["## Solvers", "",
             f"Generated instances (`solvers.generator`, scenario `{args.scenario}`), seeds 0..{args.seeds - 1}, "
             f"AGH deadline {args.agh_deadline} s, exact MILP (HiGHS via OR-Tools) time limit "
             f"{args.exact_time_limit} s, run warm-started from AGH and cold. Times are each plan's "
             "`seconds` (solve on the compiled instance; compile time reported separately), medians "
             f"over seeds, on this 2-core machine. Command: `scripts/bench_solvers.py {' '.join(sys.argv[1:])}`.",
             "", table_md(summary), "",
             "* Every heuristic plan valid (own validator + spec checker): "
             + ", ".join(f"{k.upper()} {sum(r[f'{k}_valid'] for r in rows)}/{len(rows)}" for k in HEUR) + ".",
             f"* AGH vs proven optimum: max gap {_fmt(100 * max(agh_gaps), '.2f') if agh_gaps else 'n/a'}%, "
             f"median {_fmt(100 * _med(agh_gaps), '.2f') if agh_gaps else 'n/a'}% over {len(agh_gaps)} proven instances "
             f"(target <= 1 %); GH max gap {_fmt(100 * max(gh_gaps), '.1f') if gh_gaps else 'n/a'}%.",
             ]
    if big:
        lines.append(f"* (20,20,20): GH median {1000 * big['gh_s']:.1f} ms (target <= 50 ms), AGH median "
                     f"{big['agh_s']:.3f} s (target <= 0.5 s), cold MILP median {big['milp_cold_s']:.1f} s "
                     f"({big['milp_cold_optimal']}/{big['n']} proven optimal): AGH speedup "
                     f"{big['agh_speedup']:.0f}x from the same run.")
    lines += ["", *[f"![{f}](figures/{f})" for f in figs], "",
              "CSV: `docs/figures/bench_solvers.csv` (one row per instance)."]
    update_section("solvers", "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run (< ~2 min)")
    ap.add_argument("--sizes", nargs="*", default=None, help="I,J,K triples")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--exact-time-limit", type=float, default=None)
    ap.add_argument("--agh-deadline", type=float, default=0.5)
    ap.add_argument("--scenario", default="base")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--csv", default=str(FIG / "bench_solvers.csv"))
    args = ap.parse_args()
    if args.quick:
        sizes = args.sizes or ["6,6,10", "10,10,10", "20,20,20"]
        args.seeds = args.seeds or 1
        args.exact_time_limit = args.exact_time_limit or 15.0
    else:
        sizes = args.sizes or ["6,6,10", "10,10,10", "20,20,20", "30,30,30"]
        args.seeds = args.seeds or 3
        args.exact_time_limit = args.exact_time_limit or 600.0
    cat = load_catalog().model_dump(mode="json")
    chk = _checker()
    rows = []
    for sz in sizes:
        size = tuple(int(v) for v in sz.split(","))
        for seed in range(args.seeds):
            row = run_instance(cat, size, seed, args, chk)
            rows.append(row)
            print(f"{row['size']} seed {seed}: GH {row['gh_cost']:.2f} ({1000 * row['gh_s']:.1f} ms) "
                  f"AGH {row['agh_cost']:.2f} ({row['agh_s']:.3f} s) MILP cold {row['milp_cold_status']} "
                  f"{row['milp_cold_cost']:.2f} bound {row['milp_cold_bound']:.2f} ({row['milp_cold_s']:.1f} s)",
                  flush=True)
    FIG.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary = summarise(rows)
    print_rich(summary)
    if not args.no_docs:
        write_doc(summary, rows, args, plots(rows, summary))


if __name__ == "__main__":
    main()
