"""Event-time sanity: adversarial times are refused, window state stays bounded, sane records count exactly."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.worker.windows import demand_window as dw
from controller.worker.ingest import event_time

T0 = 1_700_000_000.0
NOW = T0 + 10_000.0  # the worker's clock, a little after the traffic (a replay or live)
W, GRACE, BOUND, FLOOR, MAX_OPEN = 10.0, 2.0, 3600.0, 1_577_836_800.0, 64

ADVERSARIAL = [0.0, -1.0, -1e308, 86_400.0, 1e308, math.inf, -math.inf, math.nan,
               4_102_444_800.0,  # the year 2100
               NOW + BOUND + 1.0,  # just past the clock bound
               FLOOR + 1.0]  # above the floor, years behind the watermark


def _ingest(state: dw.PartitionState, offset: int, ts: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """What the ingest agent does with one message's times: screen, count the sane, close."""
    why = event_time.screen(ts, state.wm, NOW, bound_s=BOUND, min_ts=FLOOR, window_s=W,
                            open_windows=state.windows.get("default", {}), max_open_windows=MAX_OPEN)
    keep = why == ""
    k = ts[keep]
    if len(k):
        n = len(k)
        wm = event_time.advance(state.wm, float(k.max()), NOW, bound_s=BOUND)
        dw.add_records(state, offset, k, np.full(n, "code", dtype=object), np.full(n, 100.0),
                       np.full(n, 10.0), window_s=W, grace_s=GRACE, watermark=wm)
    return why, dw.close_ready(state, 0, window_s=W, grace_s=GRACE)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.lists(st.sampled_from(ADVERSARIAL), max_size=4),
                          st.randoms(use_true_random=False)), min_size=1, max_size=40))
def test_adversarial_times_bounded_state_exact_counts(messages: list) -> None:
    state = dw.new_state()
    t, sane_sent, counted, refused = T0, 0, 0, 0
    # the first message is sane: a partition's watermark starts at its first record (see docs/producer.md)
    for off, (n_sane, bad, rnd) in enumerate([(5, [], None)] + messages):
        sane = t + np.array([rnd.uniform(-GRACE / 2, 1.0) if rnd else 0.0 for _ in range(n_sane)])
        sane = np.maximum(sane, T0)
        t += 1.5
        ts = np.concatenate([sane, np.array(bad, dtype=np.float64)])
        order = np.random.default_rng(off).permutation(len(ts))  # interleaved, out of order
        why, partials = _ingest(state, off, ts[order])
        is_bad = order >= len(sane)
        assert (why[is_bad] != "").all(), "every adversarial time is refused"
        assert (why[~is_bad] == "").all(), f"no sane time is refused: {why[~is_bad]}"
        sane_sent += len(sane)
        refused += int(is_bad.sum())
        counted += sum(a["n"] for p in partials for a in p["aggs"].values())
        assert len(state.windows.get("default", {})) <= MAX_OPEN
        assert state.wm <= t + 1.0 and state.wm >= T0
    counted += sum(a["n"] for w in state.windows.get("default", {}).values() for a in w.values())
    assert state.late.get("default", 0) == 0
    assert counted == sane_sent


def test_watermark_jumps_at_most_the_bound_per_message_unless_catching_up_to_the_clock() -> None:
    assert event_time.advance(T0, T0 + 10 * BOUND, T0 + 2 * BOUND, bound_s=BOUND) == T0 + BOUND
    # catching up to the clock (a live producer after a replay) is never suspicious
    assert event_time.advance(T0, NOW, NOW, bound_s=BOUND) == NOW - BOUND
    assert event_time.advance(T0, T0 - 5, NOW, bound_s=BOUND) == T0  # never backwards
    assert event_time.advance(None, T0, NOW, bound_s=BOUND) == T0


def test_window_state_is_capped_keeping_the_earliest_windows() -> None:
    state = dw.new_state()
    ts = T0 + W * np.arange(MAX_OPEN + 10, dtype=np.float64)  # every record opens its own window
    why = event_time.screen(ts, None, NOW, bound_s=BOUND, min_ts=FLOOR, window_s=W,
                            open_windows=state.windows.get("default", {}), max_open_windows=MAX_OPEN)
    assert (why[:MAX_OPEN] == "").all()
    assert (why[MAX_OPEN:] == event_time.WINDOWS_FULL).all()


def test_reasons_name_the_fault() -> None:
    ts = np.array([0.0, 1e308, math.nan, T0 - 2 * BOUND, T0])
    why = event_time.screen(ts, T0, NOW, bound_s=BOUND, min_ts=FLOOR, window_s=W, open_windows={},
                            max_open_windows=MAX_OPEN)
    assert why.tolist() == [event_time.BEFORE_FLOOR, event_time.FAR_FUTURE, event_time.NOT_FINITE,
                            event_time.FAR_PAST, ""]
