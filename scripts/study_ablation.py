#!/usr/bin/env python3
"""Ablation of AGH (paper section 7e): full vs without M1, M2, M3 (and without the AGH-only
components), on generated instances plus one where parallelism is mandatory (a 72B model on
fp16-only 48 GB GPUs). Writes docs/studies.md section "ablation" and a figure.

    .venv/bin/python scripts/study_ablation.py [--quick]
"""
from __future__ import annotations

import argparse
import copy
import statistics

import _studies as st
from schemas import load_catalog
from solvers.adaptive import solve_agh
from solvers.compile import compile_instance
from solvers.generator import generate_instance
from solvers.greedy import solve_gh
from solvers.validate import check_result

VARIANTS = {"full": {}, "no M1": {"m1": False}, "no M2": {"m2": False}, "no M3": {"m3": False},
            "GH (full)": {"gh": True}, "GH no M1": {"gh": True, "m1": False},
            "GH no M2": {"gh": True, "m2": False}, "GH no M3": {"gh": True, "m3": False},
            "no local search": {"local_search": False}, "no consolidation": {"consolidate": False},
            "no pool polish": {"polish": False}, "multi-start only": {"local_search": False,
                                                                      "consolidate": False,
                                                                      "polish": False}}


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
    args = ap.parse_args()
    cat = load_catalog().model_dump(mode="json")
    insts = [sharded_instance(cat)]
    seeds = (0,) if args.quick else (0, 1, 2)
    for sc in ("base", "tight_budget"):
        for s in seeds:
            insts.append(generate_instance(cat, 10, 10, 10, seed=s, scenario=sc))
    rows, raw = [], {v: [] for v in VARIANTS}
    for inst in insts:
        ci = compile_instance(inst)
        full = None
        for name, kw in VARIANTS.items():
            kw = dict(kw)
            r = solve_gh(ci, **{k: v for k, v in kw.items() if k != "gh"}) if kw.pop("gh", False) \
                else solve_agh(ci, deadline_s=args.deadline, **kw)
            ok = check_result(ci, r).feasible
            full = r.objective if name == "full" else full
            raw[name].append((ok, r.objective / full if full else float("nan")))
            rows.append([inst["name"], name, "yes" if ok else "**no**", f"{r.objective:,.2f}",
                         f"{100 * (r.objective / full - 1):+.1f}%",
                         "; ".join(r.explanation[:1]) if not ok else ""])
    summary = []
    for name in VARIANTS:
        feas = sum(ok for ok, _ in raw[name])
        rel = [v for ok, v in raw[name] if ok]
        summary.append([name, f"{feas}/{len(raw[name])}",
                        f"{100 * (statistics.median(rel) - 1):+.1f}%" if rel else "n/a",
                        f"{100 * (max(rel) - 1):+.1f}%" if rel else "n/a"])
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    st.FIG.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(VARIANTS)
    ax.bar(names, [100 * (statistics.median([v for ok, v in raw[n] if ok] or [float("nan")]) - 1) for n in names])
    ax.set_ylabel("median cost vs full AGH (%)\n(valid plans only)")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(st.FIG / "ablation.png", dpi=120)
    plt.close(fig)
    body = "\n".join([
        "## Ablation (paper section 7e)", "",
        f"AGH (deadline {args.deadline} s) and GH with one component switched off, on "
        f"{len(insts)} instances: `sharded-72b-l40s` (a 72B model on fp16-only L40S, so every "
        "configuration needs tp >= 4) and generated (10,10,10) instances, scenarios base and "
        "tight_budget. 'Valid' = passes the validator; cost relative to full AGH on the same "
        "instance (invalid plans carry unserved-demand penalties). Command: "
        "`scripts/study_ablation.py" + (" --quick" if args.quick else "") + "`.", "",
        st.md_table(["variant", "valid plans", "median cost vs full", "worst cost vs full"], summary), "",
        "The paper reports: without M1 or M3 infeasible, without M2 about +50 % cost. Here M1 "
        "is necessary for feasibility wherever sharding is mandatory (without it only tp = pp = 1 "
        "is considered); M2 is what makes GH cheap; AGH's multi-start, local search and pool "
        "polishing recover most of what a missing mechanism loses on the generated instances. "
        "M3 (tp upgrade) rarely changes a plan in this model because a fresh deployment at the "
        "right tp is priced the same as an upgraded one; it matters only under tight inventory "
        "(see tests/solvers/test_heuristics.py::test_without_m3_the_plan_changes_where_tp_upgrade_matters).", "",
        "<details><summary>per instance</summary>", "",
        st.md_table(["instance", "variant", "valid", "$/h", "vs full", "explanation"], rows), "",
        "</details>", "", "![ablation](figures/ablation.png)"])
    st.write_section("ablation", body)
    print(st.md_table(["variant", "valid plans", "median cost vs full", "worst cost vs full"], summary))


if __name__ == "__main__":
    main()
