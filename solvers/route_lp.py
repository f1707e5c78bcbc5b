"""Optimal routing for fixed replicas: the LP left once the integer part is decided.

With replicas fixed, spec sections 4-5 reduce to an LP in (x, u) over the routes of active
deployments only (a few dozen columns), so HiGHS solves it in milliseconds. Local search
uses it to test "can these replicas carry the demand?" and to rebalance traffic. The
optional consolidation weight adds, as a secondary objective, the fractional replica cost
of each unit of load, which pushes traffic onto the cheapest capacity and empties the rest.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance

SAFETY = 1e-9  # capacity/accuracy rows tightened by this relative margin (solver tolerance)


def route_lp(ci: CompiledInstance, replicas: IntArray, *, consolidate: float = 0.0,
             time_limit_s: float | None = None) -> FloatArray | None:
    """Cheapest routing (penalties; + `consolidate` x fractional replica cost) for these
    replicas, or None when no routing meets every constraint (or the LP ran out of time)."""
    act = replicas[ci.route_cand] > 0
    rs = np.nonzero(act)[0]
    nq, nr = ci.n_qt, len(rs)
    if nr == 0:
        return np.zeros(ci.n_routes) if np.all(ci.max_unserved >= 1.0) else None
    qt, cand = ci.route_qt[rs], ci.route_cand[rs]
    lc = ci.load_coef[rs]
    U = ci.max_utilization
    used = np.unique(cand)
    row_of = np.full(ci.n_cand, -1, dtype=np.int64)
    row_of[used] = np.arange(len(used))
    c = np.concatenate([3600 * ci.lam[qt] * ci.latency_penalty[qt] * ci.latency[rs]
                        + consolidate * lc * ci.cand_cost[cand] / U,
                        3600 * ci.lam * ci.unserved_penalty])
    cols = np.arange(nr)
    ee = ci.error[rs] - ci.max_error[qt]
    a_ub = sp.csr_matrix((np.concatenate([lc, ee]),
                          (np.concatenate([row_of[cand], len(used) + qt]),
                           np.concatenate([cols, cols]))), shape=(len(used) + nq, nr + nq))
    b_ub = np.concatenate([U * replicas[used] * (1 - SAFETY), np.full(nq, -SAFETY * 1e-3)])
    a_eq = sp.csr_matrix((np.ones(nr + nq), (np.concatenate([qt, np.arange(nq)]),
                                             np.arange(nr + nq))), shape=(nq, nr + nq))
    bounds = np.column_stack([np.zeros(nr + nq),
                              np.concatenate([np.ones(nr), np.minimum(ci.max_unserved, 1.0)])])
    opts = {"presolve": True}
    if time_limit_s is not None:
        opts["time_limit"] = max(float(time_limit_s), 1e-3)
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(nq), bounds=bounds,
                  method="highs", options=opts)
    if res.status != 0 or res.x is None:
        return None
    x = np.zeros(ci.n_routes)
    x[rs] = np.clip(res.x[:nr], 0.0, 1.0)
    return clean(ci, replicas, x)


def clean(ci: CompiledInstance, replicas: IntArray, x: FloatArray) -> FloatArray:
    """Remove solver round-off: no capacity or served sum above its limit, dust dropped."""
    x = np.where((x > 1e-12) & (replicas[ci.route_cand] > 0), x, 0.0)
    load = np.bincount(ci.route_cand, weights=ci.load_coef * x, minlength=ci.n_cand)
    cap = ci.max_utilization * replicas
    scale = np.where(load > cap, cap / np.maximum(load, 1e-300), 1.0)
    x = x * scale[ci.route_cand]
    served = np.bincount(ci.route_qt, weights=x, minlength=ci.n_qt)
    return x * np.where(served > 1.0, 1.0 / np.maximum(served, 1e-300), 1.0)[ci.route_qt]
