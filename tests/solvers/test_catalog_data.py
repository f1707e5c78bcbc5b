"""Structure and feasibility checks for the cited catalog data in solvers/catalog/.

The data files are plain JSON; this test reads them with `json` only. Feasibility is checked
with the spec's outside checker (shared/spec/check_plan.py) as an oracle.
"""
from __future__ import annotations

import importlib.util
import json
import re
from itertools import product
from pathlib import Path

import pytest

CATALOG = Path(__file__).resolve().parents[2] / "solvers" / "catalog"
CHECKER = Path(__file__).resolve().parents[3] / "shared/spec/check_plan.py"

GPU_FIELDS = {"id", "memory_gb", "tflops", "bandwidth_tbps", "link_gbps", "link_latency_us",
              "gpus_per_node", "price_per_hour", "count"}
GPU_OPTIONAL = {"constants", "constants_by_precision", "allreduce_by_tp"}  # calibration (issue 16)
MODEL_FIELDS = {"id", "params_b", "n_layers", "d_model", "n_kv_heads", "head_dim", "error"}
QT_FIELDS = {"id", "arrival_rate", "input_tokens", "output_tokens", "max_latency_s", "max_ttft_s",
             "max_error", "max_unserved", "unserved_penalty", "latency_penalty"}
PREC_FIELDS = {"id", "bytes_per_param", "error_multiplier"}
EXTRA_OK = {"sources", "benchmarks", "description", "benchmark", "vendor", "notes"}
TP, PP = (1, 2, 4, 8), (1, 2, 4)


def _load(name: str, key: str) -> list[dict]:
    with open(CATALOG / name) as fh:
        data = json.load(fh)
    assert isinstance(data, dict) and list(data) == [key], f"{name} must be {{'{key}': [...]}}"
    assert isinstance(data[key], list)
    return data[key]


@pytest.fixture(scope="module")
def catalog() -> dict:
    return {
        "gpus": _load("gpus.json", "gpus"),
        "models": _load("models.json", "models"),
        "query_types": _load("query_types.json", "query_types"),
        "precisions": _load("precisions.json", "precisions"),
    }


