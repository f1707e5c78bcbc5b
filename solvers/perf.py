"""What the route model predicts for one configuration: TTFT, time per output token, L(b).

`llmfleet perf`, `llmfleet calibrate` and the fidelity benchmark ask the same question: for
(model, GPU, precision, tp, pp) and a request of h input / f output tokens, what are T_pre,
t_tok(b) and L(b) at given batch sizes? Rather than re-deriving spec section 2, this module
builds a one-route probe instance (the instance's own model, GPU and precision entries with
their calibration, one query type with no latency bound) and reads the compiled route's
coefficients, so the answer is the compile path's arithmetic, whichever performance model
the instance selects.

`RouteTimes.scaled` re-evaluates a route for other constants without recompiling: T_pre is
linear in 1/compute_efficiency and in step_overhead_s, and t_tok's memory and compute terms
are linear in 1/bandwidth_efficiency and 1/compute_efficiency. The split is read from two
compiles at different constants, which is what the least-squares calibration iterates on.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._typing import FloatArray
from .compile import (PER_GPU_KEYS, _const, _latency, compile_instance, gpu_constants, memory_batch_limit,
                      tpot_from_coef)

PROBE = "probe"


class PerfInputError(ValueError):
    """A configuration the instance cannot describe (unknown id, tp above gpus_per_node, ...)."""


@dataclass(frozen=True)
class PerfPoint:
    batch: int
    ttft_s: float
    tpot_s: float
    latency_s: float
    fits_memory: bool   # batch <= b_max (the spec's memory bound); values are extrapolated otherwise


@dataclass(frozen=True)
class RouteTimes:
    """The route model of one configuration: coefficients (k0..k4, T_pre, f) of compile, plus
    the split needed to re-evaluate it at other per-GPU constants (see `scaled`)."""

    coef: FloatArray            # at the instance's constants
    constants: dict[str, float]  # compute_efficiency, bandwidth_efficiency, step_overhead_s in force
    b_max: int
    ttft_compute_s: float       # the 2 P h / (tp F) part of T_pre at these constants

    @property
    def ttft_s(self) -> float:
        return float(self.coef[5])

    def tpot(self, b: Sequence[float] | float) -> FloatArray:
        return tpot_from_coef(self.coef, b)

    def latency(self, b: Sequence[float] | float) -> FloatArray:
        bb = np.atleast_1d(np.asarray(b, dtype=np.float64))[None, :]
        return _latency(bb, np.array([0]), tuple(self.coef[[k]] for k in range(7)))[0]

    @property
    def constants_vector(self) -> FloatArray:
        return np.array([self.constants[k] for k in PER_GPU_KEYS])

    def scaled(self, compute_efficiency: float, bandwidth_efficiency: float, step_overhead_s: float) -> RouteTimes:
        """The same route with other per-GPU constants (exact under spec section 2)."""
        new = np.array([compute_efficiency, bandwidth_efficiency, step_overhead_s])
        k, comp = rescale(self.coef[None, :], np.array([self.ttft_compute_s]), self.constants_vector[None, :],
                          new[None, :])
        return RouteTimes(coef=k[0], b_max=self.b_max, ttft_compute_s=float(comp[0]),
                          constants=dict(zip(PER_GPU_KEYS, (float(x) for x in new))))

    def points(self, batches: Sequence[int]) -> list[PerfPoint]:
        tpot, lat = self.tpot(batches), self.latency(batches)
        return [PerfPoint(batch=int(b), ttft_s=self.ttft_s, tpot_s=float(t), latency_s=float(L),
                          fits_memory=bool(b <= self.b_max)) for b, t, L in zip(batches, tpot, lat)]


def rescale(coef: FloatArray, ttft_compute: FloatArray, c0: FloatArray, c: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Routes' coefficients [n, 7] at constants c0 [n, 3] re-evaluated at constants c [n, 3]
    (columns: compute_efficiency, bandwidth_efficiency, step_overhead_s). Memory terms k0, k1
    scale with 1/bandwidth_efficiency, compute terms k2 and T_pre's compute part with
    1/compute_efficiency, and the overhead enters k3 and T_pre once."""
    rc = c0[:, 0] / c[:, 0]
    rb = c0[:, 1] / c[:, 1]
    do = c[:, 2] - c0[:, 2]
    k = coef.copy()
    k[:, 0] *= rb
    k[:, 1] *= rb
    k[:, 2] *= rc
    k[:, 3] += do
    k[:, 5] += ttft_compute * (rc - 1.0) + do
    return k, ttft_compute * rc


