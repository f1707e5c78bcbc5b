"""Steady-state fluid LPs of the gate-and-route model (arXiv 2602.02987, Eqs. 40, 42, 49).

All variables are per-replica long-run averages: x_i (prefill occupancy), y_{m,i} / y_{s,i}
(decode occupancy on mixed / solo replicas), q_{p,i} / q_{d,i} (queue mass). The optimum is
the fluid upper bound on reward per replica-second and the static plan of the policies.

The LP optimum is not unique (mu_s / mu_m is class-independent, so the class split of decode
occupancy between mixed and solo replicas can be traded), so every solve is lexicographic:
  1. the primary objective;
  2. minimise the decode backlog sum q_d (Prop. 3.2 says it is zero when solo is faster);
  3. minimise the L1 deviation from the *proportional split*, where every class sends the
     same share of its decode work to solo replicas. That split always exists at the same
     primary value and is what the class-blind greedy router realises, so p_{s,i} of the
     SLI router is well defined and the same for all classes unless an SLI forbids it.
OR-Tools GLOP solves each stage; later stages pin earlier objectives to a relative 1e-9.
A tie-break stage that fails numerically keeps the previous stage's (still optimal) solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from solvers.gate_route.instance import GateRouteInstance

__all__ = [
    "FluidSolution",
    "SliTargets",
    "solve_bundled_lp",
    "solve_separate_lp",
    "solve_sli_lp",
    "average_tpot",
]

_PIN_REL = 1e-9


@dataclass(frozen=True)
class SliTargets:
    """SLI constraints of Eq. (49): a hard target (None = off) and/or a linear penalty weight.

    prefill_fairness: eta1 >= max_{i,j} (x_i - x_j); decode_fairness: eta2 >= max (y_si - y_sj);
    tpot_s: eta3 >= average TPOT (Eq. 47). Penalties subtract weight * the same quantity.
    no_decode_backlog forces q_d = 0, the standing assumption of Theorem 5.1.
    """

    prefill_fairness: float | None = None
    decode_fairness: float | None = None
    tpot_s: float | None = None
    prefill_fairness_penalty: float = 0.0
    decode_fairness_penalty: float = 0.0
    tpot_penalty: float = 0.0
    no_decode_backlog: bool = True


@dataclass(frozen=True, eq=False)
class FluidSolution:
    """One optimum of a fluid LP (per-replica quantities; arrays are read-only)."""

    kind: str
    status: str
    objective: float
    reward: float
    x: np.ndarray
    y_m: np.ndarray
    y_s: np.ndarray
    q_p: np.ndarray
    q_d: np.ndarray
    n_replicas: int
    mixed_replicas: int
    tpot_s: float

    @property
    def ok(self) -> bool:
        return self.status == "optimal"

    @property
    def mixed_fraction(self) -> float:
        return float(self.x.sum())

    def prefill_rate(self, inst: GateRouteInstance) -> np.ndarray:
        """Prefill completions per replica-second, mu_p x."""
        return inst.mu_p * self.x

    def decode_rate(self, inst: GateRouteInstance) -> np.ndarray:
        """Decode completions per replica-second, mu_m y_m + mu_s y_s."""
        return inst.mu_m * self.y_m + inst.mu_s * self.y_s

    def solo_probability(self, inst: GateRouteInstance) -> np.ndarray:
        """p_{s,i}: share of class-i decode completions on solo replicas (1 when idle)."""
        solo = inst.mu_s * self.y_s
        tot = self.decode_rate(inst)
        return np.where(tot > 1e-12, solo / np.maximum(tot, 1e-300), 1.0)


def average_tpot(inst: GateRouteInstance, mixed_fraction: float) -> float:
    """Average time per output token of Eq. (47) when a fraction X of replicas prefill."""
    b = inst.slots
    num = inst.tau * (b - 1) * mixed_fraction + (1.0 / inst.gamma) * b * (1.0 - mixed_fraction)
    den = (b - 1) * mixed_fraction + b * (1.0 - mixed_fraction)
    return float(num / den)


def mixed_replicas_for(mixed_fraction: float, n_replicas: int) -> int:
    """M = ceil(n * sum x*), guarded against float noise just above an integer."""
    return int(min(n_replicas, math.ceil(n_replicas * mixed_fraction - 1e-7)))




def _status_name(solver, code: int) -> str:
    from ortools.linear_solver import pywraplp

    return {
        pywraplp.Solver.OPTIMAL: "optimal",
        pywraplp.Solver.FEASIBLE: "feasible",
        pywraplp.Solver.INFEASIBLE: "infeasible",
        pywraplp.Solver.UNBOUNDED: "unbounded",
        pywraplp.Solver.ABNORMAL: "error",
        pywraplp.Solver.NOT_SOLVED: "not_solved",
    }.get(code, "error")


class _Model:
    """The common feasible set of (40)/(42)/(49) in GLOP, plus helpers for lexicographic stages."""

    def __init__(self, inst: GateRouteInstance, mixed_fraction: float | None = None):
        from ortools.linear_solver import pywraplp

        self.inst = inst
        s = pywraplp.Solver.CreateSolver("GLOP")
        if s is None:  # pragma: no cover - GLOP ships with every OR-Tools wheel
            raise RuntimeError("OR-Tools GLOP is unavailable")
        self.s = s
        inf = s.infinity()
        n = inst.n_classes
        b = inst.slots
        self.x = [s.NumVar(0.0, inf, f"x{i}") for i in range(n)]
        self.ym = [s.NumVar(0.0, inf, f"ym{i}") for i in range(n)]
        self.ys = [s.NumVar(0.0, inf, f"ys{i}") for i in range(n)]
        self.qp = [s.NumVar(0.0, inf, f"qp{i}") for i in range(n)]
        self.qd = [s.NumVar(0.0, inf, f"qd{i}") for i in range(n)]
        mu_p, mu_m, mu_s = inst.mu_p, inst.mu_m, inst.mu_s
        lam, theta = inst.lam, inst.theta
        sx = sum(self.x)
        if mixed_fraction is None:
            s.Add(sx <= 1.0)
        else:
            s.Add(sx == float(mixed_fraction))
        s.Add(sum(self.ym) <= (b - 1) * sx)
        s.Add(sum(self.ys) <= b * (1.0 - sx))
        for i in range(n):
            s.Add(lam[i] - theta[i] * self.qp[i] == mu_p[i] * self.x[i])
            s.Add(
                mu_p[i] * self.x[i] - theta[i] * self.qd[i]
                == mu_m[i] * self.ym[i] + mu_s[i] * self.ys[i]
            )
            if theta[i] == 0.0:
                # Without impatience, queues are unconstrained by flow; keep them bounded.
                self.qp[i].SetUb(0.0)
                self.qd[i].SetUb(0.0)
        self.last: dict[str, np.ndarray] = {}

    def revenue_terms(self, kind: str) -> dict:
        inst = self.inst
        terms: dict = {}
        if kind == "separate":
            for i in range(inst.n_classes):
                terms[self.x[i]] = float(inst.prefill_price[i] * inst.mu_p[i])
                terms[self.ym[i]] = float(inst.decode_price[i] * inst.mu_m[i])
                terms[self.ys[i]] = float(inst.decode_price[i] * inst.mu_s[i])
        else:
            w = inst.w
            for i in range(inst.n_classes):
                terms[self.ym[i]] = float(w[i] * inst.mu_m[i])
                terms[self.ys[i]] = float(w[i] * inst.mu_s[i])
        return terms

    def optimise(self, terms: dict, maximise: bool) -> tuple[str, float]:
        """Solve with `terms` as objective, after pinning every earlier stage's optimum."""
        s = self.s
        obj = s.Objective()
        obj.Clear()
        for var, coef in terms.items():
            obj.SetCoefficient(var, obj.GetCoefficient(var) + coef)
        if maximise:
            obj.SetMaximization()
        else:
            obj.SetMinimization()
        code = s.Solve()
        status = _status_name(s, code)
        if status != "optimal":
            return status, float("nan")
        value = obj.Value()
        # Snapshot before the pin: adding a constraint invalidates the solver's solution.
        self.last = {
            name: np.array([max(0.0, v.solution_value()) for v in getattr(self, name)])
            for name in ("x", "ym", "ys", "qp", "qd")
        }
        # Pin this stage for the next one.
        tol = _PIN_REL * max(1.0, abs(value))
        expr = sum(coef * var for var, coef in terms.items())
        if maximise:
            s.Add(expr >= value - tol)
        else:
            s.Add(expr <= value + tol)
        return status, value

    def values(self, name: str) -> np.ndarray:
        return self.last[name].copy()

    def tie_break(self) -> str:
        """Stages 2 and 3: smallest decode backlog, then the proportional class split."""
        status, _ = self.optimise({v: 1.0 for v in self.qd}, maximise=False)
        if status != "optimal":
            return status
        inst = self.inst
        k = inst.speedup
        ym, ys = self.values("ym"), self.values("ys")
        work = ym.sum() + k * ys.sum()
        if work <= 1e-12:
            return "optimal"
        pbar = k * ys.sum() / work
        dev_terms = {}
        s = self.s
        for i in range(inst.n_classes):
            d = s.NumVar(0.0, s.infinity(), f"dev{i}")
            # k*y_s,i is class-i solo work in mixed-slot units; target share pbar of the class's work.
            expr = k * self.ys[i] - pbar * (self.ym[i] + k * self.ys[i])
            s.Add(d >= expr)
            s.Add(d >= -expr)
            dev_terms[d] = 1.0
        status, _ = self.optimise(dev_terms, maximise=False)
        return status

    def solution(
        self, kind: str, status: str, objective: float, n_replicas: int
    ) -> FluidSolution:
        inst = self.inst
        n = inst.n_classes
        if status != "optimal":
            nan = np.full(n, np.nan)
            arrs = [nan.copy() for _ in range(5)]
            for a in arrs:
                a.setflags(write=False)
            return FluidSolution(kind, status, float("nan"), float("nan"), *arrs, n_replicas, 0, float("nan"))
        x, ym, ys = self.values("x"), self.values("ym"), self.values("ys")
        qp, qd = self.values("qp"), self.values("qd")
        if kind == "separate":
            reward = float(
                (inst.prefill_price * inst.mu_p * x).sum()
                + (inst.decode_price * (inst.mu_m * ym + inst.mu_s * ys)).sum()
            )
        else:
            reward = float((inst.w * (inst.mu_m * ym + inst.mu_s * ys)).sum())
        for a in (x, ym, ys, qp, qd):
            a.setflags(write=False)
        xs = float(x.sum())
        return FluidSolution(
            kind=kind,
            status=status,
            objective=float(objective),
            reward=reward,
            x=x,
            y_m=ym,
            y_s=ys,
            q_p=qp,
            q_d=qd,
            n_replicas=int(n_replicas),
            mixed_replicas=mixed_replicas_for(xs, n_replicas),
            tpot_s=average_tpot(inst, xs),
        )


