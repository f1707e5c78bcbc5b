"""AGH: multi-start GH + local search + GPU consolidation, under a wall-clock deadline.

Paper section 5, made stronger where it was cheap to do so:

* **multi-start**: the paper's orders (arrival rate, error bound, footprint; each ascending
  and descending) plus seeded random orders with a jittered M2 look-ahead weight;
* **local search** (ruin and recreate): take one or two deployments out, re-serve their
  traffic with the greedy (which fills spare capacity first and may pick a cheaper tier or
  (tp, pp)), accept only feasible improvements. Relocating traffic fractions between
  active deployments is done exactly: for fixed replicas the best routing is a small LP
  (solvers.route_lp), solved over active routes only;
* **pool polishing** (optional, `polish=True`): a small MILP over the deployments used by
  the best plans, their same-model alternatives and each query type's cheapest options
  (a few dozen candidates), warm-started from the incumbent and cut off by the deadline;
* **consolidation**: rebalance with the LP (secondary objective: fractional replica cost,
  which empties expensive replicas), trim idle replicas, then remove replicas one at a time
  and whole deployments (merging their traffic into the others) while the LP stays feasible.

The objective minimised is the spec section 5 cost plus, when re-planning, the section 6
switch cost against `prev_replicas` (reported in stats["switch_cost"], not in objective).
Infeasible-by-demand instances yield the least-penalised plan found, with explanations.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance
from .greedy import (EPS, Prep, State, construct, default_order, finish, prepare,
                     trim_replicas)
from .result import SolveResult, objective
from .milp import solve_milp
from .route_lp import clean, route_lp
from .subproblem import lift, restrict

DEFAULT_STARTS = 12
POLISH_SHARE = 0.85 # share of the time left that the first pool MILP may use
POOL_MAX = 80
POLISH_S_PER_QT2 = 0.004  # pool MILPs pay off only with >= this x (query types)^2 seconds
POLISH_GAP = 0.002  # relative MIP gap of pool MILPs (well inside the 1 % target)


@dataclass(frozen=True)
class _Plan:
    excess: float      # demand-weighted unserved fraction above max_unserved (0 = valid)
    cost: float        # objective + switch cost (what AGH minimises)
    rep: IntArray
    x: FloatArray

    def better(self, other: _Plan | None) -> bool:
        if other is None:
            return True
        if self.excess > 1e-9 or other.excess > 1e-9:
            if abs(self.excess - other.excess) > 1e-9:
                return self.excess < other.excess
        return self.cost < other.cost - 1e-9 * max(1.0, abs(other.cost))


@dataclass
class _Ctx:
    ci: CompiledInstance
    p: Prep
    t_end: float
    prev: IntArray | None
    sw: float
    m2: bool
    m3: bool
    lp_calls: int = 0
    evals: int = 0

    def left(self) -> float:
        return self.t_end - time.perf_counter()

    def plan(self, rep: IntArray, x: FloatArray) -> _Plan:
        ci = self.ci
        self.evals += 1
        served = np.bincount(ci.route_qt, weights=x, minlength=ci.n_qt)
        excess = float(np.sum(ci.lam * np.maximum(1.0 - served - ci.max_unserved, 0.0)))
        return _Plan(excess, objective(ci, rep, x) + self.switch(rep), rep, x)

    def switch(self, rep: IntArray) -> float:
        if self.prev is None or self.sw <= 0:
            return 0.0
        return float(self.sw * np.abs(rep - self.prev) @ self.ci.cand_ngpu)

    def lp(self, rep: IntArray, consolidate: float = 0.0) -> FloatArray | None:
        if self.left() <= 0.002:
            return None
        self.lp_calls += 1
        return route_lp(self.ci, rep, consolidate=consolidate,
                        time_limit_s=max(self.left() - 0.003, 0.001))


def state_from(ci: CompiledInstance, p: Prep, rep: IntArray, x: FloatArray) -> State:
    """A construction state holding an existing (valid-capacity) plan."""
    s = State.empty(ci)
    s.rep = rep.astype(np.int64).copy()
    s.x = x.copy()
    s.load = np.bincount(ci.route_cand, weights=p.lc * x, minlength=ci.n_cand)
    s.rem = np.maximum(1.0 - np.bincount(ci.route_qt, weights=x, minlength=ci.n_qt), 0.0)
    s.slack = -np.bincount(ci.route_qt, weights=p.ee * x, minlength=ci.n_qt)
    s.bud = float(ci.budget - rep @ ci.cand_cost)
    s.inv = ci.gpu_count - np.bincount(ci.cand_gpu, weights=rep * ci.cand_ngpu,
                                       minlength=len(ci.gpu_ids))
    return s


def start_orders(ci: CompiledInstance, p: Prep, n: int, seed: int) -> list[tuple[IntArray, float]]:
    """(order, M2 look-ahead weight): the paper's six orders, then seeded random ones."""
    idx = np.arange(ci.n_qt)
    per_req = ci.cand_cost[ci.route_cand] * p.lc / ci.max_utilization
    foot = np.full(ci.n_qt, np.inf)
    np.minimum.at(foot, ci.route_qt, per_req)
    keys = [-ci.lam, ci.lam, ci.max_error, -ci.max_error, -foot, foot]
    out = [(np.lexsort((idx, k)).astype(np.int64), 1.0) for k in keys]
    rng = np.random.default_rng(seed)
    while len(out) < n:
        out.append((rng.permutation(ci.n_qt).astype(np.int64), float(rng.uniform(0.3, 1.5))))
    uniq, seen = [], set()
    for o, w in out[:n]:
        key = (tuple(o.tolist()), w)
        if key not in seen:
            seen.add(key)
            uniq.append((o, w))
    return uniq


