"""Gate-and-route parameters for each deployment of a plan (published in allocation events).

For a deployment serving several query types (classes), the mixed iteration time and solo
decode rate come from the spec's performance model (solvers/gate_route/iteration_model.py) at the
deployment's traffic-weighted mean prompt/output lengths, or, when the deployment's engines
report enough iteration timings for a good fit (controller/worker/planning/iteration_telemetry.py: R^2 of
the line at least its threshold), from that fit; the published parameters record which
("iteration_source": "spec" or "fitted", with "iteration_r_squared" and the alpha, beta,
gamma used). A fitted gamma replaces the spec's only when enough decode-only iterations
were seen. The slots B are the planner's operating batch b* (capped by the spec's memory
bound), the batch the replicas were sized for. The bundled fluid LP (via
solvers.gate_route.plan.gate_route_plan) turns the classes' arrival rates into admission and
routing targets, at the prefill chunk C that serves the most within the SLOs
(`_choose_chunk`). Classes routed to the pool without demand are left out. Patience is a
product default (several times the latency SLO), since the allocation model carries none.

The allocation plan is authoritative on *how much* of each class a pool serves (its route
fractions already leave out what goes unserved, and its replicas are sized by the spec's
service rates). The fluid LP, with its own iteration-time view of capacity, would shed some
of that traffic; shedding twice would reject requests the fleet was sized for (measured:
about 45 % of conversation traffic in the quickstart). So the published admit_probability
is 1, the LP's value is kept as fluid_admit_probability, and the router applies the LP's
prefill targets, mixed/solo split and decode placement.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import structlog

from schemas import Catalog, QueryType
from solvers.compile import CompiledInstance
from solvers.gate_route.plan import gate_route_plan
from solvers.gate_route.iteration_model import IterationModel, iteration_model_from_spec
from solvers.plan_codec import cand_key
from solvers.result import SolveResult

from controller.worker.planning.iteration_telemetry import IterationTelemetry

log = structlog.get_logger()
PATIENCE_X_SLO = 3.0
#: prefill chunk sizes C the planner chooses from, per deployment (see _choose_chunk)
CHUNK_CANDIDATES = (256, 512, 1024, 2048, 4096)
REWARD_TIE = 0.005


def gate_route_for_plan(catalog: Catalog, ci: CompiledInstance, result: SolveResult,
                        force: bool = False,
                        iterations: IterationTelemetry | None = None,
                        query_types: Sequence[QueryType] | None = None) -> dict[str, dict[str, Any]]:
    """deployment id -> gate_route_plan dict, for pools with more than one class (or all, if forced).

    `iterations` (optional) supplies fitted iteration models per deployment id. `query_types`:
    those of the planned instance, whose token lengths are the window's measured ones (default:
    the catalog's, which are only typical lengths)."""
    models = {m.id: m.model_dump() for m in catalog.models}
    gpus = {g.id: g.model_dump() for g in catalog.gpus}
    precs = {p.id: p.model_dump() for p in catalog.precisions}
    qts = {q.id: q for q in (query_types if query_types is not None else catalog.query_types)}
    out: dict[str, dict[str, Any]] = {}
    for d in np.nonzero(result.replicas > 0)[0]:
        rs = np.nonzero((ci.route_cand == d) & (result.x > 1e-9))[0]
        if len(rs) == 0 or (len(rs) < 2 and not force):
            continue
        model, gpu, prec, tp, pp = cand_key(ci, int(d))
        lam = ci.lam[ci.route_qt[rs]] * result.x[rs]
        if lam.sum() <= 0:
            continue
        classes = {}
        for r, rate in zip(rs, lam):
            if rate <= 0:
                continue                          # routed but without demand: no class to plan
            q = qts[ci.qt_ids[ci.route_qt[r]]]
            classes[q.id] = {"arrival_rate": float(rate), "prompt_tokens": float(q.input_tokens),
                             "decode_tokens": float(q.output_tokens),
                             "patience_s": PATIENCE_X_SLO * float(q.max_latency_s)}
        rates = [c["arrival_rate"] for c in classes.values()]
        h = float(np.average([c["prompt_tokens"] for c in classes.values()], weights=rates))
        f = float(np.average([c["decode_tokens"] for c in classes.values()], weights=rates))
        # B = the planner's operating batch b* (largest over the pool's routes), not the memory
        # bound: the replicas were sized to run b* requests at once within the latency SLOs
        consts = {**catalog.constants.model_dump(), "max_batch": max(2, int(ci.batch[rs].max()))}
        it = iteration_model_from_spec(models[model], gpus[gpu], precs[prec], tp, pp, consts, h, f)
        if it is None:
            continue
        did = f"{model}.{gpu}.{prec}.tp{tp}pp{pp}"
        it, source = _iteration_model(did, it, iterations)
        slo = {c: (float(qts[c].max_latency_s), qts[c].max_ttft_s) for c in classes}
        try:
            params = _choose_chunk(classes, it, int(result.replicas[d]), slo)
        except (ValueError, ArithmeticError) as exc:  # the LP is advisory: never block a plan
            log.warning("gate_route.skipped", deployment=did, error=str(exc))
            continue
        if params.get("status") == "optimal":
            for c in params["classes"].values():
                c["fluid_admit_probability"] = c.get("admit_probability")
                c["admit_probability"] = 1.0
            params.update(source, alpha_s=it.alpha, beta_s_per_token=it.beta)
            out[did] = params
    return out