def _solve_revenue(inst: GateRouteInstance, kind: str, n_replicas: int) -> FluidSolution:
    m = _Model(inst)
    status, value = m.optimise(m.revenue_terms(kind), maximise=True)
    if status == "optimal":
        m.tie_break()  # secondary: on failure the primary optimum stays in m.last
    return m.solution(kind, status, value, n_replicas)


def solve_bundled_lp(inst: GateRouteInstance, n_replicas: int = 1) -> FluidSolution:
    """LP (40): revenue w_i recognised at decode completion. Optimum R* per replica-second."""
    return _solve_revenue(inst, "bundled", n_replicas)


def solve_separate_lp(inst: GateRouteInstance, n_replicas: int = 1) -> FluidSolution:
    """LP (42): c_p P_i paid at prefill completion, c_d D_i at decode completion."""
    return _solve_revenue(inst, "separate", n_replicas)


def _sli_model(inst: GateRouteInstance, sli: SliTargets, mixed_fraction: float | None):
    """Feasible set F_K of (49) with the linearised SLI constraints; returns (model, objective terms)."""
    m = _Model(inst, mixed_fraction)
    s = m.s
    terms = m.revenue_terms("bundled")
    n = inst.n_classes
    if sli.no_decode_backlog:
        for v in m.qd:
            v.SetUb(0.0)

    def spread(vars_, cap, weight, name):
        if cap is None and weight == 0.0:
            return
        t = s.NumVar(0.0, s.infinity(), name)
        for i in range(n):
            for j in range(n):
                if i != j:
                    s.Add(t >= vars_[i] - vars_[j])
        if cap is not None:
            t.SetUb(float(cap))
        if weight:
            terms[t] = terms.get(t, 0.0) - float(weight)

    spread(m.x, sli.prefill_fairness, sli.prefill_fairness_penalty, "pf_spread")
    spread(m.ys, sli.decode_fairness, sli.decode_fairness_penalty, "df_spread")
    if sli.tpot_s is not None:
        b, tau, g = inst.slots, inst.tau, inst.gamma
        sx = sum(m.x)
        # ratio <= eta3  <=>  tau(B-1)X + B(1-X)/g <= eta3 ((B-1)X + B(1-X)), denominator > 0.
        s.Add(tau * (b - 1) * sx + (b / g) * (1 - sx) <= sli.tpot_s * ((b - 1) * sx + b * (1 - sx)))
    return m, terms


