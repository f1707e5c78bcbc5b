"""Tumbling event-time demand windows, per telemetry partition and fleet, as JSON-able state.

Each partition's state is ONE `PartitionState` (one table entry): per fleet, open windows with
per-query-type aggregates (counts, sums, log-spaced token histograms); the partition's
watermark (max event time seen, shared by its fleets) and the last offset applied. Keeping the offset inside the same entry
makes a replayed message (after a crash, before the consumer commit) a no-op: every
record is counted once per offset.

Window k covers event time [k * window_s, (k + 1) * window_s) and closes when the partition's watermark
passes (k + 1) * window_s + grace_s; records for a closed window are counted as late, never dropped silently.
Closed windows leave as *partials* (one per partition); `combine` merges the partials of
all partitions into the DemandWindow message.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas import DemandWindow, QueryDemand

#: token histogram edges: 64 log-spaced bins from 1 to 2M tokens (p95 within about +-12 %)
EDGES = np.geomspace(1.0, 2e6, 65)
_NB = len(EDGES) - 1
_OK = "served"


@dataclass(frozen=True)
class LengthRule:
    """Classify a request without a query type: first rule whose ranges contain it wins."""

    query_type: str
    min_input: int = 0
    max_input: int = 10**9
    min_output: int = 0
    max_output: int = 10**9


def classify(inp: np.ndarray, out: np.ndarray, rules: Sequence[LengthRule], default: str) -> np.ndarray:
    return classify_with_rule(inp, out, rules, default)[0]


def classify_with_rule(inp: np.ndarray, out: np.ndarray, rules: Sequence[LengthRule],
                       default: str) -> tuple[np.ndarray, np.ndarray]:
    """Query type per record and the index of the rule that chose it (-1: the default)."""
    res = np.full(len(inp), default, dtype=object)
    used = np.full(len(inp), -1, dtype=np.int64)
    todo = np.ones(len(inp), dtype=bool)
    for k, r in enumerate(rules):
        hit = todo & (inp >= r.min_input) & (inp <= r.max_input) & (out >= r.min_output) & (out <= r.max_output)
        res[hit] = r.query_type
        used[hit] = k
        todo &= ~hit
    return res, used


#: the fleet of telemetry that names none (settings.fleet_id overrides it in a worker)
DEFAULT_FLEET = "default"
Agg = dict[str, Any]  # one query type's aggregates in one window (see _empty_agg)


@dataclass(slots=True)
class PartitionState:
    """One telemetry partition's open windows; only this module writes it (the faust app keeps
    it in the ingest table, serialised by controller/worker/fleet_state.py)."""

    offset: int = -1                   # last offset applied: a replayed message is a no-op
    wm: float | None = None            # the partition's watermark, shared by its fleets
    late: dict[str, int] = field(default_factory=dict)   # fleet -> late records not yet reported
    windows: dict[str, dict[str, dict[str, Agg]]] = field(default_factory=dict)  # fleet -> window -> qt -> agg


def new_state() -> PartitionState:
    return PartitionState()


def _empty_agg() -> dict[str, Any]:
    return {"n": 0, "in_sum": 0.0, "out_sum": 0.0, "in_hist": [0] * _NB, "out_hist": [0] * _NB,
            "lat_n": 0, "lat_sum": 0.0, "ttft_n": 0, "ttft_sum": 0.0, "slo_n": 0, "slo_ok": 0}


def _hist(values: np.ndarray) -> np.ndarray:
    idx = np.clip(np.searchsorted(EDGES, values, side="right") - 1, 0, _NB - 1)
    return np.bincount(idx, minlength=_NB)


def add_records(state: PartitionState, offset: int, ts: np.ndarray, qt: np.ndarray,
                inp: np.ndarray, out: np.ndarray, lat: np.ndarray | None = None,
                ttft: np.ndarray | None = None, outcome: np.ndarray | None = None, *,
                window_s: float, grace_s: float, burst_s: float = 0.0,
                watermark: float | None = None, fleet: str = DEFAULT_FLEET) -> tuple[bool, int]:
    """Apply one message's records (all of `fleet`) in place. Returns (applied, late_count).

    `lat`/`ttft` use NaN for unknown; `outcome` is an object array (None = unknown).
    `burst_s` > 0 also counts records per burst interval of each window (`sub_n`; the window
    split into ceil(window_s / burst_s) equal parts), so the window's peak rate is known: a
    window's mean hides the bursts that decide short SLOs. `watermark`, when given, is the
    partition's new watermark (controller/event_time.advance bounds its jump); by default it
    becomes the newest record time.
    """
    if offset <= state.offset:
        return False, 0
    state.offset = int(offset)
    if len(ts) == 0:
        return True, 0
    wm = state.wm
    index = np.floor(ts / window_s).astype(np.int64)  # window k covers [k w, (k + 1) w)
    late = np.zeros(len(ts), dtype=bool) if wm is None else ((index + 1) * window_s + grace_s <= wm)
    n_late = int(late.sum())
    if n_late:
        state.late[fleet] = state.late.get(fleet, 0) + n_late
    keep = ~late
    windows = state.windows.setdefault(fleet, {})
    if keep.any():
        keys = np.char.add(np.char.add(index[keep].astype(str), "|"), qt[keep].astype(str))
        uniq, inv = np.unique(keys, return_inverse=True)
        kin, kout = inp[keep].astype(np.float64), out[keep].astype(np.float64)
        kts = ts[keep]
        n_sub = math.ceil(window_s / burst_s - 1e-9) if burst_s > 0 else 0  # window_s / n_sub <= burst_s
        klat = lat[keep] if lat is not None else None
        kttft = ttft[keep] if ttft is not None else None
        kout_c = outcome[keep] if outcome is not None else None
        for g, key in enumerate(uniq):
            w, q = key.split("|", 1)
            sel = inv == g
            agg = windows.setdefault(w, {}).setdefault(q, _empty_agg())
            agg["n"] += int(sel.sum())
            agg["t_min"] = min(float(agg.get("t_min", math.inf)), float(kts[sel].min()))
            if n_sub:
                sub = np.floor((kts[sel] - int(w) * window_s) * n_sub / window_s).astype(np.int64)
                agg["sub_n"] = (np.asarray(agg.get("sub_n", [0] * n_sub))
                                + np.bincount(np.clip(sub, 0, n_sub - 1), minlength=n_sub)).tolist()
            agg["in_sum"] += float(kin[sel].sum())
            agg["out_sum"] += float(kout[sel].sum())
            agg["in_hist"] = (np.asarray(agg["in_hist"]) + _hist(kin[sel])).tolist()
            agg["out_hist"] = (np.asarray(agg["out_hist"]) + _hist(kout[sel])).tolist()
            for name, arr in (("lat", klat), ("ttft", kttft)):
                if arr is not None:
                    v = arr[sel]
                    v = v[np.isfinite(v)]
                    agg[f"{name}_n"] += int(len(v))
                    agg[f"{name}_sum"] += float(v.sum())
            if kout_c is not None:
                oc = kout_c[sel]
                known = oc != None  # noqa: E711  (object array of str | None)
                agg["slo_n"] += int(known.sum())
                agg["slo_ok"] += int((oc[known] == _OK).sum())
    top = float(ts.max()) if watermark is None else watermark
    state.wm = top if wm is None else max(wm, top)
    return True, n_late


def close_ready(state: PartitionState, partition: int, *, window_s: float, grace_s: float,
                watermark: float | None = None) -> list[dict[str, Any]]:
    """Pop every window whose end + grace is at or below the watermark, as partials.

    `watermark` may force the partition forward (an idle partition on a busy worker).
    Each partial carries the watermark the leader may advance this partition to when it
    takes it: the partition's full watermark only on the last one; an earlier one only its
    own window's end + grace. The leader closes a window once every partition's watermark
    passed it, so a partial that carried the full watermark could let it close the next
    window before this partition's partial for it had arrived (when a watermark jump, such
    as a tick, closes several windows of a partition at once). Each fleet's partials are
    separate messages (its own leader merges them); the rule holds per fleet.
    """
    if watermark is not None:
        state.wm = watermark if state.wm is None else max(state.wm, watermark)
    wm = state.wm
    if wm is None:
        return []
    out: list[dict[str, Any]] = []
    for fleet in sorted(state.windows):
        windows = state.windows[fleet]
        mine = []
        for w in sorted(windows, key=int):
            k = int(w)
            if (k + 1) * window_s + grace_s <= wm:
                mine.append({"kind": "partial", "fleet": fleet, "partition": partition, "window": k,
                             "window_start": k * window_s, "window_end": (k + 1) * window_s,
                             "aggs": windows.pop(w), "late": state.late.pop(fleet, 0),
                             "wm": (k + 1) * window_s + grace_s})
        if mine:
            mine[-1]["wm"] = wm
        if not windows:
            del state.windows[fleet]
        out += mine
    return out


def _p95(hist: Sequence[int]) -> float:
    h = np.asarray(hist, dtype=np.float64)
    total = h.sum()
    if total <= 0:
        return 0.0
    k = int(np.searchsorted(np.cumsum(h), 0.95 * total))
    return float(math.sqrt(EDGES[k] * EDGES[k + 1]))  # geometric bin centre


def merge_aggs(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out = _empty_agg()
    for p in parts:
        for k, v in p.items():  # sub_n and t_min: only in windows of newer workers, may be missing
            if k == "t_min":
                out[k] = min(float(out.get(k, math.inf)), float(v))
            else:
                out[k] = (np.asarray(out.get(k, 0)) + np.asarray(v)).tolist() if isinstance(v, list) else out[k] + v
    return out


def progress(state: PartitionState, partition: int, *, window_s: float) -> list[dict[str, Any]]:
    """Per fleet, this partition's newest open window so far (cumulative, so a repeat is
    harmless), for the leader's fast path (Planner.on_burst); none before any record."""
    wm = state.wm
    if wm is None:
        return []
    k = int(math.floor(wm / window_s))
    return [{"kind": "progress", "fleet": fleet, "partition": partition, "window": k, "wm": wm, "aggs": aggs}
            for fleet, windows in sorted(state.windows.items()) if (aggs := windows.get(str(k)))]


