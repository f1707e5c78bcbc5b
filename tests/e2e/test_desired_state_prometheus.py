"""A real Prometheus scrapes a real worker: the KEDA and HPA queries of docs/deploy.md return the plan.

Skips, with the reason, when no `prometheus` binary is on PATH (the `prometheus_server` fixture).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from schemas import AllocationEvent
from tests.deploy import desired_state_docs as docs
from tests.e2e.harness import Cluster, batch, collect, produce
from tests.prometheus_server import PrometheusServer, free_port

T0 = 1_700_000_000.0
pytestmark = pytest.mark.broker
COLD_START_S = 12.0  # the planner's cold-start estimate in this test: how long a dropped deployment is held


def _keda(fleet: str, deployment: str) -> str:
    """The docs' ScaledObject query, for another deployment/fleet than the example's."""
    q = docs.keda_trigger()["metadata"]["query"]
    example = docs.hpa_selector()
    return q.replace(f'deployment="{example["deployment"]}"', f'deployment="{deployment}"') \
        .replace(f'fleet="{example["fleet"]}"', f'fleet="{fleet}"')


def _adapter(fleet: str, deployment: str) -> str:
    """What prometheus-adapter runs for the docs' HPA, with its selector set to this deployment."""
    s = docs.snippets()
    rule = s["adapter"]["externalRules"][0]
    name = s["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["external"]["metric"]["name"]
    return rule["metricsQuery"].replace("<<.Series>>", name) \
        .replace("<<.LabelMatchers>>", f'fleet="{fleet}",deployment="{deployment}"')


def _value(prom: PrometheusServer, promql: str) -> float | None:
    res = prom.query(promql)
    assert len(res) <= 1, f"{promql} must return one element at most, got {res}"
    return res[0][1] if res else None


async def _events_until(c: Cluster, window_end: float) -> list[AllocationEvent]:
    """Every allocation event once the demand window ending at `window_end` is on its topic and
    the plans following it (GH, then AGH on drift) have had a few seconds to come out."""
    t = c.topics
    got = await collect(c.bootstrap, [t.demand], lambda g: any(w["window_end"] >= window_end for w in g[t.demand]),
                        timeout=90)
    assert any(w["window_end"] >= window_end for w in got[t.demand]), c.logs()
    events = (await collect(c.bootstrap, [t.allocations], lambda g: False, timeout=3))[t.allocations]
    return [AllocationEvent.model_validate(e) for e in events]


def _wait_epoch(prom: PrometheusServer, ev: AllocationEvent) -> None:
    prom.wait_for(f'llmfleet_plan_epoch{{fleet="{ev.fleet_id}"}}',
                  lambda r: any(v == ev.epoch for _, v in r), timeout_s=30)


def _check_plan(prom: PrometheusServer, ev: AllocationEvent) -> None:
    """Prometheus holds exactly the event's desired replicas and routing weights."""
    f = ev.fleet_id
    desired = {lab["deployment"]: (v, lab) for lab, v in prom.query(f'llmfleet_desired_replicas{{fleet="{f}"}}')}
    assert {k: v for k, (v, _) in desired.items()} == {d.id: float(d.replicas) for d in ev.plan.deployments}
    for d in ev.plan.deployments:
        lab = desired[d.id][1]
        assert (lab["model"], lab["gpu"], lab["precision"], lab["tp"], lab["pp"]) == \
            (d.model, d.gpu, d.precision, str(d.tp), str(d.pp))
    weights = {(lab["query_type"], lab["deployment"]): v
               for lab, v in prom.query(f'llmfleet_routing_weight{{fleet="{f}"}}')}
    want: dict[tuple[str, str], float] = {}
    for r in ev.plan.routes:
        want[(r.query_type, r.deployment)] = want.get((r.query_type, r.deployment), 0.0) + r.fraction
    assert weights == pytest.approx(want, abs=1e-9)
    assert _value(prom, f'llmfleet_plan_cost_dollars_per_hour{{fleet="{f}"}}') == pytest.approx(ev.cost_per_hour)


def _settled(prom: PrometheusServer, ev: AllocationEvent, gone: set[str]) -> None:
    """Wait until the transition is over: KEDA's and the adapter's numbers are the plan's, and
    0 (KEDA) and nothing (adapter) for the deployments in `gone`."""
    want = {**{d.id: (float(d.replicas), float(d.replicas)) for d in ev.plan.deployments},
            **{d: (0.0, None) for d in gone}}
    deadline = time.monotonic() + COLD_START_S + 30
    while True:
        got = {d: (_value(prom, _keda(ev.fleet_id, d)), _value(prom, _adapter(ev.fleet_id, d))) for d in want}
        if got == want:
            return
        assert time.monotonic() < deadline, f"(KEDA, HPA) per deployment {got}, want {want}"
        time.sleep(0.5)


async def test_keda_and_hpa_queries_follow_the_plan(broker: str, tmp_path: Path, prometheus_server: Any) -> None:
    port = free_port()
    c = Cluster(broker, tmp_path, LLMFLEET_WEB_PORT=str(port), LLMFLEET_AUDIT_ENABLED="false",
                LLMFLEET_COLD_START_ENGINE_S=str(COLD_START_S), LLMFLEET_COLD_START_LOAD_GBPS="1000")
    t = c.topics
    try:
        prom = prometheus_server([f"127.0.0.1:{port}"], scrape_interval_s=1.0)
        await produce(broker, t.telemetry, batch(T0, 40, {"code": 20, "conversation": 30}))
        c.start_worker()
        first = (await _events_until(c, T0 + 30))[-1]
        _wait_epoch(prom, first)
        _check_plan(prom, first)
        _settled(prom, first, gone=set())
        prom.wait_for('llmfleet_transition_in_progress{fleet="default"}', lambda r: r and r[0][1] == 0.0,
                      timeout_s=COLD_START_S + 30)   # every replica of the first plan is serving
        settled_at = time.time()

        # code traffic stops and conversation triples: the next plan starts replicas and drops what
        # served code only
        await produce(broker, t.telemetry, batch(T0, 30, {"conversation": 90}, start=40))
        events = await _events_until(c, T0 + 60)
        last = events[-1]
        _wait_epoch(prom, last)
        ever = {d.id for e in events if e.epoch >= first.epoch for d in e.plan.deployments}
        gone = ever - {d.id for d in last.plan.deployments}
        assert gone, f"the test needs a plan that drops a deployment: {[e.plan.deployments for e in events]}"
        _check_plan(prom, last)
        assert not any(lab["deployment"] in gone for lab, _ in prom.query("llmfleet_desired_replicas")), \
            "a dropped deployment's desired series disappears at once"
        _settled(prom, last, gone)
        assert not any(lab["deployment"] in gone for lab, _ in prom.query("llmfleet_transition_replicas")), \
            "after the transition the dropped deployment's series are gone"
        # make-before-break, read from Prometheus's own samples: the first plan that dropped a
        # deployment of the settled first plan started replicas relative to it (the plans between
        # come within the same window's GH and AGH solves, well inside one cold start, so their
        # replicas are not ready yet), so the dropped deployment stayed wanted at the first plan's
        # count while no longer desired
        plans = [{d.id: d.replicas for d in e.plan.deployments} for e in events if e.epoch >= first.epoch]
        k = next(k for k in range(1, len(plans)) if set(plans[0]) - set(plans[k]))
        assert any(n > plans[0].get(d, 0) for d, n in plans[k].items()), \
            f"the test needs the dropping plan to start replicas: {plans}"
        since = f"{int(time.time() - settled_at) + 1}s"
        for dep in set(plans[0]) - set(plans[k]):
            held = _value(prom, f'max_over_time((llmfleet_transition_replicas{{fleet="default",deployment="{dep}"}} '
                                f'unless on(instance, fleet, deployment) llmfleet_desired_replicas)[{since}:250ms])')
            assert held == plans[0][dep], (dep, held, plans)
    finally:
        c.close()


def test_queries_follow_the_newest_epoch_across_workers_and_fleets(prometheus_server: Any) -> None:
    """Two exporters (a leader and an ex-leader still serving its last plan) and two fleets, scraped
    by a real Prometheus: the queries read each fleet's newest plan; with nothing exported they
    are empty (KEDA keeps its replicas), not 0."""
    from prometheus_client import CollectorRegistry, start_http_server

    from controller.worker.desired_state_metrics import DesiredStateCollector
    from tests.controller.test_desired_state_metrics import _event

    servers, targets = [], []
    old, new = DesiredStateCollector(), DesiredStateCollector()
    old.observe(_event(5, {"a": 2, "b": 1}))                    # the ex-leader's last plan
    old.observe(_event(2, {"c": 4}, fleet="west"))              # the only plan of fleet west
    new.observe(_event(6, {"a": 3}))                            # the leader's plan in force
    try:
        for collector in (old, new):
            reg = CollectorRegistry()
            reg.register(collector)
            port = free_port()
            servers.append(start_http_server(port, addr="127.0.0.1", registry=reg)[0])
            targets.append(f"127.0.0.1:{port}")
        prom = prometheus_server(targets, scrape_interval_s=1.0)
        prom.wait_for("up", lambda r: len(r) == 2 and all(v == 1.0 for _, v in r), timeout_s=30)
        prom.wait_for(_keda("default", "a"), lambda r: r == [({}, 3.0)], timeout_s=30)
        assert _value(prom, _keda("default", "b")) == 0.0, "dropped by the newest plan, kept by the ex-leader"
        assert _value(prom, _adapter("default", "b")) is None
        assert _value(prom, _adapter("default", "a")) == 3.0
        assert _value(prom, _keda("west", "c")) == 4.0 and _value(prom, _keda("west", "a")) == 0.0
        assert prom.query(_keda("east", "a")) == [], "no plan for the fleet: empty, so KEDA keeps its replicas"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


async def test_a_new_leader_exports_the_plan_in_force_after_syncing(broker: str) -> None:
    """Leadership moved: before its first plan, the new leader's /metrics already shows the plan
    on the allocation topic (else KEDA would read nothing until the next window)."""
    import uuid

    from controller.worker.app import Controller
    from controller.worker.fleet_state import FleetState
    from controller.common.settings import Settings
    from controller.common.topic_admin import ensure_topics
    from tests.controller.test_desired_state_metrics import _event

    tag = uuid.uuid4().hex[:8]
    s = Settings(bootstrap_servers=broker, web_port=0, topics={"allocations": f"sync-{tag}.allocations",
                                                                "demand": f"sync-{tag}.demand"})
    await ensure_topics(s, broker)
    await produce(broker, s.topics.allocations, [_event(k, {"a": k}).model_dump_json().encode() for k in (1, 2)],
                  partitions=1)
    ctl = Controller(s)
    assert "llmfleet_desired_replicas{" not in ctl.metrics.text().decode()
    await ctl._sync_with_published(FleetState(s.fleet_id))
    assert 'llmfleet_plan_epoch{fleet="default"} 2.0' in ctl.metrics.text().decode()
    assert 'deployment="a",fleet="default",gpu="H100"' in ctl.metrics.text().decode()
