"""The worker's telemetry decoder accepts exactly what the exported JSON Schemas accept.

One corpus of good and bad messages goes through `controller.worker.ingest.telemetry_decode.decode` and
through `jsonschema` with `schemas/json/`; the verdicts must be identical. The decoder
"accepts" a message when it refuses none of it (a batch with bad values loses only those
records, but the message as a whole is not what the schema accepts).

The one documented gap: JSON Schema cannot say "every column has as many values as ts" (or
that an iteration did some work), so the corpus's ragged batches are checked separately: the
decoder refuses them with a reason, the schema cannot.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from controller.worker.ingest import telemetry_decode
from controller.worker.ingest.telemetry_decode import decode

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
T0 = 1_700_000_000.0
REC: dict[str, Any] = {"kind": "request", "ts": T0, "query_type": "code", "input_tokens": 900, "output_tokens": 20}
BATCH: dict[str, Any] = {"kind": "batch", "ts": [T0, T0 + 1, T0 + 2], "input_tokens": [10, 20, 30],
                         "output_tokens": [1, 2, 3]}
ITER: dict[str, Any] = {"kind": "iterations", "deployment": "d1", "ts": [T0], "chunk_tokens": [512],
                        "decode_batch": [8], "iteration_s": [0.05]}


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


VALIDATORS = {"request": _validator("request_record"), "batch": _validator("telemetry_batch"),
              "iterations": _validator("iteration_batch")}


def schema_accepts(raw: bytes) -> bool:
    """The verdict of the exported schemas for a telemetry-topic message (RFC 8259 JSON only)."""
    try:
        doc = json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    v = VALIDATORS.get(doc.get("kind", "request"))
    return v is not None and v.is_valid(doc)


def _rec(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in {**REC, **kw}.items() if v is not ...}


def _batch(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in {**BATCH, **kw}.items() if v is not ...}


CORPUS: dict[str, Any] = {
    # good
    "record": _rec(), "record_no_kind": _rec(kind=...), "record_null_query_type": _rec(query_type=None),
    "record_untyped": _rec(query_type=...), "record_int_ts": _rec(ts=1_700_000_000),
    "record_integral_float_tokens": _rec(input_tokens=900.0), "record_1e308_ts": _rec(ts=1e308),
    "record_all_fields": _rec(ttft_s=0.1, latency_s=1.5, deployment="d-1", outcome="served", request_id="r1"),
    "record_zero_output": _rec(output_tokens=0), "record_ts_zero": _rec(ts=0),
    "batch": _batch(), "batch_with_nulls": _batch(query_type=["code", None, "conversation"],
                                                  latency_s=[None, 0.2, None], producer="p"),
    "iterations": ITER, "batch_request_ids": _batch(request_id=["a", None, "c"]),
    # bad: lax types
    "tokens_as_string": _rec(input_tokens="123"), "tokens_as_bool": _rec(input_tokens=True),
    "output_as_bool": _rec(output_tokens=False), "ts_as_string": _rec(ts="1700000000"),
    "ts_as_bool": _rec(ts=True), "fractional_tokens": _rec(input_tokens=12.5),
    "query_type_number": _rec(query_type=7), "latency_as_string": _rec(latency_s="0.5"),
    "batch_token_string": _batch(input_tokens=[10, "20", 30]), "batch_ts_bool": _batch(ts=[T0, True, T0]),
    "schema_version_string": _rec(schema_version="1"), "schema_version_2": _rec(schema_version=2),
    # bad: values
    "negative_tokens": _rec(input_tokens=-4), "zero_input": _rec(input_tokens=0),
    "absurd_tokens": _rec(output_tokens=10**12), "negative_ts": _rec(ts=-1.0),
    "negative_latency": _rec(latency_s=-0.1), "bad_outcome": _rec(outcome="great"),
    "bad_query_type_chars": _rec(query_type="no spaces allowed"), "long_request_id": _rec(request_id="x" * 201),
    "batch_request_id_number": _batch(request_id=["a", 2, "c"]),
    "batch_negative_token": _batch(input_tokens=[10, -20, 30]), "empty_batch": _batch(ts=[], input_tokens=[],
                                                                                      output_tokens=[]),
    "batch_missing_column": _batch(output_tokens=...), "iterations_zero_time": {**ITER, "iteration_s": [0.0]},
    # bad: shapes
    "extra_field": _rec(evil=1), "missing_tokens": _rec(input_tokens=...), "unknown_kind": {"kind": "metrics"},
    "kind_null": _rec(kind=None), "array": [REC], "string": "hello", "number": 3, "null": None,
}
RAW_CORPUS: dict[str, bytes] = {
    "nan_ts": b'{"ts": NaN, "input_tokens": 5, "output_tokens": 1}',
    "infinite_latency": b'{"ts": 1700000000, "input_tokens": 5, "output_tokens": 1, "latency_s": Infinity}',
    "not_json": b"{not json", "invalid_utf8": b'{"ts": 1700000000, "query_type": "\xff"}', "empty": b"",
    "duplicate_keys_last_wins_good": b'{"ts": 1, "ts": 1700000000, "input_tokens": 5, "output_tokens": 1}',
}


def _corpus() -> list[tuple[str, bytes]]:
    return [(k, json.dumps(v).encode()) for k, v in CORPUS.items()] + list(RAW_CORPUS.items())


@pytest.mark.parametrize(("name", "raw"), _corpus(), ids=[k for k, _ in _corpus()])
def test_decoder_verdict_equals_the_schema_verdict(name: str, raw: bytes) -> None:
    d = decode(raw, 1 << 20)
    assert (not d.rejected) == schema_accepts(raw), (name, d.rejected)
    for r in d.rejected:
        assert r.reason and (r.reason.startswith(("not JSON", "invalid telemetry", "oversized"))), r


def test_the_corpus_has_both_verdicts() -> None:
    verdicts = [schema_accepts(raw) for _, raw in _corpus()]
    assert 10 <= sum(verdicts) <= len(verdicts) - 30


def test_a_batch_loses_only_its_bad_records_each_with_index_and_reason() -> None:
    raw = json.dumps(_batch(ts=[T0] * 5, input_tokens=[10, -1, 30, "40", 50], output_tokens=[1, 1, 1, 1, True])
                     ).encode()
    d = decode(raw, 1 << 20)
    assert d.batch is not None and list(d.batch.input_tokens) == [10, 30]
    assert [(r.index, r.reason.split(":")[1].strip()) for r in d.rejected] == [
        (1, "input_tokens"), (3, "input_tokens"), (4, "output_tokens")]
    assert d.rejected[0].record == {"ts": T0, "input_tokens": -1, "output_tokens": 1}
    assert d.n_in == 5 and [d.original_index(i) for i in range(2)] == [0, 2]


def test_ragged_batches_are_refused_though_json_schema_cannot_say_so() -> None:
    raw = json.dumps(_batch(input_tokens=[10, 20])).encode()
    assert schema_accepts(raw)  # the documented gap
    d = decode(raw, 1 << 20)
    assert d.batch is None and "input_tokens has 2 values" in d.rejected[0].reason


def test_oversized_is_refused_but_a_large_valid_batch_is_decoded() -> None:
    n = 60_000  # larger than the 1 MiB max_message_bytes, as the 1.7 MB batch was
    raw = json.dumps(_batch(ts=[T0 + i * 1e-3 for i in range(n)], input_tokens=[100] * n,
                            output_tokens=[10] * n)).encode()
    assert len(raw) > 1 << 20
    assert len(decode(raw, 16 << 20).batch) == n
    assert decode(raw, 1 << 20).rejected[0].reason.startswith("oversized")


def test_numbers_read_as_json_schema_reads_them() -> None:
    assert telemetry_decode.loads(b"[3.0, 3.5, 1e308]") == [3, 3.5, 1e308]
    assert isinstance(telemetry_decode.loads(b"3.0"), int)
