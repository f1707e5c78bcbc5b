"""Event-time sanity: which record times a partition may accept, and how far its watermark may move.

One schema-valid record with `ts` in the year 2100 (or 1e308) used to open windows without
bound and drag the watermark past every open window. The rules, per record:

- `ts` must be finite and not before `min_event_ts` (a floor: 0, negative and 1970 times are
  producer bugs, not late traffic);
- `ts` must not be more than `bound_s` ahead of the worker's wall clock. The wall-clock check
  applies only ahead: trace replay (controller/replay/replay.py) publishes historic times at speed
  without re-stamping them, so a behind-the-clock record is normal;
- once the partition has a watermark, `ts` must not be more than `bound_s` behind it (such a
  record is far past its window's grace, and a replayed trace never goes back in time);
- a record whose window would be one more than `max_open_windows` open windows of its
  partition is refused, so window state is bounded whatever the times.

And the watermark moves by at most `bound_s` per message (`advance`), except that it may
always catch up to `now - bound_s`: catching up to the wall clock is never suspicious, since
nothing may be ahead of it by more than the bound.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

FAR_FUTURE = "event time too far ahead of the worker's clock"
FAR_PAST = "event time too far behind the partition's watermark"
BEFORE_FLOOR = "event time before min_event_ts"
NOT_FINITE = "event time not finite"
WINDOWS_FULL = "too many open windows in this partition"


def screen(ts: np.ndarray, wm: float | None, now: float, *, bound_s: float, min_ts: float,
           window_s: float, open_windows: Iterable[str | int], max_open_windows: int) -> np.ndarray:
    """Reason per record ("" = sane), as an object array aligned with `ts`."""
    reason = np.full(len(ts), "", dtype=object)
    finite = np.isfinite(ts)
    reason[~finite] = NOT_FINITE
    with np.errstate(invalid="ignore"):
        reason[finite & (ts < min_ts)] = BEFORE_FLOOR
        reason[(reason == "") & (ts > now + bound_s)] = FAR_FUTURE
        if wm is not None:
            reason[(reason == "") & (ts < wm - bound_s)] = FAR_PAST
    ok = reason == ""
    if ok.any():
        have = {int(w) for w in open_windows}
        idx = np.floor(ts[ok] / window_s).astype(np.int64)
        new = sorted(set(idx.tolist()) - have)
        room = max_open_windows - len(have)
        if len(new) > room:
            refused = set(new[max(room, 0):])  # keep the earliest windows: they close first
            pos = np.nonzero(ok)[0]
            reason[pos[np.isin(idx, list(refused))]] = WINDOWS_FULL
    return reason


def advance(wm: float | None, top: float, now: float, *, bound_s: float) -> float:
    """The partition's new watermark after a message whose newest sane time is `top`."""
    if wm is None:
        return top
    return max(wm, min(top, max(wm + bound_s, now - bound_s)))
