#!/usr/bin/env python3
"""Stress test (paper section 7d): plan on nominal parameters, freeze the replicas, then
re-evaluate with latency and error inflated 1.2x and 1.5x. Latency inflation divides each
route's service rate and multiplies its latency; a route whose inflated latency exceeds its
query type's max_latency_s can no longer be used; error inflation raises e. Routing is
re-optimised for the frozen replicas (placements fixed, routing adapts); traffic that no
longer fits is unserved and pays its penalty. Also a headroom study: AGH planned with
max_utilization lowered. Writes docs/studies.md section "stress" and a figure.

    .venv/bin/python scripts/study_stress.py [--quick] [--frontier]

`--frontier` runs only the robust-planning frontier (issue 15; section "stress_frontier"):
AGH planned with latency headroom h and error margin e (solvers.robust.with_margins), its
nominal cost against its violations under x1.2 and x1.5 inflation, next to GH's and
nominal AGH's.
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import replace


import _studies as st
from schemas import load_catalog
from solvers.adaptive import solve_agh
from solvers.compile import compile_instance
from solvers.generator import generate_instance
from solvers.greedy import solve_gh
from solvers.milp import solve_milp

FACTORS = (1.0, 1.2, 1.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--exact-time-limit", type=float, default=60.0)
    ap.add_argument("--frontier", action="store_true", help="only the robust-planning frontier")
    args = ap.parse_args()
    if args.frontier:
        return frontier(args)
    cat = load_catalog().model_dump(mode="json")
    seeds = (0,) if args.quick else (0, 1, 2)
    scen = ("base", "tight_budget", "high_penalty")
    res: dict = {}
    head: dict = {}
    for sc in scen:
        for s in seeds:
            inst = generate_instance(cat, 10, 10, 10, seed=s, scenario=sc)
            ci = compile_instance(inst)
            evals = {(kind, f): compile_instance(st.stressed(inst, *lat_err))
                     for f in FACTORS for kind, lat_err in (("latency", (f, 1.0)), ("error", (1.0, f)),
                                                            ("both", (f, f)))
                     if f != 1.0 or kind == "both"}
            plans = {"exact": solve_milp(ci, time_limit_s=args.exact_time_limit, params=st.QUIET),
                     "GH": solve_gh(ci), "AGH": solve_agh(ci, deadline_s=0.5)}
            for u in (0.75, 0.65):
                plans[f"AGH U={u}"] = solve_agh(replace(ci, max_utilization=u), deadline_s=0.5)
            for name, p in plans.items():
                for f in FACTORS:
                    for kind in ("latency", "error", "both"):
                        if f == 1.0 and kind != "both":
                            continue
                        r = st.realise(ci, p.replicas, evals[(kind, f)])
                        res.setdefault((sc, name, kind, f), []).append(r)
                head.setdefault((sc, name), []).append(p.objective)
    rows = []
    for sc in scen:
        for name in ("exact", "GH", "AGH", "AGH U=0.75", "AGH U=0.65"):
            nom = statistics.median(head[(sc, name)])
            cells = [sc, name, f"{nom:,.2f}"]
            for f in (1.2, 1.5):
                for kind in ("latency", "error", "both"):
                    rs = res[(sc, name, kind, f)]
                    cells.append(f"{statistics.median(r['cost'] for r in rs):,.0f} / "
                                 f"{100 * statistics.mean(r['violation'] for r in rs):.1f}%")
            rows.append(cells)
    header = ["scenario", "plan", "nominal $/h"] + [f"{k} x{f}" for f in (1.2, 1.5)
                                                   for k in ("latency", "error", "both")]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    st.FIG.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in ("exact", "GH", "AGH", "AGH U=0.75", "AGH U=0.65"):
        viol = [100 * statistics.mean(r["violation"] for sc in scen for r in res[(sc, name, "both", f)]) for f in FACTORS]
        cost = [statistics.median(r["cost"] for sc in scen for r in res[(sc, name, "both", f)]) for f in FACTORS]
        axes[0].plot(FACTORS, cost, marker="o", label=name)
        axes[1].plot(FACTORS, viol, marker="o", label=name)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("latency and error inflation")
    axes[0].set_ylabel("median realised $/h (log)")
    axes[1].set_xlabel("latency and error inflation")
    axes[1].set_ylabel("mean SLO violation (% of requests)")
    axes[1].legend(fontsize=7)
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(st.FIG / "stress.png", dpi=120)
    plt.close(fig)
    def mean_viol(name: str, f: float, kind: str = "both") -> float:
        return 100 * statistics.mean(r["violation"] for sc in scen for r in res[(sc, name, kind, f)])

    body = "\n".join([
        "## Stress test and headroom (paper section 7d)", "",
        f"Generated (10,10,10) instances, seeds {list(seeds)}, scenarios {', '.join(scen)}. Plans: "
        f"exact MILP (HiGHS through scipy, time limit {args.exact_time_limit:g} s), GH, AGH (0.5 s), and AGH planned with "
        "max_utilization lowered to 0.75 / 0.65 (headroom). Each plan's replicas are frozen and "
        "re-evaluated with latency and/or error inflated: every time in the performance model is "
        "scaled (rates / f, fixed delays x f) and the instance recompiled, so each route re-selects "
        "its batch size to keep its latency SLO at a lower service rate, or is lost. Routing is "
        "re-optimised (LP) for the frozen replicas and what no longer fits is unserved (penalised). Cells: median realised $/h (GPUs + penalties) / mean "
        "SLO violation (% of requests not served within latency and error bounds). Command: "
        "`scripts/study_stress.py" + (" --quick" if args.quick else "") + "`.", "",
        st.md_table(header, rows), "",
        "Mean SLO violation over all scenarios and seeds, latency and error both inflated, x1.2 / "
        "x1.5: " + "; ".join(
            f"{name} {mean_viol(name, 1.2):.1f} % / {mean_viol(name, 1.5):.1f} %"
            for name in ("exact", "GH", "AGH", "AGH U=0.75", "AGH U=0.65")) + ". Latency only: "
        + "; ".join(f"{name} {mean_viol(name, 1.2, 'latency'):.1f} % / {mean_viol(name, 1.5, 'latency'):.1f} %"
                    for name in ("exact", "GH", "AGH", "AGH U=0.75", "AGH U=0.65")) + ". "
        "Headroom (a lower planned utilisation) is what absorbs latency inflation; error "
        "inflation pushes routes past their accuracy bounds whatever the headroom, so no plan "
        "made for the nominal error keeps those types within SLO.",
        "",
        "Paper (S3/S5): AGH 3.7 % violations vs GH 14.2 %; the cost-minimal exact plan degrades sharply.",
        "", "![stress](figures/stress.png)"])
    st.write_section("stress", body)
    print(st.md_table(header, rows))


MARGINS = ((1.0, 1.0), (1.1, 1.0), (1.2, 1.0), (1.0, 1.05), (1.1, 1.05), (1.2, 1.1),
           (1.2, 1.2), (1.5, 1.2), (1.5, 1.5))


def frontier(args) -> None:
    """AGH-robust: cost at nominal parameters vs SLO violations under inflation."""
    import json

    from solvers.robust import with_margins

    cat = load_catalog().model_dump(mode="json")
    seeds = (0,) if args.quick else (0, 1, 2)
    scen = ("base", "high_penalty")
    pts: dict = {}
    for sc in scen:
        for s in seeds:
            inst = generate_instance(cat, 10, 10, 10, seed=s, scenario=sc)
            ci = compile_instance(inst)
            stress = {f: compile_instance(st.stressed(inst, f, f)) for f in (1.2, 1.5)}
            plans = {("GH", 1.0, 1.0): (ci, solve_gh(ci))}
            for h, e in MARGINS:
                ci_r = compile_instance(with_margins(inst, h, e))
                plans[("AGH", h, e)] = (ci_r, solve_agh(ci_r, deadline_s=2.0, seed=0))
            for key, (c, p) in plans.items():
                nominal = st.realise(c, p.replicas, ci)
                rec = {"nominal": nominal["cost"], "valid": p.has_solution}
                for f, ev in stress.items():
                    rec[f] = st.realise(c, p.replicas, ev)["violation"]
                pts.setdefault(key, []).append(rec)
    gh = pts[("GH", 1.0, 1.0)]
    agh0 = pts[("AGH", 1.0, 1.0)]
    gh_cost = statistics.mean(r["nominal"] for r in gh)
    nom_cost = statistics.mean(r["nominal"] for r in agh0)
    rows, out = [], []
    for key, rs in pts.items():
        cost = statistics.mean(r["nominal"] for r in rs)
        v12 = 100 * statistics.mean(r[1.2] for r in rs)
        v15 = 100 * statistics.mean(r[1.5] for r in rs)
        rec = {"plan": key[0], "latency_headroom": key[1], "error_margin": key[2],
               "nominal_cost": cost, "vs_agh_nominal": cost / nom_cost - 1,
               "violation_1.2": v12, "violation_1.5": v15,
               "valid_plans": f"{sum(r['valid'] for r in rs)}/{len(rs)}"}
        out.append(rec)
        rows.append([key[0], f"{key[1]:g}", f"{key[2]:g}", f"{cost:,.2f}",
                     f"{100 * rec['vs_agh_nominal']:+.1f} %", f"{v12:.1f} %", f"{v15:.1f} %",
                     rec["valid_plans"]])
    g12 = 100 * statistics.mean(r[1.2] for r in gh)
    g15 = 100 * statistics.mean(r[1.5] for r in gh)
    meets = [r for r in out if r["plan"] == "AGH" and r["vs_agh_nominal"] <= 0.15
             and r["violation_1.2"] <= g12 / 4 and r["violation_1.5"] <= g15 / 4]
    verdict = (f"Target (violations <= 1/4 of GH's at x1.2 and x1.5, nominal cost <= +15 %): met by "
               + ", ".join(f"h={r['latency_headroom']:g}, e={r['error_margin']:g}" for r in meets)
               if meets else "Target (violations <= 1/4 of GH's at x1.2 and x1.5, nominal cost "
               "<= +15 %): not met by any margin tried")
    body = "\n".join([
        "## Robust planning frontier (issue 15)", "",
        f"Generated (10,10,10) instances, seeds {list(seeds)}, scenarios {', '.join(scen)} "
        "(the tight_budget scenario's budget is 1.001 x a witness plan, so no margin fits it). "
        "AGH (2 s, seed 0) planned on `solvers.robust.with_margins(inst, h, e)`: every time of "
        "the performance model x h, every model error x e. Each plan's replicas are frozen; "
        "nominal cost = realised $/h at nominal parameters (routing re-optimised), violations "
        "= mean share of requests not served within SLO when latency and error are both "
        "inflated x1.2 / x1.5 (the stress study's evaluation). "
        f"GH (nominal): ${gh_cost:,.2f}/h, {g12:.1f} % / {g15:.1f} %. "
        "Command: `scripts/study_stress.py --frontier" + (" --quick" if args.quick else "")
        + "`; the machine was shared.", "",
        st.md_table(["plan", "latency headroom h", "error margin e", "nominal $/h",
                     "vs AGH nominal", "violations x1.2", "violations x1.5", "valid plans"], rows),
        "", verdict + "."])
    st.write_section("stress_frontier", body)
    print(body)
    print(json.dumps({"frontier": out, "gh_violation_1.2": g12, "gh_violation_1.5": g15,
                      "target_met_by": [(r["latency_headroom"], r["error_margin"]) for r in meets]}))


if __name__ == "__main__":
    main()
