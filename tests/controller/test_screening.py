"""Screening a telemetry batch without Kafka: what is counted, what is refused and why."""
from __future__ import annotations

import base64
import json

import numpy as np

from controller.worker.ingest import screening
from controller.worker.windows.demand_window import LengthRule
from schemas import TelemetryBatch

NOW = 1_700_000_000.0
RULES = screening.Rules(frozenset({"code", "conversation"}), (LengthRule("code", min_input=1000),), "conversation",
                        window_s=60.0, event_time_bound_s=3600.0, min_event_ts=1_600_000_000.0, max_open_windows=64)


def test_a_mixed_batch_is_classified_screened_and_explained() -> None:
    batch = TelemetryBatch(ts=[NOW - 5, NOW - 4, NOW + 86_400 * 365, NOW - 3],
                           query_type=[None, "code", "code", "chat"], input_tokens=[1500, 10, 10, 10],
                           output_tokens=[5, 5, 5, 5])
    sc = screening.screen_batch(batch, NOW - 10, {}, RULES, original_index=lambda i: i, now=NOW)
    assert sc.query_type.tolist() == ["code", "code", "code", "chat"]
    assert sc.classified == {("code", 0): 1}
    assert sc.keep.tolist() == [True, True, False, False]
    (future, unknown) = sc.rejected
    assert future.index == 2 and "ahead" in future.reason and future.record["ts"] == NOW + 86_400 * 365
    assert unknown.index == 3 and "unknown query type 'chat'" in unknown.reason and "conversation" in unknown.reason
    cols = screening.kept_columns(batch, sc, sc.keep)
    assert cols[0].tolist() == [NOW - 5, NOW - 4] and cols[4] is None and cols[6] is None


def test_a_dead_letter_keeps_a_bounded_prefix_and_the_digest() -> None:
    raw = b"x" * 50_000
    letter = screening.dead_letter(raw, "t", 1, 9, "too big", max_message_bytes=20_000, now=NOW)
    kept = base64.b64decode(letter.original_b64)
    assert letter.truncated and len(kept) < len(raw) and raw.startswith(kept) and letter.original_size == 50_000
    row = screening.dead_letter(raw, "t", 1, 9, "bad record", max_message_bytes=20_000, index=3, record={"ts": 1})
    assert json.loads(base64.b64decode(row.original_b64)) == {"ts": 1} and not row.truncated
    assert np.isclose(letter.received_at, NOW)
