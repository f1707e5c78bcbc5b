"""Round trips (hypothesis) and rejections for the streaming messages."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    AllocationEvent, AuditReport, DeadLetter, DemandWindow, Plan, QueryDemand, RequestRecord,
    TelemetryBatch, TelemetryMessage, describe,
)

ids = st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True)
finite = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
records = st.builds(
    RequestRecord,
    ts=finite, query_type=st.none() | ids,
    input_tokens=st.integers(1, 10_000_000), output_tokens=st.integers(0, 10_000_000),
    ttft_s=st.none() | finite, latency_s=st.none() | finite, deployment=st.none() | ids,
    outcome=st.none() | st.sampled_from(["served", "slo_missed", "rejected", "unserved", "error"]),
)


@given(records)
def test_record_roundtrip(r: RequestRecord) -> None:
    assert RequestRecord.model_validate_json(r.model_dump_json()) == r
    assert TelemetryMessage.model_validate({"message": r.model_dump()}).message == r


@settings(max_examples=50)
@given(st.lists(records, min_size=1, max_size=30))
def test_batch_roundtrip_preserves_records(rs: list[RequestRecord]) -> None:
    b = TelemetryBatch.from_records(rs, producer="hyp")
    again = TelemetryBatch.model_validate_json(b.model_dump_json())
    assert again == b and len(again) == len(rs)
    assert list(again.records()) == rs


@pytest.mark.parametrize(("doc", "expect"), [
    ({"ts": 1, "input_tokens": -1, "output_tokens": 3}, "input_tokens"),
    ({"ts": 1, "input_tokens": 10, "output_tokens": 3, "latency_s": math.inf}, "latency_s"),
    ({"ts": "x", "input_tokens": 10, "output_tokens": 3}, "ts"),
    ({"ts": 1, "input_tokens": 10**9, "output_tokens": 3}, "input_tokens"),
    ({"ts": 1, "input_tokens": 10, "output_tokens": 3, "schema_version": 7}, "schema_version"),
    ({"ts": 1, "input_tokens": 10, "output_tokens": 3, "bogus": 1}, "bogus"),
])
def test_record_rejections(doc: dict, expect: str) -> None:
    with pytest.raises(ValidationError) as exc:
        RequestRecord.model_validate(doc)
    assert expect in describe(exc.value)


def test_batch_rejects_ragged_columns_and_names_index() -> None:
    with pytest.raises(ValidationError, match="column output_tokens has 1 values, ts has 2"):
        TelemetryBatch.model_validate({"ts": [1, 2], "input_tokens": [3, 4], "output_tokens": [5]})
    with pytest.raises(ValidationError) as exc:
        TelemetryBatch.model_validate({"ts": [1, 2], "input_tokens": [3, -4],
                                       "output_tokens": [5, 6]})
    assert "input_tokens[1]" in describe(exc.value)


def _window(**kw: object) -> dict:
    d = dict(query_type="code", count=10, arrival_rate=0.5, input_tokens_mean=100,
             input_tokens_p95=300, output_tokens_mean=20, output_tokens_p95=40)
    d.update(kw)
    return d


@given(st.lists(st.tuples(ids, st.integers(0, 10**6), finite), min_size=1, max_size=5,
                unique_by=lambda t: t[0]))
def test_demand_window_roundtrip(rows: list) -> None:
    w = DemandWindow(window_start=100, window_end=160, records=sum(r[1] for r in rows),
                     demand=[QueryDemand(**_window(query_type=q, count=c, arrival_rate=a))
                             for q, c, a in rows])
    assert DemandWindow.model_validate_json(w.model_dump_json()) == w
    assert w.rates() == {q: a for q, _, a in rows}


def test_demand_window_rejections() -> None:
    with pytest.raises(ValidationError, match="window_end must be after"):
        DemandWindow(window_start=10, window_end=10, records=0, demand=[])
    with pytest.raises(ValidationError, match="appears twice"):
        DemandWindow(window_start=0, window_end=1, records=2,
                     demand=[QueryDemand(**_window()), QueryDemand(**_window())])


def test_events_roundtrip_and_reject() -> None:
    plan = Plan(deployments=[], routes=[])
    ev = AllocationEvent(fleet_id="f", epoch=3, trigger="drift", method="agh", status="feasible",
                         plan=plan, cost_per_hour=10, gpu_cost_per_hour=9, demand={"code": 1.5},
                         created_at=1.0, optimality_gap=0.01)
    assert AllocationEvent.model_validate_json(ev.model_dump_json()) == ev
    with pytest.raises(ValidationError, match="epoch"):
        AllocationEvent.model_validate({**ev.model_dump(), "epoch": 0})
    with pytest.raises(ValidationError, match="trigger"):
        AllocationEvent.model_validate({**ev.model_dump(), "trigger": "whim"})
    rep = AuditReport(fleet_id="f", epoch=3, method="milp", status="optimal", plan_cost=10,
                      best_cost=9.5, bound=9.5, gap=0.05, seconds=1.2, created_at=2.0)
    assert AuditReport.model_validate_json(rep.model_dump_json()) == rep
    dl = DeadLetter(source_topic="t", partition=0, offset=5, reason="bad json",
                    original_b64="AAE=", received_at=3.0)
    assert DeadLetter.model_validate_json(dl.model_dump_json()) == dl
