"""The project's validator of spec section 4 and the cost terms of section 5.

Every solver's output passes through here (tests, planner). Plans are checked per
deployment, so duplicate configurations and unknown names are judged as written.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._typing import FloatArray, IntArray
from .compile import CompiledInstance
from .plan_codec import cand_index, route_index
from .result import SolveResult

TOL = 1e-6


@dataclass(frozen=True)
class Violation:
    constraint: str   # route | served | capacity | accuracy | budget | inventory | structure
    subject: str      # the deployment, query type or GPU concerned
    value: float
    limit: float
    message: str


@dataclass(frozen=True)
class Report:
    feasible: bool
    violations: tuple[Violation, ...]
    cost_per_hour: float
    gpu_cost_per_hour: float
    unserved_cost_per_hour: float
    latency_cost_per_hour: float
    gpus: int
    gpus_by_type: dict[str, int] = field(default_factory=dict)
    served: dict[str, float] = field(default_factory=dict)
    max_violation: float = 0.0

    def summary(self) -> str:
        head = "feasible" if self.feasible else f"INFEASIBLE ({len(self.violations)} violations)"
        return f"{head}: cost ${self.cost_per_hour:,.4f}/h (GPUs ${self.gpu_cost_per_hour:,.4f}/h, {self.gpus} GPUs)"


class _CandidateNames:
    """Deployment names for messages, built only for the few that violate something."""

    def __init__(self, ci: CompiledInstance) -> None:
        self.ci = ci

    def __getitem__(self, d: int) -> str:
        return self.ci.describe_cand(int(d))

    def __len__(self) -> int:
        return self.ci.n_cand


def _evaluate(ci: CompiledInstance, names: "list[str] | _CandidateNames", dep_gpu: IntArray, dep_ngpu: IntArray,
              dep_rep: IntArray, rt_qt: IntArray, rt_dep: IntArray, rt_route: IntArray,
              rt_x: FloatArray, pre: list[Violation]) -> Report:
    viol = list(pre)
    ok = rt_route >= 0
    lam = ci.lam
    served = np.bincount(rt_qt[ok], weights=rt_x[ok], minlength=ci.n_qt)
    err = np.bincount(rt_qt[ok], weights=rt_x[ok] * ci.error[rt_route[ok]], minlength=ci.n_qt)
    lat = np.bincount(rt_qt[ok], weights=rt_x[ok] * ci.latency[rt_route[ok]], minlength=ci.n_qt)
    load = np.bincount(rt_dep[ok], weights=lam[rt_qt[ok]] * rt_x[ok] / ci.mu[rt_route[ok]],
                       minlength=len(names))
    U = ci.max_utilization
    worst = 0.0
    for k in np.nonzero(load > U * dep_rep * (1 + TOL) + TOL)[0]:
        viol.append(Violation("capacity", names[k], float(load[k]), U * float(dep_rep[k]),
                              f"deployment {names[k]}: load {load[k]:.6g} replica-equivalents > "
                              f"{U} x {dep_rep[k]} replicas"))
        worst = max(worst, float(load[k] - U * dep_rep[k]))
    u = 1.0 - served
    for i, q in enumerate(ci.qt_ids):
        if u[i] < -TOL:
            viol.append(Violation("served", q, float(served[i]), 1.0,
                                  f"query type {q}: routed fractions sum to {served[i]:.6g} > 1"))
            worst = max(worst, float(-u[i]))
        if u[i] > ci.max_unserved[i] + TOL:
            viol.append(Violation("served", q, float(u[i]), float(ci.max_unserved[i]),
                                  f"query type {q}: unserved {u[i]:.6g} > max_unserved "
                                  f"{ci.max_unserved[i]:g}"))
            worst = max(worst, float(u[i] - ci.max_unserved[i]))
        if err[i] > ci.max_error[i] * served[i] + TOL:
            mean = err[i] / max(served[i], 1e-12)
            viol.append(Violation("accuracy", q, float(mean), float(ci.max_error[i]),
                                  f"query type {q}: served-traffic mean error {mean:.6g} > "
                                  f"{ci.max_error[i]:g}"))
            worst = max(worst, float(err[i] - ci.max_error[i] * served[i]))
    gpu_n = np.bincount(dep_gpu, weights=dep_rep * dep_ngpu, minlength=len(ci.gpu_ids))
    gpu_cost = float(np.sum(gpu_n * ci.gpu_price))
    if gpu_cost > ci.budget * (1 + TOL) + TOL:
        viol.append(Violation("budget", "fleet", gpu_cost, ci.budget,
                              f"GPU cost ${gpu_cost:,.4f}/h > budget ${ci.budget:,.4f}/h"))
        worst = max(worst, gpu_cost - ci.budget)
    for t in np.nonzero(gpu_n > ci.gpu_count)[0]:
        viol.append(Violation("inventory", ci.gpu_ids[t], float(gpu_n[t]), float(ci.gpu_count[t]),
                              f"inventory: {int(gpu_n[t])} GPUs of {ci.gpu_ids[t]} > "
                              f"{int(ci.gpu_count[t])} available"))
        worst = max(worst, float(gpu_n[t] - ci.gpu_count[t]))
    unserved_cost = float(3600 * np.sum(lam * np.maximum(u, 0.0) * ci.unserved_penalty))
    latency_cost = float(3600 * np.sum(lam * ci.latency_penalty * lat))
    worst = max([worst] + [v.value for v in pre if v.constraint == "route"])
    return Report(
        feasible=not viol, violations=tuple(viol),
        cost_per_hour=gpu_cost + unserved_cost + latency_cost, gpu_cost_per_hour=gpu_cost,
        unserved_cost_per_hour=unserved_cost, latency_cost_per_hour=latency_cost,
        gpus=int(gpu_n.sum()),
        gpus_by_type={ci.gpu_ids[t]: int(n) for t, n in enumerate(gpu_n) if n > 0},
        served={q: float(served[i]) for i, q in enumerate(ci.qt_ids)}, max_violation=worst)


def check_result(ci: CompiledInstance, result: SolveResult) -> Report:
    """Validate an array result (one deployment per candidate with replicas > 0)."""
    x = np.asarray(result.x, dtype=np.float64)
    rep = np.asarray(result.replicas, dtype=np.int64)
    pre = []
    if np.any(rep < 0):
        pre.append(Violation("structure", "replicas", float(rep.min()), 0.0, "negative replicas"))
    neg = np.nonzero(x < -TOL)[0]
    for r in neg:
        pre.append(Violation("structure", f"route {r}", float(x[r]), 0.0, "negative fraction"))
    orphan = np.nonzero((x > TOL) & (rep[ci.route_cand] <= 0))[0]
    for r in orphan:
        pre.append(Violation("capacity", ci.describe_cand(int(ci.route_cand[r])), float(x[r]), 0.0,
                             f"route {ci.qt_ids[ci.route_qt[r]]} -> {ci.describe_cand(int(ci.route_cand[r]))}"
                             " carries traffic but the deployment has no replicas"))
    return _evaluate(ci, _CandidateNames(ci), ci.cand_gpu, ci.cand_ngpu, np.maximum(rep, 0), ci.route_qt,
                     ci.route_cand, np.arange(ci.n_routes), np.maximum(x, 0.0), pre)


def check_plan(ci: CompiledInstance, plan: Mapping[str, Any],
               inst: Mapping[str, Any] | None = None) -> Report:
    """Validate a spec plan dict against the compiled instance (and the raw instance for
    deployments whose configuration serves nothing, so it is absent from `ci`)."""
    cidx, ridx = cand_index(ci), route_index(ci)
    qidx = {q: i for i, q in enumerate(ci.qt_ids)}
    gidx = {g: t for t, g in enumerate(ci.gpu_ids)}
    pre: list[Violation] = []
    names: list[str] = []
    dep_of: dict[str, int] = {}
    dep_cand, dep_gpu, dep_ngpu, dep_rep = [], [], [], []
    for dep in plan.get("deployments", []):
        did = str(dep.get("id"))
        if did in dep_of:
            pre.append(Violation("structure", did, 1, 0, f"duplicate deployment id {did}"))
            continue
        if dep.get("gpu") not in gidx:
            pre.append(Violation("structure", did, 1, 0,
                                 f"deployment {did} names an unknown GPU {dep.get('gpu')!r}"))
            continue
        reps = dep.get("replicas")
        if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
            pre.append(Violation("structure", did, float(reps) if isinstance(reps, (int, float)) else 0,
                                 1, f"deployment {did}: replicas must be a positive integer"))
            reps = max(int(reps), 0) if isinstance(reps, (int, float)) else 0
        key = (dep.get("model"), dep.get("gpu"), dep.get("precision"), int(dep.get("tp", 0)),
               int(dep.get("pp", 0)))
        if key not in cidx and inst is not None and not _allowed(inst, key):
            pre.append(Violation("structure", did, 1, 0,
                                 f"deployment {did}: configuration {key} is not allowed by the "
                                 "instance (unknown model/precision, precision not offered by "
                                 "the GPU, or tp/pp outside parallelism and node limits)"))
        dep_of[did] = len(names)
        names.append(did)
        dep_cand.append(cidx.get(key, -1))
        dep_gpu.append(gidx[key[1]])
        dep_ngpu.append(key[3] * key[4])
        dep_rep.append(reps)
    rt_qt, rt_dep, rt_route, rt_x = [], [], [], []
    for k, rt in enumerate(plan.get("routes", [])):
        q, did, x = rt.get("query_type"), rt.get("deployment"), float(rt.get("fraction", 0.0))
        if q not in qidx or did not in dep_of:
            pre.append(Violation("structure", f"routes[{k}]", 1, 0,
                                 f"route {q}->{did} names an unknown query type or deployment"))
            continue
        if x < -TOL:
            pre.append(Violation("structure", f"routes[{k}]", x, 0,
                                 f"route {q}->{did} has negative fraction {x}"))
            continue
        kdep = dep_of[did]
        r = ridx.get((qidx[q], dep_cand[kdep]), -1) if dep_cand[kdep] >= 0 else -1
        if r < 0 and x > TOL:
            pre.append(Violation("route", f"{q}->{did}", x, 0,
                                 f"route {q}->{did} is infeasible under the performance model "
                                 "(memory, latency, TTFT, or no error rate for this query type)"))
        rt_qt.append(qidx[q])
        rt_dep.append(kdep)
        rt_route.append(r)
        rt_x.append(x)
    arr = (lambda v, dt: np.asarray(v, dtype=dt))  # noqa: E731
    return _evaluate(ci, names, arr(dep_gpu, np.int64), arr(dep_ngpu, np.int64),
                     arr(dep_rep, np.int64), arr(rt_qt, np.int64), arr(rt_dep, np.int64),
                     arr(rt_route, np.int64), arr(rt_x, np.float64), pre)


def _allowed(inst: Mapping[str, Any], key: tuple[Any, str, Any, int, int]) -> bool:
    model, gpu, prec, tp, pp = key
    models = {m["id"]: m for m in inst["models"]}
    gpus = {g["id"]: g for g in inst["gpus"]}
    precs = {p["id"] for p in inst["precisions"]}
    if model not in models or gpu not in gpus or prec not in precs:
        return False
    g, par = gpus[gpu], inst["parallelism"]
    return (prec in g["tflops"] and tp in par["tp"] and tp <= g["gpus_per_node"]
            and pp in par["pp"] and pp <= models[model]["n_layers"])
