"""Prometheus metrics of a worker render with the observed values."""
from __future__ import annotations

from controller.worker.metrics import Metrics
from schemas import AllocationEvent, Plan


def test_metrics_render_observed_values() -> None:
    m = Metrics()
    m.records.inc(1234)
    m.dlq.inc(3)
    ev = AllocationEvent(fleet_id="f", epoch=7, trigger="drift", method="agh", status="feasible",
                         plan=Plan.model_validate({"deployments": [{"id": "d", "model": "m", "gpu": "g",
                                                                     "precision": "fp8", "tp": 2, "pp": 1,
                                                                     "replicas": 3}], "routes": []}),
                         cost_per_hour=12.5, gpu_cost_per_hour=12.0, demand={"code": 1.0}, created_at=0.0)
    m.observe_event(ev, {"gh": 0.004, "agh": 0.3})
    text = m.text().decode()
    assert "llmfleet_records_ingested_total 1234.0" in text
    assert "llmfleet_dead_letters_total 3.0" in text
    assert "llmfleet_epoch 7.0" in text and "llmfleet_plan_gpus 6.0" in text
    assert 'llmfleet_allocation_events_total{method="agh",trigger="drift"} 1.0' in text
    assert 'llmfleet_solve_seconds_count{method="gh"} 1.0' in text
