"""The leader merging partials into windows: every record in exactly one window, whatever the
interleaving of partitions on the windows topic; replays dropped, late partials counted."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.worker.windows import demand_window as dw
from controller.worker.windows import window_assembly as wa

W, G, P = 10.0, 2.0, 3


def _partials(partition: int, batches: list[list[float]], final_wm: float) -> list[dict]:
    """What one partition's ingest sends: its partials as records arrive, then a tick to final_wm."""
    state, out = dw.new_state(), []
    for off, ts in enumerate(batches):
        n = len(ts)
        dw.add_records(state, off, np.array(ts), np.array(["a"] * n, dtype=object), np.full(n, 100.0),
                       np.full(n, 10.0), window_s=W, grace_s=G)
        out += dw.close_ready(state, partition, window_s=W, grace_s=G)
    return out + dw.close_ready(state, partition, window_s=W, grace_s=G, watermark=final_wm)


def _run(messages: list[dict], state: dict | None = None) -> tuple[dict, list, list[str]]:
    state = state or wa.AssemblyState()
    windows, kinds = [], []
    for m in messages:
        kinds.append(wa.absorb(state, m))
        windows += [w for w, _ in wa.closable(state, fleet_id="f", partitions=P, window_s=W, grace_s=G)]
    return state, windows, kinds


def test_a_tick_that_closes_several_windows_does_not_outrun_the_partition() -> None:
    # partitions 1 and 2 finish first; partition 0's tick closes its windows 0 and 1 at once.
    # Its partial for window 0 must not let the leader close window 1 before its partial for 1.
    p0 = _partials(0, [[1.0, 2.0], [10.5, 11.0, 11.5]], final_wm=1000.0)  # wm 11.5: window 0 still open
    assert [m["window"] for m in p0] == [0, 1]
    assert p0[0]["wm"] < 2 * W + G <= p0[1]["wm"], "only the last partial carries the full watermark"
    others = _partials(1, [[3.0], [14.0]], 1000.0) + _partials(2, [[4.0, 5.0], [15.0]], 1000.0)
    _, windows, kinds = _run(others + p0)
    assert set(kinds) == {"pending"}
    assert [(w.window_start, w.records, w.late_records) for w in windows[:2]] == [(0.0, 5, 0), (10.0, 5, 0)]
    assert sum(w.records for w in windows) == 10


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.lists(st.tuples(st.floats(0.1, 12.0), st.integers(1, 4)), min_size=1, max_size=12),
                      min_size=P, max_size=P),
       order=st.lists(st.integers(0, P - 1), max_size=200))
def test_every_record_in_exactly_one_window_for_any_interleaving(steps: list[list[tuple[float, int]]],
                                                                 order: list[int]) -> None:
    # each partition's messages keep their order on the single-partition windows topic;
    # how the partitions interleave is arbitrary
    queues, total = [], 0
    for p, per_step in enumerate(steps):
        ts = np.cumsum([gap for gap, _ in per_step])  # event time moves on by `gap` seconds
        batches = [[float(t)] * n for t, (_, n) in zip(ts, per_step)]
        total += sum(map(len, batches))
        queues.append(_partials(p, batches, final_wm=500.0))
    merged = []
    for p in order:
        if queues[p]:
            merged.append(queues[p].pop(0))
    for q in queues:
        merged += q
    state, windows, kinds = _run(merged)
    assert "late" not in kinds and "duplicate" not in kinds
    assert sum(w.records for w in windows) == total
    assert sum(w.late_records for w in windows) == 0
    starts = [w.window_start for w in windows]
    assert starts == sorted(set(starts))


def test_replayed_partial_is_dropped_and_a_late_one_is_counted_as_late() -> None:
    def part(p: int, k: int, n: int, wm: float) -> dict:
        return {"kind": "partial", "partition": p, "window": k, "aggs": {"a": {**dw._empty_agg(), "n": n}},
                "late": 0, "wm": wm}

    msgs = [part(0, 0, 4, 12.0), part(1, 0, 3, 12.0), {"kind": "wm", "partition": 2, "wm": 25.0}]
    state, windows, kinds = _run(msgs)
    assert [w.records for w in windows] == [7] and state.closed_from["0"] == ["0", "1"]
    # partition 0 re-sends window 0 after a crash: already counted
    assert wa.absorb(state, part(0, 0, 4, 12.0)) == "duplicate"
    # partition 2's partial for window 0 arrives after the window closed without it
    assert wa.absorb(state, part(2, 0, 6, 12.0)) == "late"
    assert wa.absorb(state, part(2, 0, 6, 12.0)) == "duplicate", "the same late partial again is a replay"
    _, more, _ = _run([{"kind": "wm", "partition": p, "wm": 25.0} for p in (0, 1)], state)
    assert [(w.window_start, w.records, w.late_records) for w in more] == [(10.0, 0, 6)]


