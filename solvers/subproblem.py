"""A CompiledInstance restricted to a subset of candidates (for pool MILPs in AGH/LPR).

Routes keep their (query type, candidate) order, so the restricted instance is a valid
CompiledInstance and every solver and the validator work on it unchanged.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance


def restrict(ci: CompiledInstance, cands: IntArray) -> tuple[CompiledInstance, IntArray, IntArray]:
    """(sub-instance, original index of each sub candidate, original index of each sub route)."""
    cands = np.unique(np.asarray(cands, dtype=np.int64))
    remap = np.full(ci.n_cand, -1, dtype=np.int64)
    remap[cands] = np.arange(len(cands))
    routes = np.nonzero(remap[ci.route_cand] >= 0)[0]
    qt = ci.route_qt[routes]
    sub = replace(
        ci, cand_model=ci.cand_model[cands], cand_gpu=ci.cand_gpu[cands],
        cand_prec=ci.cand_prec[cands], cand_tp=ci.cand_tp[cands], cand_pp=ci.cand_pp[cands],
        cand_ngpu=ci.cand_ngpu[cands], cand_cost=ci.cand_cost[cands],
        route_qt=qt, route_cand=remap[ci.route_cand[routes]], mu=ci.mu[routes],
        latency=ci.latency[routes], ttft=ci.ttft[routes], error=ci.error[routes],
        batch=ci.batch[routes], qt_route_start=np.searchsorted(qt, np.arange(ci.n_qt + 1)))
    return sub, cands, routes


def lift(ci: CompiledInstance, cands: IntArray, routes: IntArray, rep_sub: IntArray,
         x_sub: FloatArray) -> tuple[IntArray, FloatArray]:
    """Map a sub-instance plan back to the full candidate/route index spaces."""
    rep = np.zeros(ci.n_cand, dtype=np.int64)
    rep[cands] = rep_sub
    x = np.zeros(ci.n_routes)
    x[routes] = x_sub
    return rep, x
