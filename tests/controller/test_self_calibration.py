"""controller.worker.planning.self_calibration: bounded, smoothed per-tier corrections, and the planner's use of them."""
from __future__ import annotations

import math

import pytest

from controller.worker.planning.planner import Planner, new_planner_state
from controller.worker.planning.self_calibration import SelfCalibration, TierFactor, constants_in_force, corrected_spec, step
from controller.common.settings import Settings
from schemas import DemandWindow, QueryDemand, RequestRecord, TelemetryBatch, load_catalog
from solvers.perf import route_times

CAT = load_catalog()
SPEC = CAT.to_instance().to_spec()
M = "llama-3.1-8b-instruct"
DEP = {"id": "d0", "model": M, "gpu": "H100-SXM", "precision": "fp16", "tp": 1, "pp": 1, "replicas": 2}
PLAN = {"deployments": [DEP], "routes": [{"query_type": "code", "deployment": "d0", "fraction": 1.0}]}


def test_step_is_smoothed_and_bounded() -> None:
    t = TierFactor()
    t = step(t, 1.5, 100, gain=0.5, max_step=1.5, max_factor=2.0)
    assert t.factor == pytest.approx(1.5 ** 0.5) and t.windows == 1 and t.requests == 100
    t = step(t, 100.0, 1, gain=1.0, max_step=1.5, max_factor=2.0)  # one window moves at most x1.5
    assert t.factor == pytest.approx(1.5 ** 1.5)
    for _ in range(10):
        t = step(t, 10.0, 1, gain=1.0, max_step=1.5, max_factor=2.0)
    assert t.factor == pytest.approx(2.0)  # never beyond max_factor
    for _ in range(30):
        t = step(t, 0.01, 1, gain=1.0, max_step=1.5, max_factor=2.0)
    assert t.factor == pytest.approx(0.5)


@pytest.mark.parametrize("f", [0.7, 1.5])
def test_correction_scales_a_tp1_route_by_its_factor(f: float) -> None:
    base = route_times(SPEC, M, "H100-SXM", "fp16", 1, 1, 2048, 28)
    cor = route_times(corrected_spec(SPEC, {("H100-SXM", "fp16"): TierFactor(factor=f)}), M, "H100-SXM", "fp16",
                      1, 1, 2048, 28)
    assert cor.ttft_s == pytest.approx(f * base.ttft_s, rel=1e-12)
    for b in (1, 8, 64):
        assert float(cor.tpot(b)[0]) == pytest.approx(f * float(base.tpot(b)[0]), rel=1e-12)
        assert float(cor.latency(b)[0]) == pytest.approx(f * float(base.latency(b)[0]), rel=1e-12)
    # another precision of the same GPU is untouched
    assert route_times(corrected_spec(SPEC, {("H100-SXM", "fp16"): TierFactor(factor=f)}), M, "H100-SXM", "fp8",
                       1, 1, 2048, 28).ttft_s == route_times(SPEC, M, "H100-SXM", "fp8", 1, 1, 2048, 28).ttft_s


def _window(sc: SelfCalibration, truth: float, in_flight: float, t0: float, window_s: float = 60.0) -> None:
    """One window of telemetry from a replica pool whose true latency is truth x L(b)."""
    rt = route_times(SPEC, M, "H100-SXM", "fp16", 1, 1, 2048, 28)
    lat = truth * float(rt.latency([in_flight])[0])
    n = round(in_flight * DEP["replicas"] * window_s / lat)
    recs = [RequestRecord(ts=t0 + k * window_s / n, input_tokens=2048, output_tokens=28, latency_s=lat,
                          ttft_s=truth * rt.ttft_s, deployment="d0") for k in range(n)]
    sc.add_batch(TelemetryBatch.from_records(recs))


@pytest.mark.parametrize("truth", [0.7, 1.5])
def test_factor_converges_to_the_true_speed(truth: float) -> None:
    sc = SelfCalibration(SPEC, gain=0.5)
    errs = []
    for w in range(8):
        _window(sc, truth, in_flight=8.0, t0=60.0 * w)
        sc.close_window(PLAN, 60.0)
        errs.append(abs(sc.factors[("H100-SXM", "fp16")].factor / truth - 1))
    assert errs[-1] < 0.02
    assert errs[3] < 0.10  # within 10 % after 4 windows at gain 0.5
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:]))  # monotone: smoothing, no overshoot


def test_too_few_requests_or_unknown_deployments_change_nothing() -> None:
    sc = SelfCalibration(SPEC, min_requests=10_000)
    _window(sc, 1.5, in_flight=8.0, t0=0.0)
    assert sc.close_window(PLAN, 60.0) == {} and sc.factors == {}
    sc = SelfCalibration(SPEC)
    _window(sc, 1.5, in_flight=8.0, t0=0.0)
    assert sc.close_window({"deployments": [dict(DEP, id="other")], "routes": []}, 60.0) == {}
    assert sc.close_window(None, 60.0) == {}


