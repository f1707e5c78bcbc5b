"""The "iterations" telemetry message: engine iteration timings for the iteration-model fit."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import IterationBatch, TelemetryMessage, describe

GOOD = {"kind": "iterations", "deployment": "llama-3.1-8b.L4.fp8.tp1pp1", "producer": "engine-7",
        "ts": [1.0, 2.0, 3.0], "chunk_tokens": [256, 131, 0], "decode_batch": [12, 12, 13],
        "iteration_s": [0.031, 0.027, 0.022]}


def test_valid_message_round_trips() -> None:
    b = IterationBatch.model_validate(GOOD)
    assert len(b) == 3 and b.schema_version == 1
    assert IterationBatch.model_validate_json(b.model_dump_json()) == b
    assert TelemetryMessage.model_validate({"message": GOOD}).message == b   # discriminated by kind


@pytest.mark.parametrize(("change", "needle"), [
    ({"iteration_s": [0.031, 0.027]}, "column iteration_s has 2 values"),
    ({"chunk_tokens": [256, 0, 0], "decode_batch": [12, 0, 13]}, "neither prefill tokens nor decodes"),
    ({"iteration_s": [0.031, 0.0, 0.022]}, "greater than 0"),
    ({"chunk_tokens": [256, -1, 0]}, "greater than or equal to 0"),
    ({"deployment": "bad id with spaces"}, "pattern"),
    ({"schema_version": 2}, "schema_version"),
    ({"ts": []}, "at least 1"),
    ({"extra": 1}, "extra"),
])
def test_invalid_messages_are_rejected(change: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as exc:
        IterationBatch.model_validate({**GOOD, **change})
    assert needle.lower() in describe(exc.value).lower()
