"""A demand window: what the controller learned about each query type in one window."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._base import SCHEMA_VERSION, Frozen, Id, NonNegFloat


class QueryDemand(Frozen):
    query_type: Id
    count: int = Field(ge=0)
    arrival_rate: NonNegFloat = Field(description="requests per second over the window")
    arrival_rate_peak: NonNegFloat | None = Field(
        default=None, description="requests per second in the window's busiest burst interval "
                                  "(controller setting burst_s); None when not measured")
    input_tokens_mean: NonNegFloat
    input_tokens_p95: NonNegFloat
    output_tokens_mean: NonNegFloat
    output_tokens_p95: NonNegFloat
    latency_s_mean: NonNegFloat | None = None
    ttft_s_mean: NonNegFloat | None = None
    slo_attainment: float | None = Field(default=None, ge=0, le=1)


class DemandWindow(Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    fleet_id: Id = "default"
    window_start: float = Field(ge=0)
    window_end: float = Field(ge=0)
    records: int = Field(ge=0)
    late_records: int = Field(default=0, ge=0)
    demand: list[QueryDemand]

    @model_validator(mode="after")
    def _ordered(self) -> DemandWindow:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        ids = [d.query_type for d in self.demand]
        if len(set(ids)) != len(ids):
            raise ValueError("a query type appears twice in one window")
        return self

    def rates(self) -> dict[str, float]:
        return {d.query_type: d.arrival_rate for d in self.demand}
