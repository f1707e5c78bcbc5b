"""Map array results to spec plans (section 3) and back: the one place that knows both shapes."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance
from .result import SolveResult


def cand_key(ci: CompiledInstance, d: int) -> tuple[str, str, str, int, int]:
    return (ci.model_ids[ci.cand_model[d]], ci.gpu_ids[ci.cand_gpu[d]], ci.prec_ids[ci.cand_prec[d]],
            int(ci.cand_tp[d]), int(ci.cand_pp[d]))


def cand_index(ci: CompiledInstance) -> dict[tuple[str, str, str, int, int], int]:
    return {cand_key(ci, d): d for d in range(ci.n_cand)}


def route_index(ci: CompiledInstance) -> dict[tuple[int, int], int]:
    """(query type index, candidate index) -> route index."""
    return {(int(i), int(d)): r for r, (i, d) in enumerate(zip(ci.route_qt, ci.route_cand))}


def to_plan(ci: CompiledInstance, result: SolveResult, min_fraction: float = 1e-9,
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The spec plan dict of an array result; deployment ids are stable per configuration."""
    deployments, routes = [], []
    x = np.where(result.x > min_fraction, result.x, 0.0)
    for d in np.nonzero(result.replicas > 0)[0]:
        model, gpu, prec, tp, pp = cand_key(ci, int(d))
        did = f"{model}.{gpu}.{prec}.tp{tp}pp{pp}"
        deployments.append({"id": did, "model": model, "gpu": gpu, "precision": prec,
                            "tp": tp, "pp": pp, "replicas": int(result.replicas[d])})
        for r in np.nonzero((ci.route_cand == d) & (x > 0))[0]:
            routes.append({"query_type": ci.qt_ids[ci.route_qt[r]], "deployment": did,
                           "fraction": float(x[r])})
    plan: dict[str, Any] = {"deployments": deployments, "routes": routes}
    if extra:
        plan.update(extra)
    return plan


def from_plan(ci: CompiledInstance, plan: Mapping[str, Any]) -> tuple[IntArray, FloatArray]:
    """Aggregate a plan onto candidates/routes (warm starts); unknown configs are skipped."""
    cidx, ridx = cand_index(ci), route_index(ci)
    qidx = {q: i for i, q in enumerate(ci.qt_ids)}
    replicas = np.zeros(ci.n_cand, dtype=np.int64)
    x = np.zeros(ci.n_routes)
    dep_cand: dict[str, int] = {}
    for dep in plan.get("deployments", []):
        key = (dep["model"], dep["gpu"], dep["precision"], int(dep["tp"]), int(dep["pp"]))
        if key in cidx:
            dep_cand[dep["id"]] = cidx[key]
            replicas[cidx[key]] += int(dep["replicas"])
    for rt in plan.get("routes", []):
        d = dep_cand.get(rt["deployment"])
        i = qidx.get(rt["query_type"])
        if d is not None and i is not None and (i, d) in ridx:
            x[ridx[(i, d)]] += float(rt["fraction"])
    return replicas, x
