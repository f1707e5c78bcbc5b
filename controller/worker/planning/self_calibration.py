"""Self-calibration: a bounded, smoothed per-(GPU, precision) speed correction from telemetry.

The catalog's constants come from a reference (docs/fidelity.md); the fleet's own hardware,
drivers and engine versions can be faster or slower. Request telemetry already carries each
request's deployment, query type and latency, so per deployment and window we know each query
type's mean latency L_obs,i and, by Little's law, the requests in flight per replica
b = sum_i (requests_i / window) x L_obs,i / replicas. The route model predicts L_i(b) for that
configuration and query type's mean tokens (solvers.perf, with the corrections in force); the
residuals r = L_obs,i / L_i(b) of every deployment and query type on a tier (GPU, precision)
are averaged in log space (weighted by requests) and folded into the tier's time factor f:

    log f <- clip(log f + gain * clip(log r, +-log max_step), +-log max_factor)

so f moves a fraction `gain` of the way to the observed speed each window (smoothing),
never by more than `max_step` per window, and never beyond [1/max_factor, max_factor]
(bounded). With prediction already including f, r -> 1 as f reaches the truth: the error
shrinks by (1 - gain) per window. TTFT of nearly idle replicas (b < 1.5, where TTFT is one
prefill rather than a queue) counts as another observation of the same factor.

The correction is applied as per-GPU constants (spec section 1): compute_efficiency and
bandwidth_efficiency divided by f and step_overhead_s multiplied by f, which scales every
term of T_pre and t_tok but the interconnect ones by f. The planner plans with the corrected
instance and records, per tier its plan uses, the constants and factor in force
(`constants_in_force`, AllocationEvent.performance_constants).

Thread safety: telemetry is added on the event loop while the planner reads in an executor,
so every access holds one lock. In a controller group each worker sees only its partitions'
records (the leader corrects from its share), as with the iteration telemetry.
"""
from __future__ import annotations

import copy
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from schemas import Instance, TelemetryBatch
from solvers.compile import PER_GPU_KEYS, _const, gpu_constants
from solvers.perf import PerfInputError, route_times

log = structlog.get_logger()
IDLE_CONCURRENCY = 1.5


@dataclass(frozen=True)
class TierFactor:
    """The time factor of one tier: observed / catalog-predicted time, smoothed."""

    factor: float = 1.0
    windows: int = 0        # windows that moved it
    requests: int = 0       # requests behind it
    last_residual: float = 1.0  # observed / predicted (with the factor in force) in the last update


def step(tier: TierFactor, residual: float, requests: int, gain: float, max_step: float,
         max_factor: float) -> TierFactor:
    """One window's update of a tier's factor from the residual ratio observed / predicted."""
    lr = float(np.clip(math.log(residual), -math.log(max_step), math.log(max_step)))
    lf = float(np.clip(math.log(tier.factor) + gain * lr, -math.log(max_factor), math.log(max_factor)))
    return TierFactor(factor=math.exp(lf), windows=tier.windows + 1, requests=tier.requests + requests,
                      last_residual=residual)


def with_gpu_fallback(spec: Mapping[str, Any], factors: Mapping[tuple[str, str], TierFactor]
                      ) -> dict[tuple[str, str], TierFactor]:
    """Factors for every tier of the GPUs that have one: a precision not yet observed on a GPU
    whose other precisions were takes their geometric mean (same silicon, same clocks), so a
    tier the planner has not used yet is not planned at the catalog's speed."""
    out = dict(factors)
    for g in spec["gpus"]:
        seen = [f.factor for (gid, _), f in factors.items() if gid == g["id"]]
        if not seen:
            continue
        mean = math.exp(sum(math.log(x) for x in seen) / len(seen))
        for q in g["tflops"]:
            out.setdefault((g["id"], q), TierFactor(factor=mean))
    return out


def corrected_spec(spec: Mapping[str, Any], factors: Mapping[tuple[str, str], TierFactor]) -> dict[str, Any]:
    """The instance dict with each corrected tier's constants scaled by its factor."""
    out = copy.deepcopy(dict(spec))
    base = _const(out)
    for g in out["gpus"]:
        for q in g["tflops"]:
            f = factors.get((g["id"], q))
            if f is None or f.factor == 1.0:
                continue
            c = gpu_constants(base, g, q)
            cbp = g.setdefault("constants_by_precision", {})
            cbp[q] = {**(cbp.get(q) or {}), "compute_efficiency": c["compute_efficiency"] / f.factor,
                      "bandwidth_efficiency": c["bandwidth_efficiency"] / f.factor,
                      "step_overhead_s": c["step_overhead_s"] * f.factor}
    return out


