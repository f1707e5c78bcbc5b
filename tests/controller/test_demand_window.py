"""Window aggregation: exact counts, once per offset, late records, p95, classification."""
from __future__ import annotations

import numpy as np
import pytest

from controller.worker.windows import demand_window as dw

W, G = 10.0, 2.0


def _add(state: dict, offset: int, ts: list[float], qt: list[str], inp: list[int] | None = None,
         out: list[int] | None = None, **kw: object) -> tuple[bool, int]:
    n = len(ts)
    return dw.add_records(state, offset, np.array(ts, dtype=float), np.array(qt, dtype=object),
                          np.array(inp or [100] * n, dtype=float), np.array(out or [10] * n, dtype=float),
                          window_s=W, grace_s=G, **kw)


def test_counts_once_per_offset_and_closes_after_grace() -> None:
    st = dw.new_state()
    assert _add(st, 0, [1.0, 2.0, 3.0], ["a", "b", "a"]) == (True, 0)
    assert _add(st, 0, [1.0, 2.0, 3.0], ["a", "b", "a"]) == (False, 0), "replayed offset is a no-op"
    assert _add(st, 1, [11.0], ["a"]) == (True, 0)
    assert dw.close_ready(st, 0, window_s=W, grace_s=G) == []  # wm 11 < 10 + 2
    _add(st, 2, [12.5], ["b"])
    (part,) = dw.close_ready(st, 0, window_s=W, grace_s=G)
    assert part["window"] == 0 and part["window_start"] == 0.0 and part["window_end"] == 10.0
    assert part["aggs"]["a"]["n"] == 2 and part["aggs"]["b"]["n"] == 1
    win = dw.combine("f", 0.0, 10.0, [part])
    assert win.records == 3 and win.rates() == {"a": 0.2, "b": 0.1}


def test_late_records_are_counted_not_dropped() -> None:
    st = dw.new_state()
    _add(st, 0, [1.0, 25.0], ["a", "a"])
    parts = dw.close_ready(st, 0, window_s=W, grace_s=G)
    assert [p["window"] for p in parts] == [0]
    applied, late = _add(st, 1, [3.0, 9.0, 24.0], ["a", "a", "a"])  # window 0 closed: 2 late
    assert applied and late == 2
    _add(st, 2, [40.0], ["a"])
    parts = dw.close_ready(st, 0, window_s=W, grace_s=G)
    assert parts[0]["window"] == 2 and parts[0]["aggs"]["a"]["n"] == 2 and parts[0]["late"] == 2
    assert dw.combine("f", 20.0, 30.0, parts[:1]).late_records == 2


def test_forced_watermark_closes_idle_partition() -> None:
    st = dw.new_state()
    _add(st, 0, [5.0], ["a"])
    assert dw.close_ready(st, 3, window_s=W, grace_s=G) == []
    (part,) = dw.close_ready(st, 3, window_s=W, grace_s=G, watermark=100.0)
    assert part["partition"] == 3 and part["wm"] == 100.0


def test_combine_merges_partitions_and_estimates_p95() -> None:
    rng = np.random.default_rng(1)
    toks = rng.integers(100, 4000, size=4000).astype(float)
    parts = []
    for p in range(4):
        st = dw.new_state()
        chunk = toks[p::4]
        dw.add_records(st, 0, np.full(len(chunk), 1.0), np.array(["q"] * len(chunk), dtype=object),
                       chunk, chunk / 10, np.full(len(chunk), 0.5), np.full(len(chunk), np.nan),
                       np.array(["served", "slo_missed"] * (len(chunk) // 2), dtype=object),
                       window_s=W, grace_s=G)
        parts += dw.close_ready(st, p, window_s=W, grace_s=G, watermark=50.0)
    win = dw.combine("f", 0.0, 10.0, parts)
    (q,) = win.demand
    assert q.count == 4000 and q.arrival_rate == 400.0
    assert q.input_tokens_mean == pytest.approx(toks.mean())
    assert q.input_tokens_p95 == pytest.approx(np.percentile(toks, 95), rel=0.15)
    assert q.latency_s_mean == pytest.approx(0.5) and q.ttft_s_mean is None
    assert q.slo_attainment == pytest.approx(0.5)


def test_classify_first_rule_wins() -> None:
    rules = [dw.LengthRule("code", min_input=1000, max_output=48), dw.LengthRule("summary", min_input=3000)]
    got = dw.classify(np.array([2000, 4000, 4000, 10]), np.array([10, 10, 500, 10]), rules, "conv")
    assert got.tolist() == ["code", "code", "summary", "conv"]


def test_burst_counts_give_the_peak_rate_across_partitions() -> None:
    """Window [0, 10) in 4 bursts of 2.5 s: partition 0 sends 6 records at 1.0-1.5 s and 1 at
    8 s, partition 1 sends 3 records at 2.0 s (same burst) and 2 at 6 s; the busiest burst
    holds 9 records, a peak of 9 / 2.5 s = 3.6/s, where the mean is 12 / 10 s = 1.2/s."""
    parts = []
    for p, ts in enumerate(([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 8.0], [2.0, 2.0, 2.0, 6.0, 6.0])):
        st = dw.new_state()
        _add(st, 0, ts, ["q"] * len(ts), burst_s=2.5)
        parts += dw.close_ready(st, p, window_s=W, grace_s=G, watermark=50.0)
    assert [pt["aggs"]["q"]["sub_n"] for pt in parts] == [[6, 0, 0, 1], [3, 0, 2, 0]]
    (q,) = dw.combine("f", 0.0, W, parts).demand
    assert q.arrival_rate == pytest.approx(1.2) and q.arrival_rate_peak == pytest.approx(3.6)


def test_burst_intervals_split_the_window_evenly_and_are_optional() -> None:
    st = dw.new_state()
    _add(st, 0, [0.0, 3.9, 4.0, 9.99], ["q"] * 4, burst_s=4.0)  # 10 s in 3 parts of 3.33 s
    (part,) = dw.close_ready(st, 0, window_s=W, grace_s=G, watermark=50.0)
    assert part["aggs"]["q"]["sub_n"] == [1, 2, 1]
    assert dw.combine("f", 0.0, W, [part]).demand[0].arrival_rate_peak == pytest.approx(2 / (W / 3))
    plain = dw.new_state()
    _add(plain, 0, [1.0], ["q"])
    (old,) = dw.close_ready(plain, 0, window_s=W, grace_s=G, watermark=50.0)
    assert "sub_n" not in old["aggs"]["q"] and dw.combine("f", 0.0, W, [old]).demand[0].arrival_rate_peak is None
    # a partition counted without bursts (an older worker) merges with one counted with them
    (q,) = dw.combine("f", 0.0, W, [part, old]).demand
    assert q.count == 5 and q.arrival_rate_peak == pytest.approx(2 / (W / 3))
