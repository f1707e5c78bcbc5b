"""solvers.perf: one configuration's T_pre, t_tok(b) and L(b), and `llmfleet perf`."""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from controller.cli import main
from solvers.perf import PerfInputError, route_times
from tests.conftest import EXAMPLES, load_checker

CAL = json.loads((EXAMPLES / "instance_calibrated.json").read_text())


def _checker_times(inst: dict, model: str, gpu: str, prec: str, h: float, f: float):
    """The outside checker and the arguments of its route_performance for one configuration."""
    chk = load_checker()
    find = lambda seq, i: next(x for x in seq if x["id"] == i)  # noqa: E731
    qt = {"id": "q", "input_tokens": h, "output_tokens": f, "max_latency_s": 1e9, "max_ttft_s": None}
    m = dict(find(inst["models"], model), error={"q": 0.1})
    return chk, qt, m, find(inst["gpus"], gpu), find(inst["precisions"], prec)


@pytest.mark.parametrize("gpu,prec,tp,pp", [("H100-SXM", "fp8", 2, 1), ("H100-SXM", "fp16", 1, 2), ("L4", "fp16", 4, 1)])
def test_route_times_agree_with_outside_checker(gpu: str, prec: str, tp: int, pp: int) -> None:
    rt = route_times(CAL, "llama-3.1-8b", gpu, prec, tp, pp, 1155, 211)
    chk, qt, m, g, p = _checker_times(CAL, "llama-3.1-8b", gpu, prec, 1155, 211)
    mu, L, ttft, _ = chk.route_performance(CAL, qt, m, g, p, tp, pp)
    assert math.isclose(rt.ttft_s, ttft, rel_tol=1e-12)
    b = round(mu * L)  # the checker's operating point b* = mu L
    assert math.isclose(float(rt.latency([b])[0]), L, rel_tol=1e-9)
    # a latency bound just below L(b*) moves the checker's operating point to a smaller batch
    qt2 = dict(qt, max_latency_s=float(rt.latency([b - 1])[0]) * (1 + 1e-12))
    mu2, L2, _, _ = chk.route_performance(CAL, qt2, m, g, p, tp, pp)
    assert math.isclose(float(rt.latency([round(mu2 * L2)])[0]), L2, rel_tol=1e-9)


def test_latency_is_the_spec_root_of_ttft_and_tpot() -> None:
    rt = route_times(CAL, "llama-3.1-70b", "H100-SXM", "fp16", 4, 1, 2048, 28)
    for b in (1, 8, 32):
        T, t = rt.ttft_s, float(rt.tpot(b)[0])
        S = (1 + b) * T + 28 * t
        assert math.isclose(float(rt.latency(b)[0]), (S + math.sqrt(S * S - 4 * b * T * T)) / 2, rel_tol=1e-12)
    assert rt.constants == {"compute_efficiency": 0.61, "bandwidth_efficiency": 0.8, "step_overhead_s": 0.0011}
    assert route_times(CAL, "llama-3.1-70b", "H100-SXM", "fp8", 4, 1, 2048, 28).constants["compute_efficiency"] == 0.42


def test_scaled_equals_a_fresh_compile_at_other_constants() -> None:
    rt = route_times(CAL, "llama-3.1-70b", "H100-SXM", "fp16", 4, 1, 2048, 211)
    other = json.loads(json.dumps(CAL))
    other["gpus"][0]["constants"] = {"compute_efficiency": 0.37, "bandwidth_efficiency": 0.55, "step_overhead_s": 0.004}
    fresh = route_times(other, "llama-3.1-70b", "H100-SXM", "fp16", 4, 1, 2048, 211)
    sc = rt.scaled(0.37, 0.55, 0.004)
    assert math.isclose(sc.ttft_s, fresh.ttft_s, rel_tol=1e-12)
    for b in (1, 7, 64):
        assert math.isclose(float(sc.tpot(b)[0]), float(fresh.tpot(b)[0]), rel_tol=1e-12)
        assert math.isclose(float(sc.latency(b)[0]), float(fresh.latency(b)[0]), rel_tol=1e-12)


def test_bad_configurations_are_named() -> None:
    with pytest.raises(PerfInputError, match="unknown GPU 'H900'"):
        route_times(CAL, "llama-3.1-8b", "H900", "fp16", 1, 1, 100, 10)
    with pytest.raises(PerfInputError, match="gpus_per_node"):
        route_times(CAL, "llama-3.1-8b", "H100-SXM", "fp16", 16, 1, 100, 10)
    with pytest.raises(PerfInputError, match="does not offer precision int4"):
        route_times(CAL, "llama-3.1-8b", "L4", "int4", 1, 1, 100, 10)
    with pytest.raises(PerfInputError, match="does not fit"):
        route_times(CAL, "llama-3.1-70b", "L4", "fp16", 1, 1, 100, 10)


def test_cli_json_shape_and_table(tmp_path) -> None:
    res = CliRunner().invoke(main, ["perf", "--model", "llama-3.1-8b-instruct", "--gpu", "H100-SXM", "--precision",
                                    "fp16", "--tp", "1", "--input", "2048", "--output", "28", "--batch", "1,8,32",
                                    "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [p["batch"] for p in doc["points"]] == [1, 8, 32]
    assert set(doc["points"][0]) >= {"batch", "ttft_s", "tpot_s", "latency_s"}
    lat = [p["latency_s"] for p in doc["points"]]
    assert lat == sorted(lat) and doc["points"][0]["ttft_s"] < lat[0]
    assert doc["performance_model"] == "spec" and set(doc["constants"]) == {
        "compute_efficiency", "bandwidth_efficiency", "step_overhead_s"}
    res = CliRunner().invoke(main, ["perf", "--model", "llama-3.1-8b-instruct", "--gpu", "H100-SXM", "--precision",
                                    "fp16", "--tp", "1", "--input", "2048", "--output", "28", "--batch", "1,x"])
    assert res.exit_code != 0 and "--batch" in res.output
    res = CliRunner().invoke(main, ["perf", "--model", "nope", "--gpu", "H100-SXM", "--precision", "fp16",
                                    "--tp", "1", "--input", "2048", "--output", "28"])
    assert res.exit_code == 1 and "unknown model 'nope'" in res.output
