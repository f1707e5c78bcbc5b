"""Two timescales of a fleet: its composition moves slowly, its replica counts follow demand.

A fleet's *composition* is which deployments (model, GPU, precision, TP, PP) exist; changing
it starts replicas that take minutes to load (solvers/cold_start.py) and pays for both
fleets while the new one warms up (make-before-break). Replica counts within the deployments
that exist, and the routing over them, can follow every window. So each window the planner
solves twice: the exact plan *within* the composition in force (`within_composition`: the
candidates of the plan in force only, a small MILP), and the free plan of GH/AGH. The free
plan replaces the composition only when the composition has been held for its dwell time and
its saving pays for the switch within the payback time (`switch_price`: the GPU-seconds of cold start
at the GPUs' price, plus a risk term per GPU started), or when the composition in force can
no longer serve the demand.
"""
from __future__ import annotations

import numpy as np

from solvers import check_result, solve
from solvers.compile import CompiledInstance
from solvers.plan_codec import cand_key
from solvers.result import SolveResult, Status
from solvers.subproblem import lift, restrict

from solvers.cold_start import ColdStart


def cold_seconds(ci: CompiledInstance, cold: ColdStart) -> np.ndarray:
    """Expected cold start of one replica of each candidate, seconds."""
    return np.array([cold.seconds(cand_key(ci, d)) for d in range(ci.n_cand)], dtype=np.float64)


def switch_price(ci: CompiledInstance, cold_s: np.ndarray, prev: np.ndarray, new: np.ndarray,
                 risk_per_gpu: float) -> float:
    """$ a move from replicas `prev` to `new` costs beyond the new plan's own price: every
    replica started is paid through its cold start before it serves (cand_cost is $/h per
    replica), plus `risk_per_gpu` per GPU started for the SLO risk of the gap; and every
    replica stopped keeps running, paid, until the slowest started replica is ready
    (make-before-break)."""
    prev, new = np.asarray(prev), np.asarray(new)
    up = np.maximum(new - prev, 0)
    down = np.maximum(prev - new, 0)
    overlap = float(cold_s[up > 0].max()) if up.any() else 0.0
    return float(up @ (cold_s * ci.cand_cost / 3600.0) + risk_per_gpu * float(up @ ci.cand_ngpu)
                 + overlap * float(down @ ci.cand_cost) / 3600.0)


def horizon_cost(ci: CompiledInstance, cold_s: np.ndarray, prev: np.ndarray, new: np.ndarray,
                 cost_per_hour: float, risk_per_gpu: float, payback_s: float) -> float:
    """$ of running `new` for `payback_s` after moving to it from `prev`: the yardstick that
    compares keeping the composition in force with moving to another."""
    return cost_per_hour * payback_s / 3600.0 + switch_price(ci, cold_s, prev, new, risk_per_gpu)


def per_gpu_switch_cost(ci: CompiledInstance, cold_s: np.ndarray, risk_per_gpu: float) -> float:
    """One $/GPU figure for solvers that take a scalar switch cost (spec section 6): the
    median candidate's cold start at its GPU price, plus the risk term."""
    if ci.n_cand == 0:
        return risk_per_gpu
    per_gpu = cold_s * ci.cand_cost / np.maximum(ci.cand_ngpu, 1) / 3600.0
    return float(np.median(per_gpu)) + risk_per_gpu


def within_composition(ci: CompiledInstance, replicas: np.ndarray, *, time_limit_s: float = 2.0
                       ) -> SolveResult | None:
    """Cheapest valid plan using only the deployments with replicas in `replicas` (any replica
    counts, any routing over them); None when they cannot serve the demand validly."""
    cands = np.nonzero(np.asarray(replicas) > 0)[0]
    if len(cands) == 0:
        return None
    sub, cmap, rmap = restrict(ci, cands)
    res = solve(sub, "milp", deadline_s=time_limit_s)
    if not res.has_solution or res.status == Status.INFEASIBLE:
        res = solve(sub, "gh")
    if not res.has_solution:
        return None
    rep, x = lift(ci, cmap, rmap, res.replicas, res.x)
    out = SolveResult(status=res.status, method="milp" if res.method == "milp" else "gh", replicas=rep, x=x,
                      objective=res.objective, seconds=res.seconds,
                      explanation=res.explanation, stats={**res.stats, "within_composition": True})
    return out if check_result(ci, out).feasible else None


def composition(replicas: np.ndarray) -> frozenset[int]:
    return frozenset(int(d) for d in np.nonzero(np.asarray(replicas) > 0)[0])
