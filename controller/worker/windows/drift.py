"""Demand drift detection: two-sided Page-Hinkley (or CUSUM) per query type on log rates,
plus a relative-change test of the whole demand vector against the plan in force.

Page-Hinkley on x_t = log(1 + rate_t): with running mean m_t, the statistic
U_t = sum_{k<=t} (x_k - m_k - delta) detects an upward shift when U_t - min U > lambda
(downward symmetrically). Logs make the test scale-free across query types. The vector
test catches a sum of small moves that no single detector flags:
||rate - planned||_1 / ||planned||_1 > threshold. Detector state is plain JSON so the
planner's table can carry it across restarts.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def new_detector() -> dict[str, Any]:
    return {"n": 0, "mean": 0.0, "up": 0.0, "up_min": 0.0, "down": 0.0, "down_max": 0.0}


def update(det: dict[str, Any], rate: float, delta: float, lam: float,
           method: str = "page_hinkley") -> bool:
    """Feed one window's rate; True when a shift is detected (the detector then resets)."""
    x = math.log1p(max(rate, 0.0))
    det["n"] += 1
    if det["n"] == 1:
        det["mean"] = x
        return False
    if method == "cusum":  # reference = the mean before this sample
        ref = det["mean"]
        det["up"] = max(0.0, det["up"] + x - ref - delta)
        det["down"] = max(0.0, det["down"] + ref - x - delta)
        det["mean"] += (x - det["mean"]) / det["n"]
        fired = det["up"] > lam or det["down"] > lam
    else:
        det["mean"] += (x - det["mean"]) / det["n"]
        det["up"] += x - det["mean"] - delta
        det["up_min"] = min(det["up_min"], det["up"])
        det["down"] += x - det["mean"] + delta
        det["down_max"] = max(det["down_max"], det["down"])
        fired = (det["up"] - det["up_min"] > lam) or (det["down_max"] - det["down"] > lam)
    if fired:
        det.clear()
        det.update(new_detector())
        det["n"], det["mean"] = 1, x
    return fired


def relative_change(rates: Mapping[str, float], planned: Mapping[str, float]) -> float:
    keys = set(rates) | set(planned)
    base = sum(abs(planned.get(k, 0.0)) for k in keys)
    diff = sum(abs(rates.get(k, 0.0) - planned.get(k, 0.0)) for k in keys)
    return diff / base if base > 0 else (math.inf if diff > 0 else 0.0)


def detect(detectors: dict[str, dict[str, Any]], rates: Mapping[str, float],
           planned: Mapping[str, float] | None, *, threshold: float, delta: float, lam: float,
           method: str = "page_hinkley") -> list[str]:
    """Reasons for drift this window (empty: none). Updates `detectors` in place."""
    reasons = []
    for q, r in sorted(rates.items()):
        if update(detectors.setdefault(q, new_detector()), r, delta, lam, method):
            reasons.append(f"{method}:{q}")
    if planned is not None:
        rc = relative_change(rates, planned)
        if rc > threshold:
            reasons.append(f"relative_change:{rc:.3f}>{threshold:g}")
    return reasons
