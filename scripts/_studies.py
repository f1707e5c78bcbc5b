"""Shared helpers of the study scripts: frozen-plan evaluation and docs/studies.md sections."""
from __future__ import annotations

import copy
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "scripts"))

from bench_doc import md_table, update_section  # noqa: E402,F401  (md_table: re-exported for the studies)
from solvers.compile import DEFAULT_CONSTANTS, CompiledInstance  # noqa: E402
from solvers.plan_codec import cand_index, cand_key  # noqa: E402
from solvers.result import objective  # noqa: E402
from solvers.route_lp import route_lp  # noqa: E402

FIG = REPO / "docs" / "figures"
DOC = REPO / "docs" / "studies.md"
QUIET = "log_to_console = false"
STUDIES_HEADER = "# Studies\n\nReproductions of the paper's studies (arXiv 2604.07472) on our allocation model.\n"


def stressed(inst: dict, lat: float = 1.0, err: float = 1.0) -> dict:
    """The instance with every time of spec section 2 multiplied by `lat` (rates / lat,
    fixed delays x lat: T_pre and t_tok scale exactly) and model errors multiplied by `err`.
    Recompiling it re-selects each route's operating point: a deployment keeps its latency
    SLO with a smaller batch (lower mu) where it can, and the route is lost where it cannot."""
    out = copy.deepcopy(inst)
    for g in out["gpus"]:
        g["tflops"] = {q: v / lat for q, v in g["tflops"].items()}
        g["bandwidth_tbps"] /= lat
        g["link_gbps"] /= lat
        g["link_latency_us"] *= lat
        # per-GPU calibration (spec section 1) and the per-TP all-reduce figures scale the same way
        for layer in [g.get("constants") or {}, *(g.get("constants_by_precision") or {}).values()]:
            if "step_overhead_s" in layer:
                layer["step_overhead_s"] *= lat
        for row in (g.get("allreduce_by_tp") or {}).values():
            row["busbw_gbps"] /= lat
            row["latency_us"] *= lat
    const = {**DEFAULT_CONSTANTS, **(out.get("constants") or {})}
    const["step_overhead_s"] *= lat
    out["constants"] = const
    for m in out["models"]:
        m["error"] = {k: min(1.0, v * err) for k, v in (m.get("error") or {}).items()}
    return out


def realise(ci: CompiledInstance, replicas: np.ndarray, ci_eval: CompiledInstance | None = None,
            lam: np.ndarray | None = None) -> dict:
    """Frozen replicas (planned on `ci`) evaluated on `ci_eval` (e.g. a stressed compile)
    with routing re-optimised (the paper: placements fixed, routing adapts) and unserved
    traffic allowed but penalised. Returns realised $/h (GPUs + penalties) and the share of
    requests not served within their SLOs."""
    ev = ci if ci_eval is None else ci_eval
    idx = cand_index(ev)
    rep = np.zeros(ev.n_cand, dtype=np.int64)
    lost = 0.0  # GPUs of configurations with no feasible route any more: paid, useless
    for d in np.nonzero(replicas > 0)[0]:
        k = idx.get(cand_key(ci, int(d)))
        if k is None:
            lost += float(replicas[d] * ci.cand_cost[d])
        else:
            rep[k] += int(replicas[d])
    ps = replace(ev, max_unserved=np.ones(ev.n_qt))
    if lam is not None:
        ps = ps.with_demand(lam)
    x = route_lp(ps, rep)
    if x is None:
        x = np.zeros(ps.n_routes)
    served = np.bincount(ps.route_qt, weights=x, minlength=ps.n_qt)
    viol = float(np.sum(ps.lam * (1 - served)) / max(ps.lam.sum(), 1e-12))
    return {"cost": objective(ps, rep, x) + lost, "gpu": float(rep @ ps.cand_cost) + lost,
            "violation": max(viol, 0.0)}


def max_latency_of(inst: dict) -> np.ndarray:
    return np.array([q["max_latency_s"] for q in inst["query_types"]], dtype=np.float64)


def write_section(key: str, body: str) -> None:
    update_section(key, body, DOC, STUDIES_HEADER)
