"""The compiled model agrees with the spec's outside checker and the worked example."""
from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvers.compile import CompileCache, CompiledInstance, compile_instance
from solvers.plan_codec import cand_index, cand_key, route_index
from solvers.subproblem import restrict
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


def _assert_identical(got: CompiledInstance, want: CompiledInstance) -> None:
    """Field by field, bit for bit (dtypes and shapes included)."""
    for f in dataclasses.fields(CompiledInstance):
        if not f.compare:
            continue
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, f.name
            assert np.array_equal(a, b, equal_nan=True), f.name
        else:
            assert a == b, f.name


def _variant(inst: dict, draw_qt: int, input_scale: float, output_scale: float, rate: float) -> dict:
    """The same fleet with one query type's tokens moved and every arrival rate changed."""
    out = copy.deepcopy(inst)
    q = out["query_types"][draw_qt % len(out["query_types"])]
    q["input_tokens"] = max(1, round(q["input_tokens"] * input_scale))
    q["output_tokens"] = max(1, round(q["output_tokens"] * output_scale))
    for k, qt in enumerate(out["query_types"]):
        qt["arrival_rate"] = rate * (k + 1)
        qt["max_unserved"] = 1.0 if rate == 0 else qt.get("max_unserved", 0.0)
    out["name"] = f"{inst['name']}-{draw_qt}-{rate}"
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(max_qt=4), st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0.5, 1.0, 1.05, 1.1, 2.0]),
                                               st.sampled_from([0.5, 1.0, 1.05, 3.0]),
                                               st.sampled_from([0.0, 1.0, 7.5])), min_size=1, max_size=6))
def test_per_query_type_cache_compiles_exactly_what_a_whole_compile_does(inst: dict, moves: list) -> None:
    cache = CompileCache(max_query_types=3, max_assembled=2)  # small: evictions are exercised too
    current = inst
    for qt, fin, fout, rate in moves:
        current = _variant(current, qt, fin, fout, rate)
        _assert_identical(cache(current), compile_instance(current))
    _assert_identical(cache(inst), compile_instance(inst))


def test_cache_recompiles_only_the_query_types_that_moved(spec_instance: dict) -> None:
    cache = CompileCache()
    cache(spec_instance)
    n_qt = len(spec_instance["query_types"])
    assert (cache.compiled, cache.reused) == (n_qt, 0)
    moved = _variant(spec_instance, 1, 1.05, 1.0, 3.0)
    _assert_identical(cache(moved), compile_instance(moved))
    assert (cache.compiled, cache.reused) == (n_qt + 1, n_qt - 1)
    rates_only = _variant(spec_instance, 0, 1.0, 1.0, 9.0)  # nothing a route reads has changed
    assert cache(rates_only).lam.tolist() == [9.0 * (k + 1) for k in range(n_qt)]
    assert cache.compiled == n_qt + 1
    fleet = copy.deepcopy(spec_instance)
    fleet["gpus"][0]["memory_gb"] *= 2  # a fleet change recompiles every query type
    _assert_identical(cache(fleet), compile_instance(fleet))
    assert cache.compiled == 2 * n_qt + 1


def test_lookups_are_shared_by_demand_copies_and_rebuilt_for_new_arrays(spec_instance: dict) -> None:
    ci = compile_instance(spec_instance)
    copy_ = ci.with_demand(ci.lam * 2)
    assert cand_index(copy_) is cand_index(ci), "built once per compiled arrays"
    sub, cands, routes = restrict(ci, np.arange(0, ci.n_cand, 2))
    idx = cand_index(sub)
    assert idx is not cand_index(ci) and len(idx) == sub.n_cand
    assert all(idx[cand_key(sub, d)] == d for d in range(sub.n_cand))
    for c in (ci, sub):
        brute = {(int(i), int(d)): r for r, (i, d) in enumerate(zip(c.route_qt, c.route_cand))}
        ridx = route_index(c)
        assert dict(ridx) == brute
        absent = [(i, d) for i in range(c.n_qt) for d in range(-1, c.n_cand + 1) if (i, d) not in brute]
        assert all(k not in ridx and ridx.get(k, -1) == -1 for k in absent)
