"""GH leaves query types without demand alone when they may go unserved."""
from __future__ import annotations

import warnings

import numpy as np

from schemas import load_catalog
from solvers import solve
from solvers.compile import compile_instance
from solvers.validate import check_result


def test_zero_demand_query_types_get_no_route_and_no_arithmetic_warnings() -> None:
    catalog = load_catalog()
    demand = {q.id: {"arrival_rate": 0.0, "max_unserved": 1.0} for q in catalog.query_types}
    demand["code"] = {"arrival_rate": 20.0}
    ci = compile_instance(catalog.to_instance(demand).to_spec())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # 0/0 and x/0 on all-zero load coefficients
        res = solve(ci, "gh")
    assert check_result(ci, res).feasible
    served = np.bincount(ci.route_qt, weights=res.x, minlength=ci.n_qt)
    idle = [k for k, q in enumerate(ci.qt_ids) if q != "code"]
    assert served[ci.qt_ids.index("code")] >= 1 - 1e-9 and not served[idle].any()


def test_a_continued_construction_skips_them_too() -> None:
    """AGH continues GH's construction from states built from plans, whose uncovered share
    of an idle query type is 1."""
    from solvers.greedy import State, construct, default_order, prepare

    catalog = load_catalog()
    demand = {q.id: {"arrival_rate": 0.0, "max_unserved": 1.0} for q in catalog.query_types}
    demand["code"] = {"arrival_rate": 20.0}
    ci = compile_instance(catalog.to_instance(demand).to_spec())
    s = State.empty(ci)
    s.rem[:] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        s = construct(ci, prepare(ci), default_order(ci), state=s)
    assert s.rep.sum() > 0 and not s.x[ci.route_qt != ci.qt_ids.index("code")].any()


def test_agh_pools_rank_idle_query_types_without_arithmetic_warnings() -> None:
    """AGH's pool rankings divide by each route's load coefficient, which is 0 for a type
    without demand (seen as 'divide by zero' warnings in worker logs)."""
    from solvers.agh_pools import PoolBuilder
    from solvers.greedy import prepare

    catalog = load_catalog()
    demand = {q.id: {"arrival_rate": 0.0, "max_unserved": 1.0} for q in catalog.query_types}
    demand["code"] = {"arrival_rate": 20.0}
    ci = compile_instance(catalog.to_instance(demand).to_spec())
    p = prepare(ci)
    assert (p.lc == 0).any(), "the instance has zero-load routes"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pools = PoolBuilder(ci, p)
    assert (pools.options[ci.qt_ids.index("code")] >= 0).any()
