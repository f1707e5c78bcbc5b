"""The allocation model of spec sections 4-6 as sparse arrays: min c.v, lo <= A v <= hi.

Built once from a CompiledInstance and shared by the exact MILP, the LP relaxation and
the CP-SAT encoding, so every backend optimises literally the same rows.

Variables, in order:
    r[d]  replicas of candidate d (integer)          x[r]  traffic fraction of route r
    u[i]  unserved fraction of query type i          s[d]  GPUs started or stopped on d
          (s only with a switch cost, spec section 6)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._typing import BoolArray, FloatArray, IntArray
from .compile import CompiledInstance


@dataclass(frozen=True)
class Formulation:
    c: FloatArray
    A: sp.csr_matrix
    row_lo: FloatArray
    row_hi: FloatArray
    var_lo: FloatArray
    var_hi: FloatArray
    integer: BoolArray
    r: slice
    x: slice
    u: slice
    s: slice
    offset: float            # constant objective term (switch cost of configs that vanish)
    row_kind: tuple[str, ...]  # served | capacity | accuracy | budget | inventory | switch+ | switch-

    @property
    def n_vars(self) -> int:
        return len(self.c)


def replica_upper_bounds(ci: CompiledInstance, budget: bool = True,
                         inventory: bool = True) -> IntArray:
    """Replicas that could ever be useful: all routable load, capped by budget and inventory."""
    need = np.bincount(ci.route_cand, weights=ci.load_coef, minlength=ci.n_cand)
    ub = np.ceil(need / ci.max_utilization - 1e-9)
    if budget:
        with np.errstate(divide="ignore"):
            ub = np.minimum(ub, np.where(ci.cand_cost > 0,
                                         np.floor(ci.budget / ci.cand_cost + 1e-9), np.inf))
    if inventory:
        ub = np.minimum(ub, np.floor(ci.gpu_count[ci.cand_gpu] / ci.cand_ngpu))
    return ub.clip(0).astype(np.int64)


def build(ci: CompiledInstance, prev_replicas: IntArray | None = None,
          switch_cost_per_gpu: float = 0.0, prev_orphan_gpus: float = 0.0) -> Formulation:
    """Assemble the rows; `prev_replicas` per candidate (and GPUs of previous deployments whose
    configuration is no longer a candidate) add the spec section 6 switch-cost term."""
    nd, nr, nq = ci.n_cand, ci.n_routes, ci.n_qt
    use_switch = prev_replicas is not None and switch_cost_per_gpu > 0
    ns = nd if use_switch else 0
    R, X, U_, S = slice(0, nd), slice(nd, nd + nr), slice(nd + nr, nd + nr + nq), \
        slice(nd + nr + nq, nd + nr + nq + ns)
    n = nd + nr + nq + ns
    lam_r = ci.lam[ci.route_qt]

    c = np.zeros(n)
    c[R] = ci.cand_cost
    c[X] = 3600 * lam_r * ci.latency_penalty[ci.route_qt] * ci.latency
    c[U_] = 3600 * ci.lam * ci.unserved_penalty
    rows, cols, vals, lo, hi, kind = [], [], [], [], [], []
    nrow = 0

    def add(rr: IntArray, cc: IntArray, vv: FloatArray, rlo: FloatArray, rhi: FloatArray,
            name: str) -> None:
        nonlocal nrow
        rows.append(rr + nrow)
        cols.append(cc)
        vals.append(vv)
        lo.append(rlo)
        hi.append(rhi)
        kind.extend([name] * len(rlo))
        nrow += len(rlo)

    xr = np.arange(nr) + X.start
    # served: sum_d x_id + u_i = 1   (section 4.2; u bounds carry max_unserved)
    add(np.concatenate([ci.route_qt, np.arange(nq)]), np.concatenate([xr, np.arange(nq) + U_.start]),
        np.ones(nr + nq), np.ones(nq), np.ones(nq), "served")
    # capacity: sum_i lam_i x_id / mu_id - U r_d <= 0   (section 4.3)
    add(np.concatenate([ci.route_cand, np.arange(nd)]), np.concatenate([xr, np.arange(nd)]),
        np.concatenate([ci.load_coef, np.full(nd, -ci.max_utilization)]),
        np.full(nd, -np.inf), np.zeros(nd), "capacity")
    # accuracy: sum_d (e_id - max_error_i) x_id <= 0   (section 4.4)
    add(ci.route_qt, xr, ci.error - ci.max_error[ci.route_qt], np.full(nq, -np.inf), np.zeros(nq),
        "accuracy")
    # budget: sum_d r_d tp pp price <= budget   (section 4.5)
    add(np.zeros(nd, dtype=np.int64), np.arange(nd), ci.cand_cost.astype(np.float64),
        np.array([-np.inf]), np.array([ci.budget]), "budget")
    # inventory: sum_{d on t} r_d tp pp <= count_t   (section 4.6)
    finite = np.nonzero(np.isfinite(ci.gpu_count))[0]
    if len(finite):
        row_of = np.full(len(ci.gpu_ids), -1)
        row_of[finite] = np.arange(len(finite))
        on = np.nonzero(row_of[ci.cand_gpu] >= 0)[0]
        add(row_of[ci.cand_gpu[on]], on, ci.cand_ngpu[on].astype(np.float64),
            np.full(len(finite), -np.inf), ci.gpu_count[finite], "inventory")
    offset = 0.0
    if use_switch:
        assert prev_replicas is not None
        prev_gpus = prev_replicas * ci.cand_ngpu
        # s_d >= ngpu_d (r_d - prev_d)  and  s_d >= ngpu_d (prev_d - r_d)   (section 6)
        add(np.concatenate([np.arange(nd)] * 2), np.concatenate([np.arange(nd), np.arange(nd) + S.start]),
            np.concatenate([ci.cand_ngpu.astype(np.float64), -np.ones(nd)]),
            np.full(nd, -np.inf), prev_gpus.astype(np.float64), "switch+")
        add(np.concatenate([np.arange(nd)] * 2), np.concatenate([np.arange(nd), np.arange(nd) + S.start]),
            np.concatenate([ci.cand_ngpu.astype(np.float64), np.ones(nd)]),
            prev_gpus.astype(np.float64), np.full(nd, np.inf), "switch-")
        c[S] = switch_cost_per_gpu
        offset = switch_cost_per_gpu * prev_orphan_gpus

    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(nrow, n))
    var_lo = np.zeros(n)
    var_hi = np.concatenate([replica_upper_bounds(ci).astype(np.float64), np.ones(nr),
                             ci.max_unserved.astype(np.float64), np.full(ns, np.inf)])
    integer = np.zeros(n, dtype=bool)
    integer[R] = True
    return Formulation(c=c, A=A, row_lo=np.concatenate(lo), row_hi=np.concatenate(hi),
                       var_lo=var_lo, var_hi=var_hi, integer=integer, r=R, x=X, u=U_, s=S,
                       offset=offset, row_kind=tuple(kind))
