"""Fleet simulator: queueing under load, saturation, cold start, determinism, telemetry;
gate-and-route pools against the standalone model, published parameters, placement, order."""
from __future__ import annotations

import numpy as np
import pytest

from controller.sim.fleet_sim import FleetSimulator, PerfTable
from solvers.gate_route.pool import GateRouteJob, GateRoutePool
from controller.sim.slo_window import SloWindows
from controller.sim.workload import poisson_requests
from schemas import IterationBatch, RequestRecord, TelemetryBatch
from solvers.gate_route.fluid_lp import solve_bundled_lp
from solvers.gate_route.plan import gate_route_plan
from solvers.gate_route.instance import GateRouteInstance
from solvers.gate_route.policies import GateRoutePolicy, fg_sp, gate_and_route
from solvers.gate_route.sim import SimConfig, simulate
from solvers.gate_route.iteration_model import IterationModel

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


# ---- gate-and-route pools ---------------------------------------------------------------------
# Instance "grid1" of docs/gate_route.md (drawn in the paper's ranges): the occupancy gate keeps
# ~98 % of R*, FCFS admission on the same static plan (the paper's FG-SP) ~65 %.
GRID1 = GateRouteInstance(prompt_tokens=(1950, 2712), decode_tokens=(2372, 831),
                          arrival_rate=(0.325, 0.468), patience_rate=(0.1, 0.1), slots=16,
                          chunk_tokens=256, alpha=0.015, beta=4.39e-4, gamma=41.88)
N_GR, WARM, HORIZON = 20, 600.0, 600.0


def _pool_run(inst: GateRouteInstance, policy: GateRoutePolicy, seed: int) -> dict:
    """The fleet's G&R pool on the paper's workload: Poisson classes, exponential P and D,
    patience 1/theta (deterministic here, exponential in the standalone model)."""
    rng = np.random.default_rng(seed)
    plant = IterationModel(inst.alpha, inst.beta, inst.gamma, inst.slots)
    pool = GateRoutePool("k", plant, lambda *a: None, patience_s=1.0 / inst.theta[0])
    pool.configure_policy(policy, inst.names, N_GR, slots=inst.slots, chunk_tokens=inst.chunk_tokens)
    pool.resize(N_GR, 0.0, 0.0)
    lam = inst.lam * N_GR
    t, measuring = 0.0, False
    while (t := t + rng.exponential(1.0 / lam.sum())) < WARM + HORIZON:
        if not measuring and t >= WARM:
            pool.advance(WARM)
            pool.reset_stats(WARM)
            measuring = True
        i = int(rng.random() * lam.sum() >= lam[0])
        job = GateRouteJob(pool.class_index(inst.names[i]), t, max(1, round(rng.exponential(inst.P[i]))),
                           max(1, round(rng.exponential(inst.D[i]))), None, None)
        pool.submit(job, t)
    st = pool.stats(WARM + HORIZON)
    done = np.array(st["decode_done"][1:], dtype=float)    # class 0 of the pool is "other"
    return {"reward": float((inst.w * done).sum()) / (N_GR * HORIZON), "done": done,
            "x": np.array(st["mean_x"][1:]), "y": np.add(st["mean_y_m"], st["mean_y_s"])[1:],
            "q_d": float(sum(st["mean_q_d"]))}


@pytest.fixture(scope="module")
def grid1_runs() -> dict:
    r_star = solve_bundled_lp(GRID1, N_GR).reward
    out = {}
    for name, make in (("gate_and_route", gate_and_route), ("fcfs_admission", fg_sp)):
        pol = make(GRID1, N_GR)
        sa = simulate(GRID1, pol, SimConfig(n=N_GR, horizon_s=HORIZON, warmup_s=WARM, seed=3))
        out[name] = (_pool_run(GRID1, pol, seed=3), sa)
    return {"r_star": r_star, **out}


@pytest.mark.parametrize("policy", ["gate_and_route", "fcfs_admission"])
def test_gate_route_pool_matches_the_standalone_model(grid1_runs: dict, policy: str) -> None:
    """Same policy, same instance: the fleet's pool and solvers.gate_route.sim agree on reward,
    per-class throughput and occupancies (Little: the same latencies)."""
    pool, sa = grid1_runs[policy]
    r_star = grid1_runs["r_star"]
    assert abs(pool["reward"] - sa.reward_bundled_per_s) / r_star < 0.04
    np.testing.assert_allclose(pool["done"] / (N_GR * HORIZON), sa.decode_done / (N_GR * HORIZON),
                               rtol=0.1, atol=0.002)
    np.testing.assert_allclose(pool["x"], sa.mean_x, atol=0.03)
    np.testing.assert_allclose(pool["y"], sa.mean_y_m + sa.mean_y_s, rtol=0.08, atol=0.2)


