"""Seeded instance generator for sweeps: (I query types, J models, K tiers) from a catalog.

Past the catalog's size, entries are cycled with seeded variation (token lengths, arrival
rates, model error, GPU prices), as the paper varies prices by U(0.8, 1.2). K counts tiers,
i.e. (GPU, precision) pairs, as in the paper. Every generated instance has a feasible
plan by construction: `witness_plan` builds one, and the budget (and inventory, in the
scarce preset) are set from it.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .compile import CompiledInstance, compile_instance
from .plan_codec import to_plan
from .result import SolveResult, Status, objective

SCENARIOS = ("base", "tight_budget", "high_penalty", "scarce_inventory")
_SPEC_QT = ("id", "arrival_rate", "input_tokens", "output_tokens", "max_latency_s", "max_ttft_s",
            "max_error", "max_unserved", "unserved_penalty", "latency_penalty")
_SPEC_MODEL = ("id", "params_b", "n_layers", "d_model", "n_kv_heads", "head_dim", "error")
_SPEC_GPU = ("id", "memory_gb", "tflops", "bandwidth_tbps", "link_gbps", "link_latency_us",
             "gpus_per_node", "price_per_hour", "count")


def _pick(d: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: copy.deepcopy(d[k]) for k in keys if k in d}


def generate_instance(catalog: Mapping[str, Any], n_qt: int, n_models: int, n_tiers: int,
                      seed: int = 0, load: float = 1.0, scenario: str = "base") -> dict[str, Any]:
    """A spec instance dict of the requested size; `load` scales arrival rates."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {SCENARIOS}")
    if min(n_qt, n_models, n_tiers) < 1 or load <= 0:
        raise ValueError("sizes must be >= 1 and load > 0")
    rng = np.random.default_rng(seed)
    base_q, base_m = catalog["query_types"], catalog["models"]
    base_g, precs = catalog["gpus"], catalog["precisions"]

    qts, qt_base = [], []
    for k in range(n_qt):
        b = base_q[k % len(base_q)]
        v = k // len(base_q)
        q = _pick(b, _SPEC_QT)
        q["id"] = b["id"] if v == 0 else f"{b['id']}-v{v}"
        stretch = 1.0 if v == 0 else float(rng.uniform(0.75, 1.3))
        q["input_tokens"] = max(1, round(b["input_tokens"] * stretch))
        q["output_tokens"] = max(1, round(b["output_tokens"] * float(rng.uniform(0.75, 1.3)) if v else b["output_tokens"]))
        q["max_latency_s"] = float(b["max_latency_s"]) * (q["output_tokens"] / b["output_tokens"]) ** 0.5
        q["arrival_rate"] = round(float(b["arrival_rate"]) * load * float(rng.uniform(0.6, 1.4)), 4)
        qts.append(q)
        qt_base.append(b["id"])

    models = []
    for k in range(n_models):
        b = base_m[k % len(base_m)]
        v = k // len(base_m)
        m = _pick(b, _SPEC_MODEL)
        m["id"] = b["id"] if v == 0 else f"{b['id']}-v{v}"
        jitter = (lambda: 1.0) if v == 0 else (lambda: float(rng.uniform(0.9, 1.1)))
        if v:
            m["params_b"] = round(b["params_b"] * float(rng.uniform(0.95, 1.05)), 3)
        errs = b.get("error", {})
        m["error"] = {q["id"]: round(min(1.0, errs[qb] * jitter()), 4)
                      for q, qb in zip(qts, qt_base) if qb in errs}
        models.append(m)

    gpus, tiers, k = [], 0, 0
    prec_ids = [p["id"] for p in precs]
    while tiers < n_tiers:
        b = base_g[k % len(base_g)]
        v = k // len(base_g)
        g = _pick(b, _SPEC_GPU)
        g["id"] = b["id"] if v == 0 else f"{b['id']}-v{v}"
        g["price_per_hour"] = round(b["price_per_hour"] * float(rng.uniform(0.8, 1.2)), 4) if v else b["price_per_hour"]
        g["count"] = None
        offered = [p for p in prec_ids if p in b["tflops"]]
        offered = offered[: n_tiers - tiers]
        g["tflops"] = {p: b["tflops"][p] for p in offered}
        tiers += len(offered)
        gpus.append(g)
        k += 1

    inst: dict[str, Any] = {
        "name": f"gen-{n_qt}x{n_models}x{n_tiers}-s{seed}-{scenario}",
        "query_types": qts, "models": models, "gpus": gpus,
        "precisions": [_pick(p, ("id", "bytes_per_param", "error_multiplier")) for p in precs],
        "parallelism": copy.deepcopy(catalog.get("parallelism", {"tp": [1, 2, 4, 8], "pp": [1, 2, 4]})),
        "budget_per_hour": 1e9,
        "constants": copy.deepcopy(catalog.get("constants", {})),
    }
    ci = _ensure_servable(inst)
    wit = witness(ci)
    cost = objective(ci, wit.replicas, wit.x)
    if scenario == "base":
        inst["budget_per_hour"] = round(2.0 * cost + 1.0, 2)
    else:
        inst["budget_per_hour"] = round(cost * 1.001 + 0.01, 2)
    if scenario == "high_penalty":
        for q in inst["query_types"]:
            q["unserved_penalty"] = 0.25
            q["max_unserved"] = 0.2
    if scenario == "scarce_inventory":
        used = np.bincount(ci.cand_gpu, weights=wit.replicas * ci.cand_ngpu,
                           minlength=len(ci.gpu_ids))
        for t, g in enumerate(inst["gpus"]):
            g["count"] = int(used[t]) + int(rng.integers(0, 3))
        inst["budget_per_hour"] = round(2.0 * cost + 1.0, 2)
    return inst


