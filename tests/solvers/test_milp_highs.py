"""solvers.highs / solvers.milp: HiGHS through scipy keeps its incumbent at the time limit,
takes a starting solution, and reports optimal / feasible / no_solution with a bound."""
from __future__ import annotations

import math

import numpy as np
import pytest

from solvers.compile import compile_instance
from solvers.formulation import build
from solvers.generator import generate_instance
from solvers.greedy import solve_gh
from solvers.highs import parse_params, solve_milp_arrays
from solvers.milp import hint_vector, solve_milp
from solvers.result import Status
from solvers.validate import check_result


@pytest.fixture(scope="module")
def medium(catalog: dict):
    """(10,10,10): HiGHS needs ~2 s to prove it, so short limits cut the search."""
    return compile_instance(generate_instance(catalog, 10, 10, 10, seed=0))


def test_a_full_start_is_the_incumbent_before_any_search(medium) -> None:
    ci = medium
    f = build(ci)
    gh = solve_gh(ci)
    start = hint_vector(f, gh.replicas, gh.x, ci)
    out = solve_milp_arrays(f.c, f.A, f.row_lo, f.row_hi, f.var_lo, f.var_hi, f.integer,
                            time_limit_s=1e-3, start=(np.arange(f.n_vars), start))
    assert out.status in ("feasible", "optimal") and out.x is not None
    assert out.objective + f.offset <= gh.objective + 1e-6


def test_milp_returns_its_incumbent_when_the_limit_cuts_it(medium) -> None:
    """Through OR-Tools, HiGHS returned nothing when its limit hit; through scipy the
    incumbent comes back as `feasible` with its bound. Limits grow until one cuts the
    search after an incumbent was found (timing varies with machine load)."""
    ci = medium
    seen = []
    for limit in (0.5, 1.0, 1.5, 2.5, 4.0):
        res = solve_milp(ci, time_limit_s=limit)
        seen.append(res.status)
        if res.status == Status.NO_SOLUTION:
            assert not res.has_solution
            continue
        assert res.has_solution and check_result(ci, res).feasible
        if res.status == Status.FEASIBLE:
            assert res.bound is None or res.bound <= res.objective + 1e-6
            assert res.gap is None or res.gap > 0
            return
        assert res.status == Status.OPTIMAL
    pytest.fail(f"no limit cut the search with an incumbent: {seen}")


def test_milp_warm_start_survives_a_tiny_limit(medium) -> None:
    ci = medium
    gh = solve_gh(ci)
    res = solve_milp(ci, time_limit_s=1e-3, warm_start=(gh.replicas, gh.x))
    assert res.status == Status.FEASIBLE
    assert res.objective <= gh.objective + 1e-6 and check_result(ci, res).feasible


def test_params_string_becomes_highs_options() -> None:
    assert parse_params("log_to_console = false\nmip_rel_gap = 0.01; threads=1\nfoo = bar") == {
        "log_to_console": False, "mip_rel_gap": 0.01, "threads": 1, "foo": "bar"}


def test_unknown_backend_is_refused(medium) -> None:
    with pytest.raises(ValueError, match="backend"):
        solve_milp(medium, backend="cplex")


def test_proven_optimum_reports_a_matching_bound(catalog: dict) -> None:
    ci = compile_instance(generate_instance(catalog, 6, 6, 10, seed=1))
    res = solve_milp(ci, time_limit_s=60)
    assert res.status == Status.OPTIMAL
    assert res.bound is not None and math.isfinite(res.bound)
    assert res.bound <= res.objective + 1e-6 and res.gap is not None and res.gap <= 1e-4 + 1e-9