def _solve_sli_fixed(inst, sli, mixed_fraction, n_replicas, tie_break):
    m, terms = _sli_model(inst, sli, mixed_fraction)
    status, value = m.optimise(terms, maximise=True)
    if status != "optimal":
        return m, status, float("nan")
    tpot_pen = sli.tpot_penalty * average_tpot(inst, mixed_fraction) if mixed_fraction is not None else 0.0
    value -= tpot_pen
    if tie_break:
        m.tie_break()  # secondary: on failure the primary optimum stays in m.last
    return m, status, value


def solve_sli_lp(
    inst: GateRouteInstance, sli: SliTargets | None = None, n_replicas: int = 1
) -> FluidSolution:
    """Program (49): bundled revenue minus SLI penalties over (40) plus SLI constraints.

    The TPOT penalty is a convex increasing ratio of X = sum x (when tau > 1/gamma) while the
    LP value is concave in X, so the penalised problem is solved by golden-section search on X
    with an LP per point; every other SLI is linear and solved directly.
    """
    sli = sli or SliTargets()
    if sli.tpot_penalty == 0.0:
        m, status, value = _solve_sli_fixed(inst, sli, None, n_replicas, tie_break=True)
        return m.solution("sli", status, value, n_replicas)

    def f(xv: float) -> float:
        _, st, val = _solve_sli_fixed(inst, sli, xv, n_replicas, tie_break=False)
        return val if st == "optimal" else -math.inf

    lo, hi = 0.0, 1.0
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b_ = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = f(a), f(b_)
    for _ in range(60):
        if fa < fb:
            lo, a, fa = a, b_, fb
            b_ = lo + g * (hi - lo)
            fb = f(b_)
        else:
            hi, b_, fb = b_, a, fa
            a = hi - g * (hi - lo)
            fa = f(a)
        if hi - lo < 1e-9:
            break
    best = a if fa >= fb else b_
    # The end points are candidates too (the maximiser may sit on the boundary).
    cands = [(f(0.0), 0.0), (f(1.0), 1.0), (max(fa, fb), best)]
    _, xbest = max(cands)
    m, status, value = _solve_sli_fixed(inst, sli, xbest, n_replicas, tie_break=True)
    return m.solution("sli", status, value, n_replicas)
