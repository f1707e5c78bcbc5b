"""Request telemetry: one record per message, or a columnar batch of many.

High-rate producers send `TelemetryBatch` messages: columns instead of rows keep
decoding cost per record low (pydantic-core validates a list of floats in Rust,
then the controller aggregates with numpy).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import SCHEMA_VERSION, Frozen, Id, NonNegFloat

MAX_TOKENS = 10_000_000
Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
OutTokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Outcome = Literal["served", "slo_missed", "rejected", "unserved", "error"]


class RequestRecord(Frozen):
    """One inference request as observed by a router or serving engine."""

    kind: Literal["request"] = "request"
    schema_version: Literal[1] = SCHEMA_VERSION
    ts: float = Field(ge=0, description="event time, seconds since the Unix epoch")
    query_type: Id | None = Field(default=None, description="None: classify by token lengths")
    input_tokens: Tokens
    output_tokens: OutTokens
    ttft_s: NonNegFloat | None = None
    latency_s: NonNegFloat | None = None
    deployment: Id | None = None
    outcome: Outcome | None = None
    request_id: str | None = Field(default=None, max_length=200)


_COLUMNS = ("ts", "query_type", "input_tokens", "output_tokens", "ttft_s", "latency_s",
            "deployment", "outcome")


class TelemetryBatch(Frozen):
    """Many request records in columns; optional columns may be omitted (all None)."""

    kind: Literal["batch"] = "batch"
    schema_version: Literal[1] = SCHEMA_VERSION
    producer: str = Field(default="unknown", max_length=200)
    ts: list[Annotated[float, Field(ge=0)]] = Field(min_length=1, max_length=100_000)
    input_tokens: list[Tokens]
    output_tokens: list[OutTokens]
    query_type: list[Id | None] | None = None
    ttft_s: list[NonNegFloat | None] | None = None
    latency_s: list[NonNegFloat | None] | None = None
    deployment: list[Id | None] | None = None
    outcome: list[Outcome | None] | None = None

    @model_validator(mode="after")
    def _equal_lengths(self) -> TelemetryBatch:
        n = len(self.ts)
        for name in _COLUMNS[1:]:
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise ValueError(f"column {name} has {len(col)} values, ts has {n}")
        return self

    def __len__(self) -> int:
        return len(self.ts)

    def records(self) -> Iterator[RequestRecord]:
        cols = {c: getattr(self, c) for c in _COLUMNS}
        for k in range(len(self.ts)):
            yield RequestRecord(**{c: (v[k] if v is not None else None) for c, v in cols.items()})

    @classmethod
    def from_records(cls, records: list[RequestRecord], producer: str = "unknown") -> TelemetryBatch:
        data: dict[str, object] = {"producer": producer}
        for c in _COLUMNS:
            col = [getattr(r, c) for r in records]
            data[c] = col if c in ("ts", "input_tokens", "output_tokens") or any(
                v is not None for v in col) else None
        return cls.model_validate(data)


class TelemetryMessage(Frozen):
    """Either shape, discriminated by `kind` (what the telemetry topic carries)."""

    message: Annotated[RequestRecord | TelemetryBatch, Field(discriminator="kind")]