def _iteration_model(deployment: str, spec: IterationModel,
                     iterations: IterationTelemetry | None) -> tuple[IterationModel, dict[str, Any]]:
    """The fitted model when the telemetry has a good one, else the spec's; and the record of
    which was used (published with the parameters)."""
    fit = iterations.model_for(deployment) if iterations is not None else None
    if fit is None:
        return spec, {"iteration_source": "spec", "iteration_r_squared": None,
                      "iteration_samples": 0, "iteration_gamma_source": "spec"}
    gamma = fit.gamma if fit.gamma is not None else spec.gamma
    log.info("gate_route.fitted_iteration_model", deployment=deployment, alpha=fit.alpha,
             beta=fit.beta, gamma=gamma, r_squared=round(fit.r_squared, 4), samples=fit.n_mixed,
             spec_alpha=spec.alpha, spec_beta=spec.beta, spec_gamma=spec.gamma)
    return (IterationModel(alpha=fit.alpha, beta=fit.beta, gamma=gamma, slots=spec.slots),
            {"iteration_source": "fitted", "iteration_r_squared": fit.r_squared,
             "iteration_samples": fit.n_mixed, "iteration_gamma_source":
                 "fitted" if fit.gamma is not None else "spec"})


def _choose_chunk(classes: dict[str, dict[str, float]], it: IterationModel, replicas: int,
                  slo: dict[str, tuple[float, float | None]]) -> dict[str, Any]:
    """The gate-and-route plan at the best prefill chunk C of CHUNK_CANDIDATES.

    Every mixed iteration pays alpha however few prompt tokens it carries, so a small C
    starves prefill when alpha is large next to beta C (spec-derived models of big-memory
    GPUs: alpha/C can be several times beta), while a large C slows every decode on a mixed
    replica (tau = alpha + beta C). Each candidate's fluid LP is solved; the plan whose fluid
    latencies meet every class's SLO (`_fluid_latency_ok`) and serve the most value wins
    (values within REWARD_TIE of the best: the smaller C); when no candidate meets the SLOs,
    the most value. Measured on the planner's fleet for 20 code + 40 conversation req/s:
    C = 256 served 0.3 % of requests within SLO in the fleet simulator, the chosen C 95 %.
    """
    plans = []
    for c in CHUNK_CANDIDATES:
        p = gate_route_plan(classes, it, replicas, chunk_tokens=c)
        if p.get("status") == "optimal":
            plans.append((_fluid_latency_ok(p, classes, slo), float(p["fluid_reward_per_s"]), p))
    if not plans:
        return gate_route_plan(classes, it, replicas, chunk_tokens=CHUNK_CANDIDATES[0])
    pool = [x for x in plans if x[0]] or plans
    best = max(r for _, r, _ in pool)
    return next(p for _, r, p in pool if r >= best * (1.0 - REWARD_TIE))


def _fluid_latency_ok(params: dict[str, Any], classes: dict[str, dict[str, float]],
                      slo: dict[str, tuple[float, float | None]]) -> bool:
    """Every served class's fluid TTFT (P/C mixed iterations) and latency (TTFT + D tokens at
    the class's mix of mixed-speed and solo-speed decode slots) within its SLO; queueing is
    not included."""
    tau, gamma, chunk = params["tau_mixed_s"], params["gamma_tokens_per_s"], params["chunk_tokens"]
    for cid, c in params["classes"].items():
        if classes[cid]["arrival_rate"] <= 0:
            continue                              # no traffic, no latency to keep
        ym, ys = c["decode_mixed_target"], c["decode_solo_target"]
        tpot = (ym + ys) / (ym / tau + ys * gamma) if ym + ys > 0 else tau
        ttft = classes[cid]["prompt_tokens"] / chunk * tau
        max_lat, max_ttft = slo[cid]
        if ttft + classes[cid]["decode_tokens"] * tpot > max_lat or (
                max_ttft is not None and ttft > max_ttft):
            return False
    return True
