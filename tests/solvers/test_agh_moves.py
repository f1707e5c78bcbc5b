"""AGH's building blocks: active-route plan arithmetic, candidate pools, pool MILPs, and the
large-neighbourhood MILP move."""
from __future__ import annotations

import time

import numpy as np
import pytest

from solvers import adaptive as agh
from solvers.active_routes import ActiveRoutes
from solvers.agh_pools import PoolBuilder
from solvers.compile import compile_instance
from solvers.generator import generate_instance
from solvers.greedy import prepare, trim_replicas
from solvers.milp import solve_milp
from solvers.pool_milp import solve_pool
from solvers.result import SolveResult, Status, objective
from solvers.route_lp import clean, route_lp
from solvers.validate import check_result

QUIET = "log_to_console = false"


@pytest.fixture(scope="module")
def small(catalog: dict):
    """A (6,6,10) instance with its proven optimum."""
    ci = compile_instance(generate_instance(catalog, 6, 6, 10, seed=1))
    exact = solve_milp(ci, time_limit_s=30, params=QUIET)
    assert exact.status == Status.OPTIMAL
    return ci, exact


def _ctx(ci, seconds: float = 30.0) -> agh._Ctx:
    p = prepare(ci)
    return agh._Ctx(ci, p, time.perf_counter() + seconds, None, 0.0, True, True,
                    ActiveRoutes(ci, p.lc, p.ridx))


def test_active_routes_match_the_full_array_versions(small) -> None:
    ci, exact = small
    p = prepare(ci)
    ar = ActiveRoutes(ci, p.lc, p.ridx)
    rng = np.random.default_rng(0)
    checked = 0
    for k in range(12):
        rep = exact.replicas.copy()
        extra = rng.choice(ci.n_cand, 3, replace=False)
        rep[extra] += rng.integers(0, 2, 3)
        if k % 3 == 0:
            rep[np.flatnonzero(rep)[0]] = 0
        for weight in (0.0, 1e-3):
            full, mine = route_lp(ci, rep, consolidate=weight), ar.route_lp(rep, consolidate=weight)
            assert (full is None) == (mine is None)
            if full is None:
                continue
            checked += 1
            assert np.allclose(full, mine, atol=1e-9)
            assert ar.cost(rep, mine) == pytest.approx(objective(ci, rep, full), abs=1e-9)
            assert np.array_equal(ar.trim(rep, mine), trim_replicas(ci, rep, full))
            noisy = full * rng.uniform(0.9, 1.2, len(full))
            assert np.allclose(ar.clean(rep, noisy), clean(ci, rep, noisy))
    assert checked >= 4


def test_excess_counts_a_broken_accuracy_mix(small) -> None:
    ci, exact = small
    p = prepare(ci)
    ar = ActiveRoutes(ci, p.lc, p.ridx)
    assert ar.excess(exact.x, 1e-9) == pytest.approx(0.0, abs=1e-9)
    # all traffic of one query type on its worst route: served in full, accuracy broken
    i = int(np.argmax([np.ptp(ci.error[ci.routes_of(k)]) for k in range(ci.n_qt)]))
    rs = ci.routes_of(i)
    worst = rs[np.argmax(ci.error[rs])]
    assert ci.error[worst] > ci.max_error[i]
    x = exact.x.copy()
    x[rs] = 0.0
    x[worst] = 1.0
    assert ar.excess(x, 1e-9) > 0
    assert agh._Plan(ar.excess(x, 1e-9), 0.0, exact.replicas, x).better(
        agh._Plan(0.0, 1e9, exact.replicas, exact.x)) is False


def test_pools_hold_what_they_promise(small) -> None:
    ci, exact = small
    p = prepare(ci)
    pools = PoolBuilder(ci, p)
    every = pools.per_qt(None, 1)
    for i in range(ci.n_qt):  # every query type has an option in the pool
        assert np.any(p.ridx[i, every] >= 0)
    for d in np.flatnonzero(exact.replicas):
        sib = pools.siblings(int(d), exact.x, 5)
        assert len(sib) >= 1 and np.all(ci.cand_model[sib] == ci.cand_model[d])
        var = pools.variants(int(d), float(ci.cand_cost[d]), 4)
        assert d in var or len(var) == 4
        assert np.all(ci.cand_cost[var] <= ci.cand_cost[d] + 1e-9)
        assert np.all((ci.cand_tp[var] <= 2) & (ci.cand_pp[var] == 1))
    pool = pools.plan_pool([(exact.replicas, exact.x)], siblings=3)
    assert np.all(np.isin(np.flatnonzero(exact.replicas), pool))


