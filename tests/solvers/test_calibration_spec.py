"""Per-GPU calibration (spec section 1): compile and the validator agree with the outside
checker on the calibrated worked example, and the layering is GPU over instance, precision over GPU."""
from __future__ import annotations

import copy
import json

import pytest

from schemas import Instance
from solvers import check_plan, compile_instance
from solvers.compile import gpu_constants
from tests.conftest import EXAMPLES, load_checker

from .test_compile import _rel, _routes


@pytest.fixture(scope="module")
def calibrated() -> dict:
    return json.loads((EXAMPLES / "instance_calibrated.json").read_text())


def test_calibrated_example_matches_routes_expected(calibrated: dict) -> None:
    expected = json.loads((EXAMPLES / "routes_expected_calibrated.json").read_text())
    for inst in (calibrated, Instance.model_validate(calibrated).to_spec()):  # raw and through the schema
        got = _routes(compile_instance(inst))
        assert len(got) == sum(e["feasible"] for e in expected)
        for e in expected:
            key = (e["query_type"], e["model"], e["gpu"], e["precision"], e["tp"], e["pp"])
            if not e["feasible"]:
                assert key not in got, key
                continue
            for a, b in zip(got[key], (e["mu"], e["latency_s"], e["ttft_s"], e["error"])):
                assert _rel(a, b) <= 1e-9, (key, a, b)


def test_calibrated_example_agrees_with_checker_route_by_route(calibrated: dict) -> None:
    chk = load_checker()
    got = _routes(compile_instance(calibrated))
    for key, perf in got.items():
        q, m, g, p, tp, pp = key
        find = lambda seq, i: next(x for x in seq if x["id"] == i)  # noqa: E731
        ref = chk.route_performance(calibrated, find(calibrated["query_types"], q), find(calibrated["models"], m),
                                    find(calibrated["gpus"], g), find(calibrated["precisions"], p), tp, pp)
        assert ref is not None
        for a, b in zip(perf, ref):
            assert _rel(a, b) <= 1e-9, (key, a, b)


def test_validator_agrees_with_checker_on_calibrated_plans(calibrated: dict) -> None:
    """A plan sized on the calibrated routes is feasible for both; the same plan on the
    uncalibrated instance is judged identically by both (the H100 fp16 routes are faster calibrated)."""
    chk = load_checker()
    ci = compile_instance(calibrated)
    rq = next(r for r in range(ci.n_routes) if ci.qt_ids[ci.route_qt[r]] == "code"
              and ci.describe_cand(int(ci.route_cand[r])).startswith("llama-3.1-8b@H100-SXM/fp16 tp1 pp1"))
    rc = next(r for r in range(ci.n_routes) if ci.qt_ids[ci.route_qt[r]] == "conv"
              and ci.describe_cand(int(ci.route_cand[r])).startswith("llama-3.1-8b@H100-SXM/fp16 tp1 pp1"))
    load = 2.5 / ci.mu[rq] + 5.5 / ci.mu[rc]
    reps = int(load / 0.85) + 1
    plan = {"deployments": [{"id": "d0", "model": "llama-3.1-8b", "gpu": "H100-SXM", "precision": "fp16",
                             "tp": 1, "pp": 1, "replicas": reps}],
            "routes": [{"query_type": "code", "deployment": "d0", "fraction": 1.0},
                       {"query_type": "conv", "deployment": "d0", "fraction": 1.0}]}
    for inst in (calibrated, _uncalibrated(calibrated)):
        ours = check_plan(compile_instance(inst), plan, inst)
        ref = chk.check(inst, plan)
        assert ours.feasible == ref["feasible"]
        assert _rel(ours.cost_per_hour, ref["cost_per_hour"]) <= 1e-9
    assert check_plan(compile_instance(calibrated), plan, calibrated).feasible


def _uncalibrated(inst: dict) -> dict:
    out = copy.deepcopy(inst)
    for g in out["gpus"]:
        g.pop("constants", None)
        g.pop("constants_by_precision", None)
    return out


