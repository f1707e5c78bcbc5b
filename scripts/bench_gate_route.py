#!/usr/bin/env python3
"""Benchmark the gate-and-route solver core (arXiv 2602.02987 reconstruction).

    python scripts/bench_gate_route.py [--quick] [--workers 2]

1. Convergence: per-replica reward of gate-and-route vs the fluid bound R* (LP 40) for
   n in {5, 20, 50, 200, 500}, mean and spread over seeds, on the paper's section 6.2 instance.
2. Baselines at n = 500: normalised reward (reward / R*) of every policy on the paper's
   instance and on random instances in the paper's parameter ranges.
3. SLI frontiers (LP only): reward vs prefill fairness, decode fairness and TPOT targets.

A full run writes docs/gate_route.md and docs/figures/*.png. The last stdout line is one JSON
object with the paper instance's bound and each policy's reward at the largest n run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solvers.gate_route.fluid_lp import SliTargets, solve_bundled_lp, solve_sli_lp  # noqa: E402
from solvers.gate_route.instance import GateRouteInstance, paper_instance  # noqa: E402
from solvers.gate_route.policies import (  # noqa: E402
    BASELINES,
    gate_and_route,
    gate_and_route_literal,
)
from solvers.gate_route.sim import SimConfig, simulate  # noqa: E402

POLICIES = {
    "gate_and_route": gate_and_route,
    "gate_and_route_literal": gate_and_route_literal,
    **BASELINES,
}
JSON_POLICIES = ("gate_and_route", "fi_wsp", "gi_wsp", "gf_wsp", "fg_sp")


def random_instances(k: int, seed: int) -> list[GateRouteInstance]:
    """Instances in the ranges of section 6.3 (two classes, B = 16, C = 256, theta = 0.1)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        out.append(
            GateRouteInstance(
                prompt_tokens=rng.uniform(200, 3000, 2).round(),
                decode_tokens=rng.uniform(200, 3000, 2).round(),
                arrival_rate=rng.uniform(0.25, 0.5, 2).round(3),
                patience_rate=(0.1, 0.1),
                slots=16,
                chunk_tokens=256,
                alpha=round(float(rng.uniform(0.015, 0.02)), 4),
                beta=float(10 ** rng.uniform(-5, -3)),
                gamma=round(float(rng.uniform(10, 50)), 2),
            )
        )
    return out


def warmup_for(inst: GateRouteInstance, base: float) -> float:
    """Warm-up long enough for the slowest decode (D tau on a mixed replica) to relax, x3."""
    return max(base, 3.0 * float(inst.D.max()) * inst.tau)


def _job(args):
    """One simulation in a worker process: (key, reward bundled, wall s, events)."""
    key, inst, policy_name, n, horizon, warmup, seed = args
    warmup = warmup_for(inst, warmup)
    lp = solve_bundled_lp(inst, n)
    pol = POLICIES[policy_name](inst, n, lp)
    res = simulate(inst, pol, SimConfig(n=n, horizon_s=horizon, warmup_s=warmup, seed=seed))
    return key, res.reward_bundled_per_s, res.wall_s, res.events


def run_jobs(jobs, workers: int, label: str, console):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    results = []
    with Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as prog:
        task = prog.add_task(label, total=len(jobs))
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                for r in ex.map(_job, jobs):
                    results.append(r)
                    prog.advance(task)
        else:
            for j in jobs:
                results.append(_job(j))
                prog.advance(task)
    return results


def convergence(inst, ns, seeds, horizon, warmup, workers, console):
    jobs = [((n, s), inst, "gate_and_route", n, horizon, warmup, s) for n in ns for s in seeds]
    res = run_jobs(jobs, workers, "convergence", console)
    table = {}
    for (n, _s), reward, wall, events in res:
        table.setdefault(n, []).append((reward, wall, events))
    return table


def baselines(instances, n, seeds, horizon, warmup, workers, console):
    jobs = [
        ((k, p, s), inst, p, n, horizon, warmup, s)
        for k, inst in enumerate(instances)
        for p in POLICIES
        for s in seeds
    ]
    res = run_jobs(jobs, workers, f"baselines n={n}", console)
    table: dict = {}
    for (k, p, _s), reward, wall, events in res:
        table.setdefault((k, p), []).append((reward, wall, events))
    return table