def test_windows_published_by_an_earlier_leader_count_as_replays() -> None:
    state = wa.AssemblyState()
    wa.skip_to(state, 5)  # the demand topic already holds window 5; this state never merged it
    part = {"kind": "partial", "partition": 1, "window": 4, "aggs": {"a": {"n": 2}}, "late": 0, "wm": 52.0}
    assert wa.absorb(state, part) == "duplicate"
    assert state.late_extra == 0


def test_closed_window_memory_is_bounded() -> None:
    state = wa.AssemblyState()
    for p in range(P):
        wa.absorb(state, {"kind": "wm", "partition": p, "wm": 0.0})
    state.closed_upto = -1
    for k in range(wa.CLOSED_MEMORY + 50):  # every window has a partial: none is skipped as empty
        wa.absorb(state, {"kind": "partial", "partition": 0, "window": k, "aggs": {}, "late": 0, "wm": k * W})
    for p in range(P):
        wa.absorb(state, {"kind": "wm", "partition": p, "wm": (wa.CLOSED_MEMORY + 50) * W + G})
    windows = wa.closable(state, fleet_id="f", partitions=P, window_s=W, grace_s=G)
    assert len(windows) == wa.CLOSED_MEMORY + 50
    assert len(state.closed_from) == wa.CLOSED_MEMORY
    assert min(map(int, state.closed_from)) == 50


def test_a_long_empty_gap_costs_a_bounded_number_of_windows() -> None:
    """A watermark that jumped far ahead (hours of no traffic, or the largest jump the event-time
    bounds allow) closes MAX_EMPTY_RUN empty windows, then the next window with data."""
    state = wa.AssemblyState()
    for p in range(P):
        wa.absorb(state, {"kind": "wm", "partition": p, "wm": 0.0})
    state.closed_upto = -1
    far = 100_000
    wa.absorb(state, {"kind": "partial", "partition": 0, "window": far, "aggs": {}, "late": 0, "wm": far * W})
    for p in range(P):
        wa.absorb(state, {"kind": "wm", "partition": p, "wm": (far + 5) * W + G})
    windows = wa.closable(state, fleet_id="f", partitions=P, window_s=W, grace_s=G)
    ends = [w.window_end for w, _ in windows]
    assert len(windows) < wa.MAX_EMPTY_RUN + 10 and (far + 1) * W in ends
    assert state.closed_upto == far + 4 and state.windows_skipped > far - 20
    assert all(a.window_end == b.window_start for (a, _), (b, _) in zip(windows, windows[1:])), \
        "the gap is covered by one long empty window: time stays contiguous"
    assert windows[0][0].window_start == 0.0 and all(w.records == 0 for w, _ in windows if w.window_end <= far * W)


def test_progress_gives_the_open_window_once_per_step() -> None:
    """Progress from two partitions: the fast path sees the open window's whole burst intervals
    up to the slowest partition, once per step of it, never a closed window."""
    import numpy as np

    from controller.worker.windows import demand_window as dw
    from controller.worker.windows import window_assembly
    
    state = wa.AssemblyState()
    parts = {p: dw.new_state() for p in (0, 1)}
    off = 0

    def feed(p: int, t0: float, t1: float, rate: float) -> None:
        nonlocal off
        ts = np.arange(t0, t1, 1.0 / rate)
        off += 1
        dw.add_records(parts[p], off, ts, np.array(["code"] * len(ts), dtype=object), np.full(len(ts), 100.0),
                       np.full(len(ts), 10.0), window_s=60.0, grace_s=5.0, burst_s=10.0)
        (prog,) = dw.progress(parts[p], p, window_s=60.0)  # one fleet: one progress message
        window_assembly.absorb_any(state, prog)

    feed(0, 60.0, 85.0, 4.0)      # partition 0 is at 85 s, partition 1 lags at 72 s
    feed(1, 60.0, 72.0, 4.0)
    got = window_assembly.open_window(state, fleet_id="f", window_s=60.0, step_s=10.0)
    assert got is not None
    window, bins = got
    (d,) = window.demand
    # only [60, 70) is complete at 72 s: 40 + 40 records in 10 s
    assert d.count == 80 and d.arrival_rate_peak == 8.0 and bins["code"] == [(70.0, 8.0)]
    assert window_assembly.open_window(state, fleet_id="f", window_s=60.0, step_s=10.0) is None
    feed(1, 72.0, 85.0, 4.0)
    window, bins = window_assembly.open_window(state, fleet_id="f", window_s=60.0, step_s=10.0)
    assert [t for t, _ in bins["code"]] == [70.0, 80.0] and window.window_end == 84.75