def _build(ctx: _Ctx, order: IntArray, weight: float, state: State | None = None) -> _Plan:
    s = construct(ctx.ci, ctx.p, order, m2=ctx.m2, m3=ctx.m3, state=state, future_weight=weight)
    return ctx.plan(trim_replicas(ctx.ci, s.rep, s.x), s.x)


def _rebalance(ctx: _Ctx, cur: _Plan) -> _Plan:
    """LP relocation of traffic + trimming of replicas it leaves idle."""
    x = ctx.lp(cur.rep, consolidate=1e-3)
    if x is None:
        return cur
    rep = trim_replicas(ctx.ci, cur.rep, x)
    if np.any(rep != cur.rep):
        x2 = ctx.lp(rep)
        x = x2 if x2 is not None else clean(ctx.ci, rep, x)
    else:
        x2 = ctx.lp(rep)
        x = x2 if x2 is not None else x
    cand = ctx.plan(rep, x)
    return cand if cand.better(cur) else cur


def _consolidate(ctx: _Ctx, cur: _Plan) -> _Plan:
    """Remove whole deployments, then single replicas, while the LP still routes everything."""
    ci = ctx.ci
    cur = _rebalance(ctx, cur)
    for whole in (True, False):
        changed = True
        while changed and ctx.left() > 0:
            changed = False
            for d in np.argsort(-ci.cand_cost * cur.rep, kind="stable"):
                if cur.rep[d] == 0 or ctx.left() <= 0:
                    continue
                rep = cur.rep.copy()
                rep[d] = 0 if whole else rep[d] - 1
                x = ctx.lp(rep)
                if x is None:
                    continue
                cand = ctx.plan(trim_replicas(ci, rep, x), x)
                if cand.better(cur):
                    cur, changed = cand, True
                    break
    return cur


def _ruin_recreate(ctx: _Ctx, cur: _Plan) -> _Plan:
    """Take out one deployment (then pairs) and re-serve its traffic greedily."""
    ci, p = ctx.ci, ctx.p
    active = [int(d) for d in np.argsort(-ci.cand_cost * cur.rep, kind="stable") if cur.rep[d] > 0]
    groups = [(d,) for d in active] + [(a, b) for k, a in enumerate(active) for b in active[k + 1:]]
    for g in groups:
        if ctx.left() <= 0:
            break
        rep, x = cur.rep.copy(), cur.x.copy()
        gone = np.isin(ci.route_cand, g)
        hit = np.unique(ci.route_qt[gone & (x > 0)])
        x[gone] = 0.0
        rep[list(g)] = 0
        s = state_from(ci, p, rep, x)
        order = hit[np.argsort(-ci.lam[hit], kind="stable")]
        cand = _build(ctx, order, 1.0, s)
        if cand.better(cur):
            return cand
        if cand.excess <= 1e-9 and cand.cost < cur.cost * 1.25:
            cand = _rebalance(ctx, cand)
            if cand.better(cur):
                return cand
    return cur