def sli_frontiers(inst):
    base = solve_bundled_lp(inst).reward
    grids = {
        "prefill fairness eta1": ("prefill_fairness", np.linspace(0.0, 0.25, 26)),
        "decode fairness eta2": ("decode_fairness", np.linspace(0.0, 5.0, 26)),
        "average TPOT eta3 (s)": ("tpot_s", np.linspace(0.02202, 0.0246, 40)),
    }
    out = {}
    for label, (field, grid) in grids.items():
        vals = []
        for v in grid:
            s = solve_sli_lp(inst, SliTargets(**{field: float(v)}))
            vals.append(s.reward / base if s.ok else np.nan)
        out[label] = (grid, np.asarray(vals))
    return out


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="under a minute; no docs written")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args(argv)

    from rich.console import Console

    console = Console(stderr=True)
    inst = paper_instance()
    r_star = solve_bundled_lp(inst).reward
    t0 = time.perf_counter()

    if args.quick:
        ns, seeds, hc, wc = [5, 20, 50, 200, 500], [0, 1], 300.0, 100.0
        n_base, base_seeds, hb, wb, grid = 500, [0], 200.0, 100.0, random_instances(1, 7)
    else:
        ns, seeds, hc, wc = [5, 20, 50, 200, 500], [0, 1, 2, 3, 4], 2000.0, 200.0
        n_base, base_seeds, hb, wb, grid = 500, [0, 1], 600.0, 200.0, random_instances(6, 7)

    conv = convergence(inst, ns, seeds, hc, wc, args.workers, console)
    conv_rows = []
    for n in ns:
        r = np.array([v[0] for v in conv[n]])
        wall = np.mean([v[1] for v in conv[n]])
        ev = np.mean([v[2] for v in conv[n]])
        conv_rows.append(
            (n, f"{r.mean():.2f}", f"{r.std(ddof=1) if len(r) > 1 else 0.0:.2f}",
             f"{r.mean() / r_star:.4f}", f"{wall:.2f}", f"{ev:.0f}")
        )
    conv_md = md_table(
        ["n", "reward/replica-s (mean)", "std over seeds", "mean / R*", "wall s per run", "events"],
        conv_rows,
    )
    print(f"Fluid bound R* = {r_star:.3f} per replica-second (LP 40, paper instance)")
    print(f"Convergence of gate_and_route, horizon {hc:.0f} s after {wc:.0f} s warm-up, seeds {seeds}")
    print(conv_md)

    instances = [inst] + grid
    base = baselines(instances, n_base, base_seeds, hb, wb, args.workers, console)
    bounds = [solve_bundled_lp(x).reward for x in instances]
    header = ["instance", "R*"] + list(POLICIES)
    rows = []
    norm: dict = {p: [] for p in POLICIES}
    for k, x in enumerate(instances):
        row = ["paper" if k == 0 else f"grid{k}", f"{bounds[k]:.1f}"]
        for p in POLICIES:
            r = np.array([v[0] for v in base[(k, p)]]) / bounds[k]
            norm[p].append(r.mean())
            row.append(f"{r.mean():.4f}" + (f" ± {r.std(ddof=1):.4f}" if len(r) > 1 else ""))
        rows.append(row)
    rows.append(["mean", ""] + [f"{np.mean(norm[p]):.4f}" for p in POLICIES])
    base_md = md_table(header, rows)
    inst_rows = [
        ("paper" if k == 0 else f"grid{k}", x.prompt_tokens, x.decode_tokens, x.arrival_rate,
         x.alpha, f"{x.beta:.2e}", x.gamma)
        for k, x in enumerate(instances)
    ]
    inst_rows = [r + (f"{warmup_for(x, wb):.0f}",) for r, x in zip(inst_rows, instances)]
    inst_md = md_table(
        ["instance", "P", "D", "lambda", "alpha", "beta", "gamma", "warm-up s"], inst_rows
    )
    print(f"\nNormalised reward (reward / R*) at n = {n_base}, horizon {hb:.0f} s, seeds {base_seeds}")
    print(base_md)
    print(inst_md)

    if not args.quick:
        fronts = sli_frontiers(inst)
        write_docs(args.out, inst, r_star, conv, ns, conv_md, base_md, inst_md, fronts,
                   (n_base, hb, wb, base_seeds), (hc, wc, seeds))
        print(f"\nwrote {args.out / 'gate_route.md'} and figures")
    console.print(f"total wall {time.perf_counter() - t0:.1f} s")

    largest = max(ns)
    summary = {"fluid_lp_bound_per_s": r_star, "n": n_base, "policies": {}}
    for p in JSON_POLICIES:
        r = np.array([v[0] for v in base[(0, p)]])
        summary["policies"][p] = {
            "reward_per_s": float(r.mean()),
            "normalised": float(r.mean() / r_star),
            "seeds": len(r),
        }
    if largest == n_base:
        summary["policies"]["gate_and_route"]["convergence_runs_mean"] = float(
            np.mean([v[0] for v in conv[largest]])
        )
    print(json.dumps(summary))
    return 0


