"""CP-SAT encoding of the allocation model: fractions on an integer grid, multi-worker, timed.

CP-SAT needs integers, so x_r = k_r / G with k_r in 0..G (G = `grid`, default 1000) and
every real coefficient is scaled to an integer **conservatively**: capacity and accuracy
coefficients are rounded up and their right-hand sides down, so any CP-SAT solution is
feasible in the continuous model of the spec (the validator confirms it).

Error bound against the continuous model. The grid restricts the plan space, so CP-SAT's
optimum is an upper bound on the continuous optimum, never below it. It exceeds it by at
most what it costs to serve the rounding residue: rounding a continuous optimum's fractions
up to the grid adds at most (1/G) * sum_{r on d} lam_i/mu_r replica-equivalents of load to
deployment d, i.e. at most ceil(n_d * max_r(lam_i/mu_r) / (G * max_utilization)) extra
replicas of d, where n_d is the number of routes d carries (plus the relative
tightening of the scaled capacity coefficients, at most 1e-6 x (largest/smallest load
coefficient on d)). With G = 1000 that is usually no extra replica at
all. Because CP-SAT's own bound belongs to the gridded model, the reported `bound` is the
continuous LP relaxation (a valid lower bound); CP-SAT's bound is kept in stats.

Workers default to 8 even on small machines: CP-SAT's portfolio only runs its LP-based
subsolvers with enough workers, and they time-share the cores. Measured here, CP-SAT is
far weaker than the MILP on this model (most variables are continuous fractions), so the
controller audits with the MILP; CP-SAT stays as the second exact backend.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance
from .formulation import build, replica_upper_bounds
from .milp import _trim_to_capacity, quiet_native_stdout, solve_formulation
from .options import SolveOptions
from .result import SolveResult, Status, failure, objective

_STATUS = {"OPTIMAL": Status.OPTIMAL, "FEASIBLE": Status.FEASIBLE, "INFEASIBLE": Status.INFEASIBLE,
           "UNKNOWN": Status.NO_SOLUTION, "MODEL_INVALID": Status.ERROR}
_COEF_MAX = 10**6  # largest scaled capacity coefficient (smaller numbers propagate better)


def lp_bound(ci: CompiledInstance, time_limit_s: float = 30.0) -> float | None:
    """Continuous LP relaxation optimum: a valid lower bound for the spec model."""
    name, has, _v, obj, _b = solve_formulation(build(ci), integral=False, time_limit_s=time_limit_s)
    return obj if has and name == "OPTIMAL" else None


def solve_cpsat(ci: CompiledInstance, *, time_limit_s: float = 60.0, grid: int = 1000,
                workers: int = 8, warm_start: tuple[IntArray, FloatArray] | None = None,
                prev_replicas: IntArray | None = None, switch_cost_per_gpu: float = 0.0,
                with_lp_bound: bool = True) -> SolveResult:
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    if ci.n_cand == 0:
        return failure(ci, Status.INFEASIBLE, "cpsat", explanation=("no feasible route at all",))
    G = int(grid)
    m = cp_model.CpModel()
    ub = replica_upper_bounds(ci)
    r = [m.new_int_var(0, int(ub[d]), f"r{d}") for d in range(ci.n_cand)]
    k = [m.new_int_var(0, G, f"k{j}") for j in range(ci.n_routes)]
    w = [m.new_int_var(0, int(math.floor(ci.max_unserved[i] * G + 1e-9)), f"w{i}")
         for i in range(ci.n_qt)]

    # served (4.2): sum_r k_r + w_i = G
    for i in range(ci.n_qt):
        rs = ci.routes_of(i)
        m.add(sum(k[j] for j in rs) + w[i] == G)
    # capacity (4.3): sum ceil(S lam/mu) k_r <= floor(S U G) r_d, scale S per deployment
    lc = ci.load_coef
    for d in range(ci.n_cand):
        rs = np.nonzero(ci.route_cand == d)[0]
        scale = _COEF_MAX / max(float(lc[rs].max()) * G, ci.max_utilization * G)
        coefs = np.ceil(lc[rs] * scale).astype(np.int64)
        cap = int(math.floor(ci.max_utilization * G * scale))
        m.add(cp_model.LinearExpr.weighted_sum([k[j] for j in rs], coefs.tolist())
              <= cap * r[d])
    # accuracy (4.4): sum ceil((e_r - max_error_i) * 1e8) k_r <= 0
    for i in range(ci.n_qt):
        rs = ci.routes_of(i)
        coefs = np.ceil((ci.error[rs] - ci.max_error[i]) * 1e8).astype(np.int64)
        if np.any(coefs > 0):
            m.add(cp_model.LinearExpr.weighted_sum([k[j] for j in rs], coefs.tolist()) <= 0)
    # budget (4.5) in 1e-4 $/h, rounded against the plan
    cost_i = np.ceil(ci.cand_cost * 1e4).astype(np.int64)
    m.add(cp_model.LinearExpr.weighted_sum(r, cost_i.tolist()) <= int(math.floor(ci.budget * 1e4 + 1e-6)))
    # inventory (4.6)
    for t in np.nonzero(np.isfinite(ci.gpu_count))[0]:
        ds = np.nonzero(ci.cand_gpu == t)[0]
        if len(ds):
            m.add(cp_model.LinearExpr.weighted_sum([r[d] for d in ds], ci.cand_ngpu[ds].tolist())
                  <= int(ci.gpu_count[t]))
    # objective (5) in 1e-4 $/h (+ section 6 switch cost)
    obj_terms, obj_coefs = list(r), np.rint(ci.cand_cost * 1e4).astype(np.int64).tolist()
    pen = np.rint(3600 * ci.lam * ci.unserved_penalty * 1e4 / G).astype(np.int64)
    obj_terms += w
    obj_coefs += pen.tolist()
    latc = np.rint(3600 * ci.lam[ci.route_qt] * ci.latency_penalty[ci.route_qt] * ci.latency
                   * 1e4 / G).astype(np.int64)
    for j in np.nonzero(latc)[0]:
        obj_terms.append(k[j])
        obj_coefs.append(int(latc[j]))
    if prev_replicas is not None and switch_cost_per_gpu > 0:
        for d in range(ci.n_cand):
            s = m.new_int_var(0, int(max(ub[d], prev_replicas[d])), f"s{d}")
            m.add(s >= r[d] - int(prev_replicas[d]))
            m.add(s >= int(prev_replicas[d]) - r[d])
            obj_terms.append(s)
            obj_coefs.append(int(round(switch_cost_per_gpu * ci.cand_ngpu[d] * 1e4)))
    m.minimize(cp_model.LinearExpr.weighted_sum(obj_terms, obj_coefs))

    if warm_start is not None:
        rep0, x0 = warm_start
        for d in range(ci.n_cand):
            m.add_hint(r[d], int(min(rep0[d], ub[d])))
        for j in range(ci.n_routes):
            m.add_hint(k[j], int(round(float(x0[j]) * G)))

    build_s = time.perf_counter() - t0
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, float(time_limit_s) - build_s)
    solver.parameters.num_workers = int(workers)
    with quiet_native_stdout():
        code = solver.solve(m)
    name = solver.status_name(code)
    status = _STATUS.get(name, Status.ERROR)
    stats = {"grid": G, "workers": workers, "build_seconds": build_s, "solver_status": name,
             "grid_bound": solver.best_objective_bound / 1e4 if status in (Status.OPTIMAL, Status.FEASIBLE) else None}
    # CP-SAT's OPTIMAL is optimal on the grid, not for the continuous model
    if status == Status.OPTIMAL:
        status = Status.FEASIBLE
    bound = lp_bound(ci) if with_lp_bound else None
    secs = time.perf_counter() - t0
    if status not in (Status.FEASIBLE,):
        return failure(ci, status, "cpsat", seconds=secs, bound=bound, **stats)
    replicas = np.array([solver.value(v) for v in r], dtype=np.int64)
    x = np.array([solver.value(v) for v in k], dtype=np.float64) / G
    x = _trim_to_capacity(ci, replicas, x)
    return SolveResult(status=status, method="cpsat", replicas=replicas, x=x,
                       objective=objective(ci, replicas, x), bound=bound, seconds=secs,
                       stats=stats)


def backend(ci: CompiledInstance, options: SolveOptions) -> SolveResult:
    """The registry's entry: CP-SAT on a fraction grid, 60 s unless `options.deadline_s` says otherwise."""
    c = options.cpsat
    return solve_cpsat(ci, time_limit_s=options.limit(60.0), grid=c.grid, workers=c.workers,
                       warm_start=options.warm_start, prev_replicas=options.prev_replicas,
                       switch_cost_per_gpu=options.switch_cost_per_gpu, with_lp_bound=c.with_lp_bound)
