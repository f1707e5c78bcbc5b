"""AGH: multi-start GH + MILP moves + local search + consolidation, under a wall-clock deadline.

Paper section 5, made stronger where it was cheap to do so:

* **multi-start**: the paper's orders (arrival rate, error bound, footprint; each ascending
  and descending) plus seeded random orders with a jittered M2 look-ahead weight;
* **pool polish** (`polish=True`): the exact model over a pool of a few dozen candidates
  (the best starts' deployments, their same-model siblings, each query type's best
  options; solvers.agh_pools), solved by HiGHS with a time limit (solvers.pool_milp);
* **LP-picked polish pool** (`lp_pool=True`, `hubs=True`): the first polish MILP's pool is
  the deployments the LP relaxation (with x_r <= r_d links) of a wide pool uses, plus
  every query type's best options on the keys that rank only routes within its error
  bound, among them the hub key (cheapest capacity) and the top-up key (cheapest single
  replica) (`hubs`), plus the incumbent's deployments; used when that pool has at most
  POLISH_POOL candidates ((20,20,20) and smaller), solved cold (solvers.agh_pools);
* **local search** (`local_search=True`): add-drop (add a replica, let the routing LP move
  traffic onto it, drop a dearer deployment it makes redundant) and ruin-and-recreate (take
  one or two deployments out, re-serve their traffic with the greedy). For fixed replicas
  the best routing is a small LP over active routes (solvers.active_routes);
* **large-neighbourhood MILPs** (`lns=True`): keep every deployment of the incumbent but one
  or two, and re-decide those jointly with their variants and the options of the query
  types they serve. With most replicas fixed these MILPs mostly take 10-100 ms, so AGH can
  afford many of them when the deadline allows; a last, wider one frees everything but
  the dearest deployment;
* **fillers** (`fillers=True`): after the polish, every neighbourhood MILP and add-drop
  are also offered the candidates covering the most query types per dollar within their
  error bounds and the best-priced ones under LP duals (solvers.agh_pools). Optimal
  (30,30,30) fleets pair a few large "hub" replicas with such cheap replicas carrying
  several types' leftovers; no per-type ranking picks them and the LP relaxation
  undervalues them, so without this the neighbourhoods never see them;
* **warm MILP start** (`warm_milp=True`): every MILP move hands the incumbent to HiGHS as
  its starting solution (solvers.highs), so a MILP cut off by its limit still returns at
  least the incumbent and HiGHS's sub-MIP search starts around it;
* **consolidation** (`consolidate=True`): rebalance with the LP (secondary objective:
  fractional replica cost, which empties expensive replicas), trim idle replicas, then
  remove whole deployments and single replicas while the LP still routes everything.

Why MILP moves: optimal fleets here are a handful of replicas whose value comes from how
they pack together (one large "hub" deployment plus a few cheap replicas that carry the
awkward remainder and the accuracy mix). Greedy construction and single-deployment moves
stall one or two swaps away from such fleets; an exact re-decision of a small neighbourhood
finds those swaps directly. HiGHS needs ~0.1-0.5 s to find a pool's optimum at (20,20,20)
(its root cut loop dominates) and ~1 s at (30,30,30), so the first polish MILP gets the
larger of 0.4 s and half the deadline: at 0.5 s it gets most of the time and the gap left
depends on whether its pool holds the optimal deployments; at (30,30,30) AGH needs ~2 s
(polish ~1 s, then the neighbourhood MILPs with fillers close the rest; docs/benchmarks.md,
"Solvers", runs it at the paper's 2.3 s). At 0.5 s on (20,20,20) the polish is the only
MILP move, so its pool must hold the whole optimal fleet: a pool grown from the greedy
plans often lacks the optimal hub (the $6.69 B200 replica most optima there share) or the
cheap L4 replicas that top up or mix accuracy, and HiGHS has no time for a second try. The
LP-picked pool holds them (15 seeds: 14 at the optimum, one 2 % off, against 8 of 15
within 1 % with the plan-grown pool); started from the greedy incumbent HiGHS's
heuristics stay near that incumbent's structure, which is what this pool is meant to
escape, so this one MILP starts cold.

The objective minimised is the spec section 5 cost plus, when re-planning, the section 6
switch cost against `prev_replicas` (reported in stats["switch_cost"], not in objective).
Infeasible-by-demand instances yield the least-penalised plan found, with explanations.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ._typing import FloatArray, IntArray
from .active_routes import ActiveRoutes, wsum
from .agh_pools import PoolBuilder
from .compile import CompiledInstance
from .greedy import (Prep, State, construct, construct_required_first, default_order, finish,
                     prepare)
from .pool_milp import expected_overrun_s, pool_duals, pool_support, solve_pool
from .options import DEFAULT_STARTS, DEFAULT_WORK, AghOptions, SolveOptions
from .result import SolveResult, Status

START_SHARE = 0.1     # greedy starts stop once this share of the work budget is spent, or
#                       (the deadline cutting the search short) this share of the deadline
POOL_PLANS = 2        # best distinct starts whose deployments seed add-drop's list
POOL_SIBLINGS = 2     # same-model alternatives per deployment in that list
POLISH_LEVELS = ((2, 2, 1), (4, 4, 2), (8, 8, 3))  # polish pools: (starts, siblings, options
#                                                   per query type and key), widened in turn
POLISH_POOL = 40      # the first polish MILP: the widest level with at most this many candidates
POLISH_LINKS = False  # x_r <= r_d rows in the polish MILP: a stronger LP bound, but a slower
#                       root; started from AGH's plan, HiGHS finds better plans sooner
#                       without them ((30,30,30): the optimum in ~0.8 s instead of ~1.1 s)
PRICED = 10           # candidates priced in (by LP duals) from the second polish MILP on
FILLERS = 10          # filler candidates (agh_pools.PoolBuilder.fillers) offered to the
#                       neighbourhood MILPs and add-drop, with as many priced by LP duals
#                       of a pool around the polished incumbent (_fillers)
WIDE_DEPTH = 2        # the wide pool whose LP relaxation picks the first polish pool
#                       (lp_pool=True): per query type options (per key), plus
WIDE_MIXERS = 12      # this many mixers (agh_pools.PoolBuilder.mixers) and
WIDE_FILLERS = 10     # this many fillers
LNS_VARIANTS = 6      # variants per freed deployment in a neighbourhood MILP
LNS_DEPTH = 2         # per-query-type options (per key) of the freed traffic
MILP_GAP = 0.002      # relative MIP gap of every MILP move (well inside the 1 % target)
ACC_TOL = 1e-9        # served-traffic error excess tolerated in a plan (validator: 1e-6)
FINISH_S_PER_ROUTE = 1.2e-7  # time kept for the final validation pass (finish), per route
VALID_EPS = 1e-9      # a plan whose excess is at most this is valid
# work budget (deterministic anytime search): one unit per plan evaluation and per routing
# LP, MILP_UNITS per MILP move, whose branch and bound is capped at a node count; the
# deadline only cuts the search short (stats["ended_by"])
MILP_UNITS = 40       # work units charged per MILP move (its LP + node search)
START_UNITS_PER_ROUTE = 1e-3  # a full greedy start is charged this per route (at least 1
#                       unit): ~78 units at (20,20,20), so starts stop at START_SHARE of
#                       the budget on large instances as they did at a share of the deadline
POLISH_NODES = 2000   # node limit of a polish MILP; its time is also capped at the larger
POLISH_MIN_S = 0.4    # of this and
POLISH_CAP = 0.5      # this share of the deadline, so a slow root leaves time for the moves
#                       after it (hitting that cap counts as the deadline cutting the search)
LNS_NODES = 200       # node limit of a neighbourhood MILP (doubled on each retry)
KEEP_VALID = 4        # best valid plans kept for the final gate (solvers.validate)


@dataclass(frozen=True)
class _Plan:
    excess: float      # demand-weighted unserved fraction above max_unserved + accuracy
    #                    excess + capacity/budget/inventory excess (0 = valid)
    cost: float        # objective + switch cost (what AGH minimises)
    rep: IntArray
    x: FloatArray
    ok: bool | None = None  # every constraint holds (validator tolerances, unweighted); None:
    #                         judged by excess alone. The excess is demand-weighted, so at
    #                         high load float noise alone can exceed VALID_EPS on a valid plan

    @property
    def valid(self) -> bool:
        return self.excess <= VALID_EPS if self.ok is None else self.ok

    def better(self, other: _Plan | None) -> bool:
        if other is None:
            return True
        if self.valid != other.valid:
            return self.valid
        if not self.valid and abs(self.excess - other.excess) > 1e-9:
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
    ar: ActiveRoutes
    warm_milp: bool = True  # MILP moves start from the incumbent
    build_s: float = 0.0   # slowest full greedy pass so far (a start is begun only if it fits)
    lp_calls: int = 0
    milps: int = 0
    evals: int = 0
    adds: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    extra: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # fillers
    valid: list[_Plan] = field(default_factory=list)  # best valid plans seen, cheapest first
    rejected: int = 0      # plans evaluated that broke a constraint
    work_budget: float = float("inf")
    work: float = 0.0      # units spent (see DEFAULT_WORK)
    cut: bool = False      # the deadline, not the work budget, stopped something

    def stop(self, need_s: float = 0.0) -> bool:
        """Whether the search must stop: the work budget is spent, or the deadline (less
        `need_s`, the time the next step needs) is reached, which is recorded: only then
        can the plan depend on the machine's speed or load."""
        if self.work >= self.work_budget:
            return True
        if self.left() <= need_s:
            self.cut = True
            return True
        return False

    def left(self) -> float:
        return self.t_end - time.perf_counter()

    def plan(self, rep: IntArray, x: FloatArray) -> _Plan:
        self.evals += 1
        self.work += 1
        rs = self.ar.support(x)
        # accuracy counts too: a repair that scales traffic down (clean) can break it
        limits = self.ar.limits_excess(rep, x, rs)
        excess = self.ar.excess(x, ACC_TOL, rs) + limits
        out = _Plan(excess, self.ar.cost(rep, x, rs) + self.switch(rep), rep, x,
                    ok=limits == 0.0 and self.ar.within_caps(x, rs))
        self.keep(out)
        return out

    def keep(self, q: _Plan) -> None:
        """The validity gate's memory: every sub-step's plans pass through `plan`, and the
        best KEEP_VALID valid ones are kept, so AGH returns a valid plan whenever it saw one
        (whatever a later move's incumbent is)."""
        if not q.valid:
            self.rejected += 1
            return
        if len(self.valid) >= KEEP_VALID and q.cost >= self.valid[-1].cost:
            return
        key = q.rep.tobytes()
        if any(v.rep.tobytes() == key and v.cost <= q.cost for v in self.valid):
            return
        self.valid = [v for v in self.valid if v.rep.tobytes() != key] + [q]
        self.valid.sort(key=lambda v: v.cost)
        del self.valid[KEEP_VALID:]

    def switch(self, rep: IntArray) -> float:
        if self.prev is None or self.sw <= 0:
            return 0.0
        return float(self.sw * np.abs(rep - self.prev) @ self.ci.cand_ngpu)

    def lp(self, rep: IntArray, consolidate: float = 0.0) -> FloatArray | None:
        if self.stop(0.002):
            return None
        self.lp_calls += 1
        self.work += 1
        return self.ar.route_lp(rep, consolidate=consolidate,
                                time_limit_s=max(self.left() - 0.003, 0.001))