def write_docs(out: Path, inst, r_star, conv, ns, conv_md, base_md, inst_md, fronts, base_cfg, conv_cfg):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    means = [np.mean([v[0] for v in conv[n]]) / r_star for n in ns]
    stds = [np.std([v[0] for v in conv[n]], ddof=1) / r_star for n in ns]
    ax.errorbar(ns, means, yerr=stds, marker="o", capsize=3, label="gate_and_route")
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="R* (LP 40)")
    ax.set_xscale("log")
    ax.set_xlabel("replicas n")
    ax.set_ylabel("reward / R*")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figs / "gate_route_convergence.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (label, (grid, vals)) in zip(axes, fronts.items()):
        ax.plot(grid, 100 * vals, marker=".")
        ax.set_xlabel(label)
        ax.set_ylabel("revenue, % of R*")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(figs / "gate_route_sli_frontiers.png", dpi=120)
    plt.close(fig)

    n_base, hb, wb, bseeds = base_cfg
    hc, wc, cseeds = conv_cfg
    text = f"""# Gate-and-route: fluid bound, convergence and baselines

Generated by `scripts/bench_gate_route.py` (full run). Model and policies: arXiv 2602.02987
as reconstructed in `shared/research/paper_gate_route.md`; code in `solvers/gate_route/fluid_lp.py`,
`solvers/gate_route/policies.py`, `solvers/gate_route/sim.py`, `solvers/gate_route/plan.py`.

Paper instance (section 6.2): B = 16, C = 256, alpha = 0.0174, beta = 6.2e-5, gamma = 45.45,
(P, D) = (300, 1000) and (3000, 400), lambda = 0.5 and 0.5 per replica, theta = 0.1,
c_p = 0.1, c_d = 0.2. Fluid bound R* = {r_star:.3f} per replica-second (LP 40).

## Convergence of gate-and-route to R*

Horizon {hc:.0f} s after a {wc:.0f} s warm-up from empty, seeds {cseeds}. `gate_and_route` is the
occupancy gate with decode backpressure (no new prefill while a decode waits), the section 6.3
reading of GG-SP; `gate_and_route_literal` below is section 4.1 verbatim.

{conv_md}

![convergence](figures/gate_route_convergence.png)

## Policies at n = {n_base}

Normalised reward (reward / R* of the instance), horizon {hb:.0f} s after a warm-up of
max({wb:.0f} s, 3 max_i D_i tau) from empty (the slowest decode relaxes on that scale; high-beta
instances need long warm-ups), seeds {bseeds}.

{base_md}

Instances (grid drawn in the paper's ranges, seed 7):

{inst_md}

## SLI frontiers (LP 49, one SLI at a time, q_d = 0)

![frontiers](figures/gate_route_sli_frontiers.png)
"""
    path = out / "gate_route.md"  # keep the hand-written fleet section (<!-- fleet:begin/end -->)
    old = path.read_text() if path.exists() else ""
    kept = old[old.find("<!-- fleet:begin -->"):old.find("<!-- fleet:end -->") + len("<!-- fleet:end -->")] \
        if "<!-- fleet:begin -->" in old and "<!-- fleet:end -->" in old else ""
    path.write_text(text + (f"\n{kept}\n" if kept else ""))


if __name__ == "__main__":
    raise SystemExit(main())
