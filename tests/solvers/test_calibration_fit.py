"""solvers.calibration: the least-squares fit recovers known constants and refuses worse fits."""
from __future__ import annotations

import copy
import json
import numpy as np
import pytest

from schemas import Measurement
from solvers.calibration import CalibrationError, apply_constants, evaluate, fit_constants
from solvers.perf import route_times
from tests.conftest import EXAMPLES

BASE = json.loads((EXAMPLES / "instance.json").read_text())


def Row(model: str, gpu: str, precision: str, tp: int, pp: int, batch: int, input_tokens: float,  # noqa: N802
        output_tokens: float, **timings: float | None) -> Measurement:
    return Measurement(model=model, gpu=gpu, precision=precision, tp=tp, pp=pp, batch=batch,
                       input_tokens=input_tokens, output_tokens=output_tokens, **timings)


TRUE = {"H100-SXM": {"constants": {"compute_efficiency": 0.61, "bandwidth_efficiency": 0.8, "step_overhead_s": 0.0011},
                     "constants_by_precision": {"fp8": {"compute_efficiency": 0.42, "bandwidth_efficiency": 0.66}}}}


def _truth() -> dict:
    inst = copy.deepcopy(BASE)
    for g in inst["gpus"]:
        g.update(copy.deepcopy(TRUE.get(g["id"], {})))
    return inst


def _rows(inst: dict, noise: float = 0.0, seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    out = []
    m = inst["models"][0]["id"]
    for prec, tp in (("fp16", 1), ("fp16", 2), ("fp8", 1), ("fp8", 4)):
        for h, f in ((2048, 28), (1155, 211)):
            rt = route_times(inst, m, "H100-SXM", prec, tp, 1, h, f)
            for b in (1, 8, 32):
                jit = lambda x: float(x * np.exp(noise * rng.standard_normal()))  # noqa: E731
                out.append(Row(m, "H100-SXM", prec, tp, 1, b, h, f, ttft_s=jit(rt.ttft_s) if b == 1 else None,
                               tpot_s=jit(rt.tpot(b)[0]), latency_s=jit(rt.latency(b)[0])))
    return out


def test_fit_recovers_known_constants_from_synthetic_measurements() -> None:
    rows = _rows(_truth())
    res = fit_constants(BASE, rows, prior_weight=1e-4)
    assert res.accepted and res.after.log_rms < 1e-3 < res.before.log_rms
    got = res.gpus["H100-SXM"]
    for k, v in TRUE["H100-SXM"]["constants"].items():
        assert got["constants"][k] == pytest.approx(v, rel=0.02, abs=5e-5), k
    for k, v in TRUE["H100-SXM"]["constants_by_precision"]["fp8"].items():
        assert got["constants_by_precision"]["fp8"][k] == pytest.approx(v, rel=0.02), k
    # the written catalog entry reproduces the measurements
    gpus = apply_constants(BASE["gpus"], res.gpus, "test")
    assert gpus[0]["sources"]["constants.compute_efficiency"] == "test"
    cal = dict(BASE, gpus=[{k: v for k, v in g.items() if k != "sources"} for g in gpus])
    _, ratios = evaluate(cal, rows)
    assert np.max(np.abs(np.log(ratios.ratio))) < 5e-3


def test_fit_with_noise_stays_close_and_reports_worst_cell() -> None:
    rows = _rows(_truth(), noise=0.05, seed=3)
    res = fit_constants(BASE, rows)
    assert res.accepted
    assert res.gpus["H100-SXM"]["constants"]["compute_efficiency"] == pytest.approx(0.61, rel=0.1)
    cell, ratio = res.worst_cell()
    assert abs(np.log(ratio)) == pytest.approx(np.max(np.abs(np.log(res.after.ratio))))
    assert cell.gpu == "H100-SXM"


def test_constants_already_right_are_not_improved_so_the_fit_is_refused() -> None:
    truth = _truth()
    res = fit_constants(truth, _rows(truth))
    assert res.before.log_rms < 1e-12
    assert not res.accepted


def test_ttft_at_batch_above_one_is_ignored_and_said_so() -> None:
    rows = [Row("llama-3.1-8b", "H100-SXM", "fp16", 1, 1, 8, 1000, 100, ttft_s=0.5, tpot_s=0.01)]
    res = fit_constants(BASE, rows)
    assert [c.quantity for c in res.cells] == ["tpot"]
    assert "row 1" in res.ignored[0] and "batch 8" in res.ignored[0]


def test_unknown_configuration_names_the_row() -> None:
    rows = _rows(_truth())[:2] + [Row("llama-3.1-8b", "H100-SXM", "fp16", 16, 1, 1, 100, 10, tpot_s=0.01)]
    with pytest.raises(CalibrationError, match=r"row 3: .*gpus_per_node"):
        fit_constants(BASE, rows)
