"""Drift detection fires on steps and stays quiet on stationary noise."""
from __future__ import annotations

import numpy as np
import pytest

from controller.worker.windows import drift


@pytest.mark.parametrize("method", ["page_hinkley", "cusum"])
def test_step_fires_quickly_noise_does_not(method: str) -> None:
    rng = np.random.default_rng(0)
    det = drift.new_detector()
    fired = [drift.update(det, 10 * float(np.exp(rng.normal(0, 0.05))), 0.05, 0.5, method) for _ in range(200)]
    assert not any(fired), "5 % noise must not look like drift"
    after = [drift.update(det, 30.0, 0.05, 0.5, method) for _ in range(3)]
    assert any(after), "a 3x step is detected within three windows"
    det2 = drift.new_detector()
    for _ in range(20):
        drift.update(det2, 30.0, 0.05, 0.5, method)
    assert any(drift.update(det2, 5.0, 0.05, 0.5, method) for _ in range(3)), "downward steps too"


def test_relative_change_and_detect_reasons() -> None:
    assert drift.relative_change({"a": 12, "b": 8}, {"a": 10, "b": 10}) == pytest.approx(0.2)
    assert drift.relative_change({"a": 1}, {}) == float("inf")
    dets: dict = {}
    assert drift.detect(dets, {"a": 10.0}, {"a": 10.0}, threshold=0.25, delta=0.05, lam=0.5) == []
    reasons = drift.detect(dets, {"a": 20.0}, {"a": 10.0}, threshold=0.25, delta=0.05, lam=0.5)
    assert any(r.startswith("relative_change") for r in reasons)
