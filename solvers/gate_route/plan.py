"""Router parameters for one deployment: the gate-and-route plan llmfleet publishes.

The planner decides *how many* replicas a deployment gets; this helper decides *how the
routers in front of it should use them*: how many replicas keep a prefill slot (mixed), which
classes the prefill gate admits and in what proportion, and how decodes are split between
mixed and solo replicas. It solves the bundled fluid LP (arXiv 2602.02987 Eq. 40), or the
SLI-aware program (Eq. 49) when SLI targets are given, on per-replica rates and turns the
optimum into plain numbers a router can apply without a solver.
"""

from __future__ import annotations

import math
from typing import Mapping

from solvers.gate_route.fluid_lp import SliTargets, solve_bundled_lp, solve_sli_lp
from solvers.gate_route.instance import GateRouteInstance
from solvers.gate_route.iteration_model import IterationModel

__all__ = ["gate_route_plan"]


def gate_route_plan(
    classes: Mapping[str, Mapping[str, float]],
    iteration: IterationModel,
    replicas: int,
    chunk_tokens: float = 256,
    sli: SliTargets | None = None,
    backpressure: float | None = 0.0,
) -> dict:
    """Gate-and-route parameters for ``replicas`` replicas serving several query classes.

    ``classes`` maps a class id to a dict with
      arrival_rate   requests/s reaching this deployment (all replicas together),
      prompt_tokens  mean prompt length P_i, decode_tokens mean output length D_i,
      patience_s     mean patience (s) before a waiting request gives up (> 0; an overloaded
                     class without patience makes the LP infeasible, as the flow cannot balance),
      value          optional revenue per completed request (default P_i + D_i: token goodput).
    ``iteration`` gives alpha, beta, gamma and slots B (solvers.gate_route.iteration_model).
    ``backpressure`` is the decode-buffer threshold in units of sqrt(replicas) above which the
    gate stops admitting prefills (None: the literal section 4.1 gate, never closed).

    Returns a JSON-ready dict:
      status               "optimal" or the LP status (other fields are then absent)
      policy               "gate_and_route" (greedy router) or "sli_gate_and_route" (randomised)
      replicas             n
      mixed_replicas       M = ceil(n * sum_i x_i): replicas that reserve one slot for prefill
      solo_replicas        n - M: replicas that only decode, with all B slots
      slots_per_replica    B; mixed replicas run at most B - 1 decodes
      chunk_tokens         C, prefill tokens per mixed iteration
      tau_mixed_s          alpha + beta C, the mixed iteration time
      gamma_tokens_per_s   solo decode rate per stream
      avg_tpot_s           fluid average time per output token (Eq. 47)
      fluid_reward_per_s   LP optimum for the whole deployment (value units per second)
      backpressure_jobs    gate closes while more decodes than this wait (null: never)
      router               "solo_first": free solo slot, else free mixed slot, else one FCFS
                           buffer; "randomised": per class, solo with solo_probability
      classes[id]:
        prefill_target       n x_i: class-i prefills in flight; the gate admits the waiting
                             class with the smallest (X_i - target_i) / target_i
        prefill_cap          ceil(target): hard cap for a capped gate
        prefill_share        x_i / sum x: share of prefill slots
        admit_probability    mu_p,i x_i / lambda_i: fraction of arrivals the plan serves (the
                             rest would abandon; a router may shed them up front)
        solo_probability     p_s,i: share of decodes sent to solo replicas
        decode_mixed_target  n y_m,i decodes on mixed replicas
        decode_solo_target   n y_s,i decodes on solo replicas
        prefill_queue_target n q_p,i, the tie-break target of the gate
        decode_queue_target  n q_d,i (0 unless an SLI forces a backlog)
        completions_per_s    fluid decode completions of the class
    """
    ids = list(classes)
    if not ids:
        raise ValueError("at least one class is required")
    n = int(replicas)
    if n < 1:
        raise ValueError("replicas must be >= 1")
    spec = [classes[c] for c in ids]
    patience = [float(s.get("patience_s", math.inf)) for s in spec]
    prompt = [float(s["prompt_tokens"]) for s in spec]
    decode = [float(s["decode_tokens"]) for s in spec]
    values = [float(s.get("value", p + d)) for s, p, d in zip(spec, prompt, decode)]
    inst = GateRouteInstance(
        prompt_tokens=prompt,
        decode_tokens=decode,
        arrival_rate=[float(s["arrival_rate"]) / n for s in spec],
        patience_rate=[0.0 if not math.isfinite(p) or p <= 0 else 1.0 / p for p in patience],
        slots=iteration.slots,
        chunk_tokens=chunk_tokens,
        alpha=iteration.alpha,
        beta=iteration.beta,
        gamma=iteration.gamma,
        weights=values,
        names=tuple(ids),
    )
    lp = solve_sli_lp(inst, sli, n) if sli is not None else solve_bundled_lp(inst, n)
    if not lp.ok:
        return {"status": lp.status, "replicas": n}
    ps = lp.solo_probability(inst)
    served = lp.prefill_rate(inst)
    done = lp.decode_rate(inst)
    sx = lp.mixed_fraction
    out_classes = {}
    for i, cid in enumerate(ids):
        lam = inst.arrival_rate[i]
        out_classes[cid] = {
            "prefill_target": n * float(lp.x[i]),
            "prefill_cap": int(math.ceil(n * float(lp.x[i]) - 1e-9)),
            "prefill_share": float(lp.x[i] / sx) if sx > 0 else 0.0,
            "admit_probability": min(1.0, float(served[i] / lam)) if lam > 0 else 0.0,
            "solo_probability": float(ps[i]),
            "decode_mixed_target": n * float(lp.y_m[i]),
            "decode_solo_target": n * float(lp.y_s[i]),
            "prefill_queue_target": n * float(lp.q_p[i]),
            "decode_queue_target": n * float(lp.q_d[i]),
            "completions_per_s": n * float(done[i]),
        }
    return {
        "status": lp.status,
        "policy": "sli_gate_and_route" if sli is not None else "gate_and_route",
        "replicas": n,
        "mixed_replicas": lp.mixed_replicas,
        "solo_replicas": n - lp.mixed_replicas,
        "slots_per_replica": inst.slots,
        "chunk_tokens": float(chunk_tokens),
        "tau_mixed_s": inst.tau,
        "gamma_tokens_per_s": float(inst.gamma),
        "avg_tpot_s": lp.tpot_s,
        "fluid_reward_per_s": n * lp.reward,
        "backpressure_jobs": None if backpressure is None else float(backpressure) * math.sqrt(n),
        "router": "randomised" if sli is not None else "solo_first",
        "classes": out_classes,
    }
