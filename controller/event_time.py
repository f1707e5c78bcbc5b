"""Event-time sanity: which records a partition may take, so one bad timestamp cannot wedge it.

A record's `ts` moves its partition's watermark, and the watermark closes windows: a single
record stamped in the year 2100 (or 1e308) once made the leader close and plan every minute
between now and then, at 100 % CPU with memory growing, and no window after it was ever
published. So a record is taken only when its time is plausible:

* not more than `max_future_s` ahead of the worker's clock (a fast replay runs ahead of the
  clock, by up to a day of trace by default), nor more than `max_age_s` behind it (a trace
  replayed with its original stamps can be years old; 1970 is not);
* not more than `max_skew_s` behind its partition's watermark: a record that far behind is
  not merely late (late records within it are counted as late, as before).

Anything else goes to the dead-letter topic with its index and the rule it broke. The same
clock bounds apply to ticks. A watermark can then jump at most to the clock + `max_future_s`,
and the leader closes a long run of empty windows in one step (window_assembly.closable),
so even the largest legal jump costs a bounded amount of work.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimeBounds:
    max_skew_s: float = 3600.0
    max_future_s: float = 86_400.0
    max_age_s: float = 5 * 365 * 86_400.0

    def check(self, ts: np.ndarray, watermark: float | None, now: float) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """(mask of records to keep, [(index, reason)] of the others)."""
        ts = np.asarray(ts, dtype=np.float64)
        bad = ~np.isfinite(ts) | (ts < 0)
        reasons = np.full(len(ts), "", dtype=object)
        reasons[bad] = "ts is not a finite, non-negative epoch time"
        rules = [(ts > now + self.max_future_s,
                  f"ts more than max_future_s ({self.max_future_s:g} s) ahead of the worker's clock"),
                 (ts < now - self.max_age_s,
                  f"ts more than max_event_age_s ({self.max_age_s:g} s) behind the worker's clock")]
        if watermark is not None:
            rules.append((ts < watermark - self.max_skew_s,
                          f"ts more than max_event_skew_s ({self.max_skew_s:g} s) behind the partition's watermark"))
        for hit, why in rules:
            hit = hit & ~bad
            reasons[hit] = why
            bad |= hit
        idx = np.nonzero(bad)[0]
        return ~bad, [(int(i), str(reasons[i])) for i in idx]

    def tick_ok(self, wm: float, now: float) -> str | None:
        """Why a tick's watermark is refused (None: it is within the clock bounds)."""
        if not np.isfinite(wm) or wm < 0:
            return "tick watermark is not a finite, non-negative epoch time"
        if wm > now + self.max_future_s:
            return f"tick watermark more than max_future_s ({self.max_future_s:g} s) ahead of the worker's clock"
        if wm < now - self.max_age_s:
            return f"tick watermark more than max_event_age_s ({self.max_age_s:g} s) behind the worker's clock"
        return None