def _improve(ctx: _Ctx, cur: _Plan, local_search: bool, consolidate: bool) -> _Plan:
    while ctx.left() > 0:
        before = cur
        if consolidate:
            cur = _consolidate(ctx, cur)
        if local_search and ctx.left() > 0:
            cur = _ruin_recreate(ctx, cur)
        if not cur.better(before):
            break
    return cur


def pool_candidates(ci: CompiledInstance, p: Prep, plans: list[_Plan], per_qt: int = 4,
                    siblings: int = 10) -> IntArray:
    """Deployments worth re-deciding jointly: those of the given plans, their cheapest
    same-model replacements able to carry the same traffic, and per query type the
    cheapest standalone and cheapest per-unit-of-service options."""
    U = ci.max_utilization
    out: list[IntArray] = []
    d_r = ci.route_cand
    alone = ci.cand_cost[d_r] * np.maximum(np.ceil(p.lc / U - 1e-9), 1.0)
    unit = ci.cand_cost[d_r] * p.lc
    for i in range(ci.n_qt):
        rs = np.arange(p.starts[i], p.starts[i + 1])
        rs = rs[p.open_ok[rs]]
        for key in (alone[rs], unit[rs], np.where(p.ee[rs] <= EPS, alone[rs], np.inf)):
            out.append(d_r[rs[np.argsort(key, kind="stable")[:per_qt]]])
    for plan in plans:
        for d in np.nonzero(plan.rep > 0)[0]:
            out.append(np.array([d]))
            rs = np.nonzero((ci.route_cand == d) & (plan.x > 0))[0]
            qts, xs = ci.route_qt[rs], plan.x[rs]
            same = np.nonzero(ci.cand_model == ci.cand_model[d])[0]
            rr = p.ridx[np.ix_(qts, same)]
            ok = np.all(rr >= 0, axis=0)
            if not np.any(ok):
                continue
            same, rr = same[ok], rr[:, ok]
            load = xs @ p.lc[rr]
            cost = ci.cand_cost[same] * np.maximum(np.ceil(load / U - 1e-9), 1.0)
            out.append(same[np.argsort(cost, kind="stable")[:siblings]])
    return np.unique(np.concatenate(out))


def _polish(ctx: _Ctx, plans: list[_Plan], share: float = 1.0) -> _Plan | None:
    """Pool MILP warm-started from the best plan; None if no time or nothing better."""
    ci = ctx.ci
    budget = min(share * ctx.left(), 0.8 * ctx.left() - 0.05)  # HiGHS overruns its limit a bit
    if budget < 0.03 or not plans:
        return None
    cands = pool_candidates(ci, ctx.p, plans)
    if len(cands) > POOL_MAX:  # larger pools rarely finish in time: keep it small
        cands = pool_candidates(ci, ctx.p, plans, per_qt=1, siblings=4)
    sub, cmap, rmap = restrict(ci, cands)
    best = plans[0]
    warm = (best.rep[cmap], best.x[rmap])
    prev = None if ctx.prev is None else ctx.prev[cmap]
    orphan = 0.0
    if ctx.prev is not None:
        orphan = float(ctx.prev @ ci.cand_ngpu - ctx.prev[cmap] @ ci.cand_ngpu[cmap])
    res = solve_milp(sub, time_limit_s=budget, warm_start=warm, prev_replicas=prev,
                     switch_cost_per_gpu=ctx.sw, prev_orphan_gpus=orphan,
                     params=f"log_to_console = false\nmip_rel_gap = {POLISH_GAP}")
    ctx.lp_calls += 1
    if not res.has_solution:
        return None
    rep, x = lift(ci, cmap, rmap, res.replicas, res.x)
    x = clean(ci, rep, x)
    return ctx.plan(trim_replicas(ci, rep, x), x)


