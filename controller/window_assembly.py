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

from typing import Any

from . import demand_window as dw

#: closed windows whose contributing partitions the leader remembers (late vs replayed partials)
CLOSED_MEMORY = 256


def partial_records(msg: dict[str, Any]) -> int:
    return sum(int(a.get("n", 0)) for a in msg.get("aggs", {}).values())


def absorb(state: dict[str, Any], msg: dict[str, Any]) -> str:
    """Take one windows-topic message ("partial" or "wm") into `state`.

    Returns what it was: "wm", "pending" (a partial of an open window), "duplicate" (a replayed
    partial, dropped) or "late" (a partial of a closed window that did not count it: its
    records and late count are added to the next window's late records)."""
    p = str(msg["partition"])
    state["wm"][p] = max(state["wm"].get(p, msg["wm"]), msg["wm"])
    if msg["kind"] != "partial":
        return "wm"
    k = int(msg["window"])
    if state["closed_upto"] is not None and k <= state["closed_upto"]:
        merged = state.setdefault("closed_from", {}).get(str(k))
        if merged is None or p in merged:
            return "duplicate"
        merged.append(p)  # a second copy of this late partial is then a replay
        state["late_extra"] += partial_records(msg) + int(msg.get("late", 0))
        return "late"
    state["pending"].setdefault(str(k), {})[p] = msg
    return "pending"


def closable(state: dict[str, Any], *, fleet_id: str, partitions: int, window_s: float,
             grace_s: float) -> list[tuple[Any, float | None]]:
    """Windows every partition has moved past (in order), merged into DemandWindows, each
    with the latest time an ingest worker closed one of its partials."""
    if len(state["wm"]) < partitions:
        return []
    low = min(state["wm"].values())
    k = state["closed_upto"] + 1 if state["closed_upto"] is not None else (
        min((int(w) for w in state["pending"]), default=None))
    if k is None:
        return []
    closed_from = state.setdefault("closed_from", {})
    out = []
    while (k + 1) * window_s + grace_s <= low:
        by_partition = state["pending"].pop(str(k), {})
        parts = list(by_partition.values())
        closed = max((p.get("closed_at", 0.0) for p in parts), default=None)
        out.append((dw.combine(fleet_id, k * window_s, (k + 1) * window_s, parts, state["late_extra"]), closed))
        state["late_extra"] = 0
        state["closed_upto"] = k
        state["windows_closed"] += 1
        closed_from[str(k)] = sorted(by_partition)
        k += 1
    if len(closed_from) > CLOSED_MEMORY:  # runs on every windows-topic message: prune only when over
        for w in sorted(closed_from, key=int)[:-CLOSED_MEMORY]:
            del closed_from[w]
    return out


def skip_to(state: dict[str, Any], k: int) -> None:
    """A new leader found window k already published: continue after it. Windows it has no
    record of merging stay unknown (their partials count as replays)."""
    if state["closed_upto"] is None or k > state["closed_upto"]:
        state["closed_upto"] = k
        state["pending"] = {w: v for w, v in state["pending"].items() if int(w) > k}