def partial_window(fleet_id: str, k: int, window_s: float, upto: float,
                   parts: Sequence[Mapping[str, Any]]) -> DemandWindow | None:
    """Window k's demand from its partitions' progress, counted over the burst intervals
    complete by event time `upto` (the slowest partition's watermark): partitions ahead of it
    have counted past `upto`, so only whole intervals before it are comparable. Per query
    type: the mean rate over those intervals (from the window's first record on) and the
    busiest one's rate (`arrival_rate_peak`; intervals that began before the first record are
    left out of it). None while no interval is complete (or nothing was counted). Without
    burst counts (burst_s 0) the mean is taken over [first record, upto]."""
    start = k * window_s
    by_qt: dict[str, list[Mapping[str, Any]]] = {}
    for p in parts:
        for q, agg in p["aggs"].items():
            by_qt.setdefault(q, []).append(agg)
    if not by_qt or upto <= start:
        return None
    first = min((float(a.get("t_min", start)) for aggs in by_qt.values() for a in aggs), default=start)
    first = min(max(first, start), upto)
    demand = []
    for q in sorted(by_qt):
        a = merge_aggs(by_qt[q])
        sub = a.get("sub_n")
        if sub:
            width = window_s / len(sub)
            done = [(j, c) for j, c in enumerate(sub) if start + (j + 1) * width <= upto]
            span = sum(start + (j + 1) * width - max(start + j * width, first) for j, _ in done)
            if not done or span <= 0:
                return None
            n = sum(c for _, c in done)
            whole = [c for j, c in done if start + j * width >= first - 1e-9]
            mean, peak = n / span, (max(whole) / width if whole else None)
        else:
            n = a["n"]
            mean, peak = n / max(upto - first, 1e-3), None
        demand.append(QueryDemand(
            query_type=q, count=n, arrival_rate=mean, arrival_rate_peak=peak,
            input_tokens_mean=a["in_sum"] / a["n"] if a["n"] else 0.0, input_tokens_p95=_p95(a["in_hist"]),
            output_tokens_mean=a["out_sum"] / a["n"] if a["n"] else 0.0, output_tokens_p95=_p95(a["out_hist"])))
    return DemandWindow(fleet_id=fleet_id, window_start=min(first, upto - 1e-3), window_end=upto,
                        records=sum(d.count for d in demand), demand=demand)


