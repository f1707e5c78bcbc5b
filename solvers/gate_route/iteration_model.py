"""Iteration-time model of one replica: tau(C) = alpha + beta * C and the solo decode rate gamma.

The gate-and-route model (arXiv 2602.02987, Eq. 3) needs three numbers per deployment: the
mixed iteration time for a prefill chunk of C tokens, tau(C) = alpha + beta C, and gamma, the
per-stream token rate of a decode-only iteration. Two sources:

* ``iteration_model_from_spec`` derives them from the project's reference performance model
  (spec/model.md section 2), so the planner can use gate-and-route on any catalogue entry;
* ``fit_iteration_model`` fits alpha, beta by least squares to measured (C, iteration time)
  pairs, as the paper did on vLLM.

Mapping from the reference model (which serialises prefill and decode: a prefill stalls the
decodes for T_pre): a mixed iteration runs one decode step for the B-1 co-resident decodes plus
a C-token slice of a prefill, so
  tau(C) = t_tok(B-1) + [the C-proportional part of T_pre(C)],
  alpha  = t_tok(B-1)   (decode step incl. step overhead o and fixed link latencies),
  beta   = 2 P/(tp F) + [tp>1] 2 L_n * 2 (tp-1)/tp * 2 D/Link + (pp-1) * 2 D/Link,
  gamma  = 1 / t_tok(B).
The chunk's fixed costs (o and link latencies) are not charged twice: they are shared with the
decode step in a fused iteration. B is b_max of the spec's memory bound for the mean request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from solvers.compile import gpu_constants

__all__ = [
    "IterationModel",
    "IterationFit",
    "SPEC_DEFAULT_CONSTANTS",
    "iteration_model_from_spec",
    "fit_iteration_model",
]

SPEC_DEFAULT_CONSTANTS: Mapping[str, float] = {
    "compute_efficiency": 0.5,
    "bandwidth_efficiency": 0.7,
    "step_overhead_s": 0.003,
    "memory_utilization": 0.9,
    "max_batch": 256,
    "max_utilization": 0.85,
}


@dataclass(frozen=True)
class IterationModel:
    """alpha (s), beta (s/token), gamma (tokens/s per decode stream), slots B per replica."""

    alpha: float
    beta: float
    gamma: float
    slots: int

    def tau(self, chunk_tokens: float) -> float:
        """Mixed iteration time for a prefill chunk of C tokens."""
        return self.alpha + self.beta * chunk_tokens


@dataclass(frozen=True)
class IterationFit:
    """Least-squares line tau = alpha + beta C with its coefficient of determination."""

    alpha: float
    beta: float
    r_squared: float
    n_points: int


def _ar(message_bytes: float, tp: int, link_latency_s: float, link_bps: float) -> float:
    """Ring all-reduce time of the spec; zero without tensor parallelism."""
    if tp == 1:
        return 0.0
    return link_latency_s + 2.0 * (tp - 1) / tp * message_bytes / link_bps


def iteration_model_from_spec(
    model: Mapping,
    gpu: Mapping,
    precision: Mapping,
    tp: int,
    pp: int,
    constants: Mapping | None,
    input_tokens: float,
    output_tokens: float,
) -> IterationModel | None:
    """alpha, beta, gamma and slots B of one replica under spec/model.md section 2.

    Takes the plain-dict pieces of a spec instance. Returns None when the precision is not
    offered by the GPU or no request of the given mean size fits in memory (the spec calls
    such a route infeasible), or when B < 2 (a mixed replica needs a prefill and a decode slot).
    """
    q = precision["id"]
    c = gpu_constants({**SPEC_DEFAULT_CONSTANTS, **(constants or {})}, gpu, q)  # per-GPU calibration
    tflops = gpu["tflops"]
    if q not in tflops:
        return None
    tp, pp = int(tp), int(pp)
    params = float(model["params_b"]) * 1e9
    n_layers = int(model["n_layers"])
    d_model = float(model["d_model"])
    flops = float(tflops[q]) * 1e12 * c["compute_efficiency"]
    bw = float(gpu["bandwidth_tbps"]) * 1e12 * c["bandwidth_efficiency"]
    link = float(gpu["link_gbps"]) * 1e9
    lat = float(gpu["link_latency_us"]) * 1e-6
    o = float(c["step_overhead_s"])
    weights = params * float(precision["bytes_per_param"])
    kv = 2.0 * n_layers * float(model["n_kv_heads"]) * float(model["head_dim"]) * 2.0
    h, f = float(input_tokens), float(output_tokens)

    cap = float(gpu["memory_gb"]) * 1e9 * c["memory_utilization"] * tp * pp
    if cap <= weights:
        return None
    b_max = min(int(c["max_batch"]), math.floor((cap - weights) / ((h + f) * kv)))
    if b_max < 2:
        return None
    ctx = h + f / 2.0

    def t_tok(b: float) -> float:
        m = b / pp
        mem = (weights + m * ctx * kv) / (tp * bw)
        comp = 2.0 * params * m / (tp * flops)
        return max(mem, comp) + 2.0 * n_layers * _ar(2.0 * m * d_model, tp, lat, link) + (pp - 1) * lat + o

    beta = 2.0 * params / (tp * flops) + (pp - 1) * 2.0 * d_model / link
    if tp > 1:
        beta += 2.0 * n_layers * 2.0 * (tp - 1) / tp * 2.0 * d_model / link
    return IterationModel(alpha=t_tok(b_max - 1), beta=beta, gamma=1.0 / t_tok(b_max), slots=b_max)


def fit_iteration_model(
    chunk_tokens: Sequence[float], iteration_seconds: Sequence[float]
) -> IterationFit:
    """OLS fit of tau = alpha + beta C, as in the paper's calibration (section 6.1)."""
    c = np.asarray(chunk_tokens, dtype=float).ravel()
    t = np.asarray(iteration_seconds, dtype=float).ravel()
    if c.shape != t.shape:
        raise ValueError("chunk_tokens and iteration_seconds must have the same length")
    if c.size < 2 or np.ptp(c) == 0.0:
        raise ValueError("need at least two distinct chunk sizes")
    a = np.column_stack([np.ones_like(c), c])
    (alpha, beta), *_ = np.linalg.lstsq(a, t, rcond=None)
    resid = t - (alpha + beta * c)
    ss_tot = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return IterationFit(alpha=float(alpha), beta=float(beta), r_squared=r2, n_points=int(c.size))