def test_layering_and_ignored_keys() -> None:
    base = {"compute_efficiency": 0.5, "bandwidth_efficiency": 0.7, "step_overhead_s": 0.003, "max_batch": 256}
    gpu = {"constants": {"compute_efficiency": 0.6, "max_batch": 8, "note": "x"},
           "constants_by_precision": {"fp8": {"compute_efficiency": 0.4, "step_overhead_s": 0.001}}}
    assert gpu_constants(base, gpu, "fp16") == {**base, "compute_efficiency": 0.6}
    assert gpu_constants(base, gpu, "fp8") == {**base, "compute_efficiency": 0.4, "step_overhead_s": 0.001}
    assert gpu_constants(base, {}, "fp8") == base


def test_uncalibrated_documents_serialise_as_before(spec_instance: dict) -> None:
    assert Instance.model_validate(spec_instance).to_spec()["gpus"][0].keys() == spec_instance["gpus"][0].keys()
    assert "performance_model" not in Instance.model_validate(spec_instance).to_spec()


def test_constants_for_an_unknown_precision_are_rejected(calibrated: dict) -> None:
    bad = copy.deepcopy(calibrated)
    bad["gpus"][0]["constants_by_precision"]["fp4"] = {"compute_efficiency": 0.3}
    with pytest.raises(ValueError, match="constants_by_precision for unknown precisions"):
        Instance.model_validate(bad)
    bad = copy.deepcopy(calibrated)
    bad["gpus"][0]["constants"]["compute_efficiency"] = 5.0
    with pytest.raises(ValueError, match="compute_efficiency"):
        Instance.model_validate(bad)


def test_allreduce_table_model_reads_the_per_tp_figures(calibrated: dict) -> None:
    """The richer model is the spec's formula with each TP degree's own all-reduce figures; the
    spec model (the default) ignores allreduce_by_tp, and a missing degree falls back to it."""
    from solvers.perf import route_times

    inst = copy.deepcopy(calibrated)
    l4 = next(g for g in inst["gpus"] if g["id"] == "L4")
    l4["allreduce_by_tp"] = {"2": {"busbw_gbps": 20.0, "latency_us": 5.0}, "4": {"busbw_gbps": 4.0, "latency_us": 14.0}}
    spec_rt = route_times(inst, "llama-3.1-8b", "L4", "fp16", 4, 1, 2048, 28)
    assert spec_rt.ttft_s == route_times(calibrated, "llama-3.1-8b", "L4", "fp16", 4, 1, 2048, 28).ttft_s
    rich = dict(inst, performance_model="allreduce_table")
    rt = route_times(rich, "llama-3.1-8b", "L4", "fp16", 4, 1, 2048, 28)
    # the same route under the spec model with L4's link figures replaced by the TP4 row
    as_spec = copy.deepcopy(inst)
    g = next(g for g in as_spec["gpus"] if g["id"] == "L4")
    g["link_gbps"], g["link_latency_us"] = 4.0, 14.0
    ref = route_times(as_spec, "llama-3.1-8b", "L4", "fp16", 4, 1, 2048, 28)
    assert rt.ttft_s == pytest.approx(ref.ttft_s, rel=1e-12) and rt.ttft_s > 2 * spec_rt.ttft_s
    assert float(rt.latency(16)[0]) == pytest.approx(float(ref.latency(16)[0]), rel=1e-12)
    # TP8 has no row: the spec figures
    assert route_times(rich, "llama-3.1-8b", "L4", "fp16", 8, 1, 2048, 28).ttft_s == \
        route_times(inst, "llama-3.1-8b", "L4", "fp16", 8, 1, 2048, 28).ttft_s
    # the outside checker knows only the spec model: it agrees with the default path
    assert Instance.model_validate(rich).to_spec()["performance_model"] == "allreduce_table"
    with pytest.raises(ValueError, match="performance_model"):
        compile_instance(dict(inst, performance_model="magic"))
