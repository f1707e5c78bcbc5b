#!/usr/bin/env python3
"""Ablation of AGH (paper section 7e): full vs without M1, M2, M3 (and without each AGH-only
component: local search, consolidation, pool polish, neighbourhood MILPs, filler candidates,
the MILP moves' warm start, the LP-picked polish pool and its hub/top-up keys), on generated instances plus one where parallelism is mandatory
(a 72B model on fp16-only 48 GB GPUs). (10,10,10) instances run at `--deadline`; (30,30,30)
ones (where the neighbourhood MILPs and fillers matter) at `--large-deadline`, the deadline
the solver sweep uses there. Writes docs/studies.md section "ablation" and a figure.

    .venv/bin/python scripts/study_ablation.py [--quick] [--large-seeds 3]
"""
from __future__ import annotations

import argparse
import copy
import statistics

import _studies as st
from schemas import load_catalog
from solvers.adaptive import solve_agh
from solvers.options import AghOptions
from solvers.compile import compile_instance
from solvers.generator import generate_instance
from solvers.greedy import solve_gh
from solvers.validate import check_result

VARIANTS = {"full": {}, "no M1": {"m1": False}, "no M2": {"m2": False}, "no M3": {"m3": False},
            "GH (full)": {"gh": True}, "GH no M1": {"gh": True, "m1": False},
            "GH no M2": {"gh": True, "m2": False}, "GH no M3": {"gh": True, "m3": False},
            "no local search": {"local_search": False}, "no consolidation": {"consolidate": False},
            "no pool polish": {"polish": False}, "no LNS": {"lns": False},
            "no fillers": {"fillers": False}, "no MILP warm start": {"warm_milp": False},
            "no LP-picked polish pool": {"lp_pool": False},
            "no hub/top-up keys": {"hubs": False},
            "multi-start only": {"local_search": False, "consolidate": False, "polish": False,
                                 "lns": False}}


MID_SEEDS = (3, 5, 6, 9, 10, 11)  # (20,20,20) seeds in the ablation, first --mid-seeds of them


