"""The controller as real worker processes on the embedded broker."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.worker.planning.planner import Planner
from schemas import AllocationEvent, DemandWindow, load_catalog
from solvers import check_plan, compile_instance
from tests.e2e.harness import Cluster, batch, collect, produce, wait_committed_past

T0 = 1_700_000_000.0
pytestmark = pytest.mark.broker


@pytest.fixture
async def cluster(broker: str, tmp_path: Path):
    """Topics created up front, as a deployment does (docs/deploy.md): a test consumer that
    subscribes first would otherwise have the broker auto-create the demand topic at its
    default width, a race with the worker that these tests are not about (see
    tests/e2e/test_leader_sync.py for a wider demand topic)."""
    from controller.common.topic_admin import ensure_topics

    c = Cluster(broker, tmp_path)
    await ensure_topics(c.settings, broker)
    yield c
    c.close()


def _valid(cluster: Cluster, windows: list[dict], events: list[dict]) -> None:
    planner = Planner(load_catalog(), cluster.settings)
    by_end = {w["window_end"]: DemandWindow.model_validate(w) for w in windows}
    for raw in events:
        ev = AllocationEvent.model_validate(raw)
        if ev.trigger == "startup" and ev.window_end is None:  # planned on the catalog defaults
            demand = {q: {"arrival_rate": r} for q, r in ev.demand.items()}
            inst = planner.catalog.to_instance(demand).to_spec()
        else:
            inst = planner.instance_for(by_end[ev.window_end]).to_spec()
        rep = check_plan(compile_instance(inst), ev.plan.to_spec(), inst)
        assert rep.feasible == (not ev.degraded), [v.message for v in rep.violations]
        assert rep.cost_per_hour == pytest.approx(ev.cost_per_hour, rel=1e-6)


async def test_windows_plans_drift_and_dlq(cluster: Cluster) -> None:
    t = cluster.topics
    values = batch(T0, 40, {"code": 8, "conversation": 12})           # windows 0-3: 20 req/s
    values += [b"{not json", b'{"kind": "request", "ts": 1, "input_tokens": -4, "output_tokens": 1}',
               b'{"kind": "request", "ts": 1700000041, "query_type": "nosuch", "input_tokens": 5, "output_tokens": 1}']
    values += batch(T0, 30, {"code": 30, "conversation": 50}, start=40)  # step to 80 req/s
    await produce(cluster.bootstrap, t.telemetry, values)
    cluster.start_worker()
    got = await collect(cluster.bootstrap, [t.demand, t.allocations, t.dlq, t.audits],
                        lambda g: len(g[t.demand]) >= 6 and len(g[t.dlq]) >= 3 and len(g[t.audits]) >= 1,
                        timeout=90)
    windows, events = got[t.demand], got[t.allocations]
    assert len(windows) >= 6, cluster.logs()
    assert [w["records"] for w in windows[:6]] == [200, 200, 200, 200, 800, 800]
    epochs = [e["epoch"] for e in events]
    assert epochs == list(range(1, len(epochs) + 1)), "epochs start at 1 and increase by one"
    assert events[0]["trigger"] == "startup"
    drift = [e for e in events if e["trigger"] == "drift"]
    assert all(e["method"] == "agh" for e in drift)
    assert any(e["window_end"] == T0 + 50 for e in drift), "the step at t=40 s is detected at once"
    _valid(cluster, windows, events)
    reasons = sorted(d["reason"] for d in got[t.dlq])
    assert any(r.startswith("not JSON") for r in reasons)
    assert any("input_tokens" in r for r in reasons)
    assert any("unknown query type 'nosuch'" in r for r in reasons)
    assert got[t.audits][0]["epoch"] >= 1 and got[t.audits][0]["status"] in ("optimal", "feasible")


async def test_two_workers_one_epoch_sequence(cluster: Cluster) -> None:
    t = cluster.topics
    await produce(cluster.bootstrap, t.telemetry, batch(T0, 60, {"code": 5, "conversation": 5}))
    cluster.start_worker()
    cluster.start_worker()
    await produce(cluster.bootstrap, t.telemetry,
                  batch(T0, 40, {"code": 25, "conversation": 40}, start=60))
    got = await collect(cluster.bootstrap, [t.demand, t.allocations],
                        lambda g: len(g[t.demand]) >= 9, timeout=90)
    assert len(got[t.demand]) >= 9, cluster.logs()
    counts = [w["records"] for w in got[t.demand][:9]]
    assert counts == [100] * 6 + [650] * 3, "every record counted exactly once across workers"
    epochs = [e["epoch"] for e in got[t.allocations]]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 2


async def test_restarted_worker_recovers_open_windows(cluster: Cluster) -> None:
    t = cluster.topics
    await produce(cluster.bootstrap, t.telemetry, batch(T0, 15, {"code": 10, "conversation": 10}))
    w = cluster.start_worker()
    got = await collect(cluster.bootstrap, [t.demand], lambda g: len(g[t.demand]) >= 1, timeout=60)
    assert [d["records"] for d in got[t.demand]] == [200], cluster.logs()
    cluster.kill(w, hard=True)  # window 1 (10-20 s) is half full in the killed worker's table
    await produce(cluster.bootstrap, t.telemetry, batch(T0, 20, {"code": 10, "conversation": 10}, start=15))
    cluster.start_worker()
    got = await collect(cluster.bootstrap, [t.demand, t.allocations], lambda g: len(g[t.demand]) >= 3, timeout=60)
    windows = [(d["window_start"] - T0, d["records"]) for d in got[t.demand]]
    # the restarted leader continues after the window already published (no second window 0),
    # and the killed worker's half-full window 1 is restored and completed: every record once
    assert windows[:3] == [(0, 200), (10, 200), (20, 200)], (windows, cluster.logs())
    epochs = [e["epoch"] for e in got[t.allocations]]
    assert epochs == sorted(set(epochs)), "no epoch published twice across the restart"
    # the leader processed the windows topic without a gap: had messages been dropped after
    # its table recovery, their offsets would never be acked and the commit would stay behind
    behind = await wait_committed_past(cluster.bootstrap, cluster.env["LLMFLEET_CONSUMER_GROUP"], t.windows)
    assert not behind, f"windows topic (end, committed) by partition: {behind}"


async def test_observe_only_publishes_to_the_shadow_topic(broker: str, tmp_path: Path) -> None:
    c = Cluster(broker, tmp_path, LLMFLEET_OBSERVE_ONLY="true")
    t = c.topics
    try:
        await produce(broker, t.telemetry, batch(T0, 25, {"code": 5, "conversation": 5}))
        c.start_worker()
        got = await collect(broker, [t.shadow_allocations, t.demand],
                            lambda g: len(g[t.demand]) >= 2 and len(g[t.shadow_allocations]) >= 1, timeout=60)
        assert got[t.shadow_allocations], c.logs()
        live = await collect(broker, [t.allocations], lambda g: False, timeout=2)
        assert live[t.allocations] == [], "observe-only never touches the live allocation topic"
    finally:
        c.close()