def state_from(ci: CompiledInstance, p: Prep, rep: IntArray, x: FloatArray) -> State:
    """A construction state holding an existing (valid-capacity) plan."""
    s = State.empty(ci)
    s.rep = rep.astype(np.int64).copy()
    s.x = x.copy()
    rs = np.flatnonzero(x)
    xs, qt = x[rs], ci.route_qt[rs]
    s.load = wsum(ci.route_cand[rs], p.lc[rs] * xs, ci.n_cand)
    s.rem = np.maximum(1.0 - wsum(qt, xs, ci.n_qt), 0.0)
    s.slack = -wsum(qt, p.ee[rs] * xs, ci.n_qt)
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
    t = time.perf_counter()
    s = construct(ctx.ci, ctx.p, order, m2=ctx.m2, m3=ctx.m3, state=state, future_weight=weight)
    out = ctx.plan(ctx.ar.trim(s.rep, s.x), s.x)
    if state is None:  # a full greedy pass: what the next one will cost
        ctx.build_s = max(ctx.build_s, time.perf_counter() - t)
    return out


# ---- local moves ------------------------------------------------------------------------------

def _rebalance(ctx: _Ctx, cur: _Plan) -> _Plan:
    """LP relocation of traffic + trimming of replicas it leaves idle."""
    x = ctx.lp(cur.rep, consolidate=1e-3)
    if x is None:
        return cur
    rep = ctx.ar.trim(cur.rep, x)
    x2 = ctx.lp(rep)
    if x2 is None:
        x2 = ctx.ar.clean(rep, x) if np.any(rep != cur.rep) else x
    cand = ctx.plan(rep, x2)
    return cand if cand.better(cur) else cur


