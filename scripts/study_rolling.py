#!/usr/bin/env python3
"""Rolling-horizon re-planning (paper section 7f): re-plan every 5 minutes vs one static plan.

Demand paths: (a) synthetic multiplicative log-normal random walk per query type,
lam_t = lam_{t-1} * exp(sigma * z - sigma^2 / 2), sigma in {0.04, 0.05}; (b) the Azure LLM
inference traces (2023, code and conversation; /work/shared/data/azure, CC BY 4.0,
Patel et al., Splitwise, ISCA 2024): per-5-minute request counts of each trace, scaled so that
their mean equals the instance's code / conversation rate; the other query types follow the
conversation profile (what we changed: aggregation to 5-minute rates and rescaling).

Policies, all evaluated per step with the step's true demand, replicas frozen between
re-plans and routing re-optimised (LP), unserved traffic penalised:
  static exact / static AGH: one plan on the nominal (initial) demand;
  rolling AGH: AGH every step, warm-started from the plan in force, switch cost per GPU;
  rolling GH: GH every step (deterministic given demand).
Writes docs/studies.md section "rolling" and a figure.

    .venv/bin/python scripts/study_rolling.py [--quick]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import _studies as st
from schemas import load_catalog
from solvers.adaptive import solve_agh
from solvers.compile import compile_instance
from solvers.generator import generate_instance
from solvers.greedy import solve_gh
from solvers.milp import solve_milp

AZURE = st.REPO.parent / "shared" / "data" / "azure"
STEP_S = 300.0


def synthetic(lam0: np.ndarray, steps: int, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((steps, len(lam0)))
    walk = np.cumsum(sigma * z - sigma ** 2 / 2, axis=0)
    return lam0[None, :] * np.exp(np.vstack([np.zeros((1, len(lam0))), walk[:-1]]))


def azure_counts(path: Path) -> np.ndarray:
    with open(path) as fh:
        rows = list(csv.reader(fh))[1:]
    ts = np.array([np.datetime64(r[0][:26]) for r in rows])
    sec = (ts - ts.min()) / np.timedelta64(1, "s")
    return np.bincount((sec // STEP_S).astype(int))


def azure_path(ci, qt_ids: tuple[str, ...]) -> np.ndarray:
    code, conv = azure_counts(AZURE / "AzureLLMInferenceTrace_code.csv"), \
        azure_counts(AZURE / "AzureLLMInferenceTrace_conv.csv")
    n = min(len(code), len(conv))
    code, conv = code[:n].astype(float), conv[:n].astype(float)
    code, conv = code[code > 0][: n], conv[: len(code[code > 0])]
    prof = {"code": code / code.mean(), "conversation": conv / conv.mean()}
    return np.column_stack([ci.lam[i] * prof.get(q, prof["conversation"]) for i, q in enumerate(qt_ids)])


def simulate(ci, path: np.ndarray, policy: str, static_rep=None, switch: float = 0.2,
             deadline: float = 0.3) -> dict:
    costs, viol, churn = [], [], 0
    rep_prev, x_prev = None, None
    for t, lam in enumerate(path):
        cit = ci.with_demand(lam)
        if policy.startswith("static"):
            rep = static_rep
        elif policy == "rolling GH":
            rep = solve_gh(cit).replicas
        else:
            kw = {} if rep_prev is None else {"warm_start": (rep_prev, x_prev), "prev_replicas": rep_prev,
                                               "switch_cost_per_gpu": switch}
            r = solve_agh(cit, deadline_s=deadline, seed=t, **kw)
            rep, x_prev = r.replicas, r.x
        if rep_prev is not None:
            churn += int(np.abs(rep - rep_prev) @ ci.cand_ngpu)
        rep_prev = rep
        out = st.realise(ci, rep, lam=lam)
        costs.append(out["cost"])
        viol.append(out["violation"] * lam.sum())
    return {"cost": float(np.mean(costs)), "attain": 1 - float(np.sum(viol) / path.sum()),
            "churn": churn, "series": costs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="5-minute steps of synthetic paths")
    ap.add_argument("--deadline", type=float, default=0.3)
    ap.add_argument("--load", type=float, default=4.0, help="arrival-rate scale of the instance")
    args = ap.parse_args()
    steps = args.steps or (24 if args.quick else 72)
    cat = load_catalog().model_dump(mode="json")
    inst = generate_instance(cat, 6, 6, 10, seed=0, scenario="base", load=args.load)
    ci = compile_instance(inst)
    static = {"static exact": solve_milp(ci, time_limit_s=60, params=st.QUIET).replicas,  # HiGHS
              "static AGH": solve_agh(ci, deadline_s=0.5).replicas}
    paths = {f"synthetic sigma={s}": synthetic(ci.lam, steps, s, seed=11) for s in (0.04, 0.05)}
    paths["Azure 2023 trace (code, conversation)"] = azure_path(ci, ci.qt_ids)
    rows, series = [], {}
    for pname, path in paths.items():
        res = {}
        for pol in ("static exact", "static AGH", "rolling AGH", "rolling GH"):
            res[pol] = simulate(ci, path, pol, static.get(pol), deadline=args.deadline)
        base = res["static exact"]["cost"]
        for pol, r in res.items():
            rows.append([pname, len(path), pol, f"{r['cost']:,.2f}", f"{100 * (r['cost'] / base - 1):+.1f}%",
                         f"{100 * r['attain']:.2f}%", r["churn"]])
        series[pname] = res
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    st.FIG.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(paths), figsize=(4 * len(paths), 3.3))
    for ax, (pname, res) in zip(axes, series.items()):
        for pol, r in res.items():
            ax.plot(np.arange(len(r["series"])) * 5, r["series"], label=pol, lw=1)
        ax.set_yscale("log")
        ax.set_title(pname, fontsize=8)
        ax.set_xlabel("minutes")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("realised $/h (log)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(st.FIG / "rolling.png", dpi=120)
    plt.close(fig)
    header = ["demand path", "steps", "policy", "mean realised $/h", "vs static exact", "SLO attainment", "GPUs switched"]
    body = "\n".join([
        "## Rolling-horizon re-planning (paper section 7f)", "",
        f"Instance: generated (6,6,10), seed 0, base scenario, load {args.load:g}x. 5-minute steps; synthetic paths of {steps} "
        "steps (log-normal multiplicative random walk per query type, seed 11) and the 1-hour Azure "
        "2023 code/conversation traces aggregated to 5-minute rates and scaled to the instance's "
        "mean rates (other query types follow the conversation profile). Static plans are made once "
        f"on the initial demand (exact: the MILP by HiGHS through scipy, 60 s limit; AGH: 0.5 s); rolling AGH re-plans each step ({args.deadline} s deadline, warm start, "
        "switch cost $0.2 per GPU started or stopped); rolling GH re-plans each step. Every "
        "policy's replicas are frozen within a step and routing re-optimised; unserved demand pays "
        "its penalty (realised cost). SLO attainment = share of requests served within SLO. "
        "Command: `scripts/study_rolling.py" + (" --quick" if args.quick else "") + "`.", "",
        st.md_table(header, rows), "",
        "Here, rolling AGH vs the static exact plan: " + "; ".join(
            f"{pname}: {100 * (r['rolling AGH']['cost'] / r['static exact']['cost'] - 1):+.1f} % cost, "
            f"SLO attainment {100 * r['rolling AGH']['attain']:.2f} % vs "
            f"{100 * r['static exact']['attain']:.2f} %" for pname, r in series.items()) + ".",
        "",
        "Paper: AGH-5min up to 48 % cheaper than the static exact (DM-24h) plan at sigma 0.04-0.05.",
        "", "![rolling](figures/rolling.png)",
        "", "Azure trace: Microsoft Azure Public Dataset (AzureLLMInferenceDataset2023), CC BY 4.0; "
        "aggregated and rescaled here."])
    st.write_section("rolling", body)
    print(st.md_table(header, rows))


if __name__ == "__main__":
    main()
