"""Gate-and-route parameters for each deployment of a plan (published in allocation events).

For a deployment serving several query types (classes), the mixed iteration time and solo
decode rate come from the spec's performance model (solvers/iteration_model.py) at the
deployment's traffic-weighted mean prompt/output lengths, and the bundled fluid LP (via
solvers.gate_route.gate_route_plan) turns the classes' arrival rates into admission and
routing targets. Patience is a product default (several times the latency SLO), since the
allocation model carries none.

The allocation plan is authoritative on *how much* of each class a pool serves (its route
fractions already leave out what goes unserved, and its replicas are sized by the spec's
service rates). The fluid LP, with its own iteration-time view of capacity, would shed some
of that traffic; shedding twice would reject requests the fleet was sized for (measured:
about 45 % of conversation traffic in the quickstart). So the published admit_probability
is 1, the LP's value is kept as fluid_admit_probability, and the router applies the LP's
prefill targets, mixed/solo split and decode placement.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import structlog

from schemas import Catalog
from solvers.compile import CompiledInstance
from solvers.gate_route import gate_route_plan
from solvers.iteration_model import iteration_model_from_spec
from solvers.plan_codec import cand_key
from solvers.result import SolveResult

log = structlog.get_logger()
PATIENCE_X_SLO = 3.0


def gate_route_for_plan(catalog: Catalog, ci: CompiledInstance, result: SolveResult,
                        force: bool = False) -> dict[str, dict[str, Any]]:
    """deployment id -> gate_route_plan dict, for pools with more than one class (or all, if forced)."""
    models = {m.id: m.model_dump() for m in catalog.models}
    gpus = {g.id: g.model_dump() for g in catalog.gpus}
    precs = {p.id: p.model_dump() for p in catalog.precisions}
    qts = {q.id: q for q in catalog.query_types}
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
            q = qts[ci.qt_ids[ci.route_qt[r]]]
            classes[q.id] = {"arrival_rate": float(rate), "prompt_tokens": float(q.input_tokens),
                             "decode_tokens": float(q.output_tokens),
                             "patience_s": PATIENCE_X_SLO * float(q.max_latency_s)}
        h = float(np.average([c["prompt_tokens"] for c in classes.values()], weights=lam))
        f = float(np.average([c["decode_tokens"] for c in classes.values()], weights=lam))
        it = iteration_model_from_spec(models[model], gpus[gpu], precs[prec], tp, pp,
                                       catalog.constants.model_dump(), h, f)
        if it is None:
            continue
        did = f"{model}.{gpu}.{prec}.tp{tp}pp{pp}"
        try:
            params = gate_route_plan(classes, it, int(result.replicas[d]))
        except (ValueError, ArithmeticError) as exc:  # the LP is advisory: never block a plan
            log.warning("gate_route.skipped", deployment=did, error=str(exc))
            continue
        if params.get("status") == "optimal":
            for c in params["classes"].values():
                c["fluid_admit_probability"] = c.get("admit_probability")
                c["admit_probability"] = 1.0
            out[did] = params
    return out