def test_gate_route_pool_beats_fcfs_admission_where_the_paper_says(grid1_runs: dict) -> None:
    """Paper Fig. 7 (FG-SP): a static plan without the gate admits the class the LP drops,
    builds a decode backlog that abandons after prefill and loses a third of the value."""
    gr, fcfs, r_star = grid1_runs["gate_and_route"][0], grid1_runs["fcfs_admission"][0], grid1_runs["r_star"]
    assert gr["reward"] / r_star > 0.95
    assert fcfs["reward"] / r_star < 0.8
    assert gr["x"][0] < 0.01 < fcfs["x"][0]          # x*_0 = 0: only FCFS prefills class 0
    assert fcfs["q_d"] > 10 * max(gr["q_d"], 0.01)


def _gr_params(replicas: int, router: str = "solo_first") -> dict:
    classes = {"code": {"arrival_rate": 2.0, "prompt_tokens": 2048, "decode_tokens": 28, "patience_s": 9.0},
               "conv": {"arrival_rate": 3.0, "prompt_tokens": 1155, "decode_tokens": 211, "patience_s": 45.0}}
    params = gate_route_plan(classes, PLANT, replicas, chunk_tokens=1024)
    params["router"] = router
    return params


PLANT = IterationModel(alpha=0.02, beta=3e-5, gamma=45.0, slots=32)


def gr_plan(replicas: int) -> dict:
    return {"deployments": [{"id": "d0", **CFG, "replicas": replicas}],
            "routes": [{"query_type": q, "deployment": "d0", "fraction": 1.0} for q in ("code", "conv")]}


def _gr_sim(perf: PerfTable, seed: int = 0, router: str = "solo_first") -> FleetSimulator:
    sim = FleetSimulator(perf, seed=seed, iteration_truth={"d0": PLANT}, batch_size=100)
    sim.apply_plan(gr_plan(3), at=T0, warm=True, gate_route={"d0": _gr_params(3, router)})
    return sim


def _traffic(seed: int = 7, duration: float = 300.0) -> list[RequestRecord]:
    return poisson_requests({"code": 2.0, "conv": 3.0}, {"code": (2048, 28), "conv": (1155, 211)},
                            duration, start_ts=T0, seed=seed)


def test_fleet_simulator_serves_published_gate_route_params(perf: PerfTable) -> None:
    sim = _gr_sim(perf)
    pool = sim.gate_route_pool("d0")
    assert pool is not None and pool.size == 3 and sim.replicas("d0", T0) == (3, 3)
    assert sum(r.mixed for r in pool.replicas) == _gr_params(3)["mixed_replicas"]
    reqs = _traffic()
    first = [sim.submit(r, "d0", r.query_type) for r in reqs]
    assert all(r.outcome is None for r in first), "G&R outcomes are known only at completion"
    assert sim.in_flight > 0
    sim.finish()
    assert sim.in_flight == 0
    out = [r for b in sim.drain(flush=True) for r in b.records()]
    assert [(r.ts, r.query_type) for r in out] == [(r.ts, r.query_type) for r in reqs], "submission order"
    served = [r for r in out if r.outcome in ("served", "slo_missed")]
    assert len(served) == len(reqs) and sim.outcomes["served"] > 0.9 * len(reqs)
    for r in served:   # iteration-level service: prefill P/C mixed iterations, then D decode steps
        p = r.input_tokens / 1024 * PLANT.tau(1024)   # (event times near 1.7e9 s: 1e-5 s rounding)
        assert r.ttft_s >= p - 1e-5
        assert r.latency_s >= r.ttft_s + r.output_tokens / PLANT.gamma - 1e-5
        assert r.latency_s <= r.ttft_s + r.output_tokens * PLANT.tau(1024) + 10.0
    st = pool.stats()
    assert sum(st["completed"]) == len(reqs) and sum(st["abandoned_prefill"]) == 0
    # iteration timings reported as engines would: the plant's tau(C) with jitter, decode-only at 1/gamma
    batches = sim.drain_iterations(flush=True)
    assert batches and all(isinstance(b, IterationBatch) and b.deployment == "d0" for b in batches)
    c = np.concatenate([b.chunk_tokens for b in batches]).astype(float)
    s = np.concatenate([b.iteration_s for b in batches])
    mixed = c > 0
    assert set(np.unique(c[mixed])) >= {1024.0, 2048 - 1024.0, 1155 - 1024.0}
    assert np.median(s[mixed] / (PLANT.alpha + PLANT.beta * c[mixed])) == pytest.approx(1.0, abs=0.02)
    assert np.median(s[~mixed]) == pytest.approx(1 / PLANT.gamma, rel=0.02)