def test_planner_plans_with_the_correction_and_records_it() -> None:
    s = Settings(audit_enabled=False, gate_route="off")
    planner = Planner(CAT, s)
    sc = SelfCalibration(SPEC)
    sc.factors[("H100-SXM", "fp16")] = TierFactor(factor=1.5)
    planner.self_calibration = sc  # type: ignore[attr-defined]
    window = DemandWindow(window_start=0.0, window_end=60.0, records=600, demand=[
        QueryDemand(query_type="code", count=600, arrival_rate=10.0, input_tokens_mean=2048, input_tokens_p95=3000,
                    output_tokens_mean=28, output_tokens_p95=60)])
    inst = planner.instance_for(window).to_spec()
    g = next(x for x in inst["gpus"] if x["id"] == "H100-SXM")
    base = next(x for x in SPEC["gpus"] if x["id"] == "H100-SXM")
    assert g["constants_by_precision"]["fp16"]["compute_efficiency"] == pytest.approx(
        base["constants"]["compute_efficiency"] / 1.5)
    state = new_planner_state()
    out = planner.on_window(state, window)
    (ev,) = out.events
    tiers = ev.performance_constants
    assert tiers and set(tiers) == {f"{d.gpu}/{d.precision}" for d in ev.plan.deployments}
    for key, c in tiers.items():
        assert set(c) == {"compute_efficiency", "bandwidth_efficiency", "step_overhead_s", "correction"}
        assert c["correction"] == (1.5 if key == "H100-SXM/fp16" else 1.0)
    assert constants_in_force(SPEC, {"deployments": [DEP]})["H100-SXM/fp16"]["correction"] == 1.0
    assert not math.isnan(ev.cost_per_hour)


def test_an_unobserved_precision_inherits_its_gpus_factor() -> None:
    sc = SelfCalibration(SPEC)
    sc.factors[("H100-SXM", "fp16")] = TierFactor(factor=1.44)
    sc.factors[("H100-SXM", "fp8")] = TierFactor(factor=1.0 / 1.44 * 1.44 ** 2)  # also 1.44
    inst = sc.apply(CAT.to_instance())
    spec = inst.to_spec()
    assert route_times(spec, M, "H100-SXM", "int4", 1, 1, 2048, 28).ttft_s == pytest.approx(
        1.44 * route_times(SPEC, M, "H100-SXM", "int4", 1, 1, 2048, 28).ttft_s)
    # other GPUs are not touched
    assert route_times(spec, M, "A100-80G-SXM", "fp16", 1, 1, 2048, 28).ttft_s == route_times(
        SPEC, M, "A100-80G-SXM", "fp16", 1, 1, 2048, 28).ttft_s
    dep = dict(DEP, precision="int4")
    assert constants_in_force(spec, {"deployments": [dep]}, sc.factors)["H100-SXM/int4"]["correction"] == \
        pytest.approx(1.44)


def test_the_controller_feeds_telemetry_to_the_planners_correction() -> None:
    """With LLMFLEET_SELF_CALIBRATION on, the ingest decoder hands request telemetry to the
    estimator the planner reads; off (the default), there is none."""
    import asyncio
    import json
    import types

    from controller.worker.app import Controller

    off = Controller(Settings(bootstrap_servers="localhost:1", web_port=0))
    assert off.self_calibration is None and off.planner.self_calibration is None  # type: ignore[attr-defined]
    ctrl = Controller(Settings(bootstrap_servers="localhost:1", web_port=0, self_calibration=True,
                               self_calibration_min_requests=5))
    assert ctrl.planner.self_calibration is ctrl.self_calibration  # type: ignore[attr-defined]
    rt = route_times(SPEC, M, "H100-SXM", "fp16", 1, 1, 2048, 28)
    import time as _time

    from controller.worker.windows import demand_window as dw

    t0 = _time.time() - 100.0  # a plausible event time (the ingest refuses 1970)
    msg = TelemetryBatch.from_records([RequestRecord(ts=t0 + k, query_type="code", input_tokens=2048,
                                                     output_tokens=28, latency_s=1.5 * float(rt.latency([1.0])[0]),
                                                     deployment="d0") for k in range(30)])
    asyncio.run(ctrl._decode(msg.model_dump_json().encode(), types.SimpleNamespace(
        topic="llmfleet.telemetry", partition=0, offset=1), dw.new_state()))
    changed = ctrl.self_calibration.close_window(PLAN, 60.0)
    assert changed["H100-SXM/fp16"]["residual"] == pytest.approx(1.5, rel=0.02)
    assert json.dumps(changed)
