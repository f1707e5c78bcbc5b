"""A measured performance row: what `llmfleet calibrate` and scripts/bench_fidelity.py read.

One row per (configuration, workload, batch size), the shape vLLM's serving benchmarks and
AIConfigurator-style predictors print: model, GPU, precision, tp, pp, batch (or concurrency),
input and output tokens, and any of TTFT, time per output token and end-to-end latency in
seconds (`*_ms` columns are accepted and converted). `ttft_s` is compared with the spec's
T_pre, the prefill of one request, so it is read from batch-1 rows only.
"""
from __future__ import annotations

from pydantic import Field, model_validator

from ._base import Frozen, Id, PosFloat


class Measurement(Frozen):
    model: Id
    gpu: Id
    precision: Id
    tp: int = Field(ge=1, le=1024)
    pp: int = Field(default=1, ge=1, le=1024)
    batch: int = Field(ge=1, le=65536, description="requests in flight per replica (batch or concurrency)")
    input_tokens: float = Field(gt=0, le=10_000_000)
    output_tokens: float = Field(gt=0, le=10_000_000)
    ttft_s: PosFloat | None = Field(default=None, description="time to first token of one request (batch 1)")
    tpot_s: PosFloat | None = Field(default=None, description="time per output token at this batch")
    latency_s: PosFloat | None = Field(default=None, description="mean end-to-end request latency at this batch")
    source: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _some_timing(self) -> Measurement:
        if self.ttft_s is None and self.tpot_s is None and self.latency_s is None:
            raise ValueError("a measurement needs at least one of ttft_s, tpot_s, latency_s")
        return self
