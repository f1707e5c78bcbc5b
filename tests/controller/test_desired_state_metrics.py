"""The desired-state collector: the plan in force per fleet as gauges, make-before-break transitions."""
from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.worker.desired_state_metrics import DesiredStateCollector, adapter_query, derive_steps, keda_query
from controller.worker.metrics import Metrics
from schemas import AllocationEvent, DeploymentStatus, FleetStatus, Plan, Transition, TransitionStep

CFG = {"a": ("llama-8b", "H100", "fp16", 1, 1), "b": ("llama-70b", "H100", "fp8", 4, 1),
       "c": ("llama-8b", "L40S", "fp16", 2, 1)}


def _event(epoch: int, replicas: dict[str, int], routes: list[tuple[str, str, float]] | None = None,
           fleet: str = "default", transition: Transition | None = None, cost: float = 10.0) -> AllocationEvent:
    deps = [{"id": d, "model": CFG[d][0], "gpu": CFG[d][1], "precision": CFG[d][2], "tp": CFG[d][3],
             "pp": CFG[d][4], "replicas": n} for d, n in replicas.items()]
    routes = routes if routes is not None else [("code", d, 1.0 / len(replicas)) for d in replicas]
    plan = Plan.model_validate({"deployments": deps, "routes": [{"query_type": q, "deployment": d, "fraction": f}
                                                                for q, d, f in routes]})
    return AllocationEvent(fleet_id=fleet, epoch=epoch, trigger="window", method="gh", status="optimal", plan=plan,
                           cost_per_hour=cost, gpu_cost_per_hour=cost, demand={"code": 1.0}, created_at=0.0,
                           transition=transition)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _scrape(c: DesiredStateCollector) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{metric name: {sorted label items: value}} of one scrape, parsed from the exposition text."""
    reg = CollectorRegistry()
    reg.register(c)
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _by_dep(series: dict[tuple[tuple[str, str], ...], float], fleet: str = "default") -> dict[str, float]:
    return {dict(k)["deployment"]: v for k, v in series.items() if dict(k)["fleet"] == fleet}


def _collector(**kw: Any) -> tuple[DesiredStateCollector, Clock]:
    clock = Clock()
    return DesiredStateCollector(clock=clock, **kw), clock


def test_plan_series_carry_the_deployment_labels_and_weights() -> None:
    c, _ = _collector()
    c.observe(_event(3, {"a": 2, "b": 1}, routes=[("code", "a", 0.75), ("code", "b", 0.25), ("chat", "b", 1.0)],
                     cost=41.5))
    got = _scrape(c)
    a = dict(next(k for k in got["llmfleet_desired_replicas"] if dict(k)["deployment"] == "a"))
    assert a == {"fleet": "default", "deployment": "a", "model": "llama-8b", "gpu": "H100", "precision": "fp16",
                 "tp": "1", "pp": "1"}
    assert _by_dep(got["llmfleet_desired_replicas"]) == {"a": 2.0, "b": 1.0}
    assert _by_dep(got["llmfleet_transition_replicas"]) == {"a": 2.0, "b": 1.0}, "first plan: nothing to keep"
    w = {(dict(k)["query_type"], dict(k)["deployment"]): v for k, v in got["llmfleet_routing_weight"].items()}
    assert w == {("code", "a"): 0.75, ("code", "b"): 0.25, ("chat", "b"): 1.0}
    assert got["llmfleet_plan_epoch"] == {(("fleet", "default"),): 3.0}
    assert got["llmfleet_plan_cost_dollars_per_hour"] == {(("fleet", "default"),): 41.5}


def test_removed_deployment_disappears_and_an_added_one_appears() -> None:
    c, clock = _collector(default_cold_start_s=0.0)
    c.observe(_event(1, {"a": 2, "b": 1}))
    c.observe(_event(2, {"a": 2, "c": 3}))
    clock.t += 1
    got = _scrape(c)
    assert _by_dep(got["llmfleet_desired_replicas"]) == {"a": 2.0, "c": 3.0}
    assert _by_dep(got["llmfleet_transition_replicas"]) == {"a": 2.0, "c": 3.0}
    assert {dict(k)["deployment"] for k in got["llmfleet_routing_weight"]} == {"a", "c"}


def test_make_before_break_keeps_surplus_until_the_started_replicas_are_ready() -> None:
    cold = {CFG["c"]: 90.0, CFG["a"]: 30.0}
    c, clock = _collector(cold_start=lambda key: cold.get(key, 60.0))
    c.observe(_event(1, {"a": 4, "b": 1}))
    clock.t += 500
    c.observe(_event(2, {"a": 2, "c": 3}))            # a scales down, b retires, c starts (90 s)
    got = _scrape(c)
    assert _by_dep(got["llmfleet_desired_replicas"]) == {"a": 2.0, "c": 3.0}
    assert _by_dep(got["llmfleet_transition_replicas"]) == {"a": 4.0, "b": 1.0, "c": 3.0}
    b = dict(next(k for k in got["llmfleet_transition_replicas"] if dict(k)["deployment"] == "b"))
    assert (b["model"], b["gpu"], b["tp"]) == ("llama-70b", "H100", "4"), "a retiring deployment keeps its labels"
    assert got["llmfleet_transition_in_progress"] == {(("fleet", "default"),): 1.0}
    clock.t += 89
    assert _by_dep(_scrape(c)["llmfleet_transition_replicas"])["a"] == 4.0
    clock.t += 1                                     # c's cold start has passed
    got = _scrape(c)
    assert _by_dep(got["llmfleet_transition_replicas"]) == {"a": 2.0, "c": 3.0}
    assert got["llmfleet_transition_in_progress"] == {(("fleet", "default"),): 0.0}


def test_a_plan_that_starts_nothing_completes_at_once() -> None:
    c, _ = _collector()
    c.observe(_event(1, {"a": 4, "b": 1}))
    c.observe(_event(2, {"a": 2, "b": 1}))
    assert _by_dep(_scrape(c)["llmfleet_transition_replicas"]) == {"a": 2.0, "b": 1.0}


def test_a_newer_plan_cancels_starting_replicas_and_keeps_the_surplus() -> None:
    c, clock = _collector(default_cold_start_s=100.0)
    c.observe(_event(1, {"a": 2, "b": 3}))
    clock.t += 1000
    c.observe(_event(2, {"a": 5, "b": 1}))           # a: 2 -> 5 starting; b: 3 kept until then
    clock.t += 10
    c.observe(_event(3, {"a": 3, "b": 1}))           # supersedes: a's 3 starting become 1 wanted
    got = _scrape(c)
    assert _by_dep(got["llmfleet_transition_replicas"]) == {"a": 3.0, "b": 3.0}
    clock.t += 100
    assert _by_dep(_scrape(c)["llmfleet_transition_replicas"]) == {"a": 3.0, "b": 1.0}


def test_event_transition_is_used_and_a_fleet_status_completes_it() -> None:
    c, clock = _collector()
    c.observe(_event(1, {"a": 2, "b": 1}))
    clock.t += 1000
    tr = Transition(from_epoch=1, gpus_started=3, gpus_stopped=1, steps=[
        TransitionStep(deployment="a", action="scale_down", from_replicas=2, to_replicas=1, wait_for_ready=True),
        TransitionStep(deployment="b", action="retire", from_replicas=1, to_replicas=0, wait_for_ready=True),
        TransitionStep(deployment="c", action="start", from_replicas=0, to_replicas=3, wait_for_ready=False,
                       cold_start_s=600.0)])
    c.observe(_event(2, {"a": 1, "c": 3}, transition=tr))
    clock.t += 300
    assert _by_dep(_scrape(c)["llmfleet_transition_replicas"]) == {"a": 2.0, "b": 1.0, "c": 3.0}
    deps = [DeploymentStatus(deployment="c", target=3, ready=3, starting=0, draining=0)]
    c.observe_status(FleetStatus(fleet_id="default", epoch=1, ts=0.0, deployments=deps, transition_complete=True))
    assert _by_dep(_scrape(c)["llmfleet_transition_replicas"])["a"] == 2.0, "a report of an older epoch"
    c.observe_status(FleetStatus(fleet_id="default", epoch=2, ts=0.0, deployments=deps, transition_complete=True))
    assert _by_dep(_scrape(c)["llmfleet_transition_replicas"]) == {"a": 1.0, "c": 3.0}


def test_fleets_are_kept_apart_and_stale_epochs_ignored() -> None:
    c, _ = _collector()
    c.observe(_event(4, {"a": 2}, fleet="east"))
    c.observe(_event(9, {"b": 1, "c": 2}, fleet="west"))
    c.observe(_event(3, {"c": 7}, fleet="east"))      # older than the plan in force
    got = _scrape(c)
    assert _by_dep(got["llmfleet_desired_replicas"], "east") == {"a": 2.0}
    assert _by_dep(got["llmfleet_desired_replicas"], "west") == {"b": 1.0, "c": 2.0}
    assert got["llmfleet_plan_epoch"] == {(("fleet", "east"),): 4.0, (("fleet", "west"),): 9.0}
    c.observe(_event(10, {"c": 2}, fleet="west"))
    assert _by_dep(_scrape(c)["llmfleet_desired_replicas"], "east") == {"a": 2.0}, "other fleet untouched"


def test_derived_steps_name_the_make_before_break_actions() -> None:
    plan = _event(1, {"a": 3, "b": 1, "c": 2}).plan
    steps = {s.deployment: (s.action, s.from_replicas, s.to_replicas, s.wait_for_ready)
             for s in derive_steps({"a": 3, "b": 2, "d": 4}, plan)}
    assert steps == {"a": ("keep", 3, 3, False), "b": ("scale_down", 2, 1, True), "c": ("start", 0, 2, False),
                     "d": ("retire", 4, 0, True)}


def test_worker_metrics_export_the_collector_and_keep_the_old_gauges() -> None:
    m = Metrics()
    m.observe_event(_event(5, {"a": 2}, cost=7.25), {"gh": 0.01})
    text = m.text().decode()
    assert 'llmfleet_desired_replicas{deployment="a",fleet="default",gpu="H100",model="llama-8b",pp="1",' \
           'precision="fp16",tp="1"} 2.0' in text
    assert 'llmfleet_plan_cost_dollars_per_hour{fleet="default"} 7.25' in text
    assert "llmfleet_epoch 5.0" in text and "llmfleet_plan_cost_per_hour 7.25" in text


def test_queries_name_the_deployment() -> None:
    q = keda_query("default", "a")
    assert 'llmfleet_transition_replicas{fleet="default",deployment="a"}' in q and q.count("{") == 2
    assert 'llmfleet_transition_replicas{fleet="default",deployment="a"}' in adapter_query(
        "llmfleet_transition_replicas", "default", "a")
    with pytest.raises(ValueError):
        DesiredStateCollector(default_cold_start_s=-1)


def test_docs_show_the_queries_the_code_defines() -> None:
    from controller.worker.desired_state_metrics import ADAPTER_METRICS_QUERY
    from tests.deploy import desired_state_docs as docs

    trigger, labels = docs.keda_trigger(), docs.hpa_selector()
    assert trigger["metadata"]["query"] == keda_query(labels["fleet"], labels["deployment"])
    assert trigger["metadata"]["ignoreNullValues"] == "false" and trigger["metadata"]["threshold"] == "1"
    rule = docs.snippets()["adapter"]["externalRules"][0]
    assert rule["metricsQuery"] == ADAPTER_METRICS_QUERY
    assert docs.snippets()["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["external"]["metric"]["name"] \
        == "llmfleet_transition_replicas"


def test_docs_scaled_object_validates_against_the_keda_crd() -> None:
    import jsonschema
    import yaml

    from tests.conftest import SHARED
    from tests.deploy import desired_state_docs as docs

    crd_path = SHARED / "k8s-crds" / "keda.sh_scaledobjects.yaml"
    if not crd_path.exists():
        pytest.skip(f"KEDA CRD not found at {crd_path}")
    crd = yaml.safe_load(crd_path.read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")["schema"]["openAPIV3Schema"]
    so = docs.snippets()["ScaledObject"]
    jsonschema.validate(so, schema)
    bad = {**so, "spec": {**so["spec"], "triggers": [{"metadata": {}}]}}   # a trigger without its type
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_a_deployment_still_starting_when_superseded_is_not_held() -> None:
    c, clock = _collector(default_cold_start_s=100.0)
    c.observe(_event(1, {"a": 1}))
    clock.t += 1000
    c.observe(_event(2, {"a": 1, "b": 2}))           # b starts; nothing to keep
    assert _scrape(c)["llmfleet_transition_in_progress"] == {(("fleet", "default"),): 1.0}
    clock.t += 10
    c.observe(_event(3, {"a": 1, "c": 1}))           # b never became ready: cancelled, not held
    assert _by_dep(_scrape(c)["llmfleet_transition_replicas"]) == {"a": 1.0, "c": 1.0}
    clock.t += 1000
    c.observe(_event(4, {"c": 2}))                    # c is ready now; a retires, held for c's scale-up
    assert _by_dep(_scrape(c)["llmfleet_transition_replicas"]) == {"a": 1.0, "c": 2.0}


def test_docs_hpa_validates_against_the_kubernetes_schema() -> None:
    import kubernetes_validate

    from tests.deploy import desired_state_docs as docs

    hpa = docs.snippets()["HorizontalPodAutoscaler"]
    kubernetes_validate.validate(hpa, "1.30", strict=True)
    metric = hpa["spec"]["metrics"][0]
    bad = {**hpa, "spec": {**hpa["spec"], "metrics": [{**metric, "external": {"metric": metric["external"]["metric"]}}]}}
    with pytest.raises(kubernetes_validate.ValidationError):   # an external metric without its target
        kubernetes_validate.validate(bad, "1.30", strict=True)
