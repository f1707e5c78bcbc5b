"""Per-series deltas of cumulative histograms between two polls: resets, new series and gaps.

Pure bookkeeping, no I/O (unit-tested without a network). The rules, which docs/deploy.md states:
- a counter that drops (any bucket, `_count` or `_sum` lower than before, or other bucket bounds)
  was reset by an engine restart: its new value is the delta (the requests since the restart; those
  between the last scrape before the restart and the restart are lost). Rates are never negative;
- the first poll only records a baseline (its counters hold the engine's whole history);
- a series first seen on a later poll started since the previous poll: its whole value is the delta,
  spread over [previous poll, now);
- a series absent from one or more polls (its target was not scraped, or the source was down) is a
  *gap*: when it is seen again its delta spans the whole time since it was last seen, and the gap is
  reported (its length in seconds).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .samples import Hist, SeriesKey
from .vllm_metrics import REQUIRED


@dataclass(frozen=True)
class HistDelta:
    """Requests observed in an interval: per-bucket counts (not cumulative), value sum and count."""

    bounds: tuple[float, ...]
    counts: np.ndarray
    total: float
    count: int


@dataclass(frozen=True)
class SeriesDelta:
    key: SeriesKey
    t0: float
    t1: float
    hists: dict[str, HistDelta]
    resets: tuple[str, ...] = ()
    gap_s: float = 0.0

    @property
    def requests(self) -> int:
        return min(self.hists[name].count for name in REQUIRED)


def _dropped(prev: Hist, cur: Hist) -> bool:
    return (prev.bounds != cur.bounds or cur.count < prev.count or cur.total < prev.total
            or any(c < p for c, p in zip(cur.cum, prev.cum, strict=True)))


def hist_delta(prev: Hist | None, cur: Hist) -> tuple[HistDelta, bool]:
    """(delta, reset): the increase since `prev`, or the whole of `cur` after a reset or without `prev`."""
    reset = prev is not None and _dropped(prev, cur)
    cum = np.asarray(cur.cum, dtype=np.float64)
    total, count = cur.total, cur.count
    if prev is not None and not reset:
        cum = cum - np.asarray(prev.cum, dtype=np.float64)
        total, count = total - prev.total, count - prev.count
    per_bucket = np.clip(np.rint(np.diff(cum, prepend=0.0)), 0, None).astype(np.int64)
    return HistDelta(cur.bounds, per_bucket, max(float(total), 0.0), int(per_bucket.sum())), reset


@dataclass
class Seen:
    t: float
    hists: dict[str, Hist]


@dataclass
class Tracker:
    """What the ingest remembers of every series between polls.

    `gap_after_s`: a series last seen longer ago than this (normally 1.5 poll intervals) has a gap.
    """

    gap_after_s: float
    seen: dict[SeriesKey, Seen] = field(default_factory=dict)
    last_poll: float | None = None

    def update(self, groups: Mapping[SeriesKey, Mapping[str, Hist]], t: float) -> list[SeriesDelta]:
        """Deltas of every complete series in `groups` (the poll at time `t`); updates the memory.

        A series missing a required histogram is neither diffed nor remembered (the caller counts it).
        """
        first = self.last_poll is None
        out = []
        for key, hists in groups.items():
            if any(name not in hists for name in REQUIRED):
                continue
            prev = self.seen.get(key)
            self.seen[key] = Seen(t, dict(hists))
            if prev is None and first:
                continue
            t0 = prev.t if prev is not None else float(self.last_poll)  # type: ignore[arg-type]
            deltas, resets = {}, []
            for name, cur in hists.items():
                d, reset = hist_delta(prev.hists.get(name) if prev is not None else None, cur)
                deltas[name] = d
                if reset:
                    resets.append(name)
            gap = t - prev.t if prev is not None and t - prev.t > self.gap_after_s else 0.0
            out.append(SeriesDelta(key, t0, t, deltas, tuple(resets), gap))
        self.last_poll = t
        return out
