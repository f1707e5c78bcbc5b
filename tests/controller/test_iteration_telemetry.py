"""Iteration telemetry: fitting tau(C) = alpha + beta C (and gamma) from what G&R pools report."""
from __future__ import annotations

import numpy as np
import pytest

from controller.sim.fleet_sim import FleetSimulator, PerfTable
from controller.worker.planning.iteration_telemetry import IterationTelemetry
from controller.sim.workload import poisson_requests
from schemas import IterationBatch
from solvers.gate_route.plan import gate_route_plan
from solvers.gate_route.iteration_model import IterationModel

CFG = {"model": "llama-3.1-8b", "gpu": "L4", "precision": "fp8", "tp": 1, "pp": 1}
T0 = 1_700_000_000.0
SPEC_VIEW = IterationModel(alpha=0.02, beta=3e-5, gamma=45.0, slots=32)   # what the planner assumes
HARDWARE = IterationModel(alpha=0.031, beta=5.2e-5, gamma=38.0, slots=32)  # what the replicas do


def simulated_batches(spec_instance: dict, seconds: float = 300.0, seed: int = 3) -> list[IterationBatch]:
    """Iteration timings a G&R pool reports when its hardware differs from the planner's view."""
    classes = {"code": {"arrival_rate": 2.0, "prompt_tokens": 2048, "decode_tokens": 28, "patience_s": 9.0},
               "conv": {"arrival_rate": 3.0, "prompt_tokens": 1155, "decode_tokens": 211, "patience_s": 45.0}}
    params = gate_route_plan(classes, SPEC_VIEW, 3, chunk_tokens=512)
    sim = FleetSimulator(PerfTable.from_instance(spec_instance), seed=seed, batch_size=200,
                         iteration_truth={"d0": HARDWARE}, iteration_cv=0.05)
    sim.apply_plan({"deployments": [{"id": "d0", **CFG, "replicas": 3}],
                    "routes": [{"query_type": q, "deployment": "d0", "fraction": 1.0} for q in classes]},
                   at=T0, warm=True, gate_route={"d0": params})
    reqs = poisson_requests({"code": 2.0, "conv": 3.0}, {"code": (2048, 28), "conv": (1155, 211)},
                            seconds, start_ts=T0, seed=seed)
    rng = np.random.default_rng(seed)   # prompts of varied length: the last chunks vary in size
    reqs = [r.model_copy(update={"input_tokens": int(rng.integers(64, 2 * r.input_tokens))}) for r in reqs]
    for r in reqs:
        sim.submit(r, "d0", r.query_type)
    sim.finish()
    return [IterationBatch.model_validate_json(b.model_dump_json()) for b in sim.drain_iterations(flush=True)]


@pytest.fixture(scope="module")
def batches(spec_instance: dict) -> list[IterationBatch]:
    return simulated_batches(spec_instance)


def test_fit_recovers_the_hardware_from_simulated_samples(batches: list[IterationBatch]) -> None:
    acc = IterationTelemetry()
    kept = sum(acc.add(b) for b in batches)
    assert kept == sum(len(b) for b in batches) and acc.deployments() == ["d0"]
    fit = acc.model_for("d0")
    assert fit is not None, acc.fit("d0")
    assert fit.alpha == pytest.approx(HARDWARE.alpha, rel=0.05)
    assert fit.beta == pytest.approx(HARDWARE.beta, rel=0.05)
    assert fit.gamma == pytest.approx(HARDWARE.gamma, rel=0.02)
    assert 0.95 <= fit.r_squared <= 1.0 and fit.n_sizes >= 3 and fit.n_mixed >= acc.min_samples
    # the fit is of the hardware, not of the planner's view it started from
    assert abs(fit.alpha - SPEC_VIEW.alpha) > 0.005


def test_recent_samples_only_and_thresholds() -> None:
    rng = np.random.default_rng(0)
    acc = IterationTelemetry(max_samples=200, min_samples=50)
    c = rng.integers(1, 513, 200)
    acc.add_samples("old", c, [8] * 200, 0.05 + 1e-4 * c)          # an older, slower regime
    c2 = rng.integers(1, 513, 200)
    acc.add_samples("old", c2, [8] * 200, 0.02 + 3e-5 * c2)         # replaces it entirely
    fit = acc.model_for("old")
    assert fit is not None and fit.alpha == pytest.approx(0.02) and fit.beta == pytest.approx(3e-5)
    assert fit.gamma is None, "no decode-only iterations seen"
    # too few samples, one chunk size only, or no linear law: no usable fit (the planner keeps the spec)
    acc.add_samples("few", [256, 512] * 10, [4] * 20, [0.03, 0.04] * 10)
    assert acc.fit("few") is not None and acc.model_for("few") is None
    acc.add_samples("flat", [256] * 100, [4] * 100, 0.03 + 0.001 * rng.random(100))
    assert acc.fit("flat") is None and acc.model_for("flat") is None
    cs = rng.integers(1, 513, 400)
    acc.add_samples("noise", cs, [4] * 400, rng.uniform(0.01, 0.1, 400))
    f = acc.fit("noise")
    assert f is not None and f.r_squared < acc.min_r_squared and acc.model_for("noise") is None
    assert acc.counts("old") == (200, 0) and acc.counts("none") == (0, 0)
