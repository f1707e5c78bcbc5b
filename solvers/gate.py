"""The validity gate every backend's result passes on its way out of `solvers.solve`.

A plan labelled `feasible` or `optimal` goes to routers; it must be one the project's
validator (solvers.validate) accepts, whatever the backend's own arithmetic said (an exact
solver's round-off repair, a baseline's budget repair, a heuristic's last move). A result
without a valid plan must say why: an `infeasible` verdict without reasons gets those of
solvers.explain (elastic re-solves: the cheapest covering fleet against the budget, GPUs
missing per type), a deadline hit says so.
"""
from __future__ import annotations

from dataclasses import replace

from .compile import CompiledInstance
from .result import SOLUTION_PRESENT, SolveResult, Status
from .validate import check_result

EXPLAIN_S = 2.0  # time solvers.explain gets for a result that came back without reasons


def gate(ci: CompiledInstance, res: SolveResult, explain_s: float = EXPLAIN_S) -> SolveResult:
    """`res`, or a degraded copy of it (status infeasible) with the validator's findings
    when it is labelled feasible/optimal but breaks a constraint; reasons added where a
    result without a plan has none."""
    if res.status in SOLUTION_PRESENT:
        report = check_result(ci, res)
        if report.feasible:
            return res
        return replace(res, status=Status.INFEASIBLE, stats={**res.stats, "gated": True},
                       explanation=(f"{res.method} returned a plan the validator rejects "
                                    f"(labelled {res.status.value}):",)
                       + tuple(v.message for v in report.violations) + res.explanation)
    if res.explanation:
        return res
    if res.status == Status.INFEASIBLE:
        from .explain import explain  # MILP re-solves: imported only when needed

        reasons = tuple(explain(ci, time_limit_s=explain_s)) or (
            "the solver proved that no plan meets every constraint; solvers.explain found "
            f"no single fleet-level reason within {explain_s:g} s",)
        return replace(res, explanation=reasons)
    if res.status == Status.NO_SOLUTION:
        return replace(res, explanation=(f"{res.method} found no plan before its time limit",))
    return replace(res, explanation=(f"{res.method} failed (status {res.status.value})",))
