"""Robust planning margins: plan as if latency and error were inflated (issue 15).

A plan made for the nominal performance model and error table breaks as soon as either is
optimistic: the stress study (scripts/study_stress.py) re-evaluates frozen plans with every
time in spec section 2 multiplied by f (service rates / f) and every error multiplied by f,
and nominal plans lose a large share of their traffic at f = 1.2. Planning on the
instance transformed the same way, by a *latency headroom* h and an *error margin* e,
gives a plan that stays within SLO up to those factors, at the price of a dearer fleet.

This is an instance transformation (spec dict in, spec dict out), so every solver, the
validator and the outside checker see an ordinary instance; the plan it yields names
deployments by configuration and is applied to the nominal instance as is.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .compile import DEFAULT_CONSTANTS


def with_margins(inst: Mapping[str, Any], latency_headroom: float = 1.0,
                 error_margin: float = 1.0) -> dict[str, Any]:
    """The instance with every time of spec section 2 multiplied by `latency_headroom`
    (rates / h, fixed delays x h: prefill and per-token times scale exactly; calibration
    constants and all-reduce figures the same way) and model errors multiplied by
    `error_margin` (capped at 1). Compiling it re-selects each route's operating point:
    a deployment keeps its latency SLO with a smaller batch where it can, and the route
    is dropped where it cannot. Factors of 1 return an unchanged copy."""
    for name, v in (("latency_headroom", latency_headroom), ("error_margin", error_margin)):
        if not (isinstance(v, (int, float)) and v >= 1.0 and v < float("inf")):
            raise ValueError(f"{name} must be a finite factor >= 1 (1 = nominal), got {v!r}")
    lat, err = float(latency_headroom), float(error_margin)
    out = copy.deepcopy(dict(inst))
    for g in out["gpus"]:
        g["tflops"] = {q: v / lat for q, v in g["tflops"].items()}
        g["bandwidth_tbps"] /= lat
        g["link_gbps"] /= lat
        g["link_latency_us"] *= lat
        # per-GPU calibration (spec section 1) and the per-TP all-reduce figures scale the same way
        for layer in [g.get("constants") or {}, *(g.get("constants_by_precision") or {}).values()]:
            if "step_overhead_s" in layer:
                layer["step_overhead_s"] *= lat
        for row in (g.get("allreduce_by_tp") or {}).values():
            row["busbw_gbps"] /= lat
            row["latency_us"] *= lat
    const = {**DEFAULT_CONSTANTS, **(out.get("constants") or {})}
    const["step_overhead_s"] *= lat
    out["constants"] = const
    for m in out["models"]:
        m["error"] = {k: min(1.0, v * err) for k, v in (m.get("error") or {}).items()}
    if lat != 1.0 or err != 1.0:
        out["name"] = f"{out.get('name', 'instance')}-margins-l{lat:g}-e{err:g}"
    return out