def _consolidate(ctx: _Ctx, cur: _Plan) -> _Plan:
    """Remove whole deployments, then single replicas, while the LP still routes everything."""
    ci = ctx.ci
    cur = _rebalance(ctx, cur)
    for whole in (True, False):
        changed = True
        while changed and not ctx.stop():
            changed = False
            for d in np.argsort(-ci.cand_cost * cur.rep, kind="stable"):
                # a lone replica was already tried as a whole deployment
                if cur.rep[d] <= (0 if whole else 1) or ctx.stop():
                    continue
                rep = cur.rep.copy()
                rep[d] = 0 if whole else rep[d] - 1
                x = ctx.lp(rep)
                if x is None:
                    continue
                cand = ctx.plan(ctx.ar.trim(rep, x), x)
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
        if ctx.stop(ctx.build_s / 2):  # a re-serve is a partial greedy pass
            break
        rep, x = cur.rep.copy(), cur.x.copy()
        gone = ctx.ar.routes_of(np.array(g))
        hit = np.unique(ci.route_qt[gone[x[gone] > 0]])
        x[gone] = 0.0
        rep[list(g)] = 0
        s = state_from(ci, p, rep, x)
        order = hit[np.argsort(-ci.lam[hit], kind="stable")]
        cand = _build(ctx, order, 1.0, s)
        if cand.better(cur):
            return cand
        if cand.valid and cand.cost < cur.cost * 1.25:
            cand = _rebalance(ctx, cand)
            if cand.better(cur):
                return cand
    return cur


