"""Candidate pools for AGH's MILP moves: which deployments may enter a re-decided plan.

A pool MILP is only as good as its pool, and it is only fast when the pool is small, so
pools are built from three cheap signals:

* **plan deployments and their siblings**: same-model configurations ranked by the cost of
  carrying the traffic the deployment carries now (partial coverage allowed: a cheaper
  sibling that can only take part of it is still a candidate);
* **per query type options**, ranked four ways over the (tp, pp) choices M1 keeps: cheapest
  standalone (replicas for the whole type; ties go to the one with the most capacity left),
  cheapest standalone within the error bound, cheapest per unit of load, and cheapest
  per unit of accuracy slack (the route that best lets worse-than-bound routes mix in);
* **variants** of a deployment (same model, any tier, tp <= 2, pp = 1) no dearer than it,
  for swap neighbourhoods;
* **priced** candidates: the best value per dollar of one replica under the duals of a
  pool's LP relaxation (column-generation pricing, used as a ranking, not to convergence);
* **hubs and top-ups** (`per_qt(hubs=True)`, `within_bound`): two more per-type keys,
  cheapest capacity (cost per unit of load) and cheapest single replica (most capacity
  first), both within the error bound. The first finds the large "hub" replica most
  (20,20,20) optima are built around (the "alone" keys round a type up to whole replicas,
  which favours small GPUs; the per-load key is led by inaccurate routes); the second the
  cheap replica that carries a type's remainder;
* **mixers**: the candidates covering the most query types per dollar with error bounds
  ignored: cheap, fast, inaccurate replicas that take a share of many types' traffic mixed
  with accurate routes (fillers count only routes within the bound, so never rank them);
* **fillers**: the candidates whose one replica covers the most query types per dollar
  within their error bounds (sum over types of the share of the type one replica can
  carry). No single type ranks them first and LP duals undervalue them (the relaxation
  buys hub capacity by the fraction), but optimal fleets at (30,30,30) pair a few large
  "hub" replicas with such cheap replicas that take several types' leftovers.
"""
from __future__ import annotations

import numpy as np

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance
from .greedy import EPS, Prep

QT_KEYS = 6        # alone, alone within the error bound, per unit of load, per unit of slack,
#                    per unit of load within the error bound (hubs), per replica within the
#                    error bound, most capacity first (top-ups)
QT_DEPTH = 4       # options kept per (query type, key)
POOL_KEYS = (0, 1, 2, 3)  # keys used in pools
HUB_KEYS = (4, 5)  # keys added on request (per_qt(hubs=True): AGH's LP-picked polish pool)
BOUND_KEYS = (1, 3)  # the classic keys that rank only routes within the error bound


