"""Instance and plan documents accept the spec's examples verbatim and reject bad ones."""
from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from schemas import Instance, Plan, describe
from tests.conftest import EXAMPLES, SPEC


def _json_blocks(md: str) -> list[dict]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", md, flags=re.S)]


def test_model_md_examples_validate() -> None:
    blocks = _json_blocks((SPEC / "model.md").read_text())
    inst = Instance.model_validate(blocks[0])
    plan = Plan.model_validate(blocks[1])
    assert inst.gpus[0].count == 64 and inst.constants.max_batch == 256
    plan.check_against({q.id for q in inst.query_types})
    assert plan.deployments[0].precision == "fp8"


@pytest.mark.parametrize("name", ["plan.json", "plan_infeasible.json"])
def test_example_plans_validate(name: str) -> None:
    inst = Instance.model_validate_json((EXAMPLES / "instance.json").read_text())
    plan = Plan.model_validate_json((EXAMPLES / name).read_text())
    plan.check_against({q.id for q in inst.query_types})


def test_instance_roundtrips_exactly(spec_instance: dict) -> None:
    inst = Instance.model_validate(spec_instance)
    again = Instance.model_validate_json(inst.model_dump_json())
    assert again == inst
    assert inst.to_spec()["gpus"][1]["count"] is None


def _mutate(doc: dict, path: list, value: object) -> dict:
    doc = json.loads(json.dumps(doc))
    cur = doc
    for p in path[:-1]:
        cur = cur.setdefault(p, {}) if isinstance(cur, dict) else cur[p]
    cur[path[-1]] = value
    return doc


@pytest.mark.parametrize(("path", "value", "expect"), [
    (["query_types", 0, "input_tokens"], -5, "query_types[0].input_tokens"),
    (["query_types", 1, "arrival_rate"], float("nan"), "query_types[1].arrival_rate"),
    (["gpus", 0, "memory_gb"], 0, "gpus[0].memory_gb"),
    (["models", 0, "error"], {"code": 1.5}, "models[0].error"),
    (["models", 0, "error"], {"nosuch": 0.1}, "unknown query types"),
    (["precisions", 0, "id"], "fp8", "duplicate precision id"),
    (["budget_per_hour"], -1, "budget_per_hour"),
    (["constants", "max_utilization"], 1.5, "constants.max_utilization"),
    (["parallelism", "tp"], [1, 1], "parallelism.tp"),
])
def test_instance_rejections_name_the_field(spec_instance: dict, path: list, value: object,
                                            expect: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Instance.model_validate(_mutate(spec_instance, path, value))
    assert expect in describe(exc.value)


def test_plan_rejects_unknown_deployment_and_query_type(spec_instance: dict) -> None:
    plan = json.loads((EXAMPLES / "plan.json").read_text())
    bad = _mutate(plan, ["routes", 0, "deployment"], "nope")
    with pytest.raises(ValidationError, match="unknown deployment 'nope'"):
        Plan.model_validate(bad)
    p = Plan.model_validate(_mutate(plan, ["routes", 1, "query_type"], "chat"))
    with pytest.raises(ValueError, match=r"routes\[1\].query_type: unknown query type 'chat'"):
        p.check_against({q["id"] for q in spec_instance["query_types"]})
    with pytest.raises(ValidationError, match="replicas"):
        Plan.model_validate(_mutate(plan, ["deployments", 0, "replicas"], 0))


def test_plan_keeps_solver_fields() -> None:
    plan = json.loads((EXAMPLES / "plan.json").read_text())
    plan.update(method="gh", cost_per_hour=12.5)
    p = Plan.model_validate(plan)
    assert p.to_spec()["method"] == "gh"
