"""Make-before-break transitions: the simulator keeps replaced replicas serving until their
replacements are ready, the router sends work only to ready replicas, draining replicas
finish their work, and every replica's time is paid for."""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvers.cold_start import ColdStart
from controller.sim.fleet_sim import FleetSimulator, PerfTable
from controller.sim.loop_service import ClosedLoop
from controller.router.core import Router, ready_shares
from controller.sim.workload import poisson_requests
from schemas import AllocationEvent, Plan

T0 = 1_700_000_000.0
SMALL = ("llama-3.1-8b", "L4", "fp8", 1, 1)
BIG = ("llama-3.1-70b", "H100-SXM", "fp8", 1, 1)


@pytest.fixture(scope="module")
def perf(spec_instance: dict) -> PerfTable:
    return PerfTable.from_instance(spec_instance)


def dep(key: tuple, n: int) -> dict:
    m, g, p, tp, pp = key
    return {"id": f"{m}.{g}.{p}.tp{tp}pp{pp}", "model": m, "gpu": g, "precision": p, "tp": tp, "pp": pp,
            "replicas": n}


def plan(*parts: tuple[tuple, int, float]) -> Plan:
    """parts: (configuration, replicas, fraction of `code` routed to it)."""
    ds = [dep(k, n) for k, n, _ in parts if n > 0]
    return Plan.model_validate({"deployments": ds, "routes": [
        {"query_type": "code", "deployment": dep(k, n)["id"], "fraction": f} for k, n, f in parts if n > 0]})


def event(p: Plan, epoch: int) -> AllocationEvent:
    return AllocationEvent(fleet_id="f", epoch=epoch, trigger="window", method="gh", status="feasible",
                           plan=p, cost_per_hour=1.0, gpu_cost_per_hour=1.0, demand={"code": 1.0},
                           created_at=time.time())


def capacity(perf: PerfTable, sim: FleetSimulator, at: float) -> float:
    """Ready requests/s for `code` over every deployment the simulator runs."""
    st_ = sim.status(at, "f")
    total = 0.0
    for d in st_.deployments:
        key = next(k for k in (SMALL, BIG) if dep(k, 1)["id"] == d.deployment)
        total += d.ready * perf.get("code", key).mu
    return total


def planned(perf: PerfTable, p: Plan) -> float:
    return sum(d.replicas * perf.get("code", (d.model, d.gpu, d.precision, d.tp, d.pp)).mu
               for d in p.deployments)


def test_swap_is_make_before_break(perf: PerfTable) -> None:
    sim = FleetSimulator(perf, cold_start_s=60.0)
    old, new = plan((SMALL, 3, 1.0)), plan((BIG, 1, 1.0))
    sim.apply_plan(old, at=T0, warm=True)
    tr = sim.apply_plan(new, at=T0 + 100)
    assert {s.action for s in tr.steps} == {"start", "retire"} and tr.gpus_started == 1 and tr.gpus_stopped == 3
    mid = sim.status(T0 + 130, "f")
    by = {d.deployment: d for d in mid.deployments}
    assert by[dep(SMALL, 1)["id"]].ready == 3 and by[dep(SMALL, 1)["id"]].draining == 3
    assert by[dep(BIG, 1)["id"]].starting == 1 and not mid.transition_complete
    kept = capacity(perf, sim, T0 + 130)
    done = sim.status(T0 + 160, "f")
    assert [d.deployment for d in done.deployments] == [dep(BIG, 1)["id"]] and done.transition_complete
    # the old behaviour for comparison: the retired replicas stop at once
    bbm = FleetSimulator(perf, cold_start_s=60.0, make_before_break=False)
    bbm.apply_plan(old, at=T0, warm=True)
    bbm.apply_plan(new, at=T0 + 100)
    assert capacity(perf, bbm, T0 + 130) == 0.0 < kept