def sharded_instance(cat: dict) -> dict:
    inst = generate_instance(cat, 4, 6, 10, seed=0)
    m = next(m for m in cat["models"] if m["id"] == "qwen2.5-72b-instruct")
    g = next(g for g in cat["gpus"] if g["id"] == "L40S")
    m = {k: copy.deepcopy(m[k]) for k in ("id", "params_b", "n_layers", "d_model", "n_kv_heads", "head_dim", "error")}
    g = {k: copy.deepcopy(g[k]) for k in ("id", "memory_gb", "tflops", "bandwidth_tbps", "link_gbps",
                                          "link_latency_us", "gpus_per_node", "price_per_hour")}
    g["tflops"], g["count"] = {"fp16": g["tflops"]["fp16"]}, None
    inst["models"], inst["gpus"] = [m], [g]
    inst["precisions"] = [p for p in inst["precisions"] if p["id"] == "fp16"]
    for q in inst["query_types"]:
        q["max_error"] = max(q["max_error"], round(m["error"][q["id"]] * 1.01, 4))
    inst["budget_per_hour"] = 1e4
    inst["name"] = "sharded-72b-l40s"
    return inst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--deadline", type=float, default=0.5)
    ap.add_argument("--large-deadline", type=float, default=2.3)
    ap.add_argument("--large-seeds", type=int, default=None, help="(30,30,30) seeds (default 3; 0 with --quick)")
    ap.add_argument("--mid-seeds", type=int, default=None, help="(20,20,20) seeds (default 3; 0 with --quick)")
    args = ap.parse_args()
    cat = load_catalog().model_dump(mode="json")
    insts = [(sharded_instance(cat), args.deadline)]
    seeds = (0,) if args.quick else (0, 1, 2)
    for sc in ("base", "tight_budget"):
        for s in seeds:
            insts.append((generate_instance(cat, 10, 10, 10, seed=s, scenario=sc), args.deadline))
    mid = args.mid_seeds if args.mid_seeds is not None else (0 if args.quick else 3)
    mid_seeds = MID_SEEDS[:mid]  # where the plan-grown polish pool missed the optimum at 0.5 s
    for s in mid_seeds:
        insts.append((generate_instance(cat, 20, 20, 20, seed=s), args.deadline))
    large = args.large_seeds if args.large_seeds is not None else (0 if args.quick else 3)
    for s in range(large):
        insts.append((generate_instance(cat, 30, 30, 30, seed=s), args.large_deadline))
    rows, raw = [], {v: [] for v in VARIANTS}
    for inst, deadline in insts:
        ci = compile_instance(inst)
        full = None
        for name, kw in VARIANTS.items():
            kw = dict(kw)
            r = solve_gh(ci, **{k: v for k, v in kw.items() if k != "gh"}) if kw.pop("gh", False) \
                else solve_agh(ci, deadline_s=deadline, seed=0, options=AghOptions(**kw))
            ok = check_result(ci, r).feasible
            full = r.objective if name == "full" else full
            group = "large" if deadline == args.large_deadline and ci.n_qt >= 30 else \
                "mid" if ci.n_qt >= 20 else "small"
            raw[name].append((ok, r.objective / full if full else float("nan"), group))
            rows.append([inst["name"], name, "yes" if ok else "**no**", f"{r.objective:,.2f}",
                         f"{100 * (r.objective / full - 1):+.1f}%",
                         "; ".join(r.explanation[:1]) if not ok else ""])
    def cells(vals: list[float]) -> list[str]:
        return [f"{100 * (statistics.median(vals) - 1):+.1f}%" if vals else "n/a",
                f"{100 * (max(vals) - 1):+.1f}%" if vals else "n/a"]

    summary = []
    for name in VARIANTS:
        feas = sum(ok for ok, _, _ in raw[name])
        summary.append([name, f"{feas}/{len(raw[name])}",
                        *cells([v for ok, v, g in raw[name] if ok and g == "small"]),
                        *cells([v for ok, v, g in raw[name] if ok and g == "mid"]),
                        *cells([v for ok, v, g in raw[name] if ok and g == "large"])])
    head = ["variant", "valid plans", "median vs full (sharded + 10x10x10)", "worst",
            "median vs full (20x20x20)", "worst (20x20x20)",
            "median vs full (30x30x30)", "worst (30x30x30)"]
    def big(name: str, group: str = "large") -> str:
        vals = [v for ok, v, g in raw[name] if ok and g == group]
        return f"{100 * (statistics.median(vals) - 1):+.1f} %" if vals else "n/a"

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    st.FIG.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(VARIANTS)
    ax.bar(names, [100 * (statistics.median([v for ok, v, _ in raw[n] if ok] or [float("nan")]) - 1) for n in names])
    ax.set_ylabel("median cost vs full AGH (%)\n(valid plans only)")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(st.FIG / "ablation.png", dpi=120)
    plt.close(fig)
    body = "\n".join([
        "## Ablation (paper section 7e)", "",
        f"AGH and GH with one component switched off, on {len(insts)} instances: "
        "`sharded-72b-l40s` (a 72B model on fp16-only L40S, so every configuration needs "
        f"tp >= 4) and generated (10,10,10) instances, scenarios base and tight_budget, AGH "
        f"deadline {args.deadline} s; {len(mid_seeds)} generated (20,20,20) instances (base; seeds "
        f"{', '.join(map(str, mid_seeds))}, where a polish pool grown from the greedy plans "
        "missed the optimum) at the same deadline; "
        f"and {large} generated (30,30,30) instances (base) at "
        f"{args.large_deadline} s, where the neighbourhood MILPs (LNS), the filler candidates "
        "and the MILP moves' warm start matter. 'Valid' = passes the validator; cost relative "
        "to full AGH on the same instance (invalid plans carry unserved-demand penalties); "
        "timing-dependent: AGH stops at its deadline on a shared 2-core machine. Command: "
        "`scripts/study_ablation.py" + (" --quick" if args.quick else "") + "`.", "",
        st.md_table(head, summary), "",
        "The paper reports: without M1 or M3 infeasible, without M2 about +50 % cost. Here M1 "
        "is necessary for feasibility wherever sharding is mandatory (without it only tp = pp = 1 "
        "is considered); M2 is what makes GH cheap; AGH's multi-start, local search and pool "
        "polishing recover most of what a missing mechanism loses on the generated instances. "
        "M3 (tp upgrade) rarely changes a plan in this model because a fresh deployment at the "
        "right tp is priced the same as an upgraded one; it matters only under tight inventory "
        "(see tests/solvers/test_heuristics.py::test_without_m3_the_plan_changes_where_tp_upgrade_matters)."
        f" On (30,30,30) the MILP moves carry AGH: without the pool polish it ends {big('no pool polish')} "
        f"above full AGH (median), without the neighbourhood MILPs (LNS) {big('no LNS')}, without the "
        f"filler candidates {big('no fillers')} (the last step to the optimum is often an LNS move that "
        f"swaps in a filler), and multi-start alone {big('multi-start only')}. The (30,30,30) cells are single runs against a "
        "wall-clock deadline on a shared machine, so a few % on one instance for a switch that "
        "does not touch the MILP moves (M2, consolidation) is run-to-run variation, not an "
        "effect (docs/benchmarks.md: AGH's (30,30,30) gaps move between runs by about that "
        "much); the MILP warm start shows its effect at (30,30,30) mostly as robustness across "
        "runs (it lets the polish MILP reach the pool optimum in ~0.8 s instead of ~1.1 s)."
        f" On (20,20,20) at {args.deadline} s the polish MILP is the only MILP move and its pool "
        f"decides the gap: without the LP-picked polish pool AGH ends {big('no LP-picked polish pool', 'mid')} "
        f"above full AGH (median), without the hub/top-up keys in it {big('no hub/top-up keys', 'mid')}; "
        "at (30,30,30) the LP-picked pool (hub/top-up keys included) would exceed the first-pool "
        "size cap and is not used, so 'no LP-picked polish pool' leaves those runs as they are, "
        "while without the hub/top-up keys the pool is small enough to be used there (a pool "
        "without the hubs did worse there in this run: "
        f"{big('no hub/top-up keys')} median).", "",
        "<details><summary>per instance</summary>", "",
        st.md_table(["instance", "variant", "valid", "$/h", "vs full", "explanation"], rows), "",
        "</details>", "", "![ablation](figures/ablation.png)"])
    st.write_section("ablation", body)
    print(st.md_table(head, summary))


if __name__ == "__main__":
    main()
