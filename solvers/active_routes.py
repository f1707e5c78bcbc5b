"""Plan arithmetic over the routes of active deployments only, for AGH's inner loops.

AGH evaluates thousands of candidate plans per second; each touches a handful of
deployments, but the full route arrays are large (78k routes at (20,20,20), 250k at
(30,30,30)), so whole-array passes dominated its time. Here the routes of a set of
deployments come from the (query type x candidate) route index, and the routing LP,
round-off cleaning, objective and validity are computed on those routes alone.
Results equal `route_lp.route_lp` / `route_lp.clean` / `result.objective` on the same plan.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance
from .route_lp import SAFETY


def wsum(idx: IntArray, weights: FloatArray, minlength: int) -> FloatArray:
    """np.bincount with weights, always float64 (numpy returns int64 for empty input, and
    an int64 load array silently truncates every later += of a fraction)."""
    return np.bincount(idx, weights=weights, minlength=minlength).astype(np.float64, copy=False)


class ActiveRoutes:
    """Per-instance arrays shared by every evaluation (built once per AGH solve)."""

    def __init__(self, ci: CompiledInstance, lc: FloatArray, ridx: IntArray) -> None:
        self.ci = ci
        self.lc = lc                      # load coefficient per route
        self.ridx = ridx                  # [i, d] route index or -1
        self.ee = ci.error - ci.max_error[ci.route_qt]
        self.lat_cost = 3600 * ci.lam[ci.route_qt] * ci.latency_penalty[ci.route_qt] * ci.latency
        self.unserved_cost = 3600 * ci.lam * ci.unserved_penalty

    def routes_of(self, cands: IntArray) -> IntArray:
        """Sorted route indices of the given candidates."""
        r = self.ridx[:, np.asarray(cands, dtype=np.int64)].ravel()
        return np.sort(r[r >= 0])

    def support(self, x: FloatArray) -> IntArray:
        return np.flatnonzero(x)

    def cost(self, rep: IntArray, x: FloatArray, rs: IntArray | None = None) -> float:
        """Spec section 5 objective (equals result.objective)."""
        ci = self.ci
        rs = self.support(x) if rs is None else rs
        served = wsum(ci.route_qt[rs], weights=x[rs], minlength=ci.n_qt)
        u = np.maximum(1.0 - served, 0.0)
        return float(rep @ ci.cand_cost + u @ self.unserved_cost + x[rs] @ self.lat_cost[rs])

    def excess(self, x: FloatArray, acc_tol: float, rs: IntArray | None = None) -> float:
        """Demand-weighted unserved fraction above max_unserved plus accuracy excess."""
        ci = self.ci
        rs = self.support(x) if rs is None else rs
        qt = ci.route_qt[rs]
        served = wsum(qt, weights=x[rs], minlength=ci.n_qt)
        err = wsum(qt, weights=self.ee[rs] * x[rs], minlength=ci.n_qt)
        return float(ci.lam @ np.maximum(1.0 - served - ci.max_unserved, 0.0)
                     + ci.lam @ np.maximum(err - acc_tol, 0.0))

    def within_caps(self, x: FloatArray, rs: IntArray | None = None, tol: float = 1e-7) -> bool:
        """Every query type's unserved share and served-traffic error within its bounds, to
        `tol` per type (the validator allows 1e-6): `excess` weighs these by demand, so at
        hundreds of requests per second round-off alone would make a valid plan look
        invalid to an absolute threshold."""
        ci = self.ci
        rs = self.support(x) if rs is None else rs
        qt = ci.route_qt[rs]
        served = wsum(qt, weights=x[rs], minlength=ci.n_qt)
        err = wsum(qt, weights=self.ee[rs] * x[rs], minlength=ci.n_qt)
        return bool(np.all(1.0 - served - ci.max_unserved <= tol) and np.all(err <= tol))

    def limits_excess(self, rep: IntArray, x: FloatArray, rs: IntArray | None = None,
                      rel_tol: float = 1e-7) -> float:
        """How far a plan breaks the fleet-level constraints (0 when it keeps them all):
        capacity overload in replica-equivalents, budget overrun in dollars per hour over
        the budget, GPUs over inventory. Stricter than the validator (solvers.validate,
        1e-6) so a plan passing here passes there. Add-drop and warm starts can produce
        plans over budget or inventory; AGH's validity gate (adaptive._Ctx.plan) counts
        this excess so such a plan never replaces a valid incumbent."""
        ci = self.ci
        rs = self.support(x) if rs is None else rs
        load = self.load(x, rs)
        cap = ci.max_utilization * rep
        over = float(np.sum(np.maximum(load - cap * (1 + rel_tol) - 1e-9, 0.0)))
        spent = float(rep @ ci.cand_cost)
        if spent > ci.budget * (1 + rel_tol) + 1e-9:
            over += (spent - ci.budget) / max(ci.budget, 1.0)
        gpu_n = np.bincount(ci.cand_gpu, weights=rep * ci.cand_ngpu, minlength=len(ci.gpu_ids))
        over += float(np.sum(np.maximum(gpu_n - ci.gpu_count, 0.0)))
        return over

    def load(self, x: FloatArray, rs: IntArray | None = None) -> FloatArray:
        rs = self.support(x) if rs is None else rs
        return wsum(self.ci.route_cand[rs], weights=self.lc[rs] * x[rs],
                           minlength=self.ci.n_cand)

    def trim(self, rep: IntArray, x: FloatArray) -> IntArray:
        """Fewest replicas carrying the routed load (greedy.trim_replicas)."""
        load = self.load(x)
        need = np.ceil(load / self.ci.max_utilization - 1e-9).astype(np.int64)
        need[(load > 0) & (need < 1)] = 1
        return np.minimum(rep, need)

    def clean(self, rep: IntArray, x: FloatArray) -> FloatArray:
        """route_lp.clean on the support of x: no capacity or served sum above its limit."""
        ci = self.ci
        rs = self.support(x)
        xs = x[rs]
        keep = (xs > 1e-12) & (rep[ci.route_cand[rs]] > 0)
        rs, xs = rs[keep], xs[keep]
        cand, qt = ci.route_cand[rs], ci.route_qt[rs]
        load = wsum(cand, weights=self.lc[rs] * xs, minlength=ci.n_cand)
        cap = ci.max_utilization * rep
        scale = np.where(load > cap, cap / np.maximum(load, 1e-300), 1.0)
        xs = xs * scale[cand]
        served = wsum(qt, weights=xs, minlength=ci.n_qt)
        xs = xs * np.where(served > 1.0, 1.0 / np.maximum(served, 1e-300), 1.0)[qt]
        out = np.zeros(ci.n_routes)
        out[rs] = xs
        return out

    def route_lp(self, rep: IntArray, consolidate: float = 0.0,
                 time_limit_s: float | None = None) -> FloatArray | None:
        """route_lp.route_lp built from the active deployments' routes only."""
        ci = self.ci
        nq = ci.n_qt
        used = np.flatnonzero(rep > 0)
        rs = self.routes_of(used)
        nr = len(rs)
        if nr == 0:
            return np.zeros(ci.n_routes) if np.all(ci.max_unserved >= 1.0) else None
        qt, cand = ci.route_qt[rs], ci.route_cand[rs]
        lc = self.lc[rs]
        U = ci.max_utilization
        row_of = np.full(ci.n_cand, -1, dtype=np.int64)
        row_of[used] = np.arange(len(used))
        c = np.concatenate([self.lat_cost[rs] + consolidate * lc * ci.cand_cost[cand] / U,
                            self.unserved_cost])
        cols = np.arange(nr)
        nu = len(used)
        # rows: capacity per active deployment, accuracy per query type, served per query type
        a = sp.csr_matrix((np.concatenate([lc, self.ee[rs], np.ones(nr + nq)]),
                           (np.concatenate([row_of[cand], nu + qt, nu + nq + qt,
                                            nu + nq + np.arange(nq)]),
                            np.concatenate([cols, cols, cols, nr + np.arange(nq)]))),
                          shape=(nu + 2 * nq, nr + nq))
        hi = np.concatenate([U * rep[used] * (1 - SAFETY), np.full(nq, -SAFETY * 1e-3), np.ones(nq)])
        lo = np.concatenate([np.full(nu + nq, -np.inf), np.ones(nq)])
        opts: dict = {"presolve": True}
        if time_limit_s is not None:
            opts["time_limit"] = max(float(time_limit_s), 1e-3)
        # scipy's milp without integers: the same HiGHS LP as linprog, less wrapper overhead
        res = milp(c, constraints=LinearConstraint(a, lo, hi), options=opts,
                   bounds=Bounds(np.zeros(nr + nq),
                                 np.concatenate([np.ones(nr), np.minimum(ci.max_unserved, 1.0)])))
        if res.status != 0 or res.x is None:
            return None
        x = np.zeros(ci.n_routes)
        x[rs] = np.clip(res.x[:nr], 0.0, 1.0)
        return self.clean(rep, x)
