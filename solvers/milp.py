"""Exact MILP of the allocation model: HiGHS through scipy (default) or SCIP through OR-Tools.

The model is filled straight from the sparse formulation (no Python loop per variable),
takes an optional warm start, honours a time limit and returns the proven bound.

HiGHS goes through scipy (solvers.highs), not OR-Tools: OR-Tools' HiGHS wrapper returns no
solution at all when the time limit hits (the incumbent is lost) and crashes HiGHS when
given a hint. Through scipy the incumbent comes back with status `feasible`, and the warm
start is handed to HiGHS as a starting solution. `solve_formulation` (OR-Tools) stays for
the LP solves (glop) of the baselines and explanations and for the SCIP backend.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance
from .formulation import Formulation, build
from .highs import parse_params, quiet_native_stdout, solve_milp_arrays
from .options import SolveOptions
from .result import SolveResult, Status, failure, objective

BACKENDS = ("highs", "scip")
MIP_REL_GAP = 1e-4  # HiGHS's default relative gap (what OR-Tools used too)
__all__ = ["BACKENDS", "quiet_native_stdout", "solve_formulation", "solve_milp"]


def _status(name: str, has_solution: bool) -> Status:
    if name == "OPTIMAL":
        return Status.OPTIMAL
    if name == "FEASIBLE" or has_solution:
        return Status.FEASIBLE
    if name == "INFEASIBLE":
        return Status.INFEASIBLE
    if name in ("NOT_SOLVED", "CANCELLED_BY_USER", "UNKNOWN_STATUS"):
        return Status.NO_SOLUTION
    return Status.ERROR


def solve_formulation(f: Formulation, *, integral: bool = True, backend: str = "highs",
                      time_limit_s: float = 60.0, hint: FloatArray | None = None,
                      params: str = "") -> tuple[str, bool, FloatArray | None, float, float]:
    """Solve min c.v s.t. rows; returns (status name, has_solution, values, objective, bound)."""
    from ortools.linear_solver.python import model_builder_helper as mbh

    model = mbh.ModelBuilderHelper()
    model.fill_model_from_sparse_data(f.var_lo, f.var_hi, f.c, f.row_lo, f.row_hi, f.A)
    if integral:
        for k in np.nonzero(f.integer)[0]:
            model.set_var_integrality(int(k), True)
    if hint is not None:
        for k in np.nonzero(hint)[0]:
            model.add_hint(int(k), float(hint[k]))
    solver = mbh.ModelSolverHelper(backend if integral else "glop")
    if not solver.solver_is_supported():
        raise RuntimeError(f"OR-Tools backend {backend!r} is not available in this build")
    solver.set_time_limit_in_seconds(float(time_limit_s))
    solver.enable_output(False)
    if backend == "highs" and integral and "log_to_console" not in params:
        params = "log_to_console = false\n" + params  # the banner otherwise goes to stdout
    if params:
        solver.set_solver_specific_parameters(params)
    with quiet_native_stdout():
        solver.solve(model)
    name = solver.status().name
    has = solver.has_solution()
    values = np.asarray(solver.variable_values()) if has else None
    obj = solver.objective_value() + f.offset if has else math.nan
    bound = solver.best_objective_bound() + f.offset if integral else obj
    return name, has, values, obj, bound


def hint_vector(f: Formulation, replicas: IntArray, x: FloatArray, ci: CompiledInstance,
                prev_replicas: IntArray | None = None) -> FloatArray:
    v = np.zeros(f.n_vars)
    v[f.r] = replicas
    v[f.x] = x
    v[f.u] = np.clip(1 - np.bincount(ci.route_qt, weights=x, minlength=ci.n_qt), 0, None)
    if f.s.stop > f.s.start and prev_replicas is not None:
        v[f.s] = np.abs(replicas - prev_replicas) * ci.cand_ngpu
    return v


def solve_milp(ci: CompiledInstance, *, time_limit_s: float = 60.0, backend: str = "highs",
               warm_start: tuple[IntArray, FloatArray] | None = None,
               prev_replicas: IntArray | None = None, switch_cost_per_gpu: float = 0.0,
               prev_orphan_gpus: float = 0.0, params: str = "") -> SolveResult:
    """Optimal plan (or the best found by the deadline) with its proven lower bound.

    Status: `optimal` (proven within the relative gap 1e-4), `feasible` (the limit hit with
    an incumbent, returned with the best bound), `no_solution` (the limit hit first),
    `infeasible`. `params` are "name = value" lines of solver options."""
    t0 = time.perf_counter()
    if backend not in BACKENDS:
        raise ValueError(f"unknown MILP backend {backend!r} (one of {BACKENDS})")
    if ci.n_cand == 0:
        return failure(ci, Status.INFEASIBLE, "milp", explanation=("no feasible route at all",))
    f = build(ci, prev_replicas, switch_cost_per_gpu, prev_orphan_gpus)
    hint = hint_vector(f, *warm_start, ci, prev_replicas) if warm_start is not None else None
    if backend == "highs":
        out = solve_milp_arrays(f.c, f.A, f.row_lo, f.row_hi, f.var_lo, f.var_hi, f.integer,
                                time_limit_s=max(time_limit_s - (time.perf_counter() - t0), 1e-3),
                                rel_gap=MIP_REL_GAP, options=parse_params(params),
                                start=(np.arange(f.n_vars), hint) if hint is not None else None)
        status, name, v = Status(out.status), out.message, out.x
        obj, bound = out.objective + f.offset, out.bound + f.offset
    else:
        # OR-Tools' model builder crashes HiGHS when given a hint (seen with 9.15); SCIP takes it
        name, has, v, obj, bound = solve_formulation(
            f, backend=backend, time_limit_s=time_limit_s, hint=hint, params=params)
        status = _status(name, has)
    secs = time.perf_counter() - t0
    stats: dict[str, Any] = {"backend": backend, "solver_status": name, "rows": f.A.shape[0],
                             "vars": f.n_vars, "int_vars": int(f.integer.sum())}
    # a warm start HiGHS/SCIP did not improve on stays the incumbent
    if hint is not None and _feasible(f, hint) and (v is None or f.c @ hint + f.offset < obj - 1e-9):
        v, status = hint, (Status.FEASIBLE if status != Status.OPTIMAL else status)
        stats["incumbent"] = "warm_start"
    if v is None:  # a bound of 0 before any solution is HiGHS saying "no bound yet"
        return failure(ci, status, "milp", seconds=secs,
                       bound=bound if math.isfinite(bound) and bound > 0 else None, **stats)
    replicas = np.rint(v[f.r]).astype(np.int64)
    x = np.clip(v[f.x], 0.0, 1.0)
    x = _trim_to_capacity(ci, replicas, x)
    stats["switch_cost"] = float(v[f.s] @ f.c[f.s] + f.offset) if f.s.stop > f.s.start else 0.0
    return SolveResult(status=status, method="milp", replicas=replicas, x=x,
                       objective=objective(ci, replicas, x),
                       bound=bound if math.isfinite(bound) else None, seconds=secs, stats=stats)


def _feasible(f: Formulation, v: FloatArray, tol: float = 1e-6) -> bool:
    """Whether a full variable vector satisfies every row and bound of the formulation."""
    act = f.A @ v
    return bool(np.all(act >= f.row_lo - tol) and np.all(act <= f.row_hi + tol)
                and np.all(v >= f.var_lo - tol) and np.all(v <= f.var_hi + tol))


def _trim_to_capacity(ci: CompiledInstance, replicas: IntArray, x: FloatArray) -> FloatArray:
    """Undo solver round-off: scale fractions so no capacity or served-sum exceeds its limit."""
    load = np.bincount(ci.route_cand, weights=ci.load_coef * x, minlength=ci.n_cand)
    cap = ci.max_utilization * replicas
    scale = np.where(load > cap, cap / np.maximum(load, 1e-300), 1.0)
    x = x * scale[ci.route_cand]
    served = np.bincount(ci.route_qt, weights=x, minlength=ci.n_qt)
    over = np.divide(1.0, served, out=np.ones_like(served), where=served > 1.0)
    x = x * over[ci.route_qt]
    return np.where(replicas[ci.route_cand] > 0, x, 0.0)


def backend(ci: CompiledInstance, options: SolveOptions) -> SolveResult:
    """The registry's entry: the exact MILP, 60 s unless `options.deadline_s` says otherwise."""
    m = options.milp
    return solve_milp(ci, time_limit_s=options.limit(60.0), backend=m.backend, warm_start=options.warm_start,
                      prev_replicas=options.prev_replicas, switch_cost_per_gpu=options.switch_cost_per_gpu,
                      prev_orphan_gpus=m.prev_orphan_gpus, params=m.params)
