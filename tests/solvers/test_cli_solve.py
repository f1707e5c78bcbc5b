"""`llmfleet solve / check / instance generate` from the command line."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from controller.cli import main
from tests.conftest import EXAMPLES, load_checker


def test_generate_solve_check_roundtrip(tmp_path: Path) -> None:
    run = CliRunner().invoke
    inst, plan = tmp_path / "i.json", tmp_path / "p.json"
    res = run(main, ["instance", "generate", "--size", "4", "5", "8", "--seed", "3", "--load", "5",
                     "--scenario", "tight_budget", "-o", str(inst)])
    assert res.exit_code == 0, res.output
    res = run(main, ["solve", str(inst), "--method", "milp", "--time-limit", "30", "-o", str(plan)])
    assert res.exit_code == 0, res.output
    doc = json.loads(plan.read_text())
    for key in ("method", "status", "cost_per_hour", "bound", "compile_seconds", "seconds"):
        assert key in doc, key
    assert doc["method"] == "milp" and doc["status"] == "optimal"
    outside = load_checker().check(json.loads(inst.read_text()), doc)
    assert outside["feasible"] and abs(outside["cost_per_hour"] - doc["cost_per_hour"]) < 1e-6
    assert run(main, ["check", str(inst), str(plan)]).exit_code == 0


def test_check_exit_codes_and_messages(tmp_path: Path) -> None:
    run = CliRunner().invoke
    inst = str(EXAMPLES / "instance.json")
    ok = run(main, ["check", inst, str(EXAMPLES / "plan.json")])
    assert ok.exit_code == 0 and "feasible" in ok.output
    bad = run(main, ["check", inst, str(EXAMPLES / "plan_infeasible.json")])
    assert bad.exit_code == 1 and "VIOLATION [capacity]" in bad.output
    broken = tmp_path / "broken.json"
    broken.write_text('{"deployments": [], "routes": [{"query_type": "code", "deployment": "x", "fraction": 1}]}')
    res = run(main, ["check", inst, str(broken)])
    assert res.exit_code == 1 and "unknown deployment 'x'" in res.output


def test_solve_infeasible_explains(tmp_path: Path) -> None:
    doc = json.loads((EXAMPLES / "instance.json").read_text())
    doc["budget_per_hour"] = 0.5
    inst = tmp_path / "poor.json"
    inst.write_text(json.dumps(doc))
    res = CliRunner().invoke(main, ["solve", str(inst), "--method", "milp", "-o", str(tmp_path / "p.json")])
    assert res.exit_code == 1
    plan = json.loads((tmp_path / "p.json").read_text())
    assert plan["status"] == "infeasible"
    assert any("budget of $0.50/h" in line for line in plan["explanation"])


def test_solve_rejects_invalid_instance(tmp_path: Path) -> None:
    doc = json.loads((EXAMPLES / "instance.json").read_text())
    doc["query_types"][0]["input_tokens"] = -1
    inst = tmp_path / "bad.json"
    inst.write_text(json.dumps(doc))
    res = CliRunner().invoke(main, ["solve", str(inst), "--method", "milp"])
    assert res.exit_code == 1 and "query_types[0].input_tokens" in res.output
