"""GH: the paper's single-pass constraint-aware greedy (arXiv 2604.07472, section 4), on arrays.

One pass over query types (a given order, default: descending arrival rate). For the next
query type with unserved demand, the step is, in this order of preference:

1. fill spare capacity of replicas that are already paid for (zero GPU cost: fractional
   replicas are where a greedy loses money);
2. otherwise pick the best move among "add replicas to an active deployment", "open a new
   deployment" and (M3) "raise tp of an active deployment", ranked (M2) by incremental $/h
   divided by the demand the move can actually absorb now, respecting the served-traffic
   error mean, capacity, budget and inventory. Coverage counts the demand of the current
   query type plus the share of other still-unserved demand that the capacity left over
   could carry (this is what makes a big shared deployment win over many small ones).

M1 (parallelism-aware selection) restricts *new* deployments of a (query type, model,
tier) to the (tp, pp) that serves that query type's demand at least cost; routes carry
memory/latency/TTFT feasibility from compile. Without M1 only tp = pp = 1 is considered,
as a greedy blind to parallelism would, so query types that need sharding go unserved.

The accuracy rule is kept conservative step by step: a route whose error exceeds the bound
only takes what the slack built by better routes allows, so every prefix is feasible.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ._typing import BoolArray, FloatArray, IntArray
from .compile import CompiledInstance
from .options import SolveOptions
from .result import SolveResult, Status, objective
from .validate import check_result

EPS = 1e-9
FUTURE_WEIGHT = 1.0   # weight of "other demand the leftover capacity can carry" in M2


@dataclass(frozen=True)
class Prep:
    """Per-instance arrays shared by every GH start (AGH builds it once)."""

    lc: FloatArray          # load coefficient lam_i / mu_r  [r]
    ee: FloatArray          # error excess e_r - max_error_i  [r]
    latc: FloatArray        # latency-penalty $/h per unit fraction of route r  [r]
    open_ok: BoolArray      # route may open a new deployment (M1 selection)  [r]
    good_L: FloatArray      # [i, d] load coef of route (i, d) if its error meets the bound, else 0
    good_ok: FloatArray     # [i, d] 1.0 where that route exists and meets the bound
    ridx: IntArray          # [i, d] route index or -1
    up: IntArray            # [d] candidate with the next tp (same model/GPU/precision/pp) or -1
    starts: IntArray        # routes of i are [starts[i], starts[i+1])


def prepare(ci: CompiledInstance, m1: bool = True) -> Prep:
    lc = ci.load_coef
    ee = ci.error - ci.max_error[ci.route_qt]
    latc = 3600 * ci.lam[ci.route_qt] * ci.latency_penalty[ci.route_qt] * ci.latency
    tp, pp = ci.cand_tp[ci.route_cand], ci.cand_pp[ci.route_cand]
    if m1:
        # per (query type, model, GPU, precision): keep the (tp, pp) configurations not
        # dominated in (cost per replica, service rate) -- the cheapest for some demand level
        d = ci.route_cand
        grp = ((ci.route_qt * len(ci.model_ids) + ci.cand_model[d]) * len(ci.gpu_ids)
               + ci.cand_gpu[d]) * len(ci.prec_ids) + ci.cand_prec[d]
        gid = np.cumsum(np.concatenate(([True], grp[1:] != grp[:-1]))) - 1  # groups are runs
        cost = ci.cand_cost[d]
        big_c = float(cost.max()) * 2 + 1.0
        o = np.argsort(gid * big_c + cost - 1e-9 * ci.mu / float(ci.mu.max()), kind="stable")
        big_m = float(ci.mu.max()) * 2 + 1.0
        mu_s = ci.mu[o] + gid[o] * big_m
        run = np.maximum.accumulate(mu_s)
        head = np.concatenate(([True], gid[o][1:] != gid[o][:-1]))
        keep = head.copy()
        keep[1:] |= mu_s[1:] > run[:-1] * (1 + 1e-12)
        open_ok = np.zeros(ci.n_routes, dtype=bool)
        open_ok[o[keep]] = True
    else:
        open_ok = (tp == 1) & (pp == 1)
    nq, nd = ci.n_qt, ci.n_cand
    ridx = np.full((nq, nd), -1, dtype=np.int64)
    ridx[ci.route_qt, ci.route_cand] = np.arange(ci.n_routes)
    good = ee <= EPS
    good_L = np.zeros((nq, nd))
    good_L[ci.route_qt[good], ci.route_cand[good]] = lc[good]
    good_ok = np.zeros((nq, nd))
    good_ok[ci.route_qt[good], ci.route_cand[good]] = 1.0
    return Prep(lc=lc, ee=ee, latc=latc, open_ok=open_ok, good_L=good_L, good_ok=good_ok,
                ridx=ridx, up=_tp_upgrades(ci), starts=np.asarray(ci.qt_route_start))


def _tp_upgrades(ci: CompiledInstance) -> IntArray:
    """For each candidate, the candidate with the next larger tp and everything else equal."""
    key = ((ci.cand_model * len(ci.gpu_ids) + ci.cand_gpu) * len(ci.prec_ids)
           + ci.cand_prec) * 64 + ci.cand_pp
    o = np.lexsort((ci.cand_tp, key))
    up = np.full(ci.n_cand, -1, dtype=np.int64)
    same = key[o][1:] == key[o][:-1]
    up[o[:-1][same]] = o[1:][same]
    return up


@dataclass
class State:
    """Mutable plan under construction (private to one construction)."""

    rep: IntArray
    load: FloatArray
    x: FloatArray
    rem: FloatArray        # unserved fraction per query type
    slack: FloatArray      # accuracy slack per query type: -sum ee * x
    bud: float             # budget left, $/h
    inv: FloatArray        # GPUs left per type

    @classmethod
    def empty(cls, ci: CompiledInstance) -> State:
        # a query type without demand that may go unserved needs no route (and its load
        # coefficients are all zero, so the capacity arithmetic has nothing to divide by)
        idle = (ci.lam <= 0) & (ci.max_unserved >= 1.0)
        return cls(rep=np.zeros(ci.n_cand, dtype=np.int64), load=np.zeros(ci.n_cand),
                   x=np.zeros(ci.n_routes), rem=np.where(idle, 0.0, 1.0), slack=np.zeros(ci.n_qt),
                   bud=float(ci.budget), inv=ci.gpu_count.astype(np.float64).copy())

    def route(self, ci: CompiledInstance, p: Prep, r: int, f: float) -> None:
        i, d = int(ci.route_qt[r]), int(ci.route_cand[r])
        self.x[r] += f
        self.load[d] += f * p.lc[r]
        self.rem[i] -= f
        self.slack[i] -= f * p.ee[r]

    def add(self, ci: CompiledInstance, d: int, n: int) -> None:
        self.rep[d] += n
        self.bud -= n * float(ci.cand_cost[d])
        self.inv[ci.cand_gpu[d]] -= n * int(ci.cand_ngpu[d])


def _acc_limit(ee: FloatArray, slack: float) -> FloatArray:
    """Largest fraction each route can take without breaking the served-traffic error mean."""
    with np.errstate(divide="ignore"):
        return np.where(ee <= EPS, np.inf, max(slack, 0.0) / np.maximum(ee, EPS))


def _fill_spare(ci: CompiledInstance, p: Prep, s: State, i: int, rs: slice) -> bool:
    """Route demand of i onto spare capacity of active replicas; True if anything moved."""
    d = ci.route_cand[rs]
    spare = ci.max_utilization * s.rep[d] - s.load[d]
    cap = np.minimum(spare / p.lc[rs], _acc_limit(p.ee[rs], s.slack[i]))
    ok = np.nonzero((s.rep[d] > 0) & (cap > EPS))[0]
    if len(ok) == 0:
        return False
    # latency penalty first, then lowest error (builds slack for cheaper, worse routes)
    k = ok[np.lexsort((p.ee[rs][ok], p.latc[rs][ok]))[0]]
    s.route(ci, p, rs.start + int(k), float(min(s.rem[i], cap[k])))
    return True


def _future(ci: CompiledInstance, p: Prep, s: State, i: int) -> tuple[FloatArray, FloatArray]:
    """Per candidate: load and demand of other unserved types it could carry within bounds."""
    w = s.rem.copy()
    w[i] = 0.0
    w[w < EPS] = 0.0
    return w @ p.good_L, (w * ci.lam) @ p.good_ok


def _best_open(ci: CompiledInstance, p: Prep, s: State, i: int, rs: slice,
               m2: bool, future_weight: float) -> tuple[float, int, int, float] | None:
    """Best (score, route, replicas to add, fraction) for adding replicas on a route of i."""
    r_all = np.arange(rs.start, rs.stop)
    d = ci.route_cand[rs]
    ok = p.open_ok[rs] | (s.rep[d] > 0)
    U = ci.max_utilization
    spare = np.maximum(U * s.rep[d] - s.load[d], 0.0)
    # mixing: a route better than the bound earns slack that lets spare capacity on an
    # active route worse than the bound take traffic too (served-traffic error mean)
    ee = p.ee[rs]
    bad = np.nonzero((spare > 0) & (s.rep[d] > 0) & (ee > EPS))[0]
    if len(bad):
        b = bad[np.argmin(ee[bad])]
        cap_b = float(spare[b] / p.lc[rs][b])
        k = np.where(ee < -EPS, -ee / ee[b], 0.0)
        need = np.where(cap_b >= s.rem[i] * k / (1 + k), s.rem[i] / (1 + k),
                        s.rem[i] - cap_b)
        mix = np.minimum(cap_b, need * k)
    else:
        need = np.full(len(ee), s.rem[i])
        mix = np.zeros(len(ee))
    need = np.minimum(need, _acc_limit(ee, s.slack[i]))
    lc = p.lc[rs]
    n = np.maximum(np.ceil((need * lc - spare) / U - 1e-9), 1.0)
    cost = ci.cand_cost[d]
    with np.errstate(divide="ignore", invalid="ignore"):
        nmax = np.floor(np.where(cost > 0, s.bud / cost, np.inf) + 1e-9)
        nmax = np.minimum(nmax, np.floor(s.inv[ci.cand_gpu[d]] / ci.cand_ngpu[d] + 1e-9))
    n = np.minimum(n, nmax)
    ok &= (n >= 1) & (need > EPS)
    idx = np.nonzero(ok)[0]
    if len(idx) == 0:
        return None
    d, n, need, spare, lc, cost = d[idx], n[idx], need[idx], spare[idx], lc[idx], cost[idx]
    own = np.minimum(need, (spare + n * U) / lc)          # fraction of i on this route
    mixed = np.minimum(mix[idx], own * mix[idx] / np.maximum(need, EPS))  # enabled elsewhere
    cov = np.minimum(own + mixed, s.rem[i])
    dcost = n * cost + p.latc[rs][idx] * own
    if m2:
        fl, fdem = _future(ci, p, s, i)
        left = spare + n * U - own * lc
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(fl[d] > 0, np.minimum(1.0, left / fl[d]), 0.0)
        eff = cov * ci.lam[i] + future_weight * share * fdem[d]
        score = dcost / np.maximum(eff, 1e-300)
        k = int(np.lexsort((-cov, score))[0])
    else:  # naive: cheapest GPU price first, then most coverage
        score = ci.gpu_price[ci.cand_gpu[d]]
        k = int(np.lexsort((-cov, score))[0])
    return float(score[k]), int(r_all[idx[k]]), int(n[k]), float(cov[k])


def _best_upgrade(ci: CompiledInstance, p: Prep, s: State, i: int,
                  m2: bool) -> tuple[float, int, int, float] | None:
    """M3: raise tp of an active deployment so it can take (more of) i; re-checks every
    route it carries. Returns (score, old candidate, new candidate, fraction of i)."""
    best = None
    U = ci.max_utilization
    for d in np.nonzero(s.rep > 0)[0]:
        nd = int(p.up[d])
        while nd >= 0:
            ri = int(p.ridx[i, nd])
            if ri < 0:
                nd = int(p.up[nd])
                continue
            carried = np.nonzero(p.ridx[:, d] >= 0)[0]
            old_r = p.ridx[carried, d]
            carried, old_r = carried[s.x[old_r] > 0], old_r[s.x[old_r] > 0]
            new_r = p.ridx[carried, nd]
            if np.any(new_r < 0):
                break
            rep = int(s.rep[d] + s.rep[nd])
            new_load = float(s.x[old_r] @ p.lc[new_r]) + float(s.load[nd])
            dcost = s.rep[d] * float(ci.cand_cost[nd] - ci.cand_cost[d])
            dgpu = s.rep[d] * int(ci.cand_ngpu[nd] - ci.cand_ngpu[d])
            if dcost > s.bud + EPS or dgpu > s.inv[ci.cand_gpu[d]] + EPS:
                break
            cov = min(s.rem[i], (U * rep - new_load) / p.lc[ri],
                      float(_acc_limit(p.ee[ri:ri + 1], s.slack[i])[0]))
            if cov > EPS:
                score = (dcost + p.latc[ri] * cov) / (cov * ci.lam[i]) if m2 else \
                    float(ci.gpu_price[ci.cand_gpu[nd]])
                if best is None or score < best[0]:
                    best = (score, int(d), nd, cov)
                break
            nd = int(p.up[nd])
    return best


def _apply_upgrade(ci: CompiledInstance, p: Prep, s: State, d: int, nd: int) -> None:
    for k in np.nonzero(p.ridx[:, d] >= 0)[0]:
        r = int(p.ridx[k, d])
        if s.x[r] > 0:
            f = float(s.x[r])
            s.route(ci, p, r, -f)
            s.route(ci, p, int(p.ridx[k, nd]), f)
    n = int(s.rep[d])
    s.add(ci, d, -n)
    s.add(ci, nd, n)


def construct(ci: CompiledInstance, p: Prep, order: IntArray, *, m2: bool = True,
              m3: bool = True, state: State | None = None,
              future_weight: float = FUTURE_WEIGHT) -> State:
    """One greedy pass in `order`; continues from `state` when given (e.g. kept replicas)."""
    s = state if state is not None else State.empty(ci)
    idle = (ci.lam <= 0) & (ci.max_unserved >= 1.0)  # nothing to serve (see State.empty)
    for i in order:
        i = int(i)
        if idle[i]:
            continue
        rs = slice(int(p.starts[i]), int(p.starts[i + 1]))
        for _ in range(4 * ci.n_cand + 16):
            if s.rem[i] <= EPS:
                break
            if _fill_spare(ci, p, s, i, rs):
                continue
            opened = _best_open(ci, p, s, i, rs, m2, future_weight)
            upg = _best_upgrade(ci, p, s, i, m2) if m3 else None
            if upg is not None and (opened is None or upg[0] <= opened[0]):
                _apply_upgrade(ci, p, s, upg[1], upg[2])
                continue
            if opened is None:
                break
            _, r, n, _f = opened
            s.add(ci, int(ci.route_cand[r]), n)
    return s


def construct_required_first(ci: CompiledInstance, p: Prep, order: IntArray, *, m2: bool = True,
                             m3: bool = True, future_weight: float = FUTURE_WEIGHT) -> State:
    """Two passes in `order`: every query type's required share (1 - max_unserved) first,
    then what may go unserved. Under a tight budget or scarce inventory a single pass
    spends them on the first query types in the order and leaves later ones above their
    unserved cap; covering every minimum first yields a valid plan whenever the greedy can
    afford the minimums at all."""
    s = State.empty(ci)
    allowed = np.minimum(np.clip(ci.max_unserved, 0.0, 1.0), s.rem)
    s.rem = s.rem - allowed
    s = construct(ci, p, order, m2=m2, m3=m3, state=s, future_weight=future_weight)
    s.rem = s.rem + allowed
    return construct(ci, p, order, m2=m2, m3=m3, state=s, future_weight=future_weight)


def default_order(ci: CompiledInstance) -> IntArray:
    """Descending arrival rate (the paper's Phase 2 order), ties by index."""
    return np.lexsort((np.arange(ci.n_qt), -ci.lam)).astype(np.int64)


def finish(ci: CompiledInstance, method: str, rep: IntArray, x: FloatArray, t0: float,
           stats: dict | None = None) -> SolveResult:
    """Wrap arrays as a SolveResult: FEASIBLE iff every constraint holds, else INFEASIBLE
    with the reasons (least-penalised degraded plan)."""
    x = np.where(rep[ci.route_cand] > 0, np.clip(x, 0.0, 1.0), 0.0)
    expl = explain(ci, rep, x)
    status = Status.INFEASIBLE if expl else Status.FEASIBLE
    notes = _shortfall_notes(ci, x) if not expl else ()
    out = SolveResult(status=status, method=method, replicas=rep.astype(np.int64), x=x,
                      objective=objective(ci, rep, x), seconds=time.perf_counter() - t0,
                      explanation=expl + notes, stats=dict(stats or {}))
    if status == Status.FEASIBLE:
        # the validity gate: a plan is labelled feasible only if the project's validator
        # (the one every test and the planner trust) accepts it; explain() above is the
        # same arithmetic, but a plan must never reach a router on its word alone
        report = check_result(ci, out)
        if not report.feasible:
            out = replace(out, status=Status.INFEASIBLE,
                          explanation=tuple(v.message for v in report.violations))
    return out


def explain(ci: CompiledInstance, rep: IntArray, x: FloatArray) -> tuple[str, ...]:
    """Human-readable reasons why the plan breaks a constraint; empty when it is valid."""
    out = []
    served = np.bincount(ci.route_qt, weights=x, minlength=ci.n_qt)
    errsum = np.bincount(ci.route_qt, weights=x * ci.error, minlength=ci.n_qt)
    gpu_n = np.bincount(ci.cand_gpu, weights=rep * ci.cand_ngpu, minlength=len(ci.gpu_ids))
    spent = float(rep @ ci.cand_cost)
    for i, q in enumerate(ci.qt_ids):
        u = 1.0 - served[i]
        if u > ci.max_unserved[i] + 1e-6:
            if ci.qt_route_start[i + 1] == ci.qt_route_start[i]:
                why = "no feasible route (memory, latency or TTFT) on any configuration"
            elif spent >= ci.budget * 0.98:
                why = f"budget exhausted (${spent:.2f} of ${ci.budget:.2f}/h)"
            elif np.any(gpu_n >= ci.gpu_count):
                full = [ci.gpu_ids[t] for t in np.nonzero(gpu_n >= ci.gpu_count)[0]]
                why = f"inventory exhausted on {', '.join(full)}"
            else:
                why = "no affordable route within the error bound and remaining budget/inventory"
            out.append(f"{q}: unserved {u:.3f} > max_unserved {ci.max_unserved[i]:g}: {why}")
        if errsum[i] > ci.max_error[i] * served[i] + 1e-6:
            out.append(f"{q}: served-traffic mean error above {ci.max_error[i]:g}")
    load = np.bincount(ci.route_cand, weights=ci.load_coef * x, minlength=ci.n_cand)
    if np.any(load > ci.max_utilization * rep * (1 + 1e-6) + 1e-6):
        out.append("capacity exceeded on some deployment")
    if spent > ci.budget * (1 + 1e-6) + 1e-6:
        out.append(f"GPU cost ${spent:.2f}/h above budget ${ci.budget:.2f}/h")
    over = np.nonzero(gpu_n > ci.gpu_count)[0]
    out += [f"inventory of {ci.gpu_ids[t]} exceeded" for t in over]
    return tuple(out)


def _shortfall_notes(ci: CompiledInstance, x: FloatArray) -> tuple[str, ...]:
    """Valid plan that still leaves demand unserved (within max_unserved): say so."""
    served = np.bincount(ci.route_qt, weights=x, minlength=ci.n_qt)
    return tuple(f"{q}: {1 - served[i]:.3f} of demand left unserved (allowed, penalised)"
                 for i, q in enumerate(ci.qt_ids) if 1 - served[i] > 1e-6)


def solve_gh(ci: CompiledInstance, *, m1: bool = True, m2: bool = True, m3: bool = True,
             order: IntArray | None = None, prev: tuple[IntArray, FloatArray] | None = None
             ) -> SolveResult:
    """Deterministic single pass. `prev` = (replicas, x) of a plan in force: its replicas
    are kept as already-paid capacity (budget/inventory permitting) before the pass."""
    t0 = time.perf_counter()
    if ci.n_routes == 0:
        return finish(ci, "gh", np.zeros(ci.n_cand, dtype=np.int64), np.zeros(0), t0)
    p = prepare(ci, m1)
    o = default_order(ci) if order is None else np.asarray(order, dtype=np.int64)
    state = seed_state(ci, p, prev[0]) if prev is not None else None
    s = construct(ci, p, o, m2=m2, m3=m3, state=state)
    rep = trim_replicas(ci, s.rep, s.x)
    out = finish(ci, "gh", rep, s.x, t0, {"order": [int(i) for i in o]})
    if out.status != Status.FEASIBLE and prev is None and np.any(ci.max_unserved > 0):
        # one more deterministic pass: required shares first (construct_required_first)
        s2 = construct_required_first(ci, p, o, m2=m2, m3=m3)
        alt = finish(ci, "gh", trim_replicas(ci, s2.rep, s2.x), s2.x, t0,
                     {"order": [int(i) for i in o], "pass": "required_first"})
        if alt.status == Status.FEASIBLE:
            return alt
    return out


def seed_state(ci: CompiledInstance, p: Prep, replicas: IntArray) -> State:
    """State holding previous replicas (as many as budget and inventory allow), no traffic."""
    s = State.empty(ci)
    for d in np.nonzero(replicas > 0)[0]:
        n = int(replicas[d])
        cost, g = float(ci.cand_cost[d]), int(ci.cand_gpu[d])
        n = min(n, int(s.bud // cost) if cost > 0 else n, int(s.inv[g] // ci.cand_ngpu[d])
                if np.isfinite(s.inv[g]) else n)
        if n > 0:
            s.add(ci, int(d), n)
    return s


def trim_replicas(ci: CompiledInstance, rep: IntArray, x: FloatArray) -> IntArray:
    """Fewest replicas carrying the routed load (drops idle kept replicas)."""
    load = np.bincount(ci.route_cand, weights=ci.load_coef * x, minlength=ci.n_cand)
    need = np.ceil(load / ci.max_utilization - 1e-9).astype(np.int64)
    need[(load > 0) & (need < 1)] = 1
    return np.minimum(rep, need)


def backend(ci: CompiledInstance, options: SolveOptions) -> SolveResult:
    """The registry's entry: GH keeps `options.warm_start`'s replicas (the plan in force)."""
    a = options.agh
    return solve_gh(ci, m1=a.m1, m2=a.m2, m3=a.m3, prev=options.warm_start)
