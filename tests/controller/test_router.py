"""Router: SWRR proportions, unserved share, epoch rule, gate-and-route admission."""
from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from controller.router.core import Router, SmoothWRR, plan_weights
from schemas import AllocationEvent


def event(epoch: int, routes: list[tuple[str, str, float]], fleet: str = "f1",
          gate_route: dict[str, Any] | None = None) -> AllocationEvent:
    deps = sorted({d for _, d, _ in routes})
    return AllocationEvent.model_validate({
        "fleet_id": fleet, "epoch": epoch, "trigger": "window", "method": "gh", "status": "feasible",
        "plan": {"deployments": [{"id": d, "model": "m", "gpu": "g", "precision": "fp16", "tp": 1,
                                  "pp": 1, "replicas": 1} for d in deps],
                 "routes": [{"query_type": q, "deployment": d, "fraction": f} for q, d, f in routes]},
        "cost_per_hour": 1.0, "gpu_cost_per_hour": 1.0, "demand": {}, "created_at": 0.0,
        "gate_route": gate_route})


def counts(r: Router, qt: str, n: int) -> Counter[str | None]:
    return Counter(r.route(qt) for _ in range(n))


def test_swrr_exact_proportions() -> None:
    r = Router()
    assert r.apply(event(1, [("code", "a", 0.5), ("code", "b", 0.3), ("code", "c", 0.2)]))
    assert counts(r, "code", 100) == {"a": 50, "b": 30, "c": 20}
    # every window of one cycle (10 picks) is exact, not just the total
    assert counts(r, "code", 10) == {"a": 5, "b": 3, "c": 2}


def test_swrr_is_smooth() -> None:
    wrr = SmoothWRR(["a", "b", "c"], [5, 1, 1])
    assert [wrr.pick() for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]


def test_unserved_fraction_is_rejected() -> None:
    r = Router()
    r.apply(event(1, [("code", "a", 0.6), ("chat", "b", 0.25)]))
    assert counts(r, "code", 100) == {"a": 60, None: 40}
    assert counts(r, "chat", 100) == {"b": 25, None: 75}
    assert r.route("unknown") is None
    m = r.metrics()["fleets"]["f1"]
    assert m["routed"] == {"a": 60, "b": 25}
    assert m["rejected_by_reason"] == {"unserved": 115, "unknown_query_type": 1}


def test_fractions_of_one_deployment_add_up_and_tiny_overshoot_is_clamped() -> None:
    members, weights = plan_weights({"a": 0.7, "b": 0.3000000001})
    assert None not in members and sum(weights) == 1_000_000
    r = Router()
    r.apply(event(1, [("code", "a", 0.4), ("code", "a", 0.6)]))
    assert counts(r, "code", 50) == {"a": 50}


def test_no_plan_rejects() -> None:
    r = Router()
    assert r.route("code") is None and r.decide("code").reason == "no_plan"
    assert r.epoch() == 0 and r.metrics()["no_plan_rejected"] == 2


def test_stale_and_duplicate_epochs_are_ignored_and_newer_switches() -> None:
    r = Router()
    assert r.apply(event(2, [("code", "a", 1.0)]))
    assert not r.apply(event(1, [("code", "b", 1.0)]))   # stale
    assert not r.apply(event(2, [("code", "b", 1.0)]))   # duplicate
    assert r.epoch("f1") == 2 and r.route("code") == "a"
    assert r.stale_ignored == 2 and r.duplicates_ignored == 1
    assert r.apply(event(5, [("code", "b", 1.0)]))
    assert r.epoch() == 5 and counts(r, "code", 10) == {"b": 10}
    m = r.metrics()
    assert m["fleets"]["f1"]["epoch"] == 5 and m["stale_ignored"] == 2 and m["applied"] == 2


def test_fleets_are_independent_and_filtered() -> None:
    r = Router()
    r.apply(event(3, [("code", "a", 1.0)], fleet="x"))
    r.apply(event(1, [("code", "b", 1.0)], fleet="y"))   # epoch is per fleet: not stale
    assert r.route("code", "x") == "a" and r.route("code", "y") == "b"
    assert r.route("code") is None                       # ambiguous without a fleet id
    only = Router(fleet_id="y")
    assert not only.apply(event(9, [("code", "a", 1.0)], fleet="x"))
    assert only.foreign_ignored == 1 and only.epoch() == 0


def test_deterministic_and_seeded_order() -> None:
    routes = [("code", "a", 0.5), ("code", "b", 0.3), ("code", "c", 0.2)]
    seqs = []
    for seed in (None, None, 7, 7, 8):
        r = Router(seed=seed)
        r.apply(event(1, routes))
        seqs.append([r.route("code") for _ in range(40)])
    assert seqs[0] == seqs[1] and seqs[2] == seqs[3]
    for s in seqs:  # every seed keeps the exact proportions
        assert Counter(s) == {"a": 20, "b": 12, "c": 8}


def test_gate_route_admission_and_placement() -> None:
    gate = {"a": {"status": "optimal", "router": "solo_first", "classes": {
        "code": {"admit_probability": 0.5, "solo_probability": 0.25}}},
        "b": {"status": "infeasible"}}
    r = Router(seed=3)
    r.apply(event(1, [("code", "a", 1.0), ("chat", "b", 1.0)], gate_route=gate))
    decisions = [r.decide("code") for _ in range(4000)]
    admitted = [d for d in decisions if d.deployment == "a"]
    assert 0.45 < len(admitted) / 4000 < 0.55
    assert {d.reason for d in decisions} == {"routed", "shed"}
    solo = sum(d.placement == "solo" for d in admitted) / len(admitted)
    assert 0.2 < solo < 0.3 and {d.placement for d in admitted} == {"solo", "mixed"}
    # an unsolved gate entry is ignored: plain SWRR, no placement hint
    assert {r.decide("chat") for _ in range(5)} == {r.decide("chat")}
    assert r.decide("chat").placement is None and r.gate_params("b") is None
    # same seed, same decisions
    r2 = Router(seed=3)
    r2.apply(event(1, [("code", "a", 1.0), ("chat", "b", 1.0)], gate_route=gate))
    assert [r2.decide("code") for _ in range(4000)] == decisions


@pytest.mark.parametrize("p,expect", [(0.0, None), (1.0, "a")])
def test_gate_extremes_draw_nothing(p: float, expect: str | None) -> None:
    gate = {"a": {"classes": {"code": {"admit_probability": p}}}}
    r = Router()
    r.apply(event(1, [("code", "a", 1.0)], gate_route=gate))
    assert {r.route("code") for _ in range(20)} == {expect}


def test_docs_example_event_routes_as_described() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "router.md").read_text()
    raw = re.search(r"```json\n(.*?)\n```", text, re.S).group(1)
    ev = AllocationEvent.model_validate_json(raw)
    r = Router(fleet_id="prod-eu")
    assert r.apply(ev) and r.epoch() == 42
    code = counts(r, "code", 10)
    assert code == {"llama-3.1-8b.H100-SXM.fp8.tp1pp1": 5, "llama-3.1-8b.L4.fp8.tp1pp1": 3, None: 2}
    conv = [r.decide("conversation") for _ in range(1000)]
    assert 0.85 < sum(d.deployment is not None for d in conv) / 1000 < 0.95