def _warm(ctx: _Ctx, warm: tuple[IntArray, FloatArray]) -> list[_Plan]:
    """Starts from a previous plan: its replicas and routing repaired to the new demand,
    and its replicas alone (routing rebuilt)."""
    ci, p = ctx.ci, ctx.p
    rep = np.asarray(warm[0], dtype=np.int64).copy()
    x = clean(ci, rep, np.asarray(warm[1], dtype=np.float64))
    spent = float(rep @ ci.cand_cost)
    if spent > ci.budget:  # the old fleet no longer fits the budget: rebuild from scratch
        rep = np.zeros_like(rep)
    gpu_n = np.bincount(ci.cand_gpu, weights=rep * ci.cand_ngpu, minlength=len(ci.gpu_ids))
    if np.any(gpu_n > ci.gpu_count):
        rep = np.zeros_like(rep)
    x = clean(ci, rep, x)
    # accuracy may no longer hold after capacity scaling: drop violating types' traffic
    s = state_from(ci, p, rep, x)
    bad = np.nonzero(s.slack < -1e-9)[0]
    if len(bad):
        x[np.isin(ci.route_qt, bad)] = 0.0
        s = state_from(ci, p, rep, x)
    out = [_build(ctx, default_order(ci), 1.0, s)]
    lp_x = ctx.lp(rep)
    if lp_x is not None:
        out.append(ctx.plan(rep, lp_x))
        out.append(_build(ctx, default_order(ci), 1.0, state_from(ci, p, rep, lp_x)))
    return out


def solve_agh(ci: CompiledInstance, *, deadline_s: float = 0.5, seed: int = 0,
              warm_start: tuple[IntArray, FloatArray] | None = None,
              prev_replicas: IntArray | None = None, switch_cost_per_gpu: float = 0.0,
              starts: int = DEFAULT_STARTS, local_search: bool = True, consolidate: bool = True,
              m1: bool = True, m2: bool = True, m3: bool = True,
              polish: bool = True) -> SolveResult:
    """Best plan found within `deadline_s` (wall clock, checked inside every loop)."""
    t0 = time.perf_counter()
    if ci.n_routes == 0:
        return finish(ci, "agh", np.zeros(ci.n_cand, dtype=np.int64), np.zeros(0), t0)
    p = prepare(ci, m1)
    prev = None if prev_replicas is None else np.asarray(prev_replicas, dtype=np.int64)
    # margin for the final validation pass, which grows with the route count
    ctx = _Ctx(ci, p, t0 + 0.97 * deadline_s - 0.003 - 4e-8 * ci.n_routes, prev,
               float(switch_cost_per_gpu), m2, m3)
    pool: list[_Plan] = []
    if warm_start is not None:
        pool += _warm(ctx, warm_start)
    orders = start_orders(ci, p, max(1, starts), seed)
    for k, (o, w) in enumerate(orders):
        if k > 0 and ctx.left() <= 0.3 * deadline_s:
            break
        pool.append(_build(ctx, o, w))
    # improve distinct starts, best first, while time remains
    pool.sort(key=lambda q: (q.excess > 1e-9, q.excess, q.cost))
    distinct = list({q.rep.tobytes(): q for q in reversed(pool)}.values())[::-1]
    distinct.sort(key=lambda q: (q.excess > 1e-9, q.excess, q.cost))
    best = distinct[0]
    polished = 0
    # pool MILPs need time growing ~quadratically with query types; else LS uses it better
    polish = polish and ctx.left() > POLISH_S_PER_QT2 * ci.n_qt ** 2
    if polish and ctx.left() > 0:  # the strongest move first: re-decide the best starts jointly
        cand = _polish(ctx, distinct[:4], share=POLISH_SHARE)
        if cand is not None and cand.better(best):
            best, polished = cand, 1
    improved = 0
    for cand in [best] + [q for q in distinct if q is not best]:
        if ctx.left() <= 0 or not (local_search or consolidate):
            break
        before = best
        cand = _improve(ctx, cand, local_search, consolidate)
        improved += 1
        if cand.better(best):
            best = cand
        if polish and best is not before and best.rep.tobytes() != before.rep.tobytes() \
                and ctx.left() > 0.1 * deadline_s:
            cand = _polish(ctx, [best] + distinct[:3], share=1.0)
            if cand is not None and cand.better(best):
                best, polished = cand, polished + 1
    stats = {"starts": len(orders), "improved_starts": improved, "lp_calls": ctx.lp_calls,
             "evaluations": ctx.evals, "switch_cost": ctx.switch(best.rep),
             "deadline_s": deadline_s, "seed": seed,
             "polish_wins": polished}
    return finish(ci, "agh", best.rep, best.x, t0, stats)

