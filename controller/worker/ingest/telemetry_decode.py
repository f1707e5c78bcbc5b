"""Decode one telemetry-topic message exactly as strictly as its exported JSON Schema.

The worker used to validate in pydantic's lax mode, so token counts sent as "123" or `true`
were counted while `schemas/json/` rejects them. Here every model is validated in strict mode,
and numbers are parsed the way JSON Schema reads them: `3.0` is an integer (JSON has one number
type), while `NaN` / `Infinity` are not JSON at all. tests/controller/test_decode_schema.py
runs one corpus through this decoder and through `jsonschema` and requires the same verdicts.

A batch with bad values loses only those records: each comes back as a `Rejected` with its
index and reason, and the rest of the batch is decoded (a structural fault, such as a missing
column or columns of unequal length, still rejects the whole message).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas import IterationBatch, RequestRecord, TelemetryBatch, describe
from schemas.telemetry import _COLUMNS


@dataclass(frozen=True)
class Rejected:
    """A refused message (index None) or one refused record of a batch."""

    reason: str
    index: int | None = None
    record: dict[str, Any] | None = None


@dataclass(frozen=True)
class Decoded:
    """What one message holds: telemetry records, iteration timings, or a tick (still unverified)."""

    batch: TelemetryBatch | None = None
    iterations: IterationBatch | None = None
    tick: dict[str, Any] | None = None
    rejected: list[Rejected] = field(default_factory=list)
    n_in: int = 0  # records the message carried (accepted + rejected)
    kept: list[int] | None = None  # original index of each record of `batch` (None: the same)

    def original_index(self, i: int) -> int:
        return self.kept[i] if self.kept is not None else i


def _number(text: str) -> float | int:
    """JSON numbers as JSON Schema sees them: an integral value is an integer."""
    f = float(text)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def loads(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, integral numbers as int."""
    return json.loads(raw, parse_float=_number, parse_constant=_no_constant)


def decode(raw: bytes | None, max_bytes: int) -> Decoded:
    if not raw:
        return Decoded(rejected=[Rejected("not JSON: empty message (empty value, or a null value: a tombstone)")])
    if len(raw) > max_bytes:
        return Decoded(rejected=[Rejected(f"oversized: {len(raw)} bytes > max_decode_bytes {max_bytes}")])
    try:
        head = loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return Decoded(rejected=[Rejected(f"not JSON: {exc}")])
    if not isinstance(head, dict):
        return Decoded(rejected=[Rejected(f"invalid telemetry: not a JSON object ({type(head).__name__})")])
    kind = head.get("kind", "request")
    try:
        if kind == "tick":
            return Decoded(tick=head)
        if kind == "iterations":
            return Decoded(iterations=IterationBatch.model_validate(head, strict=True))
        if kind == "request":
            return Decoded(batch=TelemetryBatch.from_records([RequestRecord.model_validate(head, strict=True)]),
                           n_in=1)
        if kind == "batch":
            return _batch(head)
        raise ValueError(f"unknown message kind {kind!r}")
    except ValidationError as exc:
        return Decoded(rejected=[Rejected(f"invalid telemetry: {describe(exc)}")])
    except (ValueError, TypeError) as exc:
        return Decoded(rejected=[Rejected(f"invalid telemetry: {exc}")])


def _batch(head: dict[str, Any]) -> Decoded:
    try:
        return Decoded(batch=TelemetryBatch.model_validate(head, strict=True), n_in=len(head["ts"]))
    except ValidationError as exc:
        bad = _record_errors(exc, head)
        if bad is None:
            raise
    n = len(head["ts"])
    rejected = [Rejected(f"invalid telemetry: {reason}", i, _row(head, i)) for i, reason in sorted(bad.items())]
    keep = [i for i in range(n) if i not in bad]
    if not keep:
        return Decoded(rejected=rejected, n_in=n)
    good = {k: ([v[i] for i in keep] if k in _COLUMNS and isinstance(v, list) else v) for k, v in head.items()}
    return Decoded(batch=TelemetryBatch.model_validate(good, strict=True), rejected=rejected, n_in=n, kept=keep)


def _record_errors(exc: ValidationError, head: dict[str, Any]) -> dict[int, str] | None:
    """Index -> reason when every error is one value of a column; None for a structural fault."""
    ts = head.get("ts")
    if not isinstance(ts, list) or not ts:
        return None
    n = len(ts)
    cols = [c for c in _COLUMNS if isinstance(head.get(c), list)]
    if any(len(head[c]) != n for c in cols):
        return None
    bad: dict[int, str] = {}
    for err in exc.errors():
        loc = err["loc"]
        if len(loc) != 2 or loc[0] not in _COLUMNS or not isinstance(loc[1], int) or not 0 <= loc[1] < n:
            return None
        bad.setdefault(loc[1], f"{loc[0]}: {err['msg']} (got {err.get('input')!r:.60})")
    return bad


def _row(head: dict[str, Any], i: int) -> dict[str, Any]:
    return {c: head[c][i] for c in _COLUMNS if isinstance(head.get(c), list)}