@pytest.fixture(scope="module")
def reference_keys() -> set[str]:
    text = (CATALOG / "SOURCES.md").read_text()
    section = text.split("## References", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for line in section.splitlines():
        m = re.match(r"^\|\s*([a-z0-9][a-z0-9.\-]*)\s*\|", line)
        if m:
            keys.add(m.group(1))
    keys.discard("key")  # the table header
    return keys


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


def _check_entry(entry: dict, required: set[str], optional: frozenset[str] = frozenset()) -> None:
    missing = required - set(entry)
    assert not missing, f"{entry.get('id')}: missing {sorted(missing)}"
    extra = set(entry) - required - EXTRA_OK - optional
    assert not extra, f"{entry.get('id')}: unexpected fields {sorted(extra)}"
    assert isinstance(entry["id"], str) and entry["id"]


def test_counts(catalog):
    assert len(catalog["gpus"]) >= 10
    assert len(catalog["models"]) >= 12
    assert len(catalog["query_types"]) >= 6
    assert {p["id"] for p in catalog["precisions"]} >= {"fp16", "fp8", "int4"}
    for kind in catalog:
        ids = [e["id"] for e in catalog[kind]]
        assert len(ids) == len(set(ids)), f"duplicate ids in {kind}"


def test_gpus(catalog):
    for g in catalog["gpus"]:
        _check_entry(g, GPU_FIELDS, frozenset(GPU_OPTIONAL))
        for f in ("memory_gb", "bandwidth_tbps", "link_gbps", "link_latency_us", "price_per_hour"):
            assert _positive(g[f]), f"{g['id']}.{f}"
        assert isinstance(g["gpus_per_node"], int) and g["gpus_per_node"] >= 1
        assert g["count"] is None
        t = g["tflops"]
        assert {"fp16", "int4"} <= set(t) <= {"fp16", "fp8", "int4"}, g["id"]
        assert all(_positive(v) for v in t.values()), g["id"]
        assert t["int4"] == t["fp16"], f"{g['id']}: int4 is weight-only, compute runs in fp16"
        if "fp8" in t:
            assert t["fp8"] >= t["fp16"]


def test_models(catalog):
    qt_ids = {q["id"] for q in catalog["query_types"]}
    for m in catalog["models"]:
        _check_entry(m, MODEL_FIELDS)
        assert _positive(m["params_b"])
        for f in ("n_layers", "d_model", "n_kv_heads", "head_dim"):
            assert isinstance(m[f], int) and m[f] > 0, f"{m['id']}.{f}"
        assert m["error"], f"{m['id']} serves no query type"
        for q, e in m["error"].items():
            assert q in qt_ids, f"{m['id']}: unknown query type {q}"
            assert 0.0 <= e <= 1.0
        bench = m.get("benchmarks") or {}
        assert bench, f"{m['id']}: raw benchmark scores missing"
        assert all(0 < s <= 100 for s in bench.values())


def test_error_matches_benchmarks(catalog):
    """error[q] = 1 - score/100 on the benchmark mapped to q."""
    key = {"code": "HumanEval", "conversation": "IFEval", "summarization": "MMLU-redux",
           "translation": "MGSM", "math": "GSM8K", "long-context-qa": "MMLU-Pro"}
    for m in catalog["models"]:
        for q, e in m["error"].items():
            assert e == pytest.approx(1 - m["benchmarks"][key[q]] / 100, abs=1e-4), (m["id"], q)


def test_query_types(catalog):
    for q in catalog["query_types"]:
        _check_entry(q, QT_FIELDS)
        for f in ("arrival_rate", "input_tokens", "output_tokens", "max_latency_s", "max_error"):
            assert _positive(q[f]), f"{q['id']}.{f}"
        assert isinstance(q["input_tokens"], int) and isinstance(q["output_tokens"], int)
        assert q["max_ttft_s"] is None or _positive(q["max_ttft_s"])
        assert 0.0 <= q["max_error"] <= 1.0 and 0.0 <= q["max_unserved"] <= 1.0
        assert q["unserved_penalty"] >= 0 and q["latency_penalty"] >= 0
        assert q.get("benchmark") and q.get("description")
    assert {"code", "conversation"} <= {q["id"] for q in catalog["query_types"]}


def test_precisions(catalog):
    for p in catalog["precisions"]:
        _check_entry(p, PREC_FIELDS)
        assert _positive(p["bytes_per_param"]) and p["error_multiplier"] >= 1.0
    by = {p["id"]: p for p in catalog["precisions"]}
    assert by["fp16"]["bytes_per_param"] == 2.0 and by["fp16"]["error_multiplier"] == 1.0
    assert by["fp8"]["bytes_per_param"] == 1.0 and by["int4"]["bytes_per_param"] == 0.5


def test_sources_resolve(catalog, reference_keys):
    assert reference_keys, "SOURCES.md has no reference table"
    for kind, entries in catalog.items():
        for e in entries:
            src = e.get("sources")
            assert isinstance(src, dict) and src, f"{kind} {e['id']}: no sources"
            for field, value in src.items():
                assert isinstance(value, str) and value, (e["id"], field)
                if value.startswith(("estimate:", "rule:")):
                    continue
                for k in value.split(";"):
                    assert k.strip() in reference_keys, f"{e['id']}.{field}: unknown source key {k!r}"


def _checker():
    if not CHECKER.is_file():
        pytest.skip(f"outside checker not found at {CHECKER}")
    spec = importlib.util.spec_from_file_location("check_plan_oracle", CHECKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_query_type_has_feasible_routes(catalog):
    """Under the reference model each query type has a route meeting latency, TTFT and error,
    and at least two distinct models can meet its max_error (so the solver has a choice)."""
    cp = _checker()
    inst = {**catalog, "parallelism": {"tp": list(TP), "pp": list(PP)}}
    for qt in catalog["query_types"]:
        models_ok = set()
        for m, g, p, tp, pp in product(catalog["models"], catalog["gpus"], catalog["precisions"], TP, PP):
            if m["id"] in models_ok:
                continue
            perf = cp.route_performance(inst, qt, m, g, p, tp, pp)
            if perf is None:
                continue
            mu, latency, ttft, err = perf
            assert latency <= qt["max_latency_s"] + 1e-9 and mu > 0
            if qt["max_ttft_s"] is not None:
                assert ttft <= qt["max_ttft_s"] + 1e-9
            if err <= qt["max_error"] + 1e-9:
                models_ok.add(m["id"])
        assert len(models_ok) >= 2, f"{qt['id']}: only {sorted(models_ok)} meet the bounds"
