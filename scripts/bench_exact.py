#!/usr/bin/env python3
"""Exact solvers on generated instances: MILP (HiGHS, SCIP) and CP-SAT, with status, time,
objective, proven bound and gap. These are the yardsticks for GH/AGH (bench_solvers.py).

    python scripts/bench_exact.py [--sizes 6,6,10 10,10,10 20,20,20] [--seeds 0 1 2]
                                  [--time-limit 60] [--load 10]

The gap is (objective - bound) / objective with the solver's own proven bound; CP-SAT's
bound column is the continuous LP relaxation (its own bound is for the gridded model).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from bench_doc import DOCS, machine, md_table, update_section  # noqa: E402
from schemas import load_catalog  # noqa: E402
from solvers import check_result, compile_instance  # noqa: E402
from solvers.cpsat import solve_cpsat  # noqa: E402
from solvers.generator import generate_instance  # noqa: E402
from solvers.milp import solve_milp  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["6,6,10", "10,10,10", "20,20,20"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--cpsat-time-limit", type=float, default=None, help="default: --time-limit")
    ap.add_argument("--load", type=float, default=10.0)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    cat = load_catalog().model_dump(mode="json")
    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes]
    solvers = {
        "milp-highs": lambda ci: solve_milp(ci, time_limit_s=args.time_limit, backend="highs"),
        "milp-scip": lambda ci: solve_milp(ci, time_limit_s=args.time_limit, backend="scip"),
        "cpsat": lambda ci: solve_cpsat(ci, time_limit_s=args.cpsat_time_limit or args.time_limit),
    }
    rows = []
    with Progress(console=Console(stderr=True)) as prog:
        task = prog.add_task("exact solves", total=len(sizes) * len(args.seeds) * len(solvers))
        for size in sizes:
            for seed in args.seeds:
                ci = compile_instance(generate_instance(cat, *size, seed=seed, load=args.load))
                for name, fn in solvers.items():
                    res = fn(ci)
                    ok = res.has_solution and check_result(ci, res).feasible
                    rows.append({"size": "x".join(map(str, size)), "seed": seed, "solver": name,
                                 "status": res.status.value, "valid": ok, "seconds": round(res.seconds, 3),
                                 "objective": round(res.objective, 4) if res.has_solution else None,
                                 "bound": round(res.bound, 4) if res.bound is not None else None,
                                 "gap": round(res.gap, 5) if res.gap is not None else None})
                    prog.advance(task)
    out_csv = DOCS / "figures" / "bench_exact.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    t = Table(title=f"exact solvers, time limit {args.time_limit:g}s")
    for col in rows[0]:
        t.add_column(col)
    for r in rows:
        t.add_row(*(str(v) for v in r.values()))
    Console().print(t)
    summary = []
    for size in {r["size"] for r in rows}:
        for name in solvers:
            sel = [r for r in rows if r["size"] == size and r["solver"] == name]
            summary.append([size, name, sum(r["status"] == "optimal" for r in sel), len(sel),
                            statistics.median(r["seconds"] for r in sel),
                            statistics.median([r["gap"] for r in sel if r["gap"] is not None] or [float("nan")])])
    summary.sort()
    cp = f" --cpsat-time-limit {args.cpsat_time_limit:g}" if args.cpsat_time_limit else ""
    body = (f"## Exact solvers\n\n`python scripts/bench_exact.py --time-limit {args.time_limit:g}{cp}` on {machine()}; "
            f"generated instances (catalog-based, load {args.load:g}), seeds {args.seeds}. Full rows: "
            f"`docs/figures/bench_exact.csv`.\n\n"
            + md_table(["I x J x K", "solver", "proven optimal", "runs", "median s", "median gap"],
                       [[a, b, c, d, f"{e:.2f}", f"{g:.2%}" if g == g else "-"] for a, b, c, d, e, g in summary])
            + "\n\nPer run:\n\n" + md_table(list(rows[0]), [list(r.values()) for r in rows])
            + "\n\nCP-SAT's bound is the continuous LP relaxation; CP-SAT itself proves optimality only on its "
              "fraction grid, so its status is `feasible` at best.\n")
    if not args.no_doc:
        update_section("exact", body)
    print(json.dumps({"rows": len(rows), "csv": str(out_csv)}))


if __name__ == "__main__":
    main()