def _add_drop(ctx: _Ctx, cur: _Plan, adds: IntArray) -> _Plan:
    """Add one replica of a candidate, let the LP move traffic onto it, then drop a
    deployment that costs more than the addition: a swap or merge that removal-only
    consolidation cannot reach. First improvement wins."""
    ci = ctx.ci
    for d in adds:
        if ctx.stop():
            break
        rep = cur.rep.copy()
        rep[d] += 1
        x = ctx.lp(rep, consolidate=1e-3)
        if x is None:
            continue
        trial = ctx.plan(ctx.ar.trim(rep, x), x)
        if trial.better(cur):
            return _consolidate(ctx, trial)
        rep = trial.rep
        for e in np.argsort(-ci.cand_cost * rep, kind="stable"):
            if ctx.stop() or ci.cand_cost[e] * rep[e] <= ci.cand_cost[d] + 1e-9:
                break
            if e == d:
                continue
            r2 = rep.copy()
            r2[e] = 0
            x2 = ctx.lp(r2)
            if x2 is None:
                continue
            trial = ctx.plan(ctx.ar.trim(r2, x2), x2)
            if trial.better(cur):
                return _consolidate(ctx, trial)
    return cur


def add_candidates(ci: CompiledInstance, cur: _Plan, extra: IntArray) -> IntArray:
    """Additions worth trying: one more replica of each active deployment, then `extra`
    (the polish pool), cheapest first."""
    active = np.flatnonzero(cur.rep > 0)
    extra = np.setdiff1d(extra, active)
    extra = extra[np.argsort(ci.cand_cost[extra], kind="stable")]
    return np.concatenate([active[np.argsort(ci.cand_cost[active], kind="stable")], extra])


def _improve(ctx: _Ctx, cur: _Plan, local_search: bool, consolidate: bool,
             lns: LNS | None = None) -> _Plan:
    """Consolidate, then the first improving move among: a neighbourhood MILP (exact and
    cheap with most replicas fixed), add-drop, ruin-and-recreate; repeat until none helps."""
    while not ctx.stop():
        before = cur
        if consolidate:
            cur = _consolidate(ctx, cur)
        if lns is not None and not ctx.stop():
            nxt = lns.step(cur)
            if nxt.better(cur):
                cur = nxt
                continue
        if local_search and not ctx.stop():
            nxt = _add_drop(ctx, cur, add_candidates(ctx.ci, cur, ctx.adds))
            cur = nxt if nxt.better(cur) else _ruin_recreate(ctx, cur)
        if not cur.better(before):
            break
    return cur


# ---- MILP moves -------------------------------------------------------------------------------

