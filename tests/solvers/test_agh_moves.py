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
