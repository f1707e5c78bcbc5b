"""Fleet simulator: queueing under load, saturation, cold start, determinism, telemetry."""
from __future__ import annotations

import numpy as np
import pytest

from controller.fleet_sim import FleetSimulator, PerfTable
from controller.slo_window import SloWindows
from controller.workload import poisson_requests
from schemas import RequestRecord, TelemetryBatch

CFG = {"model": "llama-3.1-8b", "gpu": "L4", "precision": "fp8", "tp": 1, "pp": 1}
KEY = ("llama-3.1-8b", "L4", "fp8", 1, 1)
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def perf(spec_instance: dict) -> PerfTable:
    return PerfTable.from_instance(spec_instance)


def plan(replicas: int) -> dict:
    return {"deployments": [{"id": "d0", **CFG, "replicas": replicas}],
            "routes": [{"query_type": "code", "deployment": "d0", "fraction": 1.0}]}


def run(perf: PerfTable, rho: float, *, replicas: int = 1, duration: float = 1500.0, seed: int = 1,
        **kw: object) -> tuple[FleetSimulator, list[RequestRecord]]:
    mu = perf.get("code", KEY).mu
    sim = FleetSimulator(perf, seed=seed, **kw)
    sim.apply_plan(plan(replicas), at=T0, warm=True)
    reqs = poisson_requests({"code": rho * mu * replicas}, {"code": (2048, 28)}, duration,
                            start_ts=T0, seed=seed)
    return sim, [sim.submit(r, "d0") for r in reqs]


def test_latency_grows_with_load(perf: PerfTable) -> None:
    p = perf.get("code", KEY)
    L = p.latency_s
    assert p.curve is not None and p.curve[-1] == pytest.approx(L) and p.curve[0] < L
    assert all(a <= b + 1e-12 for a, b in zip(p.curve, p.curve[1:])), "L(b) is nondecreasing"
    means = {}
    for rho in (0.3, 0.8, 0.97):
        sim, out = run(perf, rho)
        lat = np.array([r.latency_s for r in out])
        means[rho] = lat.mean()
        assert lat.min() >= p.curve[0] - 1e-12  # continuous batching: never faster than L(1)
        assert all(r.ttft_s >= p.ttft_s - 1e-12 for r in out)
    assert means[0.3] < L, "below the operating point requests run at L(b) < L(b*)"
    assert means[0.3] < means[0.8] < means[0.97]
    low, _ = run(perf, 0.3)
    assert low.slo.overall()["code"]["attainment"] > 0.95


def test_saturation_misses_slo(perf: PerfTable) -> None:
    sim, out = run(perf, 1.5, duration=600.0)
    summary = sim.slo.overall()["code"]
    assert summary["attainment"] < 0.2 and summary["slo_missed"] > 0.8 * summary["total"]
    lat = [r.latency_s for r in out]
    assert np.mean(lat[-50:]) > np.mean(lat[:50]) + 60      # the backlog keeps growing
    # abandonment bounds the queue: late requests are rejected instead of waiting forever
    capped, out2 = run(perf, 1.5, duration=600.0, max_wait_s=5.0)
    assert capped.outcomes["rejected"] > 0
    assert max(r.latency_s for r in out2 if r.latency_s is not None) <= perf.get("code", KEY).latency_s + 5.0


def test_cold_start_delays_new_replicas(perf: PerfTable) -> None:
    mu = perf.get("code", KEY).mu
    sim = FleetSimulator(perf, cold_start_s=120.0, seed=0)
    sim.apply_plan(plan(1), at=T0, warm=True)
    sim.apply_plan(plan(3), at=T0 + 100)
    assert sim.replicas("d0", T0 + 100) == (1, 3)
    assert sim.replicas("d0", T0 + 219.9) == (1, 3)
    assert sim.replicas("d0", T0 + 220.0) == (3, 3)
    # load needing two replicas: misses while the new ones boot, served once they are up
    reqs = poisson_requests({"code": 2.0 * mu}, {"code": (2048, 28)}, 600.0, start_ts=T0 + 100, seed=4)
    out = [sim.submit(r, "d0") for r in reqs]
    booting = [r for r in out if r.ts < T0 + 220]
    late = [r for r in out if r.ts > T0 + 400]
    assert np.mean([r.outcome == "slo_missed" for r in booting]) > 0.5
    assert np.mean([r.outcome == "served" for r in late]) > 0.95
    # scaling down is immediate; dropping the deployment rejects further work
    sim.apply_plan(plan(1), at=T0 + 700)
    assert sim.replicas("d0", T0 + 700) == (1, 1)
    sim.apply_plan({"deployments": [], "routes": []}, at=T0 + 800)
    assert sim.submit(reqs[0].model_copy(update={"ts": T0 + 801}), "d0").outcome == "rejected"


def test_same_seed_same_output(perf: PerfTable) -> None:
    a = run(perf, 0.9, duration=300.0, seed=5, service_cv=0.3)[1]
    b = run(perf, 0.9, duration=300.0, seed=5, service_cv=0.3)[1]
    c = run(perf, 0.9, duration=300.0, seed=6, service_cv=0.3)[1]
    assert a == b and a != c


def test_rejections_and_unknown_routes(perf: PerfTable) -> None:
    sim = FleetSimulator(perf)
    sim.apply_plan(plan(1), at=T0, warm=True)
    rec = RequestRecord(ts=T0 + 1, query_type="code", input_tokens=2048, output_tokens=28)
    assert sim.submit(rec, None).outcome == "rejected"          # the router said no
    assert sim.submit(rec, "nope").outcome == "rejected"        # no such deployment
    odd = RequestRecord(ts=T0 + 1, query_type="ghost", input_tokens=5, output_tokens=5)
    assert sim.submit(odd, "d0").outcome == "rejected" and sim.unroutable == 2
    ok = sim.submit(rec, "d0")
    assert ok.outcome == "served" and ok.deployment == "d0" and ok.ttft_s is not None


def test_batches_and_windows(perf: PerfTable) -> None:
    sim, out = run(perf, 0.5, duration=400.0, batch_size=100, window_s=60.0)
    n = len(out)
    full = sim.drain()
    assert all(len(b) == 100 for b in full) and sim.pending == n % 100
    rest = sim.drain(flush=True)
    assert sim.pending == 0 and sum(len(b) for b in full + rest) == n
    again = TelemetryBatch.model_validate_json(full[0].model_dump_json())
    assert list(again.records())[0].outcome in ("served", "slo_missed")
    wins = sim.slo.windows()
    assert len(wins) in (7, 8) and all(s % 60 == 0 for s in wins)
    assert sum(w["code"]["total"] for w in wins.values()) == n


def test_slo_windows_bounded() -> None:
    w = SloWindows(window_s=10, max_windows=3)
    for t in range(0, 100, 5):
        w.add(t, "q", "served" if t % 10 else "slo_missed")
    w.add(99, "q", "rejected")
    assert list(w.windows()) == [70, 80, 90]
    s = w.windows()[90]["q"]
    assert s == {"served": 1, "slo_missed": 1, "rejected": 1, "total": 3,
                 "attainment": pytest.approx(1 / 3), "served_attainment": 0.5}
    assert w.overall()["q"]["total"] == 21
