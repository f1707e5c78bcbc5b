"""Cutting a trace into telemetry messages (no broker), and the replay command's broker check."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from controller.replay.replay import Slicer
from controller.replay.command import replay
from controller.replay.trace_reader import Chunk, TraceError, TraceOptions, bundled_sources, read_trace
from schemas import TelemetryBatch


def _trace(**opts: object) -> list[Chunk]:
    return list(read_trace(bundled_sources(), TraceOptions(chunk_rows=700, **opts)))  # type: ignore[arg-type]


def _run(slicer: Slicer, chunks: list[Chunk]) -> list:
    out = []
    for c in chunks:
        out += slicer.push(c)
    return out + slicer.flush()


def test_messages_are_event_time_slices() -> None:
    chunks = _trace(speed=20)  # ~45 s of event time, ~140 records per second
    msgs = _run(Slicer(max_records=100, slice_s=1.0, partitions=4), chunks)
    total = sum(len(c) for c in chunks)
    batches = [TelemetryBatch.model_validate_json(m.value) for m in msgs]
    assert sum(len(b) for b in batches) == total == sum(m.records for m in msgs)
    assert max(len(b) for b in batches) == 100
    for b in batches:
        assert len({int(t // 1.0) for t in b.ts}) == 1  # one slice per message
        assert b.ts == sorted(b.ts) and b.producer == "llmfleet-replay"
    flat = [t for b in batches for t in b.ts]
    assert flat == sorted(flat)
    assert [m.partition for m in msgs[:6]] == [0, 1, 2, 3, 0, 1]  # round robin
    assert sum(sum(b.input_tokens) for b in batches) == sum(int(c.input_tokens.sum()) for c in chunks)


def test_key_by_query_type_keeps_one_type_per_message() -> None:
    msgs = _run(Slicer(key_by="query_type", slice_s=5.0), _trace(limit=2000))
    for m in msgs:
        qts = set(json.loads(m.value)["query_type"])
        assert qts == {m.key.decode()} and m.partition is None
    assert {m.key for m in msgs} == {b"code", b"conversation"}


def test_untyped_records_omit_the_query_type_column() -> None:
    c = Chunk(np.array([1.0, 1.5, 2.5]), np.array([5, 6, 7]), np.array([1, 0, 2]), np.full(3, None, object))
    msgs = _run(Slicer(), [c])
    assert [m.records for m in msgs] == [2, 1]
    assert "query_type" not in json.loads(msgs[0].value)
    with pytest.raises(TraceError, match="event-time order"):
        Slicer().push(Chunk(c.ts[::-1], c.input_tokens, c.output_tokens, c.query_type))


def test_replay_command_requires_a_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMFLEET_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.chdir("/")  # no .env file
    res = CliRunner().invoke(replay, ["--bundled"])
    assert res.exit_code == 2
    assert "replay needs a running Kafka" in res.output and "LLMFLEET_BOOTSTRAP_SERVERS" in res.output
