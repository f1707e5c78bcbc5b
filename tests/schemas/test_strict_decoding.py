"""The worker's telemetry decoding accepts exactly what the exported JSON Schemas accept: one
corpus of good and bad messages through both, identical verdicts; and one bad record in a batch
costs only itself."""
from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from controller.app import per_record_rows
from schemas import RequestRecord, TelemetryBatch
from schemas.export import EXPORTED_DIR

REC = {"kind": "request", "ts": 1_700_000_000.5, "query_type": "code", "input_tokens": 2048, "output_tokens": 28}
BATCH = {"kind": "batch", "ts": [1_700_000_000.0, 1_700_000_001.0], "input_tokens": [10, 20],
         "output_tokens": [1, 2], "query_type": ["code", None]}

RECORDS = [
    REC, {**REC, "query_type": None}, {**REC, "input_tokens": 7.0}, {**REC, "ttft_s": 0.2, "latency_s": 1},
    {**REC, "input_tokens": "123"}, {**REC, "input_tokens": True}, {**REC, "output_tokens": -1},
    {**REC, "input_tokens": 0}, {**REC, "input_tokens": 2.5}, {**REC, "ts": "1700000000"}, {**REC, "ts": -1},
    {**REC, "ts": False}, {**REC, "query_type": "bad id!"}, {**REC, "extra": 1}, {**REC, "outcome": "maybe"},
    {**REC, "latency_s": "1.0"}, {k: v for k, v in REC.items() if k != "input_tokens"}, {**REC, "kind": "batch"},
]
BATCHES = [
    BATCH, {**BATCH, "input_tokens": ["10", 20]}, {**BATCH, "output_tokens": [1, True]},
    {**BATCH, "ts": []}, {**BATCH, "query_type": None}, {**BATCH, "input_tokens": [10.0, 20.0]},
    {**BATCH, "ttft_s": [0.1, None]}, {**BATCH, "ttft_s": ["0.1", None]}, {**BATCH, "producer": 5},
]


def verdicts(model: type, schema_file: str, corpus: list[dict]) -> list[tuple[bool, bool]]:
    schema = json.loads((EXPORTED_DIR / schema_file).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for msg in corpus:
        try:
            model.model_validate_json(json.dumps(msg))
            ours = True
        except ValidationError:
            ours = False
        out.append((ours, validator.is_valid(msg)))
    return out


@pytest.mark.parametrize(("model", "schema_file", "corpus"), [
    (RequestRecord, "request_record.schema.json", RECORDS), (TelemetryBatch, "telemetry_batch.schema.json", BATCHES)])
def test_decoder_and_exported_schema_agree(model, schema_file, corpus) -> None:
    got = verdicts(model, schema_file, corpus)
    assert [o for o, _ in got] == [s for _, s in got], list(zip(corpus, got))
    assert any(o for o, _ in got) and not all(o for o, _ in got)


def test_columns_of_unequal_length_are_refused() -> None:
    """The one rule JSON Schema cannot state (it is in the batch schema's description)."""
    with pytest.raises(ValidationError, match="has 2 values, ts has 1"):
        TelemetryBatch.model_validate({**BATCH, "ts": [1.0]})
    assert "same length" in json.loads((EXPORTED_DIR / "telemetry_batch.schema.json").read_text())["description"]


def test_one_bad_record_costs_only_itself() -> None:
    head = {**BATCH, "ts": BATCH["ts"] + [1_700_000_002.0], "input_tokens": [10, -4, 30], "output_tokens": [1, 2, 3],
            "query_type": ["code", None, "conversation"]}
    with pytest.raises(ValidationError):
        TelemetryBatch.model_validate(head)
    rows = per_record_rows(head)
    assert rows is not None and len(rows) == 3
    ok = []
    for r in rows:
        try:
            ok.append(RequestRecord.model_validate(r).input_tokens)
        except ValidationError:
            ok.append(None)
    assert ok == [10, None, 30]
    assert per_record_rows({**head, "input_tokens": [1, 2]}) is None, "unequal columns: the batch is broken"
    assert per_record_rows({**head, "surprise": 1}) is None