def test_router_placement_steers_decodes(perf: PerfTable) -> None:
    """Randomised (SLI) router: a decode goes to the group the router's hint names, and waits
    in that group's buffer rather than take a slot of the other."""
    reqs = _traffic(duration=120.0)
    for hint in ("solo", "mixed"):
        sim = _gr_sim(perf, router="randomised")
        pool = sim.gate_route_pool("d0")
        assert pool is not None and any(not r.mixed for r in pool.replicas)
        held = {True: 0, False: 0}
        for k, r in enumerate(reqs):
            sim.submit(r, "d0", r.query_type, placement=hint)
            if k % 20 == 0:
                for rep in pool.replicas:
                    held[rep.mixed] += len(rep.decodes)
        sim.finish()
        assert held[hint == "mixed"] > 0 and held[hint != "mixed"] == 0, (hint, held)
        assert sim.outcomes["served"] + sim.outcomes["slo_missed"] == len(reqs)


def test_gate_route_runs_are_reproducible(perf: PerfTable) -> None:
    reqs = _traffic(duration=120.0)

    def run(seed: int) -> tuple[list, list]:
        sim = _gr_sim(perf, seed=seed)
        for r in reqs:
            sim.submit(r, "d0", r.query_type)
        sim.finish()
        return ([r.model_dump() for b in sim.drain(flush=True) for r in b.records()],
                [b.iteration_s for b in sim.drain_iterations(flush=True)])

    a, b, c = run(5), run(5), run(6)
    assert a == b
    assert a[0] == c[0] and a[1] != c[1], "service is deterministic; only the reported jitter is seeded"


def test_pools_keep_their_model_per_deployment(perf: PerfTable) -> None:
    """A deployment without parameters stays FCFS; switching models keeps the replicas warm;
    a held record does not overtake, and one in flight too long stops holding the stream."""
    plan = {"deployments": [{"id": "d0", **CFG, "replicas": 3}, {"id": "d1", **CFG, "replicas": 1}],
            "routes": [{"query_type": "code", "deployment": "d1", "fraction": 1.0},
                       *gr_plan(3)["routes"]]}
    sim = FleetSimulator(perf, iteration_truth={"d0": PLANT}, cold_start_s=60.0, reorder_hold_s=30.0)
    sim.apply_plan(plan, at=T0, warm=True, gate_route={"d0": _gr_params(3)})
    assert sim.gate_route_pool("d0") is not None and sim.gate_route_pool("d1") is None
    long = RequestRecord(ts=T0 + 1, query_type="conv", input_tokens=1155, output_tokens=2000)
    short = RequestRecord(ts=T0 + 2, query_type="code", input_tokens=2048, output_tokens=28)
    sim.submit(long, "d0", "conv")
    assert sim.submit(short, "d1", "code").outcome == "served"   # FCFS: known at once ...
    assert sim.pending == 0                                         # ... but it waits its turn
    sim.advance(T0 + 20)
    assert sim.pending == 0
    sim.advance(T0 + 40)                     # the long one is in flight for > reorder_hold_s
    assert [r.ts for b in sim.drain(flush=True) for r in b.records()] == [short.ts]
    sim.finish()
    assert [r.ts for b in sim.drain(flush=True) for r in b.records()] == [long.ts]
    # the next epoch drops d0's parameters: FCFS on the same, already warm, replicas
    sim.apply_plan(plan, at=T0 + 100, gate_route=None)
    assert sim.gate_route_pool("d0") is None and sim.replicas("d0", T0 + 100) == (3, 3)
    sim.apply_plan(plan, at=T0 + 200, gate_route={"d0": _gr_params(3)})
    assert sim.gate_route_pool("d0") is not None and sim.replicas("d0", T0 + 200) == (3, 3)
    sim.apply_plan(gr_plan(5), at=T0 + 300, gate_route={"d0": _gr_params(5)})
    assert sim.replicas("d0", T0 + 300) == (3, 5) and sim.replicas("d0", T0 + 360) == (5, 5)
