"""The leader's side of demand windows: per-partition partials in, DemandWindows out.

Ingest workers send, on the single-partition windows topic, one partial per (window,
partition) and watermark messages. The leader keeps, in its planner state (JSON, in a
changelog-backed table), each partition's watermark and the partials of windows still open,
and closes window k, in order, once every partition's watermark passed its end + grace.

A partial for a window already closed is one of two things:
* a replay (an ingest worker re-sending after a crash, from a restored state older than what
  it had sent): the published window counts its records already, so it is dropped;
* a late partial, from a partition whose records the window does NOT count: its records go
  into the next window's late count (never dropped silently), with a warning.
The leader tells them apart by remembering which partitions each recently closed window
merged (`closed_from`); a window it has no such record of (closed by an earlier leader whose
table state was lost) is assumed to count the partition, as before.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.worker.windows import demand_window as dw


@dataclass(slots=True)
class AssemblyState:
    """The leader's view of one fleet's windows in the making; only this module writes it.

    Keys of the dicts are strings (window index, telemetry partition) because the state goes
    to the changelog as JSON (controller/worker/fleet_state.py)."""

    wm: dict[str, float] = field(default_factory=dict)               # partition -> watermark
    pending: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # window -> partition -> partial
    late_extra: int = 0              # late records to report with the next window
    closed_upto: int | None = None   # last window closed (published)
    closed_from: dict[str, list[str]] = field(default_factory=dict)  # window -> partitions it merged
    windows_closed: int = 0
    windows_skipped: int = 0         # windows of long empty gaps covered by one empty window
    progress: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # window -> partition -> progress
    progress_mark: int | None = None  # fast-path step last looked at


#: closed windows whose contributing partitions the leader remembers (late vs replayed partials)
CLOSED_MEMORY = 256
#: consecutive empty windows published before the leader covers the rest of a gap with one
#: empty window (a watermark that moved hours ahead must not cost one plan per minute of it)
MAX_EMPTY_RUN = 10


def absorb_progress(state: AssemblyState, msg: dict[str, Any]) -> None:
    """Keep a partition's newest progress on its open window (cumulative: the newest wins)."""
    k = int(msg["window"])
    if state.closed_upto is not None and k <= state.closed_upto:
        return
    prog = state.progress
    cur = prog.setdefault(str(k), {}).get(str(msg["partition"]))
    if cur is None or float(cur["wm"]) <= float(msg["wm"]):
        prog[str(k)][str(msg["partition"])] = msg
    for w in [w for w in prog if int(w) < k - 1]:
        del prog[w]


def fast_path_step(s: Any) -> float:
    """Event seconds between looks at an open window (settings `s`): a burst interval, or the
    warm start when that is shorter."""
    return min(s.burst_s, s.warm_start_s) if s.burst_s > 0 else s.warm_start_s