def times_at(coef: FloatArray, batch: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(T_pre, t_tok(b), L(b)) of routes [n] each at its own batch size b [n]."""
    b = np.asarray(batch, dtype=np.float64)
    tpot = tpot_from_coef(coef, b)
    lat = _latency(b[:, None], np.arange(len(b)), tuple(coef[:, k] for k in range(7)))[:, 0]
    return coef[:, 5], tpot, lat


def _pick(items: Sequence[Mapping[str, Any]], key: str, what: str) -> dict[str, Any]:
    for it in items:
        if it["id"] == key:
            return dict(it)
    known = ", ".join(sorted(str(it["id"]) for it in items))
    raise PerfInputError(f"unknown {what} {key!r}; known: {known}")


def probe_instance(inst: Mapping[str, Any], model: str, gpu: str, precision: str, tp: int, pp: int,
                   input_tokens: float, output_tokens: float,
                   gpu_override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A one-route spec instance: the configuration serving one unbounded query type.
    `gpu_override` replaces the GPU's calibration fields (e.g. {"constants": {...}})."""
    m = _pick(inst["models"], model, "model")
    g = _pick(inst["gpus"], gpu, "GPU")
    p = _pick(inst["precisions"], precision, "precision")
    if precision not in g["tflops"]:
        raise PerfInputError(f"GPU {gpu} does not offer precision {precision} (offers {sorted(g['tflops'])})")
    if tp < 1 or pp < 1:
        raise PerfInputError("tp and pp must be >= 1")
    if tp > int(g["gpus_per_node"]):
        raise PerfInputError(f"tp {tp} exceeds {gpu}'s gpus_per_node ({g['gpus_per_node']})")
    if pp > int(m["n_layers"]):
        raise PerfInputError(f"pp {pp} exceeds {model}'s n_layers ({m['n_layers']})")
    if input_tokens <= 0 or output_tokens <= 0:
        raise PerfInputError("input and output token counts must be positive")
    m["error"] = {PROBE: 0.0}
    if gpu_override:
        g.update(copy.deepcopy(dict(gpu_override)))
    g["count"] = None
    out = {
        "name": f"probe:{model}@{gpu}/{precision}", "budget_per_hour": 1e12,
        "query_types": [{"id": PROBE, "arrival_rate": 0.0, "input_tokens": float(input_tokens),
                         "output_tokens": float(output_tokens), "max_latency_s": 1e12, "max_ttft_s": None,
                         "max_error": 1.0}],
        "models": [m], "gpus": [g], "precisions": [p], "parallelism": {"tp": [int(tp)], "pp": [int(pp)]},
        "constants": dict(inst.get("constants") or {}),
    }
    if inst.get("performance_model"):
        out["performance_model"] = inst["performance_model"]
    return out


def route_times(inst: Mapping[str, Any], model: str, gpu: str, precision: str, tp: int, pp: int,
                input_tokens: float, output_tokens: float) -> RouteTimes:
    """The route model of one configuration under `inst` (its calibration and performance model).
    Raises PerfInputError when the configuration cannot hold one request in memory."""
    probe = probe_instance(inst, model, gpu, precision, tp, pp, input_tokens, output_tokens)
    g, m, p = probe["gpus"][0], probe["models"][0], probe["precisions"][0]
    c = gpu_constants(_const(probe), g, precision)
    kv = 2 * m["n_layers"] * m["n_kv_heads"] * m["head_dim"] * 2
    b_max = int(memory_batch_limit(g["memory_gb"], c, tp, pp, m["params_b"] * 1e9 * p["bytes_per_param"],
                                   input_tokens + output_tokens, kv))
    ci = compile_instance(probe)
    if ci.n_routes != 1:
        raise PerfInputError(f"{model} on {tp}x{pp} {gpu} at {precision} does not fit one request of "
                             f"{input_tokens:g}+{output_tokens:g} tokens in memory")
    # T_pre's compute term, from a second compile at half the compute efficiency (T_pre is
    # affine in 1/compute_efficiency): the rest of T_pre (all-reduce, pipeline, overhead) cancels
    half = dict(g.get("constants") or {})
    half.update({k: c[k] for k in PER_GPU_KEYS})
    half["compute_efficiency"] = c["compute_efficiency"] / 2
    ci2 = compile_instance(probe_instance(inst, model, gpu, precision, tp, pp, input_tokens, output_tokens,
                                          gpu_override={"constants": half, "constants_by_precision": {}}))
    return RouteTimes(coef=ci.latency_coef[0].copy(), b_max=b_max,
                      ttft_compute_s=float(ci2.ttft[0] - ci.ttft[0]),
                      constants={k: float(c[k]) for k in PER_GPU_KEYS})
