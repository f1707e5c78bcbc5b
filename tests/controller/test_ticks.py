"""Ticks: only a worker holding the group's key can advance a partition's watermark."""
from __future__ import annotations

import json

import pytest

from controller.worker.ingest import ticks


def test_a_signed_tick_verifies_on_its_own_partition_only() -> None:
    raw = ticks.make("k", "telemetry", 2, 1_700_000_060.0)
    head = json.loads(raw)
    assert ticks.verify("k", "telemetry", 2, head) == 1_700_000_060.0
    with pytest.raises(ValueError, match="partition 2 but sits on partition 1"):
        ticks.verify("k", "telemetry", 1, head)
    with pytest.raises(ValueError, match="forged tick"):
        ticks.verify("other-key", "telemetry", 2, head)
    with pytest.raises(ValueError, match="forged tick"):
        ticks.verify("k", "another-topic", 2, head)


def test_a_tampered_or_bare_tick_is_refused() -> None:
    head = json.loads(ticks.make("k", "telemetry", 0, 100.0))
    with pytest.raises(ValueError, match="forged tick"):
        ticks.verify("k", "telemetry", 0, {**head, "wm": 4_102_444_800.0})
    with pytest.raises(ValueError, match="malformed tick"):
        ticks.verify("k", "telemetry", 0, {"kind": "tick", "wm": 100.0})  # the form an outsider used to send


def test_without_a_key_each_process_signs_with_its_own_secret() -> None:
    head = json.loads(ticks.make(None, "telemetry", 0, 100.0))
    assert ticks.verify(None, "telemetry", 0, head) == 100.0
    with pytest.raises(ValueError, match="forged tick"):
        ticks.verify("guessed", "telemetry", 0, head)
