"""The paper's v2 baselines (LPR, DVR, HF) on the same arrays as GH/AGH.

* LPR: LP relaxation, replicas rounded up, routing re-solved for the rounded replicas,
  idle replicas trimmed, and budget/inventory repaired by dropping the least useful
  replicas (falling back to the greedy to re-serve what they carried).
* DVR: decoupled: every query type alone on its cheapest configuration that meets its own
  error bound (model/tier chosen without looking at the others), replicas sized afterwards.
* HF: homogeneous fleet: GH restricted to one GPU type, best type kept.
"""
from __future__ import annotations

import time

import numpy as np

from ._typing import IntArray
from .adaptive import state_from
from .compile import CompiledInstance
from .formulation import build
from .greedy import (EPS, construct, default_order, finish, prepare, solve_gh,
                     trim_replicas)
from .milp import solve_formulation
from .options import SolveOptions
from .result import SolveResult
from .route_lp import clean, route_lp
from .subproblem import lift, restrict


def _over_limits(ci: CompiledInstance, rep: IntArray) -> bool:
    gpu_n = np.bincount(ci.cand_gpu, weights=rep * ci.cand_ngpu, minlength=len(ci.gpu_ids))
    return bool(rep @ ci.cand_cost > ci.budget * (1 + 1e-9) or np.any(gpu_n > ci.gpu_count))


def solve_lpr(ci: CompiledInstance, *, time_limit_s: float = 30.0) -> SolveResult:
    t0 = time.perf_counter()
    if ci.n_routes == 0:
        return finish(ci, "lpr", np.zeros(ci.n_cand, dtype=np.int64), np.zeros(0), t0)
    f = build(ci)
    name, has, v, _obj, _b = solve_formulation(f, integral=False, time_limit_s=time_limit_s)
    if not has or v is None:  # no fractional plan even: degrade like the greedy does
        g = solve_gh(ci)
        return finish(ci, "lpr", g.replicas, g.x, t0, {"lp_status": name})
    lp_obj = float(_obj)
    rep = np.ceil(v[f.r] - 1e-7).astype(np.int64)
    x = clean(ci, rep, np.clip(v[f.x], 0.0, 1.0))
    xr = route_lp(ci, rep, consolidate=1e-3)
    x = xr if xr is not None else x
    rep = trim_replicas(ci, rep, x)
    repairs = 0
    while _over_limits(ci, rep) and rep.sum() > 0:  # drop the replica with most idle cost
        load = np.bincount(ci.route_cand, weights=ci.load_coef * x, minlength=ci.n_cand)
        idle = np.where(rep > 0, (ci.max_utilization * rep - load) / np.maximum(rep, 1)
                        * ci.cand_cost + 1e-9 * ci.cand_cost, -np.inf)
        d = int(np.argmax(idle))
        rep[d] -= 1
        repairs += 1
        xr = route_lp(ci, rep)
        x = xr if xr is not None else clean(ci, rep, x)
    if xr is None:  # re-serve what the rounding/repair left unserved, greedily
        p = prepare(ci)
        s = construct(ci, p, default_order(ci), state=state_from(ci, p, rep, x))
        rep, x = trim_replicas(ci, s.rep, s.x), s.x
    return finish(ci, "lpr", rep, x, t0, {"lp_bound": lp_obj, "repairs": repairs})


def solve_dvr(ci: CompiledInstance) -> SolveResult:
    t0 = time.perf_counter()
    x = np.zeros(ci.n_routes)
    alone = ci.cand_cost[ci.route_cand] * np.maximum(
        np.ceil(ci.load_coef / ci.max_utilization - 1e-9), 1.0)
    for i in range(ci.n_qt):
        rs = ci.routes_of(i)
        ok = rs[ci.error[rs] <= ci.max_error[i] + EPS]
        if len(ok):
            x[ok[np.argmin(alone[ok])]] = 1.0
    load = np.bincount(ci.route_cand, weights=ci.load_coef * x, minlength=ci.n_cand)
    rep = np.ceil(load / ci.max_utilization - 1e-9).astype(np.int64)
    rep[(load > 0) & (rep == 0)] = 1
    return finish(ci, "dvr", rep, x, t0)


def solve_hf(ci: CompiledInstance) -> SolveResult:
    t0 = time.perf_counter()
    best: SolveResult | None = None
    tried = {}
    for t in range(len(ci.gpu_ids)):
        cands = np.nonzero(ci.cand_gpu == t)[0]
        if len(cands) == 0:
            continue
        sub, cmap, rmap = restrict(ci, cands)
        res = solve_gh(sub)
        rep, x = lift(ci, cmap, rmap, res.replicas, res.x)
        tried[ci.gpu_ids[t]] = res.objective
        cand = finish(ci, "hf", rep, x, t0)
        if best is None or (cand.has_solution, -cand.objective) > (best.has_solution, -best.objective):
            best = cand
    if best is None:
        return finish(ci, "hf", np.zeros(ci.n_cand, dtype=np.int64), np.zeros(ci.n_routes), t0)
    gpu = next((g for t, g in enumerate(ci.gpu_ids) if np.any(best.replicas[ci.cand_gpu == t])), None)
    return finish(ci, "hf", best.replicas, best.x, t0, {"gpu": gpu, "per_gpu_cost": tried})



def backend_lpr(ci: CompiledInstance, options: SolveOptions) -> SolveResult:
    return solve_lpr(ci, time_limit_s=options.limit(30.0))


def backend_dvr(ci: CompiledInstance, options: SolveOptions) -> SolveResult:
    return solve_dvr(ci)


def backend_hf(ci: CompiledInstance, options: SolveOptions) -> SolveResult:
    return solve_hf(ci)