def test_pool_milp_over_the_optimum_support_finds_the_optimum(small) -> None:
    ci, exact = small
    p = prepare(ci)
    pool = PoolBuilder(ci, p).plan_pool([(exact.replicas, exact.x)], siblings=3)
    rep, x, proven = solve_pool(ci, pool, 20.0, links=True)
    assert proven
    res = SolveResult(status=Status.FEASIBLE, method="pool", replicas=rep,
                      x=clean(ci, rep, x), objective=objective(ci, rep, x))
    assert check_result(ci, res).feasible
    assert objective(ci, rep, x) == pytest.approx(exact.objective, rel=1e-6)


def test_pool_milp_keeps_fixed_replicas(small) -> None:
    ci, exact = small
    p = prepare(ci)
    pool = PoolBuilder(ci, p).plan_pool([(exact.replicas, exact.x)], siblings=3)
    d = int(np.flatnonzero(exact.replicas)[0])
    out = solve_pool(ci, pool, 20.0, fixed={d: int(exact.replicas[d]) + 1})
    assert out is not None
    rep, _x, _ = out
    assert rep[d] == exact.replicas[d] + 1
    assert rep @ ci.cand_cost >= exact.replicas @ ci.cand_cost


def test_neighbourhood_milp_repairs_a_swapped_deployment(small) -> None:
    """Replace one optimal deployment by a dearer same-model variant: one LNS step (freeing
    that deployment, every other replica fixed) must find a plan as cheap as the optimum."""
    ci, exact = small
    ctx = _ctx(ci)
    d = int(np.flatnonzero(exact.replicas)[np.argmax(ci.cand_cost[exact.replicas > 0])])
    same = np.flatnonzero((ci.cand_model == ci.cand_model[d]) & (ci.cand_cost > ci.cand_cost[d]))
    worse = None
    for e in same[np.argsort(ci.cand_cost[same])]:
        rep = exact.replicas.copy()
        rep[e] += rep[d]
        rep[d] = 0
        x = ctx.lp(rep)
        if x is not None:
            worse = ctx.plan(rep, x)
            break
    assert worse is not None and worse.excess == 0 and worse.cost > exact.objective + 1e-6
    lns = agh.LNS(ctx, PoolBuilder(ci, ctx.p))
    found = worse
    for _ in range(4):  # first-improvement steps
        nxt = lns.step(found)
        if not nxt.better(found):
            break
        found = nxt
    assert found.cost <= exact.objective * 1.01 + 1e-9
    assert lns.wins >= 1


def test_fillers_cover_the_most_query_types_per_dollar(small) -> None:
    """Fillers: ranked by the summed share of each query type one replica can carry within
    the type's error bound, per dollar (computed here from the raw arrays)."""
    ci, _exact = small
    p = prepare(ci)
    ok = p.open_ok & (p.ee <= 1e-12)
    share = np.where(ok, np.minimum(1.0, ci.max_utilization / p.lc), 0.0)
    per_dollar = np.bincount(ci.route_cand, weights=share, minlength=ci.n_cand) / ci.cand_cost
    fill = PoolBuilder(ci, p).fillers(8)
    assert len(fill) == 8 and len(np.unique(fill)) == 8
    rest = np.setdiff1d(np.arange(ci.n_cand), fill)
    assert per_dollar[fill].min() >= per_dollar[rest].max() - 1e-12
    # each filler serves more than one query type within its bound
    covered = np.bincount(ci.route_cand[ok], minlength=ci.n_cand)
    assert np.all(covered[fill] >= 2)


