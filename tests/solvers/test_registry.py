"""One registry of solver backends: the CLI, the wire schema and the settings take their lists
from it, and every backend runs from one options object."""
from __future__ import annotations

import typing

import pytest

import solvers
from controller.common.settings import Settings
from controller.offline.solve_commands import solve as solve_command
from schemas.events import Method
from solvers import AghOptions, SolveOptions, check_result, compile_instance, solve
from solvers.generator import generate_instance


def test_the_lists_agree_with_the_registry() -> None:
    names = list(solvers.BACKENDS)
    assert names == list(solvers.METHODS)
    assert list(typing.get_args(Method)) == names
    method_opt = next(p for p in solve_command.params if p.name == "method")
    assert list(method_opt.type.choices) == names
    exact = [n for n, b in solvers.BACKENDS.items() if b.exact]
    audit = Settings.model_fields["audit_method"].annotation
    assert list(typing.get_args(audit)) == exact == ["milp", "cpsat"]


@pytest.mark.parametrize("method", list(solvers.BACKENDS))
def test_every_backend_runs_from_one_options_object(method: str, catalog) -> None:
    ci = compile_instance(generate_instance(catalog, 3, 3, 4, seed=5))
    res = solve(ci, method, SolveOptions(deadline_s=5.0, seed=1, work=200))
    assert res.method.startswith(method) or res.method in solvers.BACKENDS
    if res.has_solution:
        assert check_result(ci, res).feasible or res.status.value not in ("optimal", "feasible")


def test_field_changes_replace_the_options_and_agh_switches_are_typed(catalog) -> None:
    ci = compile_instance(generate_instance(catalog, 3, 3, 4, seed=5))
    a = solve(ci, "agh", SolveOptions(deadline_s=30.0, work=150, agh=AghOptions(lns=False, polish=False)))
    b = solve(ci, "agh", deadline_s=30.0, work=150, agh=AghOptions(lns=False, polish=False))
    assert a.objective == pytest.approx(b.objective)
    with pytest.raises(TypeError):
        solve(ci, "agh", time_limit_s=3)  # the old per-backend names are gone: one vocabulary
    with pytest.raises(ValueError, match="unknown method"):
        solve(ci, "simplex")
