"""Event-time bounds: adversarial timestamps cannot wedge a partition or grow its state, and
the sane records among them are counted exactly once."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import demand_window as dw
from controller import window_assembly as wa
from controller.event_time import TimeBounds
from controller.planner import new_planner_state

NOW = 1_760_000_000.0
W, G = 60.0, 5.0
HOSTILE = [0.0, 86_400.0, -5.0, 1e308, float("inf"), float("nan"), 4_102_444_800.0, NOW + 40 * 86_400.0,
           NOW - 10 * 365 * 86_400.0]


def test_the_examples_of_the_issue_are_refused() -> None:
    b = TimeBounds()
    keep, bad = b.check(np.array(HOSTILE + [NOW, NOW - 3 * 365 * 86_400.0]), None, NOW)
    assert keep.tolist() == [False] * len(HOSTILE) + [True, True]
    assert [i for i, _ in bad] == list(range(len(HOSTILE)))
    assert "ahead of the worker's clock" in dict(bad)[6] and "behind the worker's clock" in dict(bad)[0]
    keep, bad = b.check(np.array([NOW - 2 * 3600.0, NOW - 60.0]), NOW, NOW)
    assert keep.tolist() == [False, True] and "behind the partition's watermark" in bad[0][1]
    assert b.tick_ok(4_102_444_800.0, NOW) and b.tick_ok(NOW + 3600.0, NOW) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 600), st.integers(0, 3), st.sampled_from(HOSTILE)), min_size=1, max_size=40))
def test_adversarial_timestamps_keep_state_bounded_and_counts_exact(msgs) -> None:
    """Messages of sane records (seconds after NOW, out of order within 600 s) with one hostile
    timestamp each: every sane record is counted once, the hostile ones never, and the leader
    closes a bounded number of windows."""
    bounds = TimeBounds()
    state, leader = dw.new_state(), new_planner_state()
    for p in (0,):
        wa.absorb(leader, {"kind": "wm", "partition": p, "wm": NOW})
    sane = counted = 0
    closed = []
    for off, (t, n, hostile) in enumerate(msgs, start=1):
        ts = np.array([NOW + t + 0.01 * j for j in range(n)] + [hostile])
        keep, bad = bounds.check(ts, state["wm"], NOW)
        assert [i for i, _ in bad] == [n], "exactly the hostile record is refused"
        ts = ts[keep]
        q = np.array(["code"] * len(ts), dtype=object)
        dw.add_records(state, off, ts, q, np.full(len(ts), 100.0), np.full(len(ts), 10.0), window_s=W, grace_s=G)
        sane += n
        for part in dw.close_ready(state, 0, window_s=W, grace_s=G):
            counted += wa.partial_records(part) + int(part["late"])  # late ones are counted as late
            wa.absorb(leader, part)
            closed += wa.closable(leader, fleet_id="f", partitions=1, window_s=W, grace_s=G)
        assert len(state["windows"]) <= 12, "open windows stay within the sane span"
    counted += sum(a["n"] for aggs in state["windows"].values() for a in aggs.values())
    assert counted + state["late"] == sane
    assert len(closed) <= 12
