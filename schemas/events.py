"""Messages the controller publishes: allocation events, audit requests/reports, dead letters."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from solvers.methods import METHODS

from ._base import SCHEMA_VERSION, Frozen, Id, NonNegFloat
from .fleet_status import Transition
from .instance import Instance
from .plan import Plan

Trigger = Literal["startup", "window", "drift", "audit", "degraded", "recovered", "burst"]
Method = Literal[METHODS]  # type: ignore[valid-type]  # the solver registry's names (solvers/methods.py)
SolveStatus = Literal["optimal", "feasible", "infeasible", "no_solution", "error"]


class AllocationEvent(Frozen):
    """A versioned plan for one fleet; routers apply the highest epoch they have seen."""

    schema_version: Literal[1] = SCHEMA_VERSION
    fleet_id: Id
    epoch: int = Field(ge=1, description="strictly increasing per fleet")
    trigger: Trigger = Field(description="why this epoch: startup (first plan), window (a window's re-plan), "
                                         "drift (AGH after drift), audit (the exact audit's cheaper plan), "
                                         "degraded (demand cannot be fully served), recovered (the "
                                         "plan in force republished after the broker came back empty), "
                                         "burst (a query type's rate inside an open window outran the plan)")
    method: Method
    status: SolveStatus
    plan: Plan
    cost_per_hour: NonNegFloat
    gpu_cost_per_hour: NonNegFloat
    switch_cost: NonNegFloat = 0.0
    optimality_gap: NonNegFloat | None = None
    degraded: bool = False
    explanation: list[str] = Field(default_factory=list)
    demand: dict[Id, NonNegFloat] = Field(description="arrival rate per query type planned for")
    window_end: float | None = None
    created_at: float
    solve_seconds: NonNegFloat = 0.0
    window_closed_at: float | None = Field(
        default=None, description="wall time the demand window closed (latency measurement)")
    gate_route: dict[Id, dict[str, Any]] | None = Field(
        default=None, description="per deployment: gate-and-route admission/routing parameters")
    transition: Transition | None = Field(
        default=None, description="how to reach this plan from the previous epoch's safely "
                                  "(make-before-break); None: apply the plan as it is")
    performance_constants: dict[str, dict[str, float]] | None = Field(
        default=None, description="per 'GPU/precision' tier of the plan: compute_efficiency, "
                                  "bandwidth_efficiency, step_overhead_s it was planned with, and the "
                                  "self-calibration correction (time factor, 1 = none)")


class AuditRequest(Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    fleet_id: Id
    epoch: int = Field(ge=1)
    instance: Instance
    plan: Plan
    method: Literal["milp", "cpsat"] = "milp"
    time_limit_s: float = Field(default=30.0, gt=0, le=3600)
    created_at: float


class AuditReport(Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    fleet_id: Id
    epoch: int = Field(ge=1, description="epoch of the plan audited")
    method: Literal["milp", "cpsat"]
    status: SolveStatus
    plan_cost: NonNegFloat
    best_cost: NonNegFloat | None = None
    bound: float | None = None
    gap: NonNegFloat | None = Field(default=None, description="(plan_cost - bound) / plan_cost")
    better_plan: Plan | None = None
    seconds: NonNegFloat
    deadline_hit: bool = Field(default=False, description="the solve was cut off at its deadline; "
                                                          "bound and gap come from the LP relaxation")
    created_at: float


class DeadLetter(Frozen):
    """A message that could not be decoded or validated, kept with its original bytes."""

    schema_version: Literal[1] = SCHEMA_VERSION
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    reason: str
    record_index: int | None = Field(default=None, ge=0, description="index of the refused record in its "
                                     "batch (then original_b64 holds that record as a JSON object)")
    original_b64: str = Field(description="the original message value, base64 (only its "
                                          "first bytes when `truncated`)")
    original_size: int | None = Field(default=None, ge=0, description="bytes of the original value")
    original_sha256: str | None = Field(default=None, description="hex digest of the whole original value")
    truncated: bool = Field(default=False, description="original_b64 holds only a prefix")
    received_at: float
