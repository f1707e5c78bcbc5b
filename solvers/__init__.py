"""llmfleet solvers: pure functions of data (no Kafka, no I/O).

    compile_instance(spec_dict) -> CompiledInstance      # arrays, once per catalog/window
    solve(ci, method, **options) -> SolveResult          # one signature for every backend
    check_result / check_plan -> Report                  # the one validator
    to_plan(ci, result) -> spec plan dict                # decode
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .compile import CompiledInstance, compile_instance
from .plan_codec import from_plan, to_plan
from .result import SOLUTION_PRESENT, SolveResult, Status, objective
from .validate import Report, Violation, check_plan, check_result


@dataclass(frozen=True)
class Backend:
    name: str
    target: str          # "module:function", imported on first use (GH never imports ortools)
    exact: bool
    gives_bound: bool
    description: str


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("gh", "solvers.greedy:solve_gh", False, False, "Greedy Heuristic (single pass)"),
    Backend("agh", "solvers.adaptive:solve_agh", False, False,
            "Adaptive Greedy Heuristic (multi-start, local search, consolidation)"),
    Backend("milp", "solvers.milp:solve_milp", True, True, "exact MILP (OR-Tools, HiGHS/SCIP)"),
    Backend("cpsat", "solvers.cpsat:solve_cpsat", True, True, "exact CP-SAT on a fraction grid"),
    Backend("lpr", "solvers.baselines:solve_lpr", False, False, "baseline: LP relaxation rounded up"),
    Backend("dvr", "solvers.baselines:solve_dvr", False, False, "baseline: decoupled selection, routing"),
    Backend("hf", "solvers.baselines:solve_hf", False, False, "baseline: homogeneous fleet"),
)}


class BackendUnavailable(RuntimeError):
    """The method exists in the registry but its module is not installed/implemented."""


def get_backend(method: str) -> Any:
    if method not in BACKENDS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(BACKENDS)}")
    mod, fn = BACKENDS[method].target.split(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailable(f"method {method!r} is not available in this build ({exc})") from exc


def solve(ci: CompiledInstance, method: str, **options: Any) -> SolveResult:
    """Run one backend by name; options are passed through (time_limit_s, deadline_s, seed...).
    The result passes the validity gate (solvers.gate): never an invalid plan labelled
    feasible/optimal, never a failure without a reason."""
    from .gate import gate

    return gate(ci, get_backend(method)(ci, **options))


__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "CompiledInstance", "Report",
           "SOLUTION_PRESENT", "SolveResult", "Status", "Violation", "check_plan", "check_result",
           "compile_instance", "from_plan", "get_backend", "objective", "solve", "to_plan"]
