"""The validator agrees with the outside checker on random plans; infeasibility is explained."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvers import check_plan, compile_instance
from solvers.explain import explain
from solvers.generator import generate_instance
from tests.conftest import EXAMPLES, load_checker
from tests.solvers.strategies import instances


@st.composite
def instance_and_plan(draw: st.DrawFn) -> tuple[dict, dict]:
    inst = draw(instances())
    deps, routes = [], []
    for k in range(draw(st.integers(0, 4))):
        m = draw(st.sampled_from(inst["models"]))
        g = draw(st.sampled_from(inst["gpus"]))
        deps.append({"id": f"d{k}", "model": m["id"], "gpu": g["id"],
                     "precision": draw(st.sampled_from(sorted(g["tflops"]))),
                     "tp": draw(st.sampled_from([1, 2, 4, 8])), "pp": draw(st.sampled_from([1, 2, 4])),
                     "replicas": draw(st.integers(1, 6))})
        for q in inst["query_types"]:
            if draw(st.booleans()):
                routes.append({"query_type": q["id"], "deployment": f"d{k}",
                               "fraction": draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))})
    return inst, {"deployments": deps, "routes": routes}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance_and_plan())
def test_validator_agrees_with_outside_checker(pair: tuple[dict, dict]) -> None:
    inst, plan = pair
    ref = load_checker().check(inst, plan)
    rep = check_plan(compile_instance(inst), plan, inst)
    structural = [v for v in rep.violations if v.constraint == "structure"]
    if not structural:  # our validator also rejects configurations the spec disallows
        assert rep.feasible == ref["feasible"], (ref["problems"], [v.message for v in rep.violations])
    assert rep.cost_per_hour == pytest.approx(ref["cost_per_hour"], rel=1e-9, abs=1e-9)
    assert rep.gpu_cost_per_hour == pytest.approx(ref["gpu_cost_per_hour"], rel=1e-9, abs=1e-9)
    assert rep.gpus == ref["gpus"]


@pytest.mark.parametrize(("name", "feasible", "kinds"), [
    ("plan.json", True, set()),
    ("plan_infeasible.json", False, {"route", "capacity", "served"}),
])
def test_spec_example_plans(spec_instance: dict, name: str, feasible: bool, kinds: set) -> None:
    plan = json.loads((EXAMPLES / name).read_text())
    rep = check_plan(compile_instance(spec_instance), plan, spec_instance)
    assert rep.feasible is feasible
    assert {v.constraint for v in rep.violations} == kinds


def test_violations_carry_numbers(spec_instance: dict) -> None:
    plan = json.loads((EXAMPLES / "plan.json").read_text())
    inst = json.loads(json.dumps(spec_instance))
    inst["budget_per_hour"] = 1.0
    inst["gpus"][0]["count"] = 0
    rep = check_plan(compile_instance(inst), plan, inst)
    by = {v.constraint: v for v in rep.violations}
    assert by["budget"].value == pytest.approx(2.99) and by["budget"].limit == 1.0
    assert by["inventory"].value == 1 and by["inventory"].limit == 0
    assert rep.max_violation >= 1.0


def test_explain_budget_inventory_and_slos(catalog: dict) -> None:
    inst = generate_instance(catalog, 4, 5, 8, seed=1, load=5.0)
    assert explain(compile_instance(inst)) == []
    poor = dict(inst, budget_per_hour=0.5)
    (msg,) = explain(compile_instance(poor))
    assert "cheapest covering fleet costs" in msg and "budget of $0.50/h" in msg
    scarce = json.loads(json.dumps(inst))
    for g in scarce["gpus"]:
        g["count"] = 0
    msgs = explain(compile_instance(scarce))
    assert msgs and all("is short by" in m for m in msgs)
    strict = json.loads(json.dumps(inst))
    strict["query_types"][0]["max_ttft_s"] = 1e-5
    strict["query_types"][1]["max_error"] = 1e-4
    msgs = explain(compile_instance(strict))
    q0, q1 = strict["query_types"][0]["id"], strict["query_types"][1]["id"]
    assert any(m.startswith(f"query type {q0}: no route meets its latency/TTFT") for m in msgs)
    assert any(m.startswith(f"query type {q1}: no route meets its error bound") for m in msgs)


def test_explain_missing_model(spec_instance: dict) -> None:
    inst = json.loads(json.dumps(spec_instance))
    for m in inst["models"]:
        m["error"].pop("conv")
    msgs = explain(compile_instance(inst))
    assert msgs == ["query type conv: no model in the catalog has an error rate for it"]
    assert np.isfinite(compile_instance(inst).lam).all()
