"""Explain infeasibility in user terms: which query type cannot be served and why, what the
cheapest covering fleet costs against the budget, or how many GPUs of a type are missing.

Route-level reasons come from the compile diagnostics; fleet-level ones from elastic
re-solves of the same formulation (budget dropped, or inventory made elastic).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .compile import CompiledInstance
from .formulation import Formulation, build, replica_upper_bounds
from .milp import solve_formulation


def route_reasons(ci: CompiledInstance) -> list[str]:
    """Query types that no deployment can serve within their own SLOs."""
    out = []
    for i, q in enumerate(ci.qt_ids):
        if ci.max_unserved[i] >= 1.0 - 1e-12 or ci.lam[i] == 0:
            continue
        d = ci.diagnostics[i]
        rs = ci.routes_of(i)
        if not d.has_model:
            out.append(f"query type {q}: no model in the catalog has an error rate for it")
        elif not d.fits_memory:
            out.append(f"query type {q}: no model/GPU/precision/parallelism fits its weights plus one "
                       "request's KV cache in GPU memory")
        elif len(rs) == 0:
            why = []
            if d.best_ttft_s > ci.max_ttft[i]:
                why.append(f"fastest prefill is {d.best_ttft_s:.3g}s > max_ttft_s {ci.max_ttft[i]:g}")
            why.append(f"fastest single-request latency is {d.best_latency_s:.3g}s against "
                       f"max_latency_s {ci.max_latency[i]:g}")
            out.append(f"query type {q}: no route meets its latency/TTFT bounds on any available "
                       f"tier ({'; '.join(why)})")
        elif float(ci.error[rs].min()) > ci.max_error[i] + 1e-12:
            out.append(f"query type {q}: no route meets its error bound: best error "
                       f"{float(ci.error[rs].min()):.4g} > max_error {ci.max_error[i]:.4g}")
    return out


def _without_row(f: Formulation, kind: str, r_hi: np.ndarray) -> Formulation:
    """The formulation without one row family, replica bounds replaced by `r_hi`."""
    keep = np.array([k != kind for k in f.row_kind])
    var_hi = f.var_hi.copy()
    var_hi[f.r] = r_hi
    return Formulation(c=f.c, A=f.A[keep], row_lo=f.row_lo[keep], row_hi=f.row_hi[keep],
                       var_lo=f.var_lo, var_hi=var_hi, integer=f.integer, r=f.r, x=f.x, u=f.u,
                       s=f.s, offset=f.offset, row_kind=tuple(k for k in f.row_kind if k != kind))


def _elastic_inventory(f: Formulation, big_ub: np.ndarray) -> tuple[Formulation, int]:
    """Inventory rows get a slack column each (in GPUs); the objective is the total shortage."""
    rows = np.nonzero(np.array([k == "inventory" for k in f.row_kind]))[0]
    n0 = f.n_vars
    S = sp.csr_matrix((-np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(f.A.shape[0], len(rows)))
    var_hi = f.var_hi.copy()
    var_hi[f.r] = big_ub
    c = np.concatenate([np.zeros(n0), np.ones(len(rows))])
    return Formulation(c=c, A=sp.hstack([f.A, S]).tocsr(), row_lo=f.row_lo, row_hi=f.row_hi,
                       var_lo=np.concatenate([f.var_lo, np.zeros(len(rows))]),
                       var_hi=np.concatenate([var_hi, np.full(len(rows), np.inf)]),
                       integer=np.concatenate([f.integer, np.ones(len(rows), dtype=bool)]),
                       r=f.r, x=f.x, u=f.u, s=f.s, offset=0.0,
                       row_kind=f.row_kind), n0


def explain(ci: CompiledInstance, time_limit_s: float = 10.0) -> list[str]:
    """Reasons why no plan meets every constraint (empty when a plan may exist)."""
    reasons = route_reasons(ci)
    if reasons or ci.n_cand == 0:
        return reasons or ["no model/GPU/precision/parallelism can serve any query type"]
    f = build(ci)
    # 1. budget: the cheapest covering fleet within inventory
    nob = _without_row(f, "budget", replica_upper_bounds(ci, budget=False))
    name, has, v, obj, bound = solve_formulation(nob, time_limit_s=time_limit_s)
    if has and v is not None:
        gpu_cost = float(v[f.r] @ ci.cand_cost)
        if gpu_cost > ci.budget * (1 + 1e-6):
            proven = name == "OPTIMAL"
            lb = max(bound, 0.0) if math.isfinite(bound) else gpu_cost
            return [f"the cheapest covering fleet costs {'' if proven else 'at least '}"
                    f"${(gpu_cost if proven else min(lb, gpu_cost)):,.2f}/h against a budget of "
                    f"${ci.budget:,.2f}/h"]
        return []
    if name == "INFEASIBLE" and any(k == "inventory" for k in f.row_kind):
        # 2. inventory: minimum shortage per GPU type (budget ignored)
        el, n0 = _elastic_inventory(nob, replica_upper_bounds(ci, budget=False, inventory=False))
        name2, has2, v2, _o, _b = solve_formulation(el, time_limit_s=time_limit_s)
        if has2 and v2 is not None:
            short = np.rint(v2[n0:]).astype(int)
            finite = np.nonzero(np.isfinite(ci.gpu_count))[0]
            out = [f"inventory of GPU {ci.gpu_ids[t]} is short by {short[k]} GPUs "
                   f"({int(ci.gpu_count[t])} available)" for k, t in enumerate(finite) if short[k] > 0]
            if out:
                return out
        return ["GPU inventory cannot cover the demand (shortage could not be sized in time)"]
    if not has:
        return [f"no covering fleet found within {time_limit_s:g}s even ignoring the budget "
                f"(solver status {name})"]
    return []
