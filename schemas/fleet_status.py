"""Transitions between plans and the readiness fleets report back (make-before-break).

An allocation event names the fleet to reach (`plan`) and, in `transition`, how to get there
safely from the plan before it: new replicas start first; replicas being replaced or scaled
away keep serving until every replica the transition starts reports ready, then drain (take
no new work, finish what they hold). Fleets report readiness as `FleetStatus` messages on the
status topic (`llmfleet.fleet-status`, keyed by fleet); routers send work only to ready
replicas and renormalise a query type's weights over what is ready (docs/router.md §6).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import SCHEMA_VERSION, Frozen, Id, NonNegFloat

Action = Literal["start", "scale_up", "keep", "scale_down", "retire"]


class TransitionStep(Frozen):
    """What one deployment does to move from the previous plan to this one."""

    deployment: Id
    action: Action = Field(description="start: new deployment; scale_up / scale_down: replica count "
                                        "changes; keep: unchanged; retire: not in the new plan")
    from_replicas: int = Field(ge=0)
    to_replicas: int = Field(ge=0)
    wait_for_ready: bool = Field(description="scale_down and retire: keep the surplus replicas serving "
                                             "until every replica this transition starts is ready")
    cold_start_s: NonNegFloat | None = Field(
        default=None, description="expected seconds until a started replica is ready (planner's estimate)")


class Transition(Frozen):
    """How to move from epoch `from_epoch`'s plan to this event's plan."""

    rule: Literal["make_before_break"] = "make_before_break"
    from_epoch: int = Field(ge=0, description="the plan this transition starts from (0: nothing)")
    steps: list[TransitionStep]
    gpus_started: int = Field(ge=0, description="GPUs this transition starts")
    gpus_stopped: int = Field(ge=0, description="GPUs it stops once the new replicas are ready")


class DeploymentStatus(Frozen):
    deployment: Id
    target: int = Field(ge=0, description="replicas the plan in force wants (0: retiring)")
    ready: int = Field(ge=0, description="replicas serving now")
    starting: int = Field(ge=0, description="replicas started, not yet ready")
    draining: int = Field(ge=0, description="ready replicas kept only until the transition completes")


class FleetStatus(Frozen):
    """Readiness of one fleet's deployments, reported by the fleet (or its operator)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    fleet_id: Id
    epoch: int = Field(ge=0, description="the plan's epoch the fleet is moving to (or has reached)")
    ts: float = Field(description="time of the report (event time of the fleet's clock)")
    deployments: list[DeploymentStatus]
    transition_complete: bool = Field(description="every replica the epoch's transition starts is "
                                                  "ready and the surplus has been told to drain")

    def ready(self) -> dict[str, int]:
        return {d.deployment: d.ready for d in self.deployments}
