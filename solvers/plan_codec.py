"""Map array results to spec plans (section 3) and back: the one place that knows both shapes."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance
from .result import SolveResult


def cand_key(ci: CompiledInstance, d: int) -> tuple[str, str, str, int, int]:
    return (ci.model_ids[ci.cand_model[d]], ci.gpu_ids[ci.cand_gpu[d]], ci.prec_ids[ci.cand_prec[d]],
            int(ci.cand_tp[d]), int(ci.cand_pp[d]))


def cand_index(ci: CompiledInstance) -> dict[tuple[str, str, str, int, int], int]:
    """Configuration -> candidate index (built once per compiled arrays; read-only)."""
    def build() -> dict[tuple[str, str, str, int, int], int]:  # cand_key of every candidate, vectorised
        names = lambda ids, idx: np.array(ids, dtype=object)[idx].tolist()  # noqa: E731
        keys = zip(names(ci.model_ids, ci.cand_model), names(ci.gpu_ids, ci.cand_gpu),
                   names(ci.prec_ids, ci.cand_prec), ci.cand_tp.tolist(), ci.cand_pp.tolist())
        return dict(zip(keys, range(ci.n_cand)))
    return ci.derived("cand_index", build)


def route_index(ci: CompiledInstance) -> Mapping[tuple[int, int], int]:
    """(query type index, candidate index) -> route index."""
    return _RouteIndex(ci)


class _RouteIndex(Mapping[tuple[int, int], int]):
    """Route lookup by binary search over the routes' (query type, candidate) keys: plans name
    a few dozen routes, and a dict of every route costs ~10 ms of tuples per compiled instance."""

    def __init__(self, ci: CompiledInstance) -> None:
        self._n = max(ci.n_cand, 1)
        keys = ci.route_qt * self._n + ci.route_cand
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]

    def __getitem__(self, key: tuple[int, int]) -> int:
        i, d = int(key[0]), int(key[1])
        if 0 <= d < self._n and i >= 0:
            p = int(np.searchsorted(self._keys, i * self._n + d))
            if p < len(self._keys) and self._keys[p] == i * self._n + d:
                return int(self._order[p])
        raise KeyError(key)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((int(k) // self._n, int(k) % self._n) for k in self._keys)

    def __len__(self) -> int:
        return len(self._keys)


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
