"""A plan's routing as Gateway API objects: an InferencePool (inference.networking.k8s.io/v1)
per llmfleet deployment, selecting its Deployment's pods, and HTTPRoutes
(gateway.networking.k8s.io/v1) with one rule per query type that sends it to the pools with
the plan's fractions as integer weights.

Weights: a rule's weights sum to `weight_total` (default 1000), by largest remainder over the
query type's *served* fractions, so each pool's share differs from the plan's (normalised)
fraction by less than 1/weight_total; refs whose weight rounds to 0 are dropped. A gateway
sends all matched traffic somewhere: the share the plan leaves unserved is spread over the
pools in proportion, and is reported (`unserved`, and the route's annotations). A query type
the plan does not serve at all gets no rule (its requests match nothing: the gateway answers
404). HTTPRoute allows 16 rules and 16 backendRefs per rule: more query types are split over
several routes; more than 16 pools for one query type is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.render.engines import RenderError
from controller.render.k8s import GROUP, dump, k8s_name, labels, names
from schemas import AllocationEvent
from schemas.render import RenderConfig

MAX_RULES = 16       # HTTPRoute v1: spec.rules maxItems
MAX_REFS = 16        # HTTPRoute v1: rules[].backendRefs maxItems
MODEL_HEADER = "X-Gateway-Model-Name"  # set by body-based routing from the request's `model`


def integer_weights(fractions: dict[str, float], total: int) -> dict[str, int]:
    """Largest-remainder rounding of `fractions` (normalised to sum 1) to integers summing to
    `total`; each share errs by less than 1/total. Ties go to the larger fraction, then the name,
    so the result is deterministic. Zero weights are left out."""
    served = {k: v for k, v in fractions.items() if v > 0}
    s = sum(served.values())
    if s <= 0:
        return {}
    exact = {k: total * v / s for k, v in served.items()}
    out = {k: int(e) for k, e in exact.items()}
    short = total - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), -exact[k], k))[:short]:
        out[k] += 1
    return {k: w for k, w in sorted(out.items()) if w > 0}


@dataclass(frozen=True)
class GatewayRender:
    files: dict[str, str]
    unserved: dict[str, float]          # query type -> share the plan leaves unserved
    weights: dict[str, dict[str, int]]  # query type -> deployment id -> weight


def inference_pool(event: AllocationEvent, dep_id: str, name: str, cfg: RenderConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                            "targetPorts": [{"number": cfg.port}]}
    if cfg.gateway.endpoint_picker:
        spec["endpointPickerRef"] = {"name": cfg.gateway.endpoint_picker}
    return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels(event.fleet_id, name),
                         "annotations": {f"{GROUP}/deployment": dep_id}},
            "spec": spec}


def _match(qt: str, cfg: RenderConfig) -> dict[str, Any]:
    g = cfg.gateway
    header = g.header if g.match == "header" else MODEL_HEADER
    return {"headers": [{"type": "Exact", "name": header, "value": g.values.get(qt, qt)}]}


def render_gateway(event: AllocationEvent, cfg: RenderConfig) -> GatewayRender:
    g = cfg.gateway
    by_name = names(event)
    routed: dict[str, dict[str, float]] = {}
    for r in event.plan.routes:
        routed.setdefault(r.query_type, {})
        routed[r.query_type][r.deployment] = routed[r.query_type].get(r.deployment, 0.0) + r.fraction
    wanted = sorted(routed) if g.query_types is None else list(g.query_types)
    unknown = sorted(set(g.values) - set(routed) - set(wanted))
    if unknown:
        raise RenderError(f"the config names query types the plan does not route: {unknown}")
    if g.match == "model":
        missing = [q for q in wanted if q not in g.values]
        if missing:
            raise RenderError(f"match=model needs the requested model name of every query type: none for "
                              f"{missing} (set gateway.values)")
    weights: dict[str, dict[str, int]] = {}
    unserved: dict[str, float] = {}
    rules = []
    for qt in wanted:
        fr = routed.get(qt, {})
        unserved[qt] = max(0.0, 1.0 - sum(fr.values()))
        w = integer_weights(fr, g.weight_total)
        if not w:
            continue                                   # not served at all: no rule
        if len(w) > MAX_REFS:
            raise RenderError(f"query type {qt}: {len(w)} pools, an HTTPRoute rule takes {MAX_REFS}")
        weights[qt] = w
        rules.append({"matches": [_match(qt, cfg)],
                      "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                       "name": by_name[d], "weight": n} for d, n in w.items()]})
    files = {f"inferencepool-{by_name[d.id]}.yaml": dump(inference_pool(event, d.id, by_name[d.id], cfg))
             for d in sorted(event.plan.deployments, key=lambda d: d.id)}
    base = k8s_name(f"llmfleet-{event.fleet_id}")
    for k in range(0, len(rules), MAX_RULES):
        part = rules[k:k + MAX_RULES]
        name = base if len(rules) <= MAX_RULES else f"{base}-{k // MAX_RULES}"
        note = {f"{GROUP}/unserved": ", ".join(f"{q}={unserved[q]:.4f}" for q in wanted if unserved[q] > 1e-9)}
        route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                 "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels(event.fleet_id, name),
                              "annotations": {k2: v for k2, v in note.items() if v}},
                 "spec": {"parentRefs": [{"name": g.gateway}], "rules": part}}
        files[f"httproute-{name}.yaml"] = dump(route)
    return GatewayRender(files, unserved, weights)
