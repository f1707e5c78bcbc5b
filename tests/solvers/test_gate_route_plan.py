"""gate_route_plan: the router parameters published for one deployment."""

from __future__ import annotations

import json

import pytest

from solvers.gate_route.fluid_lp import SliTargets
from solvers.gate_route.plan import gate_route_plan
from solvers.gate_route.iteration_model import IterationModel

PAPER_MODEL = IterationModel(alpha=0.0174, beta=6.2e-5, gamma=45.45, slots=16)


def _classes(n):
    return {
        "code": {"arrival_rate": 0.5 * n, "prompt_tokens": 300, "decode_tokens": 1000,
                 "patience_s": 10.0, "value": 230.0},
        "summ": {"arrival_rate": 0.5 * n, "prompt_tokens": 3000, "decode_tokens": 400,
                 "patience_s": 10.0, "value": 380.0},
    }


def test_plan_reproduces_paper_instance():
    plan = gate_route_plan(_classes(500), PAPER_MODEL, replicas=500, chunk_tokens=256)
    json.dumps(plan)  # publishable as-is
    assert plan["status"] == "optimal"
    assert plan["mixed_replicas"] == 107 and plan["solo_replicas"] == 393
    assert plan["fluid_reward_per_s"] == pytest.approx(500 * 297.703, rel=1e-4)
    code, summ = plan["classes"]["code"], plan["classes"]["summ"]
    assert code["prefill_target"] == pytest.approx(500 * 0.01826, rel=1e-3)
    assert summ["admit_probability"] == pytest.approx(1.0, abs=1e-6)
    assert code["admit_probability"] == pytest.approx(0.46827 / 0.5, rel=1e-3)
    assert code["solo_probability"] == pytest.approx(summ["solo_probability"])
    assert code["prefill_share"] + summ["prefill_share"] == pytest.approx(1.0)
    assert plan["router"] == "solo_first"
    assert plan["backpressure_jobs"] == 0.0


def test_plan_with_sli_uses_randomised_router():
    plan = gate_route_plan(_classes(100), PAPER_MODEL, replicas=100, sli=SliTargets(tpot_s=0.024))
    assert plan["policy"] == "sli_gate_and_route" and plan["router"] == "randomised"
    assert plan["avg_tpot_s"] <= 0.024 + 1e-9


def test_plan_reports_infeasible():
    classes = {"a": {"arrival_rate": 1e6, "prompt_tokens": 100, "decode_tokens": 100}}
    plan = gate_route_plan(classes, PAPER_MODEL, replicas=2)  # no patience: cannot shed
    assert plan["status"] == "infeasible"
