"""Robust planning margins (solvers.robust): a plan made on the instance with latency
headroom h and error margin e is valid on the nominal instance and stays valid when
latency and error really are inflated by h and e (the stress study's transformation)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from controller.cli import main
from solvers import check_plan, compile_instance, solve, to_plan
from solvers.generator import generate_instance
from solvers.robust import with_margins
from tests.conftest import load_checker


def test_unit_factors_change_nothing(catalog) -> None:
    inst = generate_instance(catalog, 5, 5, 6, seed=4)
    a, b = compile_instance(inst), compile_instance(with_margins(inst))
    assert a.n_routes == b.n_routes
    assert np.allclose(a.mu, b.mu) and np.array_equal(a.error, b.error)


@pytest.mark.parametrize("h,e", [(1.2, 1.2), (1.5, 1.0), (1.0, 1.1)])
def test_robust_plan_holds_nominally_and_under_inflation(catalog, h, e) -> None:
    inst = generate_instance(catalog, 6, 6, 8, seed=2, scenario="high_penalty")
    robust = with_margins(inst, h, e)
    ci_r = compile_instance(robust)
    res = solve(ci_r, "agh", deadline_s=5.0, seed=0, work=300)
    assert res.has_solution, res.explanation
    plan = to_plan(ci_r, res)
    nominal = check_plan(compile_instance(inst), plan, inst)
    assert nominal.feasible, [v.message for v in nominal.violations]
    assert load_checker().check(inst, plan)["feasible"]
    nominal_plan = solve(compile_instance(inst), "agh", deadline_s=5.0, seed=0, work=300)
    # the margins buy something: the nominal plan does not survive the inflation
    inflated = with_margins(inst, h, e)
    ci_i = compile_instance(inflated)
    assert check_plan(ci_i, plan, inflated).feasible
    assert res.objective >= nominal_plan.objective - 1e-6
    assert not check_plan(ci_i, to_plan(compile_instance(inst), nominal_plan), inflated).feasible


@pytest.mark.parametrize("bad", [0.9, 0.0, float("nan"), float("inf")])
def test_margins_below_one_are_refused(catalog, bad) -> None:
    inst = generate_instance(catalog, 2, 2, 2, seed=0)
    with pytest.raises(ValueError, match="factor >= 1"):
        with_margins(inst, bad, 1.0)
    with pytest.raises(ValueError, match="error_margin"):
        with_margins(inst, 1.0, bad)


def test_cli_margins_and_work(tmp_path: Path, catalog) -> None:
    inst = tmp_path / "i.json"
    inst.write_text(json.dumps(generate_instance(catalog, 6, 6, 8, seed=2)))
    run = CliRunner().invoke
    outs = []
    for k in range(2):
        out = tmp_path / f"p{k}.json"
        res = run(main, ["solve", str(inst), "--method", "agh", "--time-limit", "30", "--work", "150",
                         "--latency-headroom", "1.2", "--error-margin", "1.2", "-o", str(out)])
        assert res.exit_code == 0, res.output
        outs.append(json.loads(out.read_text()))
    assert outs[0]["deployments"] == outs[1]["deployments"]
    bad = run(main, ["solve", str(inst), "--latency-headroom", "0.5"])
    assert bad.exit_code != 0 and "latency_headroom" in bad.output