def test_neighbourhood_pools_offer_the_fillers(small) -> None:
    ci, exact = small
    ctx = _ctx(ci)
    pools = PoolBuilder(ci, ctx.p)
    cur = ctx.plan(exact.replicas, exact.x)
    lns = agh.LNS(ctx, pools)
    free = agh.neighbourhoods(ci, cur)[0]
    without = lns.pool(cur, free)
    ctx.extra = agh._fillers(ctx, pools, cur)
    with_fill = lns.pool(cur, free)
    assert np.all(np.isin(pools.fillers(agh.FILLERS), ctx.extra))
    assert np.all(np.isin(ctx.extra, with_fill)) and np.all(np.isin(without, with_fill))


def _filler_instance(spec_instance: dict) -> dict:
    """Four query types on L4s; per type three small specialists (accurate and fast on
    their type, far above the error bound on the others) and one 3B generalist within every
    bound. The generalist is no type's first three options on any pool key, so no per-type
    ranking offers it, yet one replica of it carries most of the traffic of all four types."""
    import copy

    inst = copy.deepcopy(spec_instance)
    types = [f"t{i}" for i in range(4)]
    qt = spec_instance["query_types"][1]
    inst["name"] = "filler-handbuilt"
    inst["query_types"] = [dict(qt, id=t, arrival_rate=0.3, max_error=0.3) for t in types]

    def model(mid: str, params_b: float, err: dict) -> dict:
        return {"id": mid, "params_b": params_b, "n_layers": 32, "d_model": 4096,
                "n_kv_heads": 8, "head_dim": 128, "error": err}

    inst["models"] = [model("generalist", 3.0, {t: 0.28 for t in types})] + [
        model(f"spec-{t}-{k}", p, {u: (0.10 + 0.02 * k if u == t else 0.6) for u in types})
        for t in types for k, p in enumerate((1.0, 1.5, 2.0))]
    inst["gpus"] = [g for g in spec_instance["gpus"] if g["id"] == "L4"]
    inst["precisions"] = [p for p in spec_instance["precisions"] if p["id"] == "fp16"]
    inst["parallelism"] = {"tp": [1, 2], "pp": [1]}
    return inst


def test_only_a_filler_reaches_the_optimum(spec_instance: dict) -> None:
    """From the one-specialist-per-type fleet, neighbourhood MILPs over the usual pools stay
    put; offered the fillers, they reach the optimum, which uses the generalist."""
    ci = compile_instance(_filler_instance(spec_instance))
    exact = solve_milp(ci, time_limit_s=30)
    assert exact.status == Status.OPTIMAL
    generalist = np.flatnonzero(np.array(ci.model_ids)[ci.cand_model] == "generalist")
    assert exact.replicas[generalist].sum() >= 1
    ctx = _ctx(ci)
    pools = PoolBuilder(ci, ctx.p)
    assert not np.isin(generalist, pools.per_qt(None, 3)).any()
    assert np.isin(pools.fillers(1), generalist).all()
    rep = np.zeros(ci.n_cand, dtype=np.int64)
    for t in range(ci.n_qt):  # the cheapest specialist of every type, one replica each
        spec = [d for d in np.flatnonzero(ctx.p.ridx[t] >= 0)
                if ci.model_ids[ci.cand_model[d]].startswith(f"spec-{ci.qt_ids[t]}-")]
        rep[min(spec, key=lambda d: (ci.cand_cost[d], ci.model_ids[ci.cand_model[d]]))] = 1
    start = ctx.plan(rep, ctx.lp(rep))
    assert start.excess == 0 and start.cost > exact.objective * 1.5

    def descend(ctx: agh._Ctx) -> agh._Plan:
        lns, cur = agh.LNS(ctx, pools), start
        for _ in range(8):
            nxt = lns.step(cur)
            if not nxt.better(cur):
                return cur
            cur = nxt
        return cur

    assert descend(ctx).cost > exact.objective * 1.5
    ctx = _ctx(ci)
    ctx.extra = agh._fillers(ctx, pools, start)
    assert descend(ctx).cost <= exact.objective * (1 + 1e-6)


