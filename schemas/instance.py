"""The instance document of shared/spec/model.md section 1, field for field."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer, \
    model_validator

from ._base import Frozen, Id, NonNegFloat, PosFloat

PER_GPU_CONSTANTS = ("compute_efficiency", "bandwidth_efficiency", "step_overhead_s")
PERFORMANCE_MODELS = ("spec", "allreduce_table")


class QueryType(Frozen):
    id: Id
    arrival_rate: NonNegFloat
    input_tokens: float = Field(gt=0, le=10_000_000)
    output_tokens: float = Field(gt=0, le=10_000_000)
    max_latency_s: PosFloat
    max_ttft_s: PosFloat | None = None
    max_error: float = Field(ge=0, le=1)
    max_unserved: float = Field(default=0.0, ge=0, le=1)
    unserved_penalty: NonNegFloat = 0.0
    latency_penalty: NonNegFloat = 0.0


class Model(Frozen):
    id: Id
    params_b: PosFloat
    n_layers: int = Field(ge=1)
    d_model: int = Field(ge=1)
    n_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    error: dict[Id, float] = Field(default_factory=dict)

    @field_validator("error")
    @classmethod
    def _error_rates_in_unit_interval(cls, v: dict[str, float]) -> dict[str, float]:
        for qt, e in v.items():
            if not 0.0 <= e <= 1.0:
                raise ValueError(f"error rate for query type {qt!r} is {e}, must be in [0, 1]")
        return v


class GpuConstants(Frozen):
    """Per-GPU calibration (spec section 1): any of the three route constants. The spec says
    other keys there are ignored, so they are (a catalog may keep provenance beside them)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    # above 1 only through self-calibration (a GPU faster than its data sheet under this model)
    compute_efficiency: float | None = Field(default=None, gt=0, le=4)
    bandwidth_efficiency: float | None = Field(default=None, gt=0, le=4)
    step_overhead_s: NonNegFloat | None = None

    @model_serializer(mode="wrap")
    def _set_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class AllReduceLink(Frozen):
    """Effective all-reduce figures at one TP degree (nccl-tests `busbw` and small-message time),
    read by the `allreduce_table` performance model only."""

    busbw_gbps: PosFloat
    latency_us: NonNegFloat


class Gpu(Frozen):
    id: Id
    memory_gb: PosFloat
    tflops: dict[Id, PosFloat] = Field(min_length=1)
    bandwidth_tbps: PosFloat
    link_gbps: PosFloat
    link_latency_us: NonNegFloat
    gpus_per_node: int = Field(ge=1)
    price_per_hour: NonNegFloat
    count: int | None = Field(default=None, ge=0)
    constants: GpuConstants | None = None
    constants_by_precision: dict[Id, GpuConstants] = Field(default_factory=dict)
    allreduce_by_tp: dict[int, AllReduceLink] = Field(
        default_factory=dict, description="richer model only: effective all-reduce per TP degree")

    @model_serializer(mode="wrap")
    def _omit_unset_calibration(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Uncalibrated GPUs serialise exactly as before the calibration fields existed."""
        out = handler(self)
        for k in ("constants", "constants_by_precision", "allreduce_by_tp"):
            if not out.get(k, True):
                out.pop(k)
        return out


class Precision(Frozen):
    id: Id
    bytes_per_param: PosFloat
    error_multiplier: PosFloat


class Parallelism(Frozen):
    tp: list[int] = Field(min_length=1)
    pp: list[int] = Field(min_length=1)

    @field_validator("tp", "pp")
    @classmethod
    def _positive_unique(cls, v: list[int]) -> list[int]:
        if any(x < 1 for x in v):
            raise ValueError("parallel degrees must be >= 1")
        if len(set(v)) != len(v):
            raise ValueError("parallel degrees must be unique")
        return v


class Constants(Frozen):
    compute_efficiency: float = Field(default=0.5, gt=0, le=1)
    bandwidth_efficiency: float = Field(default=0.7, gt=0, le=1)
    step_overhead_s: NonNegFloat = 0.003
    memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_batch: int = Field(default=256, ge=1, le=65536)
    max_utilization: float = Field(default=0.85, gt=0, le=1)


def _unique_ids(items: list[Any], what: str) -> None:
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise ValueError(f"duplicate {what} id {it.id!r}")
        seen.add(it.id)


class Instance(Frozen):
    name: str = "instance"
    query_types: list[QueryType] = Field(min_length=1)
    models: list[Model] = Field(min_length=1)
    gpus: list[Gpu] = Field(min_length=1)
    precisions: list[Precision] = Field(min_length=1)
    parallelism: Parallelism = Parallelism(tp=[1, 2, 4, 8], pp=[1, 2, 4])
    budget_per_hour: NonNegFloat
    constants: Constants = Constants()
    performance_model: Literal["spec", "allreduce_table"] = Field(
        default="spec", description="spec: shared/spec/model.md exactly (the default); allreduce_table: "
                                    "all-reduce from each GPU's allreduce_by_tp where it has the TP degree")

    @model_serializer(mode="wrap")
    def _omit_default_model(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        if out.get("performance_model") == "spec":
            out.pop("performance_model")
        return out

    @model_validator(mode="after")
    def _cross_references(self) -> Instance:
        _unique_ids(self.query_types, "query type")
        _unique_ids(self.models, "model")
        _unique_ids(self.gpus, "gpu")
        _unique_ids(self.precisions, "precision")
        qts = {q.id for q in self.query_types}
        precs = {p.id for p in self.precisions}
        for m in self.models:
            unknown = sorted(set(m.error) - qts)
            if unknown:
                raise ValueError(f"model {m.id!r} has error rates for unknown query types {unknown}")
        for g in self.gpus:
            unknown = sorted(set(g.tflops) - precs)
            if unknown:
                raise ValueError(f"gpu {g.id!r} lists tflops for unknown precisions {unknown}")
            unknown = sorted(set(g.constants_by_precision) - precs)
            if unknown:
                raise ValueError(f"gpu {g.id!r} has constants_by_precision for unknown precisions {unknown}")
        return self

    def to_spec(self) -> dict[str, Any]:
        """The plain JSON-able dict of the spec (what solvers consume)."""
        return self.model_dump(mode="json")