def _ensure_servable(inst: dict[str, Any]) -> CompiledInstance:
    """Relax SLOs just enough that each query type has a route meeting its own error bound."""
    for _ in range(8):
        ci = compile_instance(inst)
        changed = False
        for i, q in enumerate(inst["query_types"]):
            rs = ci.routes_of(i)
            if len(rs) == 0:
                q["max_latency_s"] = round(q["max_latency_s"] * 1.6, 3)
                if q.get("max_ttft_s") is not None:
                    q["max_ttft_s"] = round(q["max_ttft_s"] * 1.6, 3)
                changed = True
                continue
            errs = np.unique(ci.error[rs])
            # at least two distinct error levels (so model choice matters) within the bound
            need = float(errs[min(1, len(errs) - 1)])
            if need > q["max_error"]:
                q["max_error"] = math.ceil(need * 1.01 * 1000) / 1000
                changed = True
        if not changed:
            return ci
    raise ValueError("could not make the generated instance servable; check the catalog")


def witness(ci: CompiledInstance) -> SolveResult:
    """A feasible plan ignoring budget and inventory: each query type on its cheapest route
    (per request) whose own error meets the bound; deployments shared across query types."""
    x = np.zeros(ci.n_routes)
    per_req = ci.cand_cost[ci.route_cand] / (ci.mu * ci.max_utilization)
    for i in range(ci.n_qt):
        rs = ci.routes_of(i)
        ok = rs[ci.error[rs] <= ci.max_error[i] + 1e-12]
        if len(ok) == 0:
            raise ValueError(f"query type {ci.qt_ids[i]} has no route meeting its error bound")
        x[ok[np.argmin(per_req[ok])]] = 1.0
    load = np.bincount(ci.route_cand, weights=ci.load_coef * x, minlength=ci.n_cand)
    replicas = np.ceil(load / ci.max_utilization - 1e-12).astype(np.int64)
    replicas[(load > 0) & (replicas == 0)] = 1
    return SolveResult(status=Status.FEASIBLE, method="witness", replicas=replicas, x=x,
                       objective=objective(ci, replicas, x))


def witness_plan(inst: Mapping[str, Any]) -> dict[str, Any]:
    ci = compile_instance(inst)
    return to_plan(ci, witness(ci))


# ---- instance families (issue 15) -------------------------------------------------------------
#
# The `base` sweep runs at about $10/h, where every plan is a handful of replicas and a
# greedy's rounding losses hide. Users plan fleets of hundreds to thousands of dollars per
# hour, with budgets below the cheapest full-coverage fleet (some demand allowed to go
# unserved) and GPU types in short supply. These families build such instances from the
# same catalog; the budget and inventory are set from a *reference* plan of the
# unconstrained instance (the exact optimum when the caller passes one, else the witness).