def _milp(ctx: _Ctx, cands: IntArray, nodes: int, fixed: dict[int, int] | None = None,
          links: bool = False, start: _Plan | None = None,
          time_cap: float = float("inf")) -> tuple[_Plan | None, bool]:
    """Pool MILP (solvers.pool_milp): (plan or None, whether the pool optimum was proven).
    `start` (if its deployments are in the pool) is HiGHS's starting solution. The routing
    is redone by the route LP, which keeps a margin against solver round-off. The MILP's
    work limit is `nodes`; its time limit is the deadline (hitting it marks the search cut)."""
    routes = int(np.count_nonzero(ctx.p.ridx[:, cands] >= 0))
    if len(cands) == 0 or ctx.stop(0.02 + expected_overrun_s(routes)):
        return None, False
    ctx.milps += 1
    ctx.work += MILP_UNITS
    info: dict = {}
    out = solve_pool(ctx.ci, cands, min(ctx.left() - 0.01, time_cap), fixed=fixed, prev=ctx.prev,
                     switch_cost_per_gpu=ctx.sw, links=links, rel_gap=MILP_GAP,
                     start=start.rep if start is not None and ctx.warm_milp else None,
                     max_nodes=nodes, info=info)
    ctx.cut |= bool(info.get("timed_out"))
    if out is None:
        return None, False
    rep, x, proven = out
    lp_x = ctx.lp(rep)
    x = lp_x if lp_x is not None else ctx.ar.clean(rep, x)
    return ctx.plan(ctx.ar.trim(rep, x), x), proven


def neighbourhoods(ci: CompiledInstance, cur: _Plan) -> list[tuple[int, ...]]:
    """Deployment groups to free, cheapest MILPs first: each deployment alone (dearest
    first), then pairs not involving the dearest one, then everything but the dearest."""
    act = [int(d) for d in np.argsort(-ci.cand_cost * cur.rep, kind="stable") if cur.rep[d] > 0]
    if not act:
        return []
    rest = act[1:]
    groups: list[tuple[int, ...]] = [(d,) for d in act]
    groups += list(itertools.combinations(rest, 2))
    if len(rest) > 2:
        groups.append(tuple(rest))
    return groups


