"""The plan document of shared/spec/model.md section 3 (extra solver fields allowed)."""
from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ._base import Frozen, FrozenOpen, Id


class Deployment(Frozen):
    id: Id
    model: Id
    gpu: Id
    precision: Id
    tp: int = Field(ge=1)
    pp: int = Field(ge=1)
    replicas: int = Field(ge=1)


class Route(Frozen):
    query_type: Id
    deployment: Id
    fraction: float = Field(ge=0, le=1 + 1e-9)


class Plan(FrozenOpen):
    deployments: list[Deployment]
    routes: list[Route]

    @model_validator(mode="after")
    def _routes_reference_deployments(self) -> Plan:
        ids = [d.id for d in self.deployments]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"duplicate deployment ids {dup}")
        known = set(ids)
        for k, r in enumerate(self.routes):
            if r.deployment not in known:
                raise ValueError(f"routes[{k}] points at unknown deployment {r.deployment!r}")
        return self

    def check_against(self, query_type_ids: set[str]) -> None:
        """Reject routes for query types the instance does not have."""
        for k, r in enumerate(self.routes):
            if r.query_type not in query_type_ids:
                raise ValueError(f"routes[{k}].query_type: unknown query type {r.query_type!r}")

    def to_spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