FAMILIES = ("high_load", "tight_budget", "scarce_inventory", "mixed")
HIGH_LOAD = (40.0, 200.0)   # arrival-rate multipliers drawn per instance: ~$300-3000/h fleets
BUDGET_FRACTION = 0.8       # tight_budget: budget = this x the reference plan's GPU cost
UNSERVED_CAP = 0.25         # tight_budget: at most this share of each query type unserved
UNSERVED_PENALTY = 0.002    # $/request for unserved demand in tight_budget
INVENTORY_FRACTION = 0.7    # scarce_inventory: this share of the reference plan's GPUs


def gpu_use(ci: CompiledInstance, replicas: Any) -> np.ndarray:
    """GPUs per GPU type a plan occupies."""
    rep = np.asarray(replicas, dtype=np.float64)
    return np.bincount(ci.cand_gpu, weights=rep * ci.cand_ngpu, minlength=len(ci.gpu_ids))


def generate_family(catalog: Mapping[str, Any], family: str, n_qt: int, n_models: int,
                    n_tiers: int, seed: int = 0, reference: Any = None,
                    budget_fraction: float = BUDGET_FRACTION,
                    inventory_fraction: float = INVENTORY_FRACTION,
                    unserved_cap: float = UNSERVED_CAP) -> dict[str, Any]:
    """A spec instance of `family` (see FAMILIES).

    `reference(ci) -> SolveResult` solves the unconstrained high-load instance (budget
    and inventory unlimited); its plan sets the tight budget (`budget_fraction` x its GPU
    cost) and the scarce inventory (`inventory_fraction` x its GPUs per type, rounded
    down, at least one where it used any). Without it the witness plan is the reference
    (cheap, but a looser, dearer fleet, so the constraints bind less). `mixed` applies a
    tight budget and scarce inventory together, each halfway to its family's value.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    if not 0 < budget_fraction <= 1 or not 0 < inventory_fraction <= 1 or not 0 <= unserved_cap < 1:
        raise ValueError("budget_fraction and inventory_fraction must be in (0, 1], "
                         "unserved_cap in [0, 1)")
    rng = np.random.default_rng([seed, 15])
    load = float(rng.uniform(*HIGH_LOAD))
    inst = generate_instance(catalog, n_qt, n_models, n_tiers, seed=seed, load=load)
    inst["name"] = f"fam-{family}-{n_qt}x{n_models}x{n_tiers}-s{seed}"
    inst["budget_per_hour"] = 1e9
    if family == "high_load":
        ci = compile_instance(inst)
        inst["budget_per_hour"] = round(2.0 * float(witness(ci).replicas @ ci.cand_cost) + 1.0, 2)
        return inst
    ci = compile_instance(inst)
    ref = (reference or witness)(ci)
    if not np.any(np.asarray(ref.replicas) > 0):  # the reference solve found no plan in time
        ref = witness(ci)
    ref_cost = float(np.asarray(ref.replicas) @ ci.cand_cost)
    ref_gpus = gpu_use(ci, ref.replicas)
    mixed = family == "mixed"
    bf = 1 - (1 - budget_fraction) / 2 if mixed else budget_fraction
    inf = 1 - (1 - inventory_fraction) / 2 if mixed else inventory_fraction
    if family in ("tight_budget", "mixed"):
        inst["budget_per_hour"] = round(bf * ref_cost, 2)
        for q in inst["query_types"]:
            q["max_unserved"] = unserved_cap
            q["unserved_penalty"] = UNSERVED_PENALTY
    else:
        inst["budget_per_hour"] = round(2.0 * ref_cost + 1.0, 2)
    if family in ("scarce_inventory", "mixed"):
        # the types the reference uses get a share of its count; the others stay
        # unlimited, so a plan exists (on dearer or slower GPUs) and the solver must find it
        for t, g in enumerate(inst["gpus"]):
            if ref_gpus[t] > 0:
                g["count"] = int(max(np.floor(inf * ref_gpus[t]), 1))
    return inst