class LNS:
    """Neighbourhood MILPs around an incumbent. A neighbourhood whose MILP was proven
    optimal is not tried again for the same incumbent; one cut off by its node limit is
    retried with twice the limit once every other neighbourhood had its turn."""

    def __init__(self, ctx: _Ctx, pools: PoolBuilder) -> None:
        self.ctx, self.pools = ctx, pools
        self.limit: dict[bytes, float] = {}   # neighbourhood -> last node limit (inf: solved)
        self.wins = 0

    def pool(self, cur: _Plan, free: tuple[int, ...]) -> IntArray:
        ci, pools = self.ctx.ci, self.pools
        fr = np.array(free, dtype=np.int64)
        budget = float(ci.cand_cost[fr] @ cur.rep[fr])
        depth = LNS_DEPTH + (1 if len(free) > 2 else 0)
        parts = [np.flatnonzero(cur.rep > 0), pools.per_qt(pools.qts_of(fr, cur.x), depth),
                 self.ctx.extra]
        parts += [pools.variants(int(d), budget, LNS_VARIANTS) for d in fr]
        return np.unique(np.concatenate(parts))

    def step(self, cur: _Plan) -> _Plan:
        """First improving neighbourhood MILP around `cur` (see `neighbourhoods`)."""
        ctx = self.ctx
        # within each group size, the smallest pools first: their MILPs are the quickest
        # to prove, and a cut-off MILP says nothing
        groups = [(free, self.pool(cur, free)) for free in neighbourhoods(ctx.ci, cur)]
        groups.sort(key=lambda g: (len(g[0]), len(g[1])))
        for scale in (1.0, 2.0, 4.0):
            for free, pool in groups:
                if ctx.stop(0.01):
                    return cur
                key = cur.rep.tobytes() + np.array(free).tobytes()
                base = LNS_NODES * (1 + len(free) // 3)
                if self.limit.get(key, 0.0) >= base * scale:
                    continue
                fixed = {int(d): int(cur.rep[d]) for d in np.flatnonzero(cur.rep > 0)
                         if d not in free}
                cand, proven = _milp(ctx, pool, int(base * scale), fixed=fixed, start=cur)
                self.limit[key] = np.inf if proven else base * scale
                if cand is not None and cand.better(cur):
                    self.wins += 1
                    return cand
        return cur


def _polish(ctx: _Ctx, pools: PoolBuilder, best: _Plan, starts: list[_Plan],
            deadline_s: float, lp_pool: bool = True, hubs: bool = True) -> tuple[_Plan, int]:
    """Re-decide the best starts' deployments jointly (pool MILP). The first MILP uses the
    widest level whose pool has at most POLISH_POOL candidates (small instances start
    wide), or with `lp_pool` the pool of `_lp_pool`; when HiGHS proves a pool optimal with
    time to spare, the next, wider level is solved (from the second MILP on with
    candidates priced in by the first pool's LP duals). Returns (best, wins)."""
    levels = [pools.plan_pool([(q.rep, q.x) for q in [best] + starts[:n]], sib, depth)
              for n, sib, depth in POLISH_LEVELS]
    first = max([0] + [k for k, c in enumerate(levels) if len(c) <= POLISH_POOL])
    cold = False
    if lp_pool:
        lp_cands = _lp_pool(ctx, pools, best, hubs)
        if lp_cands is not None:
            levels = [lp_cands] + levels[first + 1:]
            first, cold = 0, True
    done = np.zeros(0, dtype=np.int64)
    priced = np.zeros(0, dtype=np.int64)
    wins = 0
    for cands in levels[first:]:
        if ctx.stop():
            break
        if len(done) and PRICED > 0 and len(priced) == 0:
            duals = pool_duals(ctx.ci, done, time_limit_s=max(ctx.left(), 0.005))
            if duals is not None:
                priced = pools.priced(*duals, ctx.ar.lat_cost, PRICED)
        cands = np.union1d(cands, priced)
        if np.array_equal(cands, done):
            continue
        cand, proven = _milp(ctx, cands, POLISH_NODES, links=POLISH_LINKS,
                             start=None if cold else best,
                             time_cap=max(POLISH_MIN_S, POLISH_CAP * deadline_s))
        cold = False
        done = cands
        if cand is not None and cand.better(best):
            best, wins = cand, wins + 1
        if not proven:
            break
    return best, wins


def _lp_pool(ctx: _Ctx, pools: PoolBuilder, best: _Plan, hubs: bool = True) -> IntArray | None:
    """The first polish pool: the deployments the LP relaxation (with links) of a wide pool
    uses (every query type's best WIDE_DEPTH options per key, mixers, fillers), every
    query type's best option on the keys that rank only routes within its error bound
    (with `hubs` the hub and top-up keys among them), and the incumbent's deployments. The
    relaxation spreads over the right hub and mid-size deployments, the within-bound
    options add the cheap top-up replicas it buys only by the fraction; at (20,20,20) the
    pool holds 30-40 candidates and HiGHS reaches its optimum in ~0.3 s, where a pool grown
    from the greedy plans often lacks the optimal hub. None when it would exceed
    POLISH_POOL candidates (the LP is skipped when the within-bound options and the
    incumbent alone reach that) or the LP does not solve in time."""
    base = np.union1d(pools.within_bound(1, hubs), np.flatnonzero(best.rep > 0))
    if len(base) >= POLISH_POOL:  # no room for what the relaxation adds
        return None
    wide = np.unique(np.concatenate([pools.per_qt(None, WIDE_DEPTH, hubs),
                                     pools.mixers(WIDE_MIXERS), pools.fillers(WIDE_FILLERS)]))
    used = pool_support(ctx.ci, wide, time_limit_s=max(ctx.left(), 0.005))
    if used is None:
        return None
    out = np.union1d(base, used)
    return out if len(out) <= POLISH_POOL else None


def _fillers(ctx: _Ctx, pools: PoolBuilder, best: _Plan) -> IntArray:
    """Candidates offered to every neighbourhood MILP and to add-drop besides their own:
    the fillers (most query types covered per dollar) and as many candidates priced by
    the LP duals of a pool around the incumbent (its deployments, the fillers, every query
    type's best options)."""
    fill = pools.fillers(FILLERS)
    base = np.unique(np.concatenate([np.flatnonzero(best.rep > 0), fill, pools.per_qt(None, 1)]))
    duals = pool_duals(ctx.ci, base, time_limit_s=max(ctx.left(), 0.005))
    if duals is None:
        return fill
    return np.union1d(fill, pools.priced(*duals, ctx.ar.lat_cost, FILLERS))


def _warm(ctx: _Ctx, warm: tuple[IntArray, FloatArray]) -> list[_Plan]:
    """Starts from a previous plan: its replicas and routing repaired to the new demand,
    and its replicas alone (routing rebuilt)."""
    ci, p = ctx.ci, ctx.p
    rep = np.asarray(warm[0], dtype=np.int64).copy()
    x = ctx.ar.clean(rep, np.asarray(warm[1], dtype=np.float64))
    spent = float(rep @ ci.cand_cost)
    if spent > ci.budget:  # the old fleet no longer fits the budget: rebuild from scratch
        rep = np.zeros_like(rep)
    gpu_n = np.bincount(ci.cand_gpu, weights=rep * ci.cand_ngpu, minlength=len(ci.gpu_ids))
    if np.any(gpu_n > ci.gpu_count):
        rep = np.zeros_like(rep)
    x = ctx.ar.clean(rep, x)
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
              options: AghOptions = AghOptions(), work: float | None = DEFAULT_WORK) -> SolveResult:
    """Best valid plan found with `work` units of search (see DEFAULT_WORK; None: no work
    limit) from `seed`, cut short by `deadline_s` (wall clock, checked inside every loop);
    `options` switches its mechanisms (solvers/options.py AghOptions).
    Every choice the search makes depends on the work done, never on the clock, so the
    same instance, seed and options give the same plan on an idle or a loaded machine
    unless the deadline hits (stats["ended_by"] says "deadline" then; "budget" when the
    work ran out, "converged" when no move improved first). When no valid plan was seen,
    the result says so with solvers.explain's route-level reasons (cheap) and, when
    `explain_s` > 0, its fleet-level ones (elastic MILP re-solves, which take seconds at
    (20,20,20) and so run past the deadline: off by default)."""
    if work is not None and not work > 0:
        raise ValueError(f"work must be a positive number of units or None, got {work!r}")
    o = options
    starts, local_search, consolidate, m1, m2, m3 = o.starts, o.local_search, o.consolidate, o.m1, o.m2, o.m3
    polish, lns, fillers, warm_milp, hubs, lp_pool = o.polish, o.lns, o.fillers, o.warm_milp, o.hubs, o.lp_pool
    explain_s = float(o.explain_s)
    t0 = time.perf_counter()
    if ci.n_routes == 0:
        return finish(ci, "agh", np.zeros(ci.n_cand, dtype=np.int64), np.zeros(0), t0)
    p = prepare(ci, m1)
    prev = None if prev_replicas is None else np.asarray(prev_replicas, dtype=np.int64)
    # margin for the final validation pass: it grows with the route count, and on a busy
    # machine with everything else; prepare() is a similar whole-array pass, so its time
    # measured here is the floor
    finish_s = max(FINISH_S_PER_ROUTE * ci.n_routes, time.perf_counter() - t0)
    ctx = _Ctx(ci, p, t0 + 0.97 * deadline_s - 0.003 - finish_s, prev,
               float(switch_cost_per_gpu), m2, m3, ActiveRoutes(ci, p.lc, p.ridx),
               warm_milp=warm_milp, work_budget=float("inf") if work is None else float(work))
    pool: list[_Plan] = []
    if warm_start is not None:
        pool += _warm(ctx, warm_start)
    orders = start_orders(ci, p, max(1, starts), seed)
    for k, (o, w) in enumerate(orders):
        if k > 0 and (ctx.work >= START_SHARE * ctx.work_budget or ctx.stop(ctx.build_s)):
            break
        if k > 0 and time.perf_counter() - t0 > START_SHARE * deadline_s:
            ctx.cut = True  # a slow machine: keep the deadline's time for the moves
            break
        pool.append(_build(ctx, o, w))
        ctx.work += max(START_UNITS_PER_ROUTE * ci.n_routes - 1.0, 0.0)
        if k == 0 and not pool[-1].valid and np.any(ci.max_unserved > 0) \
                and not ctx.stop(2 * ctx.build_s):
            # the first pass broke a cap while unserved demand is allowed: a start that
            # covers every type's required share first is often the only valid greedy
            # plan under a tight budget (greedy.construct_required_first)
            s2 = construct_required_first(ci, p, o, m2=m2, m3=m3)
            pool.append(ctx.plan(ctx.ar.trim(s2.rep, s2.x), s2.x))
            ctx.work += max(2 * START_UNITS_PER_ROUTE * ci.n_routes - 1.0, 0.0)
    pool.sort(key=lambda q: (not q.valid, q.excess, q.cost))
    distinct = list({q.rep.tobytes(): q for q in reversed(pool)}.values())[::-1]
    distinct.sort(key=lambda q: (not q.valid, q.excess, q.cost))
    best = distinct[0]
    # per-query-type rankings for MILP pools and add-drop (~10 ms at (30,30,30))
    pools = PoolBuilder(ci, p) if (polish or lns or local_search) and not ctx.stop(0.05) else None
    if local_search and pools is not None:  # add-drop's list of additions
        ctx.adds = pools.plan_pool([(q.rep, q.x) for q in distinct[:POOL_PLANS]], POOL_SIBLINGS)
    polished = 0
    if consolidate and not ctx.stop():
        best = _consolidate(ctx, best)
    if polish and pools is not None:
        best, polished = _polish(ctx, pools, best, distinct, deadline_s, lp_pool, hubs)
    if fillers and pools is not None and (lns or local_search) and not ctx.stop():
        ctx.extra = _fillers(ctx, pools, best)
        ctx.adds = np.union1d(ctx.adds, ctx.extra)
    moves = LNS(ctx, pools) if lns and pools is not None else None
    improved = 0
    for cand in [best] + [q for q in distinct if q is not best]:
        if ctx.stop() or not (local_search or consolidate or moves):
            break
        improved += 1
        cand = _improve(ctx, cand, local_search, consolidate, moves)
        if cand.better(best):
            best = cand
    stats = {"starts": len(orders), "improved_starts": improved, "lp_calls": ctx.lp_calls,
             "milps": ctx.milps, "evaluations": ctx.evals, "switch_cost": ctx.switch(best.rep),
             "deadline_s": deadline_s, "seed": seed,
             "polish_wins": polished, "lns_wins": moves.wins if moves else 0,
             "fillers": len(ctx.extra), "warm_milp": warm_milp, "hubs": hubs,
             "lp_pool": lp_pool, "work": ctx.work, "work_budget": work,
             "ended_by": "deadline" if ctx.cut else
             ("budget" if ctx.work >= ctx.work_budget else "converged")}
    return _gated(ci, ctx, best, t0, stats, explain_s)


