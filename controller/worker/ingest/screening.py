"""One telemetry batch in, the records to count out: classification, event-time and query-type
screening, and the dead letters of what is refused. Plain functions of data (the faust app
publishes the letters and keeps the counters)."""
from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controller.worker.ingest import event_time
from controller.worker.windows import demand_window as dw
from schemas import DeadLetter, TelemetryBatch

_ROW = ("ts", "query_type", "input_tokens", "output_tokens", "request_id")


@dataclass(frozen=True)
class Rules:
    """What screening checks records against (from the settings and the catalog)."""

    query_types: frozenset[str]
    length_rules: tuple[dw.LengthRule, ...]
    default_query_type: str
    window_s: float
    event_time_bound_s: float
    min_event_ts: float
    max_open_windows: int


@dataclass(frozen=True)
class Rejection:
    reason: str
    index: int | None = None            # the record's index in the original batch
    record: dict[str, Any] | None = None


@dataclass(frozen=True)
class Screened:
    """A batch's records after screening: `keep` marks the ones to count."""

    ts: np.ndarray
    query_type: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    keep: np.ndarray
    rejected: list[Rejection] = field(default_factory=list)
    classified: Counter[tuple[str, int]] = field(default_factory=Counter)  # (query type, rule) -> records


def screen_batch(batch: TelemetryBatch, watermark: float | None, open_windows: Mapping[str, Any], rules: Rules,
                 original_index: Any = None, now: float | None = None) -> Screened:
    """Classify untyped records, then refuse absurd times (controller/worker/ingest/event_time.py)
    and unknown query types, each with its reason. `original_index(i)` maps a record to its
    index in the message as sent (the decoder may have dropped schema-invalid records first);
    a single-record message's rejection carries no index or record."""
    now = time.time() if now is None else now
    n = len(batch)
    inp = np.asarray(batch.input_tokens, dtype=np.float64)
    out = np.asarray(batch.output_tokens, dtype=np.float64)
    qt = np.array(batch.query_type if batch.query_type is not None else [None] * n, dtype=object)
    missing = np.array([q is None for q in qt], dtype=bool)
    classified: Counter[tuple[str, int]] = Counter()
    if missing.any():
        qt[missing], used = dw.classify_with_rule(inp[missing], out[missing], rules.length_rules,
                                                  rules.default_query_type)
        classified.update(zip(qt[missing].tolist(), used.tolist()))
    ts = np.asarray(batch.ts, dtype=np.float64)
    why = event_time.screen(ts, watermark, now, bound_s=rules.event_time_bound_s, min_ts=rules.min_event_ts,
                            window_s=rules.window_s, open_windows=open_windows,
                            max_open_windows=rules.max_open_windows)
    unknown = np.array([q not in rules.query_types for q in qt], dtype=bool)
    why[(why == "") & unknown] = "unknown query type"
    rejected = []
    bad = np.nonzero(why != "")[0]
    if len(bad):
        cols = {c: getattr(batch, c) for c in _ROW}
        for i in bad.tolist():
            reason = str(why[i]) + (f" {str(qt[i])!r} (valid: {sorted(rules.query_types)})"
                                    if why[i] == "unknown query type" else f" (ts {ts[i]!r})")
            row = {c: v[i] for c, v in cols.items() if v is not None}
            rejected.append(Rejection(reason, original_index(i) if original_index else None,
                                      row if original_index else None))
    return Screened(ts, qt, inp, out, why == "", rejected, classified)


def kept_columns(batch: TelemetryBatch, sc: Screened, keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """(ts, query type, input, output, latency, ttft, outcome) of the kept records, as
    demand_window.add_records takes them (NaN: unknown latency)."""
    def floats(col: Sequence[float | None] | None) -> np.ndarray | None:
        if col is None:
            return None
        return np.array([np.nan if v is None else v for v in col], dtype=np.float64)[keep]

    oc = np.array(batch.outcome, dtype=object)[keep] if batch.outcome is not None else None
    return (sc.ts[keep], sc.query_type[keep].astype(str), sc.input_tokens[keep], sc.output_tokens[keep],
            floats(batch.latency_s), floats(batch.ttft_s), oc)


def dead_letter(raw: bytes, topic: str, partition: int, offset: int, reason: str, max_message_bytes: int,
                index: int | None = None, record: dict[str, Any] | None = None,
                now: float | None = None) -> DeadLetter:
    """A dead letter; an original too large for the DLQ keeps a prefix, its size and digest.
    A refused record of a batch carries its index and the record itself, not the batch."""
    body = json.dumps(record).encode() if record is not None else raw
    keep = max(1024, (max_message_bytes - 16_384) * 3 // 4)  # base64 grows by 4/3
    return DeadLetter(source_topic=topic, partition=partition, offset=offset, reason=reason[:2000],
                      record_index=index, original_b64=base64.b64encode(body[:keep]).decode(),
                      original_size=len(raw), original_sha256=hashlib.sha256(raw).hexdigest(),
                      truncated=len(body) > keep, received_at=time.time() if now is None else now)
