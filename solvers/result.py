"""One result type and one status vocabulary for every solver backend."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance


class Status(str, Enum):
    OPTIMAL = "optimal"          # proven optimal (within the solver's gap tolerance)
    FEASIBLE = "feasible"        # a valid plan, optimality not proven
    INFEASIBLE = "infeasible"    # proven: no plan meets every constraint
    NO_SOLUTION = "no_solution"  # deadline reached before any plan was found
    ERROR = "error"


SOLUTION_PRESENT = frozenset({Status.OPTIMAL, Status.FEASIBLE})


@dataclass(frozen=True)
class SolveResult:
    """Replicas per candidate and traffic fraction per route (indices of the CompiledInstance)."""

    status: Status
    method: str
    replicas: IntArray
    x: FloatArray
    objective: float = float("nan")
    bound: float | None = None
    seconds: float = 0.0
    explanation: tuple[str, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def has_solution(self) -> bool:
        return self.status in SOLUTION_PRESENT

    @property
    def gap(self) -> float | None:
        if self.bound is None or not np.isfinite(self.objective) or self.objective <= 0:
            return None
        return max(0.0, (self.objective - self.bound) / abs(self.objective))


def failure(ci: CompiledInstance, status: Status, method: str, seconds: float = 0.0,
            explanation: tuple[str, ...] = (), bound: float | None = None,
            **stats: Any) -> SolveResult:
    return SolveResult(status=status, method=method,
                       replicas=np.zeros(ci.n_cand, dtype=np.int64), x=np.zeros(ci.n_routes),
                       seconds=seconds, explanation=explanation, bound=bound, stats=dict(stats))


def objective(ci: CompiledInstance, replicas: IntArray, x: FloatArray) -> float:
    """Spec section 5 for array plans: GPU $/h + unserved penalty + latency penalty."""
    served = np.bincount(ci.route_qt, weights=x, minlength=ci.n_qt)
    u = np.maximum(1.0 - served, 0.0)
    lat = np.bincount(ci.route_qt, weights=x * ci.latency, minlength=ci.n_qt)
    return float(replicas @ ci.cand_cost + 3600 * np.sum(ci.lam * u * ci.unserved_penalty)
                 + 3600 * np.sum(ci.lam * ci.latency_penalty * lat))