def _gated(ci: CompiledInstance, ctx: _Ctx, best: _Plan, t0: float, stats: dict,
           explain_s: float) -> SolveResult:
    """The validity gate's last step: the best valid plan seen, confirmed by the project's
    validator (solvers.validate, through `finish`); when no plan AGH saw passes, the
    least-violating one, labelled infeasible with the reasons of solvers.explain."""
    order = ([best] if best.valid else []) + [v for v in ctx.valid if v is not best]
    stats = {**stats, "rejected_plans": ctx.rejected}
    for q in order:
        res = finish(ci, "agh", q.rep, q.x, t0, {**stats, "valid_plan": True,
                                                  "fell_back": q is not best})
        if res.status == Status.FEASIBLE:
            return res
    res = finish(ci, "agh", best.rep, best.x, t0, {**stats, "valid_plan": False})
    from .explain import explain as explain_infeasible  # MILP re-solves: imported when needed
    from .explain import route_reasons

    reasons = tuple(explain_infeasible(ci, time_limit_s=explain_s) if explain_s > 0
                    else route_reasons(ci))
    head = ("AGH saw no plan meeting every constraint (capacity, accuracy, unserved caps, "
            "budget, inventory); the least-violating plan is returned")
    none = ("solvers.explain found no fleet-level reason within its time limit: a valid "
            "plan may exist that the search did not reach" if explain_s > 0 else
            "no query type is unservable on its own; a valid plan may exist that the search "
            "did not reach (more work or time, or explain_s > 0 for fleet-level reasons)")
    return replace(res, status=Status.INFEASIBLE, seconds=time.perf_counter() - t0,
                   explanation=(head,) + (reasons or (none,)) + res.explanation)


def backend(ci: CompiledInstance, options: SolveOptions) -> SolveResult:
    """The registry's entry (solvers/__init__.py): AGH from one options object."""
    return solve_agh(ci, deadline_s=options.limit(0.5), seed=options.seed, warm_start=options.warm_start,
                     prev_replicas=options.prev_replicas, switch_cost_per_gpu=options.switch_cost_per_gpu,
                     options=options.agh, work=options.work)
