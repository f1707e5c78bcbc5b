"""Iteration-time model: least-squares fit and the mapping from the reference model (spec 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from solvers.gate_route.iteration_model import fit_iteration_model, iteration_model_from_spec

QWEN8B = {"id": "qwen3-8b", "params_b": 8.19, "n_layers": 36, "d_model": 4096,
          "n_kv_heads": 8, "head_dim": 128, "error": {}}
A100 = {"id": "A100-40G", "memory_gb": 40, "tflops": {"fp16": 312}, "bandwidth_tbps": 1.555,
        "link_gbps": 600, "link_latency_us": 5.0, "gpus_per_node": 8, "price_per_hour": 1.5,
        "count": None}
FP16 = {"id": "fp16", "bytes_per_param": 2.0, "error_multiplier": 1.0}
FP8 = {"id": "fp8", "bytes_per_param": 1.0, "error_multiplier": 1.05}


def test_fit_recovers_paper_line_exactly():
    c = np.array([64, 128, 256, 512, 1024, 2048])
    fit = fit_iteration_model(c, 0.0174 + 6.2e-5 * c)
    assert fit.alpha == pytest.approx(0.0174, rel=1e-9)
    assert fit.beta == pytest.approx(6.2e-5, rel=1e-9)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-12)
    assert fit.n_points == 6


def test_fit_with_noise():
    rng = np.random.default_rng(7)
    c = np.repeat(np.array([128, 256, 512, 768, 1024, 2048]), 20)
    t = 0.0152 + 3.6e-5 * c + rng.normal(0, 3e-4, c.size)
    fit = fit_iteration_model(c, t)
    assert fit.alpha == pytest.approx(0.0152, abs=2e-4)
    assert fit.beta == pytest.approx(3.6e-5, rel=0.02)
    assert 0.99 < fit.r_squared < 1.0


def test_fit_rejects_degenerate_input():
    with pytest.raises(ValueError):
        fit_iteration_model([256, 256], [0.03, 0.031])
    with pytest.raises(ValueError):
        fit_iteration_model([1, 2, 3], [0.1, 0.2])


def test_spec_mapping_matches_hand_computation():
    m = iteration_model_from_spec(QWEN8B, A100, FP16, 1, 1, {"max_batch": 16}, 300, 1000)
    params, flops, bw = 8.19e9, 312e12 * 0.5, 1.555e12 * 0.7
    weights, kv = 2 * params, 2 * 36 * 8 * 128 * 2
    ctx = 300 + 500

    def t_tok(b):
        return max((weights + b * ctx * kv) / bw, 2 * params * b / flops) + 0.003

    assert m.slots == 16
    assert m.beta == pytest.approx(2 * params / flops, rel=1e-12)
    assert m.alpha == pytest.approx(t_tok(15), rel=1e-12)
    assert m.gamma == pytest.approx(1 / t_tok(16), rel=1e-12)
    # The spec's calibration check: ~20 ms per token at 16 decodes (the paper measured 22 ms).
    assert 1 / m.gamma == pytest.approx(0.020, abs=0.001)
    assert m.tau(256) == pytest.approx(m.alpha + 256 * m.beta)


def test_spec_mapping_memory_bound_and_parallelism():
    m1 = iteration_model_from_spec(QWEN8B, A100, FP16, 1, 1, None, 300, 1000)
    kv = 2 * 36 * 8 * 128 * 2
    cap = 40e9 * 0.9
    assert m1.slots == math.floor((cap - 2 * 8.19e9) / (1300 * kv))
    m2 = iteration_model_from_spec(QWEN8B, A100, FP16, 2, 1, None, 300, 1000)
    assert m2.slots == 256  # capped by max_batch
    # Tensor parallelism halves the compute per token but adds all-reduce traffic.
    assert 2 * 8.19e9 / (2 * 156e12) < m2.beta < m1.beta
    m3 = iteration_model_from_spec(QWEN8B, A100, FP16, 1, 2, None, 300, 1000)
    assert m3.beta == pytest.approx(m1.beta + 2 * 4096 / 600e9)


def test_spec_mapping_infeasible_cases():
    assert iteration_model_from_spec(QWEN8B, A100, FP8, 1, 1, None, 300, 1000) is None
    big = {**QWEN8B, "params_b": 70.6}
    assert iteration_model_from_spec(big, A100, FP16, 1, 1, None, 300, 1000) is None