def test_hub_and_top_up_keys_rank_within_the_error_bound(small) -> None:
    """Hubs: per query type the cheapest capacity (cost per unit of load) within the error
    bound; top-ups: the cheapest single replica within the bound, most capacity first.
    Both computed here from the raw arrays; hubs=False leaves them out of the pools."""
    ci, _exact = small
    p = prepare(ci)
    pools = PoolBuilder(ci, p)
    share = np.minimum(1.0, ci.max_utilization / p.lc)
    cost = ci.cand_cost[ci.route_cand]
    for i in range(ci.n_qt):
        rs = np.arange(p.starts[i], p.starts[i + 1])
        rs = rs[p.open_ok[rs] & (p.ee[rs] <= 1e-12)]
        if len(rs) == 0:
            continue
        hub, top = pools.options[i, 4, 0], pools.options[i, 5, 0]
        r_hub = p.ridx[i, hub]
        assert cost[r_hub] * p.lc[r_hub] == pytest.approx(np.min(cost[rs] * p.lc[rs]))
        r_top = p.ridx[i, top]
        cheapest = rs[cost[rs] <= cost[rs].min() + 1e-12]
        assert cost[r_top] == pytest.approx(cost[rs].min())
        assert share[r_top] == pytest.approx(share[cheapest].max())
    with_keys, without = pools.per_qt(None, 1, hubs=True), pools.per_qt(None, 1)
    assert np.all(np.isin(without, with_keys))
    assert np.all(np.isin(pools.options[:, 4:, 0][pools.options[:, 4:, 0] >= 0], with_keys))
    # within_bound: only candidates with a route inside some type's bound, hubs included
    wb = pools.within_bound(1)
    assert np.all(np.isin(pools.options[:, 4:, 0][pools.options[:, 4:, 0] >= 0], wb))
    for d in wb:
        rs = p.ridx[:, d]
        assert np.any((rs >= 0) & (p.ee[np.maximum(rs, 0)] <= 1e-12) & p.open_ok[np.maximum(rs, 0)])


def test_mixers_cover_the_most_query_types_per_dollar_ignoring_error(small) -> None:
    ci, _exact = small
    p = prepare(ci)
    share = np.where(p.open_ok, np.minimum(1.0, ci.max_utilization / p.lc), 0.0)
    per_dollar = np.bincount(ci.route_cand, weights=share, minlength=ci.n_cand) / ci.cand_cost
    mix = PoolBuilder(ci, p).mixers(6)
    assert len(mix) == 6
    rest = np.setdiff1d(np.arange(ci.n_cand), mix)
    assert per_dollar[mix].min() >= per_dollar[rest].max() - 1e-12


def test_pool_support_carries_the_lp_relaxation(small) -> None:
    """The candidates the pool LP uses are a subset of the pool, and the LP over them alone
    has the same optimum (they carry the whole relaxed solution)."""
    from solvers.pool_milp import _pool_lp, pool_support

    ci, exact = small
    p = prepare(ci)
    pools = PoolBuilder(ci, p)
    wide = np.unique(np.concatenate([pools.per_qt(None, 2), pools.mixers(6), pools.fillers(6)]))
    used = pool_support(ci, wide)
    assert used is not None and 0 < len(used) < len(wide)
    assert np.all(np.isin(used, wide))
    full, sub = _pool_lp(ci, wide, True, None), _pool_lp(ci, used, True, None)
    assert sub[0].fun == pytest.approx(full[0].fun, rel=1e-6)
    assert full[0].fun <= exact.objective + 1e-6


def test_lp_pool_holds_the_support_the_options_and_the_incumbent(small) -> None:
    ci, exact = small
    ctx = _ctx(ci)
    pools = PoolBuilder(ci, ctx.p)
    cur = ctx.plan(exact.replicas, exact.x)
    pool = agh._lp_pool(ctx, pools, cur)
    assert pool is not None
    assert np.all(np.isin(np.flatnonzero(exact.replicas), pool))
    assert np.all(np.isin(pools.within_bound(1), pool))
    # small enough for a quick MILP, and that MILP (cold) lands within 1 % of the optimum
    assert len(pool) <= agh.POLISH_POOL
    found, _proven = agh._milp(ctx, pool, 20.0)
    assert found is not None and found.excess == 0
    assert found.cost <= exact.objective * 1.01 + 1e-9