class PoolBuilder:
    """Per-instance rankings (built once per AGH solve)."""

    def __init__(self, ci: CompiledInstance, p: Prep) -> None:
        self.ci, self.p = ci, p
        U = ci.max_utilization
        d_r = ci.route_cand
        cost = ci.cand_cost[d_r]
        alone = cost * np.maximum(np.ceil(p.lc / U - 1e-9), 1.0) + 1e-6 * p.lc
        with np.errstate(divide="ignore", invalid="ignore"):  # lc = 0: a type without demand
            share = np.minimum(1.0, U / p.lc)
            slack = np.where(p.ee < -EPS, cost / (share * -p.ee), np.inf)
        within = p.ee <= EPS
        keys = (alone, np.where(within, alone, np.inf), cost * p.lc, slack,
                np.where(within, cost * p.lc, np.inf),
                np.where(within, cost * (1.0 - 1e-3 * share), np.inf))
        # options[i, k, :] = candidates, best first (-1 = none)
        self.options = np.full((ci.n_qt, QT_KEYS, QT_DEPTH), -1, dtype=np.int64)
        for i in range(ci.n_qt):
            rs = np.arange(p.starts[i], p.starts[i + 1])
            rs = rs[p.open_ok[rs]]
            if len(rs) == 0:
                continue
            for k, key in enumerate(keys):
                v = key[rs]
                n = min(QT_DEPTH, len(rs))
                top = np.argpartition(v, n - 1)[:n] if len(rs) > n else np.arange(len(rs))
                top = top[np.lexsort((top, v[top]))]
                top = top[np.isfinite(v[top])]
                self.options[i, k, :len(top)] = d_r[rs[top]]
        self.filler_rank = _coverage_rank(ci, p, p.open_ok & (p.ee <= EPS))
        self.mixer_rank = _coverage_rank(ci, p, p.open_ok)

    def fillers(self, n: int) -> IntArray:
        """The `n` candidates covering the most query types per dollar (within error bounds)."""
        return np.sort(self.filler_rank[:max(n, 0)])

    def mixers(self, n: int) -> IntArray:
        """The `n` candidates covering the most query types per dollar, error bounds ignored:
        cheap, fast, inaccurate replicas that take a share of many types' traffic, mixed
        with accurate routes to stay within each type's bound."""
        return np.sort(self.mixer_rank[:max(n, 0)])

    def per_qt(self, qts: IntArray | None = None, depth: int = 1, hubs: bool = False) -> IntArray:
        """The best `depth` options of every key for the given query types (all if None);
        `hubs` adds the hub and top-up keys."""
        opts = self.options if qts is None else self.options[np.asarray(qts, dtype=np.int64)]
        keys = list(POOL_KEYS) + (list(HUB_KEYS) if hubs else [])
        out = opts[:, keys, :depth].ravel()
        return np.unique(out[out >= 0])

    def within_bound(self, depth: int = 1, hubs: bool = True) -> IntArray:
        """The best `depth` options of every query type on the keys that rank only routes
        within the error bound (alone, per unit of slack, and with `hubs` the hub and top-up
        keys)."""
        keys = list(BOUND_KEYS) + (list(HUB_KEYS) if hubs else [])
        out = self.options[:, keys, :depth].ravel()
        return np.unique(out[out >= 0])

    def siblings(self, d: int, x: FloatArray, n: int) -> IntArray:
        """The `n` same-model candidates cheapest per unit of d's current traffic they can carry."""
        ci, p = self.ci, self.p
        rs = self._routes(d, x)
        if len(rs) == 0 or n <= 0:
            return np.zeros(0, dtype=np.int64)
        qts, xs = ci.route_qt[rs], x[rs]
        same = np.flatnonzero(ci.cand_model == ci.cand_model[d])
        rr = p.ridx[np.ix_(qts, same)]
        has = rr >= 0
        load = xs @ np.where(has, p.lc[np.maximum(rr, 0)], 0.0)
        demand = (xs * ci.lam[qts]) @ has
        reps = np.maximum(np.ceil(load / ci.max_utilization - 1e-9), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(demand > 0, ci.cand_cost[same] * reps / demand, np.inf)
        top = np.argsort(score, kind="stable")[:n]
        return same[top[np.isfinite(score[top])]]

    def variants(self, d: int, budget: float, n: int) -> IntArray:
        """Up to `n` cheapest single-node variants of d's model costing at most `budget`."""
        ci = self.ci
        v = np.flatnonzero((ci.cand_model == ci.cand_model[d]) & (ci.cand_pp == 1)
                           & (ci.cand_tp <= 2) & (ci.cand_cost <= budget + 1e-9))
        return v[np.argsort(ci.cand_cost[v], kind="stable")[:n]]

    def priced(self, served: FloatArray, accuracy: FloatArray, lat_cost: FloatArray,
               n: int) -> IntArray:
        """The `n` candidates whose single replica, filled with the traffic most valuable
        under LP duals (value of serving each query type, price of its accuracy row), is
        worth the most per dollar: a fractional knapsack per candidate. This finds the
        efficient "hub" deployments and cheap replicas that many types can share."""
        ci, p = self.ci, self.p
        v = served[ci.route_qt] - accuracy[ci.route_qt] * p.ee - lat_cost
        pos = np.flatnonzero(v > 1e-12)
        if len(pos) == 0 or n <= 0:
            return np.zeros(0, dtype=np.int64)
        cand, val, size = ci.route_cand[pos], v[pos], p.lc[pos]
        o = np.lexsort((-val / size, cand))           # per candidate, best ratio first
        cand, val, size = cand[o], val[o], size[o]
        used = np.cumsum(size)
        first = np.concatenate(([True], cand[1:] != cand[:-1]))
        start = np.maximum.accumulate(np.where(first, np.arange(len(cand)), 0))
        before = used - size - np.concatenate(([0.0], used))[start]
        frac = np.clip((ci.max_utilization - before) / size, 0.0, 1.0)
        worth = np.bincount(cand, weights=frac * val, minlength=ci.n_cand) / ci.cand_cost
        top = np.argpartition(-worth, min(n, ci.n_cand) - 1)[:n]
        return top[np.argsort(-worth[top], kind="stable")]

    def qts_of(self, cands: IntArray, x: FloatArray) -> IntArray:
        rs = self._routes_many(cands, x)
        return np.unique(self.ci.route_qt[rs])

    def plan_pool(self, plans: list[tuple[IntArray, FloatArray]], siblings: int,
                  depth: int = 1) -> IntArray:
        """Deployments of the plans, their siblings, and every query type's best options."""
        out = [self.per_qt(None, depth)]
        for rep, x in plans:
            for d in np.flatnonzero(rep > 0):
                out.append(np.array([d]))
                out.append(self.siblings(int(d), x, siblings))
        return np.unique(np.concatenate(out))

    def _routes(self, d: int, x: FloatArray) -> IntArray:
        r = self.p.ridx[:, d]
        r = r[r >= 0]
        return r[x[r] > 0]

    def _routes_many(self, cands: IntArray, x: FloatArray) -> IntArray:
        r = self.p.ridx[:, np.asarray(cands, dtype=np.int64)].ravel()
        r = r[r >= 0]
        return r[x[r] > 0]


def _coverage_rank(ci: CompiledInstance, p: Prep, routes: np.ndarray) -> IntArray:
    """Candidates by query types covered per dollar, best first: the share of each type's
    traffic one replica carries, summed over the `routes` allowed (candidates covering
    nothing left out; ties by index)."""
    with np.errstate(divide="ignore"):
        share = np.where(routes, np.minimum(1.0, ci.max_utilization / p.lc), 0.0)
    cover = np.bincount(ci.route_cand, weights=share, minlength=ci.n_cand)
    rank = np.lexsort((np.arange(ci.n_cand), -cover / ci.cand_cost))
    return rank[cover[rank] > 0]