def test_starting_replicas_a_newer_plan_drops_are_cancelled(perf: PerfTable) -> None:
    sim = FleetSimulator(perf, cold_start_s=60.0)
    sim.apply_plan(plan((SMALL, 1, 1.0)), at=T0, warm=True)
    sim.apply_plan(plan((SMALL, 4, 1.0)), at=T0 + 10)
    assert sim.replicas(dep(SMALL, 1)["id"], T0 + 11) == (1, 4)
    sim.apply_plan(plan((SMALL, 2, 1.0)), at=T0 + 20)       # two of the three starting go at once
    assert sim.replicas(dep(SMALL, 1)["id"], T0 + 21) == (1, 2)
    assert sim.replicas(dep(SMALL, 1)["id"], T0 + 70) == (2, 2)
    assert sim.cost()["gpus_started"] == 3 and sim.cost()["gpus_stopped"] == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.floats(5, 150)), min_size=2, max_size=6))
def test_ready_capacity_never_below_min_of_old_and_new(perf: PerfTable, seq: list) -> None:
    """While a transition runs, ready capacity never drops below min(what was ready when the
    new plan arrived, the new plan's capacity), checked every 5 s; once the last replica
    started is up, the fleet is exactly the new plan."""
    sim = FleetSimulator(perf, cold_start_s=ColdStart(engine_s=30.0, params_b={"llama-3.1-70b": 70.6},
                                                      bytes_per_param={"fp8": 1.0}))
    t = T0
    for k, (a, b, gap) in enumerate(seq):
        if a + b == 0:
            a = 1
        p = plan((SMALL, a, a / (a + b)), (BIG, b, b / (a + b)))
        before = capacity(perf, sim, t)
        sim.apply_plan(p, at=t, warm=k == 0)
        floor = min(before, planned(perf, p)) if k else planned(perf, p)
        for j in range(int(gap // 5) + 1):
            assert capacity(perf, sim, t + j * 5.0) >= floor - 1e-9
        t += gap
    end = sim.next_change()
    while end < float("inf"):
        sim.status(end, "f")
        end = sim.next_change()
    assert capacity(perf, sim, t + 1e4) == pytest.approx(planned(perf, p))


def test_router_routes_only_to_ready_and_covers_with_the_old_plan(perf: PerfTable) -> None:
    sim = FleetSimulator(perf, cold_start_s=60.0)
    router = Router(fleet_id="f", seed=1)
    loop = ClosedLoop(router, sim, fleet_id="f")
    old, new = plan((SMALL, 4, 1.0)), plan((SMALL, 2, 0.5), (BIG, 1, 0.5))
    router.apply(event(old, 1))
    mu = perf.get("code", SMALL).mu
    reqs = poisson_requests({"code": 2.0 * mu}, {"code": (2048, 28)}, 300.0, start_ts=T0, seed=3)
    out = []
    for r in reqs:
        if r.ts >= T0 + 100 and router.epoch() == 1:
            router.apply(event(new, 2))
        out.append(loop.process(r))
        st_ = {d.deployment: d.ready for d in sim.status(r.ts, "f").deployments}
        if out[-1].deployment is not None:
            assert st_.get(out[-1].deployment, 0) > 0, "routed to a deployment with nothing ready"
    during = [o for o in out if T0 + 100 <= o.ts < T0 + 160]
    after = [o for o in out if o.ts >= T0 + 170]
    assert during and all(o.deployment == dep(SMALL, 1)["id"] for o in during)
    assert all(o.outcome != "rejected" for o in during)
    big = sum(o.deployment == dep(BIG, 1)["id"] for o in after)
    assert abs(big / len(after) - 0.5) < 0.05
    assert router.metrics()["fleets"]["f"]["rejected"] == 0


def test_ready_shares_renormalise() -> None:
    # half of B is ready: B keeps a quarter, the old deployment A covers the other quarter
    got = ready_shares({"B": 0.5, "C": 0.5}, {"A": 1.0}, {"B": 2, "C": 1}, {"A": 2}, {"A": 2, "B": 1, "C": 1})
    assert got == pytest.approx({"B": 0.25, "C": 0.5, "A": 0.25})
    # nothing old left: what is ready takes the missing share
    got = ready_shares({"B": 0.5, "C": 0.5}, {}, {"B": 2, "C": 1}, {}, {"B": 1, "C": 1})
    assert got == pytest.approx({"B": 1 / 3, "C": 2 / 3})
    # nothing ready at all: nothing routed (the router rejects as no_ready)
    assert sum(ready_shares({"B": 1.0}, {}, {"B": 1}, {}, {}).values()) == 0.0
    # A scales up 2 -> 6 with 2 ready: its running replicas keep their old half, B is not overloaded
    got = ready_shares({"A": 0.5, "B": 0.5}, {"A": 0.5, "B": 0.5}, {"A": 6, "B": 2}, {"A": 2, "B": 2}, {"A": 2, "B": 2})
    assert got == pytest.approx({"A": 0.5, "B": 0.5})
    # the plan's own unserved share stays unserved
    assert sum(ready_shares({"B": 0.6}, {}, {"B": 1}, {}, {"B": 1}).values()) == pytest.approx(0.6)


def test_draining_replicas_finish_in_flight_work(perf: PerfTable) -> None:
    sim = FleetSimulator(perf, cold_start_s=30.0)
    sim.apply_plan(plan((SMALL, 2, 1.0)), at=T0, warm=True)
    mu = perf.get("code", SMALL).mu
    reqs = poisson_requests({"code": 1.5 * mu}, {"code": (2048, 28)}, 40.0, start_ts=T0, seed=2)
    sim.apply_plan(plan((BIG, 1, 1.0)), at=T0 + 1)
    out = [sim.submit(r, dep(SMALL, 1)["id"]) for r in reqs if r.ts < T0 + 31]
    assert out and all(o.outcome in ("served", "slo_missed") for o in out), "in-flight work was dropped"
    assert [d.deployment for d in sim.status(T0 + 31, "f").deployments] == [dep(BIG, 1)["id"]]


def test_cost_integrates_replica_time_including_cold_starts(perf: PerfTable) -> None:
    sim = FleetSimulator(perf, cold_start_s=600.0)
    sim.apply_plan(plan((SMALL, 2, 1.0)), at=T0, warm=True)
    sim.apply_plan(plan((SMALL, 2, 0.5), (BIG, 1, 0.5)), at=T0 + 1800)
    c = sim.cost(T0 + 3600)
    price = perf.gpu_price
    assert c["dollars"] == pytest.approx(2 * price["L4"] + 0.5 * price["H100-SXM"])
    assert c["gpu_hours"] == pytest.approx(2.5) and c["gpus_started"] == 1


def test_cold_start_model_depends_on_the_deployment() -> None:
    cs = ColdStart(engine_s=64.0, load_gbps=0.9, params_b={"m": 70.0}, bytes_per_param={"fp16": 2.0, "fp8": 1.0})
    assert cs.seconds(("m", "g", "fp16", 1, 1)) == pytest.approx(64 + 140 / 0.9)
    assert cs.seconds(("m", "g", "fp16", 4, 1)) == pytest.approx(64 + 35 / 0.9)
    assert cs.seconds(("m", "g", "fp8", 1, 1)) < cs.seconds(("m", "g", "fp16", 1, 1))
    assert ColdStart.fixed(300).seconds(("m", "g", "fp16", 8, 1)) == 300
    with pytest.raises(ValueError):
        ColdStart(load_gbps=0)


def test_a_readiness_report_before_the_first_plan_is_kept() -> None:
    from schemas import DeploymentStatus, FleetStatus

    router = Router(fleet_id="f")
    small, big = dep(SMALL, 1)["id"], dep(BIG, 1)["id"]
    st_ = FleetStatus(fleet_id="f", epoch=1, ts=1.0, transition_complete=False, deployments=[
        DeploymentStatus(deployment=small, target=1, ready=1, starting=0, draining=0),
        DeploymentStatus(deployment=big, target=1, ready=0, starting=1, draining=0)])
    assert router.set_status(st_) is False and router.status_applied == 0
    router.apply(event(plan((SMALL, 1, 0.5), (BIG, 1, 0.5)), 1))
    assert router.status_applied == 1
    assert {router.route("code") for _ in range(50)} == {small}, "only the ready deployment serves"