def constants_in_force(spec: Mapping[str, Any], plan: Mapping[str, Any],
                       factors: Mapping[tuple[str, str], TierFactor] | None = None) -> dict[str, dict[str, float]]:
    """Per "GPU/precision" tier of the plan's deployments: the per-GPU constants the plan was
    computed with (catalog calibration and self-calibration included) and the factor."""
    gpus = {g["id"]: g for g in spec["gpus"]}
    base = _const(spec)
    factors = with_gpu_fallback(spec, factors or {})
    out: dict[str, dict[str, float]] = {}
    for d in plan.get("deployments", []):
        g = gpus.get(d["gpu"])
        if g is None:
            continue
        c = gpu_constants(base, g, d["precision"])
        f = factors.get((d["gpu"], d["precision"]))
        out[f"{d['gpu']}/{d['precision']}"] = {**{k: float(c[k]) for k in PER_GPU_KEYS},
                                               "correction": f.factor if f is not None else 1.0}
    return out


class SelfCalibration:
    """Per-deployment telemetry sums of the current window, and the per-tier factors."""

    def __init__(self, spec: Mapping[str, Any], gain: float = 0.5, max_factor: float = 2.0,
                 max_step: float = 1.5, min_requests: int = 20) -> None:
        """`spec`: the uncorrected instance dict the predictions start from (the catalog's, with
        its calibration and performance model); only its models, GPUs and precisions are read."""
        if not 0 < gain <= 1 or max_factor < 1 or max_step < 1 or min_requests < 1:
            raise ValueError("need 0 < gain <= 1, max_factor >= 1, max_step >= 1, min_requests >= 1")
        self.spec = copy.deepcopy(dict(spec))
        self.gain, self.max_factor, self.max_step, self.min_requests = gain, max_factor, max_step, min_requests
        self.factors: dict[tuple[str, str], TierFactor] = {}
        # (deployment id, query type) -> [n, sum latency, n ttft, sum ttft, sum input, sum output]
        self._acc: dict[tuple[str, str | None], list[float]] = {}
        self._lock = threading.Lock()

    def add_batch(self, batch: TelemetryBatch) -> int:
        """Take a telemetry message's records that name a deployment and a latency."""
        if batch.deployment is None or batch.latency_s is None:
            return 0
        ttft = batch.ttft_s or [None] * len(batch)
        qts = batch.query_type or [None] * len(batch)
        kept = 0
        with self._lock:
            for k, (dep, lat) in enumerate(zip(batch.deployment, batch.latency_s)):
                if dep is None or lat is None:
                    continue
                a = self._acc.setdefault((dep, qts[k]), [0.0] * 6)
                a[0] += 1
                a[1] += lat
                if ttft[k] is not None:
                    a[2] += 1
                    a[3] += ttft[k]
                a[4] += batch.input_tokens[k]
                a[5] += max(batch.output_tokens[k], 1)
                kept += 1
        return kept

    def close_window(self, plan: Mapping[str, Any] | None, window_s: float) -> dict[str, Any]:
        """Fold the window's telemetry into the factors (`plan`: the plan in force during the
        window). Returns what changed, for logs and benchmarks."""
        with self._lock:
            acc, self._acc = self._acc, {}
            factors = dict(self.factors)
        if plan is None or window_s <= 0:
            return {}
        factors = with_gpu_fallback(self.spec, factors)
        corrected = corrected_spec(self.spec, factors)
        per_tier: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for d in plan.get("deployments", []):
            groups = [a for (dep, _), a in acc.items() if dep == d["id"]]
            if sum(a[0] for a in groups) < self.min_requests:
                continue
            # requests in flight per replica, all query types together (Little's law: sum of
            # rate x latency); each query type's latency is predicted at that concurrency
            b = max(1.0, sum(a[1] for a in groups) / window_s / d["replicas"])
            obs = per_tier.setdefault((d["gpu"], d["precision"]), [])
            for a in groups:
                n = a[0]
                try:
                    rt = route_times(corrected, d["model"], d["gpu"], d["precision"], d["tp"], d["pp"],
                                     a[4] / n, a[5] / n)
                except PerfInputError:
                    continue
                obs.append((n, math.log((a[1] / n) / float(rt.latency([b])[0]))))
                if a[2] > 0 and b < IDLE_CONCURRENCY:
                    obs.append((a[2], math.log((a[3] / a[2]) / rt.ttft_s)))
        changed = {}
        factors = {t: f for t, f in factors.items() if t in self.factors or t in per_tier}  # observed tiers only
        for tier, obs in per_tier.items():
            if not obs:
                continue
            w = np.array([o[0] for o in obs])
            r = math.exp(float(np.average([o[1] for o in obs], weights=w)))
            new = step(factors.get(tier, TierFactor()), r, int(w.sum()), self.gain, self.max_step, self.max_factor)
            factors[tier] = new
            changed[f"{tier[0]}/{tier[1]}"] = {"residual": r, "factor": new.factor}
        with self._lock:
            self.factors = factors
        if changed:
            log.info("self_calibration.window", tiers=changed)
        return changed

    def apply(self, inst: Instance) -> Instance:
        """The instance with the corrected tiers' constants (unchanged when nothing is corrected)."""
        with self._lock:
            factors = dict(self.factors)
        if all(f.factor == 1.0 for f in factors.values()):
            return inst
        spec = inst.to_spec()
        return Instance.model_validate(corrected_spec(spec, with_gpu_fallback(spec, factors)))

