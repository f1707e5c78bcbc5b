"""The exact model restricted to a candidate pool, solved by HiGHS under a time limit.

AGH's MILP moves: re-decide replicas and routing jointly over a few dozen candidates,
optionally with some replica counts fixed (a large-neighbourhood move: everything outside
the neighbourhood stays as it is). HiGHS is called through scipy (solvers.highs) because,
unlike OR-Tools' HiGHS wrapper, it returns the incumbent when the time limit hits, and it
takes AGH's plan as a starting solution (through OR-Tools a hint crashes HiGHS). The
switch-cost term of spec section 6 is kept, so re-planning moves see the cost of churn.
"""
from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance
from .formulation import Formulation, build
from .highs import solve_milp_arrays
from .subproblem import lift, restrict


def with_links(sub: CompiledInstance, f: Formulation) -> tuple[sp.csr_matrix, FloatArray, FloatArray]:
    """The rows plus x_r <= r_d for every route r of deployment d: implied for integer
    replicas, they lift the LP relaxation (a fraction of a replica can no longer carry a
    whole query type)."""
    n = sub.n_routes
    rows = np.concatenate([np.arange(n), np.arange(n)])
    cols = np.concatenate([f.x.start + np.arange(n), f.r.start + sub.route_cand])
    vals = np.concatenate([np.ones(n), -np.ones(n)])
    link = sp.csr_matrix((vals, (rows, cols)), shape=(n, f.n_vars))
    return (sp.vstack([f.A, link], format="csr"), np.concatenate([f.row_lo, np.full(n, -np.inf)]),
            np.concatenate([f.row_hi, np.zeros(n)]))


def expected_overrun_s(n_routes: int) -> float:
    """How far past its time limit HiGHS may return on a pool MILP of this many routes: it
    checks the clock only between phases (root cut rounds, sub-MIP heuristics). Measured on
    the generated instances: mean ~20 ms, worst ~0.13 s at 1,000-4,500 routes; this is
    about the 90th percentile, so that a MILP move rarely eats into the next phase."""
    return 0.015 + 2.5e-5 * n_routes


def solve_pool(ci: CompiledInstance, cands: IntArray, time_limit_s: float, *,
               fixed: Mapping[int, int] | None = None, prev: IntArray | None = None,
               switch_cost_per_gpu: float = 0.0, links: bool = False,
               rel_gap: float = 0.002, start: IntArray | None = None,
               max_nodes: int | None = None, info: dict | None = None,
               ) -> tuple[IntArray, FloatArray, bool] | None:
    """(replicas, x, proven optimal for the pool) in the full index spaces, or None when
    HiGHS found no plan in time.

    `time_limit_s` covers the whole call: HiGHS gets what is left after building the model,
    minus its expected overrun. `fixed` maps candidates (which must be in `cands`) to the
    replica count they keep. `prev` (full candidate space) adds the switch cost; GPUs of
    previous deployments outside the pool count as stopped. `start` (replicas, full candidate
    space) is handed to HiGHS as a starting solution when all its deployments are in the pool.
    `max_nodes` caps HiGHS's branch-and-bound nodes: a work limit that, unlike the time
    limit, ends the search at the same point on an idle or a busy machine. `info` (if
    given) receives "timed_out": whether the time limit, not the work, ended the MILP.
    """
    t_end = time.perf_counter() + time_limit_s
    sub, cmap, rmap = restrict(ci, cands)
    sub_prev, orphan = None, 0.0
    if prev is not None:
        sub_prev = prev[cmap]
        orphan = float(prev @ ci.cand_ngpu - sub_prev @ ci.cand_ngpu[cmap])
    f = build(sub, sub_prev, switch_cost_per_gpu, orphan)
    a, lo, hi = with_links(sub, f) if links else (f.A, f.row_lo, f.row_hi)
    var_lo, var_hi = f.var_lo.copy(), f.var_hi.copy()
    if fixed:
        pos = np.searchsorted(cmap, np.fromiter(fixed.keys(), dtype=np.int64))
        val = np.fromiter(fixed.values(), dtype=np.float64)
        var_lo[f.r.start + pos] = val
        var_hi[f.r.start + pos] = val
    limit = t_end - time.perf_counter() - expected_overrun_s(sub.n_routes)
    if info is not None:
        info["timed_out"] = limit < 0.002
    if limit < 0.002:
        return None
    opts = {"mip_max_nodes": int(max_nodes)} if max_nodes is not None else None
    out = solve_milp_arrays(f.c, a, lo, hi, var_lo, var_hi, f.integer, time_limit_s=limit,
                            rel_gap=rel_gap, start=_start(f, cmap, start), options=opts)
    if info is not None:
        info["timed_out"] = "time limit" in str(out.message).lower()
    if out.x is None:
        return None
    rep, x = lift(ci, cmap, rmap, np.rint(out.x[f.r]).astype(np.int64), out.x[f.x])
    return rep, x, out.status == "optimal"


def _start(f: Formulation, cmap: IntArray, start: IntArray | None) -> tuple[IntArray, FloatArray] | None:
    """The replica part of a starting solution (HiGHS completes the routing with an LP), or
    None when the start uses a deployment outside the pool."""
    if start is None:
        return None
    used = np.flatnonzero(start > 0)
    if not np.all(np.isin(used, cmap)):
        return None
    vals = np.asarray(start, dtype=np.float64)[cmap]
    return np.arange(f.r.start, f.r.stop), np.minimum(vals, f.var_hi[f.r])


def _pool_lp(ci: CompiledInstance, cands: IntArray, links: bool, time_limit_s: float | None):
    """(linprog result, formulation, candidate map, row kinds, equality mask) of the pool
    model's LP relaxation, or None if the LP fails."""
    sub, cmap, _rmap = restrict(ci, cands)
    f = build(sub)
    a, lo, hi = with_links(sub, f) if links else (f.A, f.row_lo, f.row_hi)
    kinds = np.array(list(f.row_kind) + ["link"] * (a.shape[0] - len(f.row_kind)))
    eq = lo == hi
    opts = {} if time_limit_s is None else {"time_limit": float(time_limit_s)}
    res = linprog(f.c, A_ub=a[~eq], b_ub=hi[~eq], A_eq=a[eq], b_eq=hi[eq],
                  bounds=np.column_stack([f.var_lo, f.var_hi]), method="highs", options=opts)
    if res.status != 0:
        return None
    return res, f, cmap, kinds, eq


def pool_duals(ci: CompiledInstance, cands: IntArray, links: bool = True,
               time_limit_s: float | None = None) -> tuple[FloatArray, FloatArray] | None:
    """Duals of the pool model's LP relaxation: per query type, the value of serving it
    (served rows) and the price of its accuracy row (>= 0); None if the LP fails."""
    out = _pool_lp(ci, cands, links, time_limit_s)
    if out is None:
        return None
    res, _f, _cmap, kinds, eq = out
    served = res.eqlin.marginals[kinds[eq] == "served"]
    accuracy = -res.ineqlin.marginals[kinds[~eq] == "accuracy"]
    return served, np.maximum(accuracy, 0.0)


def pool_support(ci: CompiledInstance, cands: IntArray, links: bool = True,
                 time_limit_s: float | None = None) -> IntArray | None:
    """The candidates (full index space) with replicas in the pool model's LP relaxation;
    None if the LP fails."""
    out = _pool_lp(ci, cands, links, time_limit_s)
    if out is None:
        return None
    res, f, cmap, _kinds, _eq = out
    return cmap[res.x[f.r] > 1e-6]
