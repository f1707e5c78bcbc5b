"""Published gate-and-route parameters: spec or fitted iteration model, and the chunk choice."""
from __future__ import annotations

import types

import numpy as np
import pytest

from controller.worker.planning.gate_route_params import (
    CHUNK_CANDIDATES, REWARD_TIE, _choose_chunk, _fluid_latency_ok, gate_route_for_plan,
)
from controller.worker.planning.iteration_telemetry import IterationTelemetry
from controller.worker.planning.planner import Planner, new_planner_state
from controller.common.settings import Settings
from schemas import DemandWindow, QueryDemand, load_catalog
from solvers import from_plan
from solvers.gate_route.plan import gate_route_plan
from solvers.gate_route.iteration_model import IterationModel

HW = {"alpha": 0.041, "beta": 6.5e-5, "gamma": 31.0}   # "measured" hardware, unlike any spec model


def _window(rates: dict[str, float]) -> DemandWindow:
    toks = {"code": (2048, 28), "conversation": (1155, 211)}
    return DemandWindow(window_start=0.0, window_end=60.0, records=int(sum(rates.values()) * 60),
                        demand=[QueryDemand(query_type=q, count=int(r * 60), arrival_rate=r,
                                            input_tokens_mean=toks[q][0], input_tokens_p95=toks[q][0] * 2,
                                            output_tokens_mean=toks[q][1], output_tokens_p95=toks[q][1] * 2)
                                for q, r in rates.items()])


@pytest.fixture(scope="module")
def planned():
    catalog = load_catalog()
    pl = Planner(catalog, Settings(min_dwell_s=0, agh_deadline_s=0.2, gate_route="on"))
    w = _window({"code": 20, "conversation": 40})
    ev = pl.on_window(new_planner_state(), w).events[0]
    ci = pl.compiled(pl.instance_for(w).to_spec())
    replicas, x = from_plan(ci, ev.plan.to_spec())
    return catalog, pl, ci, types.SimpleNamespace(replicas=replicas, x=x), ev


def _telemetry(deployment: str, n: int = 400, seed: int = 0) -> IterationTelemetry:
    rng = np.random.default_rng(seed)
    c = rng.integers(1, 2049, n)
    secs = (HW["alpha"] + HW["beta"] * c) * (1 + 0.03 * rng.standard_normal(n))
    acc = IterationTelemetry()
    acc.add_samples(deployment, c, rng.integers(1, 30, n), secs)
    decode_only = (1 / HW["gamma"]) * (1 + 0.03 * rng.standard_normal(100))
    acc.add_samples(deployment, [0] * 100, [16] * 100, decode_only)
    return acc


def test_spec_source_without_telemetry(planned) -> None:
    catalog, _, ci, result, ev = planned
    params = gate_route_for_plan(catalog, ci, result, force=True)
    assert params and set(params) == {d.id for d in ev.plan.deployments}
    for p in params.values():
        assert p["iteration_source"] == "spec" and p["iteration_r_squared"] is None
        assert p["tau_mixed_s"] == pytest.approx(p["alpha_s"] + p["beta_s_per_token"] * p["chunk_tokens"])
        assert all(c["admit_probability"] == 1.0 for c in p["classes"].values())


def test_published_params_use_the_windows_token_lengths(planned) -> None:
    """The planner sizes gate-and-route with the window's measured lengths (bucketed), which
    differ from the catalog's typical ones."""
    catalog, pl, ci, result, ev = planned
    inst = pl.instance_for(_window({"code": 20, "conversation": 40}))
    assert {q.id: q.input_tokens for q in inst.query_types} != {q.id: q.input_tokens for q in catalog.query_types}
    measured = gate_route_for_plan(catalog, ci, result, force=True, query_types=inst.query_types)
    typical = gate_route_for_plan(catalog, ci, result, force=True)
    assert ev.gate_route == measured
    assert measured != typical