def open_window(state: AssemblyState, *, fleet_id: str, window_s: float, step_s: float) -> tuple[Any, dict[str, list[tuple[float, float]]]] | None:
    """The newest open window's traffic so far, for the fast path: (partial DemandWindow, per
    query type the rates of its complete burst intervals), once the partitions reporting it
    passed a new multiple of `step_s` (None otherwise: nothing new to look at)."""
    prog = state.progress
    if not prog:
        return None
    k = max(int(w) for w in prog)
    parts = list(prog[str(k)].values())
    # up to the slowest partition that has traffic in this window: one whose watermark is only
    # ticked forward holds no record of it (waiting for its ticks would delay the first plan by
    # the idle interval); one with records it has not reported yet makes this an underestimate,
    # which the window's close corrects
    upto = min(float(p["wm"]) for p in parts)
    mark = int(upto // step_s)
    if state.progress_mark is not None and mark <= state.progress_mark:
        return None
    state.progress_mark = mark
    window = dw.partial_window(fleet_id, k, window_s, min(upto, (k + 1) * window_s), parts)
    if window is None:
        return None
    merged: dict[str, list[int]] = {}
    for p in parts:
        for q, agg in p["aggs"].items():
            if agg.get("sub_n"):
                merged[q] = [a + b for a, b in zip(merged.get(q, [0] * len(agg["sub_n"])), agg["sub_n"])]
    from controller.worker.windows.forecast import bin_rates
    return window, {q: bin_rates(k, window_s, upto, sub) for q, sub in merged.items()}


def partial_records(msg: dict[str, Any]) -> int:
    return sum(int(a.get("n", 0)) for a in msg.get("aggs", {}).values())


def absorb(state: AssemblyState, msg: dict[str, Any]) -> str:
    """Take one windows-topic message ("partial" or "wm") into `state`.

    Returns what it was: "wm", "pending" (a partial of an open window), "duplicate" (a replayed
    partial, dropped) or "late" (a partial of a closed window that did not count it: its
    records and late count are added to the next window's late records)."""
    p = str(msg["partition"])
    state.wm[p] = max(state.wm.get(p, msg["wm"]), msg["wm"])
    if msg["kind"] != "partial":
        return "wm"
    k = int(msg["window"])
    if state.closed_upto is not None and k <= state.closed_upto:
        merged = state.closed_from.get(str(k))
        if merged is None or p in merged:
            return "duplicate"
        merged.append(p)  # a second copy of this late partial is then a replay
        state.late_extra += partial_records(msg) + int(msg.get("late", 0))
        return "late"
    state.pending.setdefault(str(k), {})[p] = msg
    return "pending"


def absorb_any(state: AssemblyState, msg: dict[str, Any]) -> str:
    """`absorb`, plus progress messages (the fast path's view of an open window)."""
    if msg.get("kind") == "progress":
        p = str(msg["partition"])
        state.wm[p] = max(state.wm.get(p, msg["wm"]), msg["wm"])
        absorb_progress(state, msg)
        return "progress"
    return absorb(state, msg)


def closable(state: AssemblyState, *, fleet_id: str, partitions: int, window_s: float,
             grace_s: float) -> list[tuple[Any, float | None]]:
    """Windows every partition has moved past (in order), merged into DemandWindows, each
    with the latest time an ingest worker closed one of its partials."""
    if len(state.wm) < partitions:
        return []
    low = min(state.wm.values())
    k = state.closed_upto + 1 if state.closed_upto is not None else (
        min((int(w) for w in state.pending), default=None))
    if k is None:
        return []
    closed_from = state.closed_from
    out = []
    empty_run = 0
    while (k + 1) * window_s + grace_s <= low:
        if str(k) not in state.pending:
            empty_run += 1
            if empty_run > MAX_EMPTY_RUN:  # a long gap: jump to the next window with data (or the last)
                last = int((low - grace_s) // window_s) - 1
                nxt = min((int(w) for w in state.pending if int(w) > k), default=last)
                target = min(nxt, last)
                if target > k:  # one empty window covers the rest of the gap: time stays contiguous
                    state.windows_skipped = state.windows_skipped + target - k - 1
                    out.append((dw.combine(fleet_id, k * window_s, target * window_s, [], state.late_extra), None))
                    state.late_extra = 0
                    state.closed_upto = target - 1
                    state.windows_closed += 1
                    k = target
                    empty_run = 0
                    continue
        else:
            empty_run = 0
        by_partition = state.pending.pop(str(k), {})
        parts = list(by_partition.values())
        closed = max((p.get("closed_at", 0.0) for p in parts), default=None)
        out.append((dw.combine(fleet_id, k * window_s, (k + 1) * window_s, parts, state.late_extra), closed))
        state.late_extra = 0
        state.closed_upto = k
        state.windows_closed += 1
        closed_from[str(k)] = sorted(by_partition)
        k += 1
    if len(closed_from) > CLOSED_MEMORY:  # runs on every windows-topic message: prune only when over
        for w in sorted(closed_from, key=int)[:-CLOSED_MEMORY]:
            del closed_from[w]
    return out


def skip_to(state: AssemblyState, k: int) -> None:
    """A new leader found window k already published: continue after it. Windows it has no
    record of merging stay unknown (their partials count as replays)."""
    if state.closed_upto is None or k > state.closed_upto:
        state.closed_upto = k
        state.pending = {w: v for w, v in state.pending.items() if int(w) > k}
