"""Request telemetry: one record per message, or a columnar batch of many; and iteration timings.

High-rate producers send `TelemetryBatch` messages: columns instead of rows keep
decoding cost per record low (pydantic-core validates a list of floats in Rust,
then the controller aggregates with numpy). Serving engines that run gate-and-route also
send `IterationBatch` messages (kind "iterations"): per engine iteration, the prefill chunk
tokens C, the decode batch size and the iteration's duration, from which the controller fits
the iteration model tau(C) = alpha + beta C (controller/worker/planning/iteration_telemetry.py).
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
    request_id: RequestId | None = Field(
        default=None, description="a producer's id of the request: a repeat within the de-duplication "
                                  "horizon is not counted again (docs/producer.md)")
    fleet: Id | None = Field(default=None, description="the fleet this request belongs to; None: the "
                                                       "workers' configured fleet (LLMFLEET_FLEET_ID, "
                                                       "'default')")


_COLUMNS = ("ts", "query_type", "input_tokens", "output_tokens", "ttft_s", "latency_s",
            "deployment", "outcome", "request_id")
RequestId = Annotated[str, Field(max_length=200)]


class TelemetryBatch(Frozen):
    """Many request records in columns; optional columns may be omitted (all None)."""

    kind: Literal["batch"] = "batch"
    schema_version: Literal[1] = SCHEMA_VERSION
    producer: str = Field(default="unknown", max_length=200)
    fleet: Id | None = Field(default=None, description="the fleet every record of the batch belongs to; "
                                                       "None: the workers' configured fleet "
                                                       "(LLMFLEET_FLEET_ID, 'default')")
    ts: list[Annotated[float, Field(ge=0)]] = Field(min_length=1, max_length=100_000)
    input_tokens: list[Tokens]
    output_tokens: list[OutTokens]
    query_type: list[Id | None] | None = None
    ttft_s: list[NonNegFloat | None] | None = None
    latency_s: list[NonNegFloat | None] | None = None
    deployment: list[Id | None] | None = None
    outcome: list[Outcome | None] | None = None
    request_id: list[RequestId | None] | None = None

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
            yield RequestRecord(fleet=self.fleet, **{c: (v[k] if v is not None else None) for c, v in cols.items()})

    @classmethod
    def from_records(cls, records: list[RequestRecord], producer: str = "unknown") -> TelemetryBatch:
        fleets = {r.fleet for r in records}
        if len(fleets) > 1:
            raise ValueError(f"a batch carries one fleet; these records name {sorted(map(str, fleets))}")
        data: dict[str, object] = {"producer": producer, "fleet": fleets.pop() if fleets else None}
        for c in _COLUMNS:
            col = [getattr(r, c) for r in records]
            data[c] = col if c in ("ts", "input_tokens", "output_tokens") or any(
                v is not None for v in col) else None
        return cls.model_validate(data)


MAX_DECODE_BATCH = 65_536
MAX_ITERATION_S = 3600.0
_ITERATION_COLUMNS = ("ts", "chunk_tokens", "decode_batch", "iteration_s")


class IterationBatch(Frozen):
    """Engine iteration timings of one deployment, in columns (one entry per iteration).

    `chunk_tokens` is the prefill chunk C the iteration processed (0: a decode-only
    iteration), `decode_batch` the decodes it advanced, `iteration_s` its wall duration.
    Every iteration does some work (C > 0 or a decode batch > 0).
    """

    kind: Literal["iterations"] = "iterations"
    schema_version: Literal[1] = SCHEMA_VERSION
    producer: str = Field(default="unknown", max_length=200)
    deployment: Id = Field(description="deployment id of the allocation plan")
    ts: list[Annotated[float, Field(ge=0)]] = Field(
        min_length=1, max_length=100_000, description="event time each iteration ended")
    chunk_tokens: list[Annotated[int, Field(ge=0, le=MAX_TOKENS)]]
    decode_batch: list[Annotated[int, Field(ge=0, le=MAX_DECODE_BATCH)]]
    iteration_s: list[Annotated[float, Field(gt=0, le=MAX_ITERATION_S)]]

    @model_validator(mode="after")
    def _equal_lengths_and_work(self) -> IterationBatch:
        n = len(self.ts)
        for name in _ITERATION_COLUMNS[1:]:
            col = getattr(self, name)
            if len(col) != n:
                raise ValueError(f"column {name} has {len(col)} values, ts has {n}")
        idle = [k for k, (c, b) in enumerate(zip(self.chunk_tokens, self.decode_batch)) if c == 0 and b == 0]
        if idle:
            raise ValueError(f"iterations {idle[:10]} have neither prefill tokens nor decodes")
        return self

    def __len__(self) -> int:
        return len(self.ts)


class Tick(Frozen):
    """Internal: a controller worker advances an idle telemetry partition's watermark.

    Only the controller's own processes may produce ticks: `sig` is the hex HMAC-SHA256, under
    the group's `tick_key`, of "<topic>|<partition>|<wm>" (wm as Python's repr of the float).
    A tick whose signature does not verify, or that sits on another partition than it names,
    is dead-lettered, so a producer that can write telemetry cannot close windows early.
    """

    kind: Literal["tick"] = "tick"
    schema_version: Literal[1] = SCHEMA_VERSION
    partition: int = Field(ge=0)
    wm: float = Field(ge=0, description="watermark the partition may advance to (event time, seconds)")
    sig: str = Field(pattern=r"^[0-9a-f]{64}$")


class TelemetryMessage(Frozen):
    """Any telemetry shape, discriminated by `kind` (what the telemetry topic carries)."""

    message: Annotated[RequestRecord | TelemetryBatch | IterationBatch, Field(discriminator="kind")]
