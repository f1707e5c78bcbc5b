"""The compiled model agrees with the spec's outside checker and the worked example."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from solvers.compile import compile_instance
from tests.conftest import EXAMPLES, load_checker
from tests.solvers.strategies import instances


def _routes(ci) -> dict:
    out = {}
    for r in range(ci.n_routes):
        d = ci.route_cand[r]
        key = (ci.qt_ids[ci.route_qt[r]], ci.model_ids[ci.cand_model[d]], ci.gpu_ids[ci.cand_gpu[d]],
               ci.prec_ids[ci.cand_prec[d]], int(ci.cand_tp[d]), int(ci.cand_pp[d]))
        out[key] = (ci.mu[r], ci.latency[r], ci.ttft[r], ci.error[r])
    return out


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def test_worked_example_matches_routes_expected() -> None:
    inst = json.loads((EXAMPLES / "instance.json").read_text())
    expected = json.loads((EXAMPLES / "routes_expected.json").read_text())
    got = _routes(compile_instance(inst))
    feasible = [e for e in expected if e["feasible"]]
    assert len(got) == len(feasible)
    for e in expected:
        key = (e["query_type"], e["model"], e["gpu"], e["precision"], e["tp"], e["pp"])
        if not e["feasible"]:
            assert key not in got, key
            continue
        mu, lat, ttft, err = got[key]
        for a, b in ((mu, e["mu"]), (lat, e["latency_s"]), (ttft, e["ttft_s"]), (err, e["error"])):
            assert _rel(a, b) <= 1e-9, (key, a, b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_every_route_agrees_with_outside_checker(inst: dict) -> None:
    chk = load_checker()
    got = _routes(compile_instance(inst))
    n_feasible = 0
    for qt in inst["query_types"]:
        for m in inst["models"]:
            for g in inst["gpus"]:
                for p in inst["precisions"]:
                    for tp in inst["parallelism"]["tp"]:
                        for pp in inst["parallelism"]["pp"]:
                            ref = chk.route_performance(inst, qt, m, g, p, tp, pp)
                            key = (qt["id"], m["id"], g["id"], p["id"], tp, pp)
                            if ref is None:
                                assert key not in got, key
                                continue
                            n_feasible += 1
                            assert key in got, key
                            for a, b in zip(got[key], ref):
                                assert _rel(a, b) <= 1e-9, (key, a, b)
    assert n_feasible == len(got)


def test_candidates_and_routes_are_consistent(spec_instance: dict) -> None:
    ci = compile_instance(spec_instance)
    assert np.all(np.diff(ci.route_qt) >= 0), "routes are sorted by query type"
    for i in range(ci.n_qt):
        assert np.all(ci.route_qt[ci.routes_of(i)] == i)
    assert np.allclose(ci.cand_cost, ci.cand_ngpu * ci.gpu_price[ci.cand_gpu])
    assert set(np.unique(ci.route_cand)) == set(range(ci.n_cand))
    assert np.all(ci.batch >= 1) and np.all(ci.mu > 0)
    assert np.allclose(ci.mu, ci.batch / ci.latency)


def test_with_demand_rejects_bad_vectors(spec_instance: dict) -> None:
    ci = compile_instance(spec_instance)
    assert ci.with_demand({"code": 7.0}).lam[0] == 7.0
    with pytest.raises(ValueError, match="finite, non-negative"):
        ci.with_demand(np.array([1.0, math.nan]))
    with pytest.raises(ValueError, match="finite, non-negative"):
        ci.with_demand(np.array([1.0]))


def test_diagnostics_explain_missing_routes(spec_instance: dict) -> None:
    inst = json.loads(json.dumps(spec_instance))
    inst["query_types"][1]["max_ttft_s"] = 1e-4
    ci = compile_instance(inst)
    assert len(ci.routes_of(1)) == 0
    d = ci.diagnostics[1]
    assert d.has_model and d.fits_memory and d.best_ttft_s > 1e-4