def test_fitted_source_when_the_fit_is_good(planned) -> None:
    catalog, pl, ci, result, _ = planned
    inst = pl.instance_for(_window({"code": 20, "conversation": 40}))
    spec = gate_route_for_plan(catalog, ci, result, force=True, query_types=inst.query_types)
    target = sorted(spec)[0]
    acc = _telemetry(target)
    fit = acc.model_for(target)
    assert fit is not None
    pl.iteration_telemetry = acc                      # what the Controller attaches
    try:
        params = pl._gate_route(ci, result, inst)
    finally:
        del pl.iteration_telemetry
    assert params is not None
    got = params[target]
    assert got["iteration_source"] == "fitted" and got["iteration_r_squared"] == pytest.approx(fit.r_squared)
    assert got["alpha_s"] == pytest.approx(fit.alpha) and got["beta_s_per_token"] == pytest.approx(fit.beta)
    assert got["alpha_s"] == pytest.approx(HW["alpha"], rel=0.05)
    assert got["gamma_tokens_per_s"] == pytest.approx(HW["gamma"], rel=0.02)
    assert got["iteration_gamma_source"] == "fitted" and got["iteration_samples"] == 400
    assert got["tau_mixed_s"] == pytest.approx(fit.alpha + fit.beta * got["chunk_tokens"])
    assert got["slots_per_replica"] == spec[target]["slots_per_replica"], "B stays the spec's"
    for other in set(params) - {target}:               # deployments without samples keep the spec
        assert params[other]["iteration_source"] == "spec"
        assert params[other]["alpha_s"] == spec[other]["alpha_s"]


def test_poor_fit_keeps_the_spec(planned) -> None:
    catalog, _, ci, result, _ = planned
    target = sorted(gate_route_for_plan(catalog, ci, result, force=True))[0]
    rng = np.random.default_rng(1)
    acc = IterationTelemetry()
    acc.add_samples(target, rng.integers(1, 2049, 400), [8] * 400, rng.uniform(0.01, 0.2, 400))
    assert acc.fit(target) is not None and acc.model_for(target) is None
    params = gate_route_for_plan(catalog, ci, result, force=True, iterations=acc)
    assert params[target]["iteration_source"] == "spec"


@pytest.mark.parametrize(("rates", "starved"), [((5.0, 10.0), False), ((20.0, 40.0), True)])
def test_chunk_is_the_most_valuable_that_keeps_the_slos(rates: tuple[float, float], starved: bool) -> None:
    """alpha is paid per mixed iteration: with a big-memory GPU's alpha (decode step at B = 256)
    C = 256 starves prefill under load; the chosen C serves the most fluid value within the
    SLOs, and the smallest C (fastest mixed decodes) when all serve the same."""
    it = IterationModel(alpha=0.027, beta=2.25e-5, gamma=45.0, slots=256)
    classes = {"code": {"arrival_rate": rates[0], "prompt_tokens": 2048, "decode_tokens": 28,
                        "patience_s": 9.0},
               "conversation": {"arrival_rate": rates[1], "prompt_tokens": 1155, "decode_tokens": 211,
                                "patience_s": 45.0}}
    slo = {"code": (3.0, 1.0), "conversation": (15.0, 1.0)}
    n = 3
    chosen = _choose_chunk(classes, it, n, slo)
    alts = {c: gate_route_plan(classes, it, n, chunk_tokens=c) for c in CHUNK_CANDIDATES}
    ok = {c: a for c, a in alts.items() if a["status"] == "optimal" and _fluid_latency_ok(a, classes, slo)}
    assert ok and chosen["chunk_tokens"] in ok
    best = max(a["fluid_reward_per_s"] for a in ok.values())
    assert chosen["fluid_reward_per_s"] >= best * (1 - REWARD_TIE)
    smaller = [c for c in ok if c < chosen["chunk_tokens"]]
    assert all(alts[c]["fluid_reward_per_s"] < best * (1 - REWARD_TIE) for c in smaller)
    if starved:
        assert chosen["chunk_tokens"] > 256 and alts[256]["fluid_reward_per_s"] < 0.8 * best
    else:
        assert chosen["chunk_tokens"] == 256
