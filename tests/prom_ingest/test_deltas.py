"""Per-series deltas: increases, counter resets, new series, gaps (pure, no network)."""
from __future__ import annotations

import math

import numpy as np

from controller.prom_ingest.deltas import Tracker, hist_delta
from controller.prom_ingest.samples import Hist, Sample, from_api, group
from controller.prom_ingest.vllm_metrics import GENERATION_TOKENS, PROMPT_TOKENS

B = (10.0, 100.0, 1000.0, math.inf)


def h(cum: list[float], total: float) -> Hist:
    return Hist(B, tuple(cum), total, cum[-1])


def series(p: Hist, g: Hist, **labels: str) -> dict:
    key = tuple(sorted({"model_name": "m", **labels}.items()))
    return {key: {PROMPT_TOKENS: p, GENERATION_TOKENS: g}}


def test_increase_is_the_per_bucket_difference() -> None:
    d, reset = hist_delta(h([1, 5, 9, 9], 3000), h([2, 8, 15, 16], 9000))
    assert not reset
    assert d.counts.tolist() == [1, 2, 3, 1] and d.count == 7 and d.total == 6000


def test_counter_drop_is_a_reset_and_the_new_value_is_the_delta() -> None:
    d, reset = hist_delta(h([10, 50, 90, 90], 30000), h([1, 2, 3, 3], 700))
    assert reset
    assert d.counts.tolist() == [1, 1, 1, 0] and d.count == 3 and d.total == 700
    # a drop in one bucket only (another engine behind the same series after a restart) is a reset too
    _, reset = hist_delta(h([10, 50, 90, 90], 30000), h([9, 60, 95, 95], 31000))
    assert reset
    # and so are changed bucket bounds
    _, reset = hist_delta(h([1, 1, 1, 1], 5), Hist((5.0, math.inf), (2, 2), 7, 2))
    assert reset


def test_first_poll_is_a_baseline_and_rates_are_never_negative() -> None:
    tr = Tracker(gap_after_s=7.5)
    assert tr.update(series(h([100, 200, 300, 300], 1e5), h([50, 300, 300, 300], 2e4)), 0.0) == []
    d = tr.update(series(h([101, 203, 306, 306], 1e5 + 2000), h([51, 306, 306, 306], 2e4 + 300)), 5.0)
    assert len(d) == 1 and d[0].requests == 6 and (d[0].t0, d[0].t1) == (0.0, 5.0) and d[0].gap_s == 0
    d = tr.update(series(h([0, 1, 1, 1], 20), h([1, 1, 1, 1], 3)), 10.0)  # engine restarted
    assert d[0].resets == (PROMPT_TOKENS, GENERATION_TOKENS) and d[0].requests == 1
    assert all((x.counts >= 0).all() for x in d[0].hists.values())


def test_a_missing_series_is_a_gap_spanning_the_interval() -> None:
    tr = Tracker(gap_after_s=7.5)
    a, b = series(h([0, 0, 0, 0], 0), h([0, 0, 0, 0], 0)), series(h([0, 0, 0, 0], 0), h([0, 0, 0, 0], 0), pod="x")
    tr.update({**a, **b}, 0.0)
    tr.update({**a, **b}, 5.0)
    tr.update(a, 10.0)  # b was not scraped
    d = tr.update({**series(h([0, 4, 4, 4], 200), h([4, 4, 4, 4], 20)),
                   **series(h([3, 3, 3, 3], 15), h([3, 3, 3, 3], 6), pod="x")}, 15.0)
    by = {dict(x.key).get("pod"): x for x in d}
    assert by[None].gap_s == 0 and (by[None].t0, by[None].t1) == (10.0, 15.0)
    assert by["x"].gap_s == 10.0 and (by["x"].t0, by["x"].t1) == (5.0, 15.0) and by["x"].requests == 3


def test_a_series_that_appears_later_counts_in_full_from_the_previous_poll() -> None:
    tr = Tracker(gap_after_s=7.5)
    tr.update({}, 0.0)
    d = tr.update(series(h([1, 2, 2, 2], 30), h([2, 2, 2, 2], 4)), 5.0)
    assert d[0].requests == 2 and (d[0].t0, d[0].t1) == (0.0, 5.0)


def test_incomplete_series_are_not_diffed() -> None:
    tr = Tracker(gap_after_s=7.5)
    key = (("model_name", "m"),)
    tr.update({key: {PROMPT_TOKENS: h([1, 1, 1, 1], 1)}}, 0.0)
    assert tr.update({key: {PROMPT_TOKENS: h([2, 2, 2, 2], 2)}}, 5.0) == []


def test_api_answer_and_grouping() -> None:
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": f"{PROMPT_TOKENS}_bucket", "model_name": "m", "le": le}, "value": [1, v]}
        for le, v in (("10", "1"), ("100", "3"), ("+Inf", "4"))] + [
        {"metric": {"__name__": f"{PROMPT_TOKENS}_count", "model_name": "m"}, "value": [1, "4"]},
        {"metric": {"__name__": f"{PROMPT_TOKENS}_sum", "model_name": "m"}, "value": [1, "250"]},
        {"metric": {"__name__": "other_bucket", "model_name": "m", "le": "1"}, "value": [1, "9"]}]}}
    g = group(from_api(body))
    hist = g[(("model_name", "m"),)][PROMPT_TOKENS]
    assert hist.bounds == (10.0, 100.0, math.inf) and hist.cum == (1.0, 3.0, 4.0) and hist.total == 250
    # without a +Inf bucket or a _count, a histogram is not usable
    assert group([Sample(f"{PROMPT_TOKENS}_bucket", {"le": "1"}, 1.0)]) == {}
    assert np.isfinite(hist.total)


def test_the_underscore_spelling_prometheus_may_store_is_read_as_vllm() -> None:
    # prometheus_client serves OpenMetrics with `vllm:` escaped to `vllm_`; Prometheus stores that
    samples = [Sample("vllm_request_prompt_tokens_bucket", {"model_name": "m", "le": "+Inf"}, 3.0),
               Sample("vllm_request_prompt_tokens_count", {"model_name": "m"}, 3.0)]
    assert group(samples)[(("model_name", "m"),)][PROMPT_TOKENS].count == 3.0
