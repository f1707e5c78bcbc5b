"""Fluid LPs (40), (42), (49) on the paper's convergence instance, against the notes' numbers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.gate_route.fluid_lp import (
    SliTargets,
    average_tpot,
    solve_bundled_lp,
    solve_separate_lp,
    solve_sli_lp,
)
from solvers.gate_route.instance import GateRouteInstance, paper_instance

REL = 1e-4


@pytest.fixture(scope="module")
def inst():
    return paper_instance()


@pytest.fixture(scope="module")
def bundled(inst):
    return solve_bundled_lp(inst, n_replicas=500)


def _check_feasible(inst, s, tol=1e-7):
    b = inst.slots
    sx = s.x.sum()
    assert sx <= 1 + tol
    assert s.y_m.sum() <= (b - 1) * sx + tol
    assert s.y_s.sum() <= b * (1 - sx) + tol
    np.testing.assert_allclose(inst.lam - inst.theta * s.q_p, inst.mu_p * s.x, atol=1e-7)
    np.testing.assert_allclose(
        inst.mu_p * s.x - inst.theta * s.q_d, inst.mu_m * s.y_m + inst.mu_s * s.y_s, atol=1e-7
    )


def test_rates_match_notes(inst):
    assert inst.tau == pytest.approx(0.033272)
    np.testing.assert_allclose(inst.mu_p, [25.647, 2.5647], rtol=1e-4)
    np.testing.assert_allclose(inst.mu_m, [0.030055, 0.075138], rtol=1e-4)
    np.testing.assert_allclose(inst.mu_s, [0.04545, 0.113625], rtol=1e-4)
    np.testing.assert_allclose(inst.w, [230, 380])


def test_bundled_optimum(inst, bundled):
    assert bundled.status == "optimal"
    assert bundled.reward == pytest.approx(297.703, rel=REL)
    assert bundled.objective == pytest.approx(bundled.reward, rel=1e-8)  # stage pins at 1e-9
    assert bundled.mixed_fraction == pytest.approx(0.21321, rel=REL)
    np.testing.assert_allclose(bundled.x, [0.01826, 0.19495], rtol=1e-3)
    np.testing.assert_allclose(bundled.q_p, [0.31725, 0.0], atol=1e-4)
    np.testing.assert_allclose(bundled.q_d, 0.0, atol=1e-9)  # Prop. 3.2
    np.testing.assert_allclose(bundled.decode_rate(inst), [0.46827, 0.5], rtol=1e-4)
    assert bundled.mixed_replicas == 107
    assert bundled.tpot_s == pytest.approx(0.024285, rel=1e-4)
    _check_feasible(inst, bundled)
    # Both decode capacities bind; prefill capacity is slack.
    assert bundled.y_m.sum() == pytest.approx(15 * bundled.mixed_fraction, rel=1e-7)
    assert bundled.y_s.sum() == pytest.approx(16 * (1 - bundled.mixed_fraction), rel=1e-7)


def test_bundled_split_is_pinned_proportional(inst, bundled):
    """The tie-break gives every class the same solo share of its decode completions."""
    ps = bundled.solo_probability(inst)
    assert ps[0] == pytest.approx(ps[1], rel=1e-7)
    again = solve_bundled_lp(inst, n_replicas=500)
    np.testing.assert_array_equal(again.y_s, bundled.y_s)


def test_separate_optimum_keeps_decode_backlog(inst):
    sep = solve_separate_lp(inst, n_replicas=500)
    assert sep.status == "optimal"
    assert sep.reward == pytest.approx(298.587, rel=REL)
    np.testing.assert_allclose(sep.x, [0.0195, 0.19495], rtol=1e-3)
    np.testing.assert_allclose(sep.q_p, 0.0, atol=1e-6)  # every prefill admitted
    assert sep.q_d.sum() > 0.3  # a persistent decode backlog
    _check_feasible(inst, sep)


def test_mixed_replicas_scale_with_n(inst):
    assert solve_bundled_lp(inst, n_replicas=20).mixed_replicas == 5
    assert solve_bundled_lp(inst, n_replicas=200).mixed_replicas == 43


def test_sli_without_targets_equals_bundled(inst, bundled):
    s = solve_sli_lp(inst, SliTargets())
    assert s.reward == pytest.approx(bundled.reward, rel=1e-8)


@pytest.mark.parametrize(
    "sli, share",
    [
        (SliTargets(prefill_fairness=0.15), 0.941),
        (SliTargets(prefill_fairness=0.0), 0.450),
        (SliTargets(decode_fairness=2.0), 0.936),
        (SliTargets(decode_fairness=0.0), 0.865),
        (SliTargets(tpot_s=0.024), 0.934),
        (SliTargets(tpot_s=0.0225), 0.476),
    ],
)
def test_sli_frontier_points(inst, bundled, sli, share):
    s = solve_sli_lp(inst, sli)
    assert s.status == "optimal"
    assert s.reward / bundled.reward == pytest.approx(share, abs=1.5e-3)
    np.testing.assert_allclose(s.q_d, 0.0, atol=1e-9)
    _check_feasible(inst, s)
    if sli.tpot_s is not None:
        assert s.tpot_s <= sli.tpot_s + 1e-9
    if sli.prefill_fairness is not None:
        assert np.ptp(s.x) <= sli.prefill_fairness + 1e-9
    if sli.decode_fairness is not None:
        assert np.ptp(s.y_s) <= sli.decode_fairness + 1e-9


def test_tpot_infeasible_below_one_over_gamma(inst):
    assert solve_sli_lp(inst, SliTargets(tpot_s=0.9 / inst.gamma)).status == "infeasible"


def test_penalised_sli(inst, bundled):
    # A heavy TPOT price trades reward for lower TPOT; objective = reward - weight * TPOT.
    w = 3e5
    s = solve_sli_lp(inst, SliTargets(tpot_penalty=w))
    assert s.tpot_s < bundled.tpot_s
    assert s.objective == pytest.approx(s.reward - w * s.tpot_s, rel=1e-6)
    base = bundled.reward - w * bundled.tpot_s
    assert s.objective >= base - 1e-6
    # Prefill-fairness penalty: objective = reward - weight * spread.
    p = solve_sli_lp(inst, SliTargets(prefill_fairness_penalty=2000.0))
    assert np.ptp(p.x) < np.ptp(bundled.x)
    assert p.objective == pytest.approx(p.reward - 2000.0 * np.ptp(p.x), rel=1e-6)


def test_average_tpot_bounds(inst):
    assert average_tpot(inst, 0.0) == pytest.approx(1 / inst.gamma)
    assert average_tpot(inst, 1.0) == pytest.approx(inst.tau)


@settings(max_examples=25, deadline=None)
@given(
    p=st.lists(st.floats(200, 3000), min_size=1, max_size=3),
    seed=st.integers(0, 10_000),
)
def test_random_instances_feasible_and_decode_buffer_free(p, seed):
    rng = np.random.default_rng(seed)
    k = len(p)
    inst = GateRouteInstance(
        prompt_tokens=p,
        decode_tokens=rng.uniform(200, 3000, k),
        arrival_rate=rng.uniform(0.25, 0.5, k),
        patience_rate=rng.uniform(0.05, 0.5, k),
        slots=int(rng.integers(4, 33)),
        chunk_tokens=256,
        alpha=rng.uniform(0.015, 0.02),
        beta=10 ** rng.uniform(-5, -3),
        gamma=rng.uniform(10, 50),
    )
    s = solve_bundled_lp(inst, n_replicas=100)
    assert s.status == "optimal"
    _check_feasible(inst, s, tol=1e-6)
    if inst.speedup >= (inst.slots - 1) / inst.slots:
        np.testing.assert_allclose(s.q_d, 0.0, atol=1e-8)
    sep = solve_separate_lp(inst)
    assert sep.status == "optimal"
    _check_feasible(inst, sep, tol=1e-6)
