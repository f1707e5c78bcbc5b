"""HiGHS MILP through scipy, with the incumbent kept at the time limit and a warm start.

scipy.optimize.milp returns HiGHS's incumbent when the time limit hits (OR-Tools' HiGHS
wrapper returns nothing then) but takes no starting solution. A start matters to AGH's
MILP moves: HiGHS's sub-MIP heuristics (RINS) work around the incumbent, and at (30,30,30)
a pool MILP started from AGH's plan reaches that pool's optimum in about half the time.
scipy ships HiGHS's own Python binding (`scipy.optimize._highspy._core`), which has
`setSolution`; it is private, so it is used only when it imports and has what is needed,
and every other case goes through the public `milp` (same solver, same options).
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from ._typing import FloatArray

try:  # HiGHS's binding as vendored by scipy (>= 1.15): private, hence optional
    from scipy.optimize._highspy import _core as _hc
    _DIRECT = all(hasattr(_hc, n) for n in ("_Highs", "HighsLp", "HighsVarType", "MatrixFormat")) \
        and hasattr(_hc._Highs, "setSolution")
except Exception:  # pragma: no cover - depends on the scipy build
    _hc, _DIRECT = None, False


@contextlib.contextmanager
def quiet_native_stdout() -> Iterator[None]:
    """Native solvers print debug lines to fd 1; keep stdout clean for CLI output and JSON."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@dataclass(frozen=True)
class MilpOutcome:
    status: str               # optimal | feasible | infeasible | no_solution | error
    x: FloatArray | None      # best solution found (None: none)
    objective: float          # of x (nan without one)
    bound: float              # best proven lower bound (nan if none)
    message: str = ""

    @property
    def has_solution(self) -> bool:
        return self.x is not None


def parse_params(params: str) -> dict[str, object]:
    """HiGHS options from "name = value" lines (the OR-Tools parameter string format)."""
    out: dict[str, object] = {}
    for line in params.replace(";", "\n").splitlines():
        if "=" not in line:
            continue
        k, v = (s.strip() for s in line.split("=", 1))
        low = v.lower()
        if low in ("true", "false"):
            out[k] = low == "true"
        else:
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


def solve_milp_arrays(c: FloatArray, a: sp.spmatrix, row_lo: FloatArray, row_hi: FloatArray,
                      var_lo: FloatArray, var_hi: FloatArray, integer: np.ndarray, *,
                      time_limit_s: float, rel_gap: float = 1e-4,
                      start: tuple[np.ndarray, FloatArray] | None = None,
                      options: dict[str, object] | None = None) -> MilpOutcome:
    """min c.v s.t. row_lo <= A v <= row_hi, var_lo <= v <= var_hi, v[integer] integral.

    `start` = (indices, values) of a (partial) starting solution: HiGHS completes and checks
    it; an infeasible start is ignored by HiGHS, so a stale one costs nothing but its check.
    """
    opts = {k: v for k, v in (options or {}).items() if k not in ("log_to_console", "output_flag")}
    if _DIRECT and start is not None:
        try:
            return _solve_direct(c, a, row_lo, row_hi, var_lo, var_hi, integer, time_limit_s,
                                 rel_gap, start, opts)
        except Exception:  # pragma: no cover - a binding that changed shape: use the public API
            pass
    with warnings.catch_warnings(), quiet_native_stdout():
        warnings.simplefilter("ignore", RuntimeWarning)  # "options passed to HiGHS verbatim"
        res = milp(np.asarray(c, dtype=np.float64), integrality=np.asarray(integer, dtype=np.int64),
                   bounds=Bounds(var_lo, var_hi), constraints=LinearConstraint(a, row_lo, row_hi),
                   options={"time_limit": max(float(time_limit_s), 1e-3), "mip_rel_gap": rel_gap,
                            **opts})
    raw = getattr(res, "mip_dual_bound", None)
    bound = float(raw) if raw is not None and res.x is not None else math.nan
    if res.status == 0:
        return MilpOutcome("optimal", res.x, float(res.fun), bound, res.message)
    if res.x is not None:
        return MilpOutcome("feasible", res.x, float(res.fun), bound, res.message)
    if res.status == 2:
        return MilpOutcome("infeasible", None, math.nan, math.nan, res.message)
    if res.status == 1:
        return MilpOutcome("no_solution", None, math.nan, math.nan, res.message)
    return MilpOutcome("error", None, math.nan, math.nan, res.message)


def _solve_direct(c, a, row_lo, row_hi, var_lo, var_hi, integer, time_limit_s, rel_gap,
                  start, opts) -> MilpOutcome:
    h = _hc
    a = sp.csc_matrix(a)
    n, m = a.shape[1], a.shape[0]
    lp = h.HighsLp()
    lp.num_col_, lp.num_row_ = n, m
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, m
    lp.a_matrix_.format_ = h.MatrixFormat.kColwise
    lp.col_cost_ = np.asarray(c, dtype=np.float64)
    lp.col_lower_ = np.asarray(var_lo, dtype=np.float64)
    lp.col_upper_ = np.asarray(var_hi, dtype=np.float64)
    lp.row_lower_ = np.asarray(row_lo, dtype=np.float64)
    lp.row_upper_ = np.asarray(row_hi, dtype=np.float64)
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data.astype(np.float64)
    kinds = (h.HighsVarType.kContinuous, h.HighsVarType.kInteger)
    lp.integrality_ = [kinds[int(b)] for b in np.asarray(integer, dtype=bool)]
    hs = h._Highs()
    hs.setOptionValue("output_flag", False)
    hs.setOptionValue("time_limit", max(float(time_limit_s), 1e-3))
    hs.setOptionValue("mip_rel_gap", float(rel_gap))
    for k, v in opts.items():
        hs.setOptionValue(k, v)
    hs.passModel(lp)
    idx, val = start
    hs.setSolution(len(idx), np.asarray(idx, dtype=np.int32), np.asarray(val, dtype=np.float64))
    with quiet_native_stdout():  # HiGHS 1.12 prints debug lines to fd 1
        hs.run()
    ms = hs.getModelStatus()
    info = hs.getInfo()
    has = int(info.primal_solution_status) == int(h.SolutionStatus.kSolutionStatusFeasible) \
        and info.objective_function_value < h.kHighsInf
    x = np.array(hs.getSolution().col_value) if has else None
    obj = float(info.objective_function_value) if has else math.nan
    bound = float(info.mip_dual_bound)
    bound = bound if math.isfinite(bound) and abs(bound) < h.kHighsInf else math.nan
    msg = hs.modelStatusToString(ms)
    if ms == h.HighsModelStatus.kOptimal and has:
        return MilpOutcome("optimal", x, obj, bound, msg)
    if has:
        return MilpOutcome("feasible", x, obj, bound, msg)
    if ms == h.HighsModelStatus.kInfeasible:
        return MilpOutcome("infeasible", None, math.nan, math.nan, msg)
    if ms in (h.HighsModelStatus.kTimeLimit, h.HighsModelStatus.kIterationLimit,
              h.HighsModelStatus.kSolutionLimit):
        return MilpOutcome("no_solution", None, math.nan, bound, msg)
    return MilpOutcome("error", None, math.nan, math.nan, msg)
