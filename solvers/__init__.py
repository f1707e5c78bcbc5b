"""llmfleet solvers: pure functions of data (no Kafka, no I/O).

    compile_instance(spec_dict) -> CompiledInstance       # arrays, once per catalog/window
    solve(ci, method, options) -> SolveResult            # one registry, one signature
    check_result / check_plan -> Report                  # the one validator
    to_plan(ci, result) -> spec plan dict                # decode

Every backend is `backend(ci, options: SolveOptions) -> SolveResult` (solvers/options.py);
the registry below lists them in preference order (solvers/methods.py), and the CLI, the
schemas' `Method` and the planner take their lists from it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any

from .compile import CompiledInstance, compile_instance
from .methods import EXACT, METHODS
from .options import AghOptions, CpsatOptions, MilpOptions, SolveOptions
from .plan_codec import from_plan, to_plan
from .result import SOLUTION_PRESENT, SolveResult, Status, objective
from .validate import Report, Violation, check_plan, check_result


@dataclass(frozen=True)
class Backend:
    name: str
    target: str          # "module:function" of a `(ci, SolveOptions)` function, imported on first use
    exact: bool
    gives_bound: bool
    description: str


_TARGETS = {
    "gh": ("solvers.greedy:backend", "Greedy Heuristic (single pass)"),
    "agh": ("solvers.adaptive:backend", "Adaptive Greedy Heuristic (multi-start, local search, consolidation)"),
    "milp": ("solvers.milp:backend", "exact MILP (HiGHS, or OR-Tools SCIP/CBC)"),
    "cpsat": ("solvers.cpsat:backend", "exact CP-SAT on a fraction grid"),
    "lpr": ("solvers.baselines:backend_lpr", "baseline: LP relaxation rounded up"),
    "dvr": ("solvers.baselines:backend_dvr", "baseline: decoupled selection, routing"),
    "hf": ("solvers.baselines:backend_hf", "baseline: homogeneous fleet"),
}
#: the registry, in preference order (GH never imports OR-Tools: modules load on first use)
BACKENDS: dict[str, Backend] = {
    m: Backend(m, _TARGETS[m][0], m in EXACT, m in EXACT, _TARGETS[m][1]) for m in METHODS}


class BackendUnavailable(RuntimeError):
    """The method exists in the registry but its module is not installed/implemented."""


def get_backend(method: str) -> Any:
    if method not in BACKENDS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(BACKENDS)}")
    mod, fn = BACKENDS[method].target.split(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailable(f"method {method!r} is not available in this build ({exc})") from exc


def solve(ci: CompiledInstance, method: str, options: SolveOptions | None = None, **changes: Any) -> SolveResult:
    """Run one backend by name with one options object; `changes` replace its fields
    (`solve(ci, "agh", deadline_s=0.3, seed=1)` is `solve(ci, "agh", SolveOptions(deadline_s=0.3,
    seed=1))`). The result passes the validity gate (solvers.gate): never an invalid plan
    labelled feasible/optimal, never a failure without a reason."""
    from .gate import gate

    opts = replace(options or SolveOptions(), **changes) if changes else (options or SolveOptions())
    return gate(ci, get_backend(method)(ci, opts))


__all__ = ["AghOptions", "BACKENDS", "Backend", "CpsatOptions", "METHODS", "MilpOptions", "SolveOptions", "BackendUnavailable", "CompiledInstance", "Report",
           "SOLUTION_PRESENT", "SolveResult", "Status", "Violation", "check_plan", "check_result",
           "compile_instance", "from_plan", "get_backend", "objective", "solve", "to_plan"]
