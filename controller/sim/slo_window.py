"""SLO attainment per query type and tumbling event-time window (bounded memory)."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

OUTCOMES = ("served", "slo_missed", "rejected")


class SloWindows:
    """Counts outcomes per (window, query type); keeps the newest `max_windows` windows.

    attainment = served / all requests (a rejection is a miss for the user);
    served_attainment = served / (served + slo_missed) (the fleet's quality on what it took).
    """

    def __init__(self, window_s: float = 60.0, max_windows: int = 1440) -> None:
        if window_s <= 0 or max_windows < 1:
            raise ValueError("window_s must be > 0 and max_windows >= 1")
        self.window_s = window_s
        self.max_windows = max_windows
        self._w: dict[float, dict[str, Counter[str]]] = {}
        self.total: dict[str, Counter[str]] = {}

    def add(self, ts: float, query_type: str, outcome: str) -> None:
        start = math.floor(ts / self.window_s) * self.window_s
        win = self._w.get(start)
        if win is None:
            win = self._w[start] = {}
            if len(self._w) > self.max_windows:
                del self._w[min(self._w)]
        win.setdefault(query_type, Counter())[outcome] += 1
        self.total.setdefault(query_type, Counter())[outcome] += 1

    @staticmethod
    def _summary(c: Counter[str]) -> dict[str, Any]:
        n = sum(c.values())
        took = c["served"] + c["slo_missed"]
        return {**{o: c[o] for o in OUTCOMES}, "total": n,
                "attainment": c["served"] / n if n else None,
                "served_attainment": c["served"] / took if took else None}

    def windows(self) -> dict[float, dict[str, dict[str, Any]]]:
        """window start -> query type -> counts and attainments, oldest first."""
        return {s: {q: self._summary(c) for q, c in sorted(w.items())}
                for s, w in sorted(self._w.items())}

    def overall(self) -> dict[str, dict[str, Any]]:
        return {q: self._summary(c) for q, c in sorted(self.total.items())}
