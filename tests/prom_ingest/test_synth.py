"""Synthesised records: bucket-exact token lengths, sum-matched, evenly spread times, batches."""
from __future__ import annotations

import math

import numpy as np
import pytest

from controller.prom_ingest.deltas import HistDelta, SeriesDelta
from controller.prom_ingest.synth import quantile_values, synthesise, to_batches
from controller.prom_ingest.vllm_metrics import E2E_SECONDS, GENERATION_TOKENS, PROMPT_TOKENS
from tests.prom_ingest.fake_vllm import TOKEN_BUCKETS

BOUNDS = (*TOKEN_BUCKETS, math.inf)


def hist_of(values: np.ndarray, bounds: tuple[float, ...] = BOUNDS) -> HistDelta:
    idx = np.searchsorted(np.asarray(bounds), values, side="left")  # Prometheus: value <= le
    counts = np.bincount(idx, minlength=len(bounds))
    return HistDelta(bounds, counts, float(values.sum()), int(len(values)))


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_values_stay_in_their_bucket_and_match_the_sum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = np.rint(np.exp(rng.normal(6.5, 1.0, 700))).astype(float)
    h = hist_of(true)
    v = quantile_values(h, len(true), 1.0, integer=True)
    assert hist_of(v).counts.tolist() == h.counts.tolist()
    assert v.sum() == pytest.approx(true.sum(), rel=2e-3)


def test_resampling_to_another_count_keeps_the_shape_and_mean() -> None:
    rng = np.random.default_rng(5)
    true = rng.uniform(30, 900, 1000)
    v = quantile_values(hist_of(true), 100)
    assert v.mean() == pytest.approx(true.mean(), rel=1e-6)
    assert np.all(np.diff(v) >= 0)


def test_the_inf_bucket_is_bounded_at_twice_its_lower_bound() -> None:
    h = HistDelta((10.0, math.inf), np.array([0, 4]), 1000.0, 4)
    v = quantile_values(h, 4)
    assert np.all((v > 10) & (v <= 20))


def _delta(n: int, t0: float = 100.0, t1: float = 110.0) -> SeriesDelta:
    rng = np.random.default_rng(n)
    return SeriesDelta((("model_name", "m"),), t0, t1, {
        PROMPT_TOKENS: hist_of(rng.integers(100, 5000, n).astype(float)),
        GENERATION_TOKENS: hist_of(rng.integers(1, 400, n).astype(float)),
        E2E_SECONDS: hist_of(rng.uniform(0.2, 9, n), (0.3, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf))})


def test_records_are_spread_over_the_interval_and_deterministic() -> None:
    r = synthesise(_delta(50))
    assert r is not None and len(r.ts) == 50
    assert r.ts.min() > 100 and r.ts.max() < 110 and np.allclose(np.diff(r.ts), 0.2)
    assert r.ttft_s is None and r.latency_s is not None
    assert not np.all(np.diff(r.input_tokens) >= 0), "lengths are not in sorted order over time"
    again = synthesise(_delta(50))
    assert again is not None and (again.input_tokens == r.input_tokens).all()
    assert synthesise(_delta(0)) is None


def test_batches_keep_time_order_columns_and_the_producer() -> None:
    a, b = synthesise(_delta(30)), synthesise(_delta(20, 105.0, 115.0))
    assert a is not None and b is not None
    (batch,) = to_batches([(a, "dep-a", "code"), (b, "dep-b", None)], "prometheus:http://p:9090")
    assert len(batch) == 50 and batch.producer == "prometheus:http://p:9090"
    assert batch.ts == sorted(batch.ts)
    assert batch.deployment is not None and batch.deployment.count("dep-b") == 20
    assert batch.query_type is not None and batch.query_type.count("code") == 30 and batch.query_type.count(None) == 20
    assert batch.ttft_s is None and batch.latency_s is not None


def test_antimonotone_pairing_gives_the_longest_prompts_the_shortest_answers() -> None:
    r = synthesise(_delta(200), "antimonotone")
    assert r is not None
    order = np.argsort(r.input_tokens, kind="stable")
    assert np.all(np.diff(r.output_tokens[order]) <= 0)
    ind = synthesise(_delta(200), "independent")
    assert ind is not None and not np.all(np.diff(ind.output_tokens[np.argsort(ind.input_tokens)]) <= 0)