def combine(fleet_id: str, window_start: float, window_end: float,
            partials: Sequence[Mapping[str, Any]], extra_late: int = 0) -> DemandWindow:
    """Merge every partition's partial of one window into the published DemandWindow."""
    by_qt: dict[str, list[Mapping[str, Any]]] = {}
    late = extra_late
    for p in partials:
        late += int(p.get("late", 0))
        for q, agg in p["aggs"].items():
            by_qt.setdefault(q, []).append(agg)
    span = window_end - window_start
    demand = []
    for q in sorted(by_qt):
        a = merge_aggs(by_qt[q])
        n = a["n"]
        sub = a.get("sub_n")
        demand.append(QueryDemand(
            query_type=q, count=n, arrival_rate=n / span,
            arrival_rate_peak=max(sub) / (span / len(sub)) if sub else None,
            input_tokens_mean=a["in_sum"] / n if n else 0.0, input_tokens_p95=_p95(a["in_hist"]),
            output_tokens_mean=a["out_sum"] / n if n else 0.0, output_tokens_p95=_p95(a["out_hist"]),
            latency_s_mean=a["lat_sum"] / a["lat_n"] if a["lat_n"] else None,
            ttft_s_mean=a["ttft_sum"] / a["ttft_n"] if a["ttft_n"] else None,
            slo_attainment=a["slo_ok"] / a["slo_n"] if a["slo_n"] else None))
    return DemandWindow(fleet_id=fleet_id, window_start=window_start, window_end=window_end,
                        records=sum(d.count for d in demand), late_records=late, demand=demand)
