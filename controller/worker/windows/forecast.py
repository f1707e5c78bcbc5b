"""Short-horizon forecast of a query type's rate: where will it be when new replicas are up?

A plan made now serves only after its new replicas' cold start (a minute or more), so a rate
that is climbing is planned for where its linear trend will be then: level + slope x lead,
fitted by least squares over the last burst intervals. Only upward trends count (scale-down
is the hysteresis' job), and the forecast is capped at `max_growth` times the highest rate
seen in the points, so a short spike cannot ask for an unbounded fleet.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def trend_forecast(points: Sequence[tuple[float, float]], lead_s: float, *, min_points: int = 3,
                   min_rise: float = 0.3, max_growth: float = 2.0) -> float | None:
    """Rate expected `lead_s` after the last point (t, rate); None with too few points or no
    upward trend. A trend is a climb: the last `min_points` rates rise one after another and by
    at least `min_rise` of where they started (noise around a level is not a trend)."""
    if len(points) < min_points:
        return None
    t = np.array([p[0] for p in points], dtype=np.float64)
    r = np.array([p[1] for p in points], dtype=np.float64)
    last = r[-min_points:]
    if np.ptp(t) <= 0 or not np.all(np.diff(last) > 0) or last[-1] < (1 + min_rise) * last[0]:
        return None
    slope, intercept = np.polyfit(t - t[-1], r, 1)
    if slope <= 0:
        return None
    level = max(float(intercept), float(r[-1]))
    return float(min(level + slope * lead_s, max_growth * float(r.max())))


def bin_rates(k: int, window_s: float, upto: float, sub: Sequence[int]) -> list[tuple[float, float]]:
    """(end time, rate) of window k's burst intervals that are complete by `upto`."""
    width = window_s / len(sub)
    start = k * window_s
    return [(start + (j + 1) * width, c / width) for j, c in enumerate(sub) if start + (j + 1) * width <= upto]
