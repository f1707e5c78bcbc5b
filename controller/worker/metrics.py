"""Prometheus metrics of one worker, served at /metrics on the faust web server."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.worker.desired_state_metrics import ConfigKey, DesiredStateCollector


class Metrics:
    def __init__(self, cold_start: Callable[[ConfigKey], float] | None = None) -> None:
        r = self.registry = CollectorRegistry()
        self.desired = DesiredStateCollector(cold_start)  # per-fleet plan gauges (controller/worker/desired_state_metrics.py)
        r.register(self.desired)
        self.records = Counter("llmfleet_records_ingested", "telemetry records counted", registry=r)
        self.late = Counter("llmfleet_records_late", "records arriving after their window closed", registry=r)
        self.dlq = Counter("llmfleet_dead_letters", "messages sent to the dead-letter topic", registry=r)
        self.classified = Counter("llmfleet_records_classified", "untyped records classified, by the query "
                                  "type and rule that chose it (rule -1: the default)", ["query_type", "rule"],
                                  registry=r)
        self.duplicates = Counter("llmfleet_records_duplicate", "records dropped as repeats of a request_id "
                                  "already counted", registry=r)
        self.duplicate_partials = Counter("llmfleet_duplicate_partials", "window partials replayed after "
                                          "a crash, dropped (already counted)", registry=r)
        self.late_partials = Counter("llmfleet_late_partials", "window partials arriving after their window "
                                     "closed without them (records counted as late)", registry=r)
        self.windows = Counter("llmfleet_windows_closed", "demand windows closed", registry=r)
        self.drift = Counter("llmfleet_drift_events", "windows where drift was detected", registry=r)
        self.events = Counter("llmfleet_allocation_events", "allocation events published",
                              ["trigger", "method"], registry=r)
        self.solve_seconds = Histogram("llmfleet_solve_seconds", "solver wall time", ["method"],
                                       buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120), registry=r)
        self.cost = Gauge("llmfleet_plan_cost_per_hour", "objective of the plan in force ($/h)", registry=r)
        self.gpus = Gauge("llmfleet_plan_gpus", "GPUs in the plan in force", registry=r)
        self.epoch = Gauge("llmfleet_epoch", "epoch of the plan in force", registry=r)
        self.audit_gap = Gauge("llmfleet_audit_gap", "last audited optimality gap of the plan", registry=r)
        self.degraded = Gauge("llmfleet_plan_degraded", "1 when the plan in force is degraded", registry=r)
        self.broker_up = Gauge("llmfleet_broker_up", "1 while a bootstrap broker answers probes", registry=r)
        self.broker_up.set(1.0)
        self.broker_outages = Counter("llmfleet_broker_outages", "broker outages seen (no broker answered)",
                                      registry=r)
        self.broker_outage_seconds = Counter("llmfleet_broker_outage_seconds", "seconds of finished broker "
                                             "outages", registry=r)
        self.broker_resets = Counter("llmfleet_broker_resets", "times the broker came back as another (empty) "
                                     "cluster", registry=r)
        self.broker_down_seconds = Gauge("llmfleet_broker_down_seconds", "length of the outage under way "
                                         "(0 while the broker answers)", registry=r)
        self._broker_seen = (0, 0.0, 0)

    def observe_event(self, ev: Any, solve_seconds: dict[str, float]) -> None:
        self.events.labels(trigger=ev.trigger, method=ev.method).inc()
        self.desired.observe(ev)
        for method, sec in solve_seconds.items():
            self.solve_seconds.labels(method=method).observe(sec)
        self.cost.set(ev.cost_per_hour)
        self.gpus.set(sum(d.replicas * d.tp * d.pp for d in ev.plan.deployments))
        self.epoch.set(ev.epoch)
        self.degraded.set(1.0 if ev.degraded else 0.0)

    def observe_broker(self, health: Any) -> None:
        """Mirror a BrokerHealth (controller/common/broker_watch.py); counters grow by what is new."""
        outages, seconds, resets = self._broker_seen
        self.broker_up.set(1.0 if health.up else 0.0)
        self.broker_outages.inc(max(0, health.outages - outages))
        self.broker_outage_seconds.inc(max(0.0, health.outage_seconds - seconds))
        self.broker_resets.inc(max(0, health.resets - resets))
        self._broker_seen = (health.outages, health.outage_seconds, health.resets)
        self.broker_down_seconds.set_function(health.current_outage_s)

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def faust_view(self) -> Any:
        """A faust view handler for /metrics (`app.page("/metrics")(metrics.faust_view())`).
        Faust calls a handler as `get(view, request)`, so it must be a plain function."""
        async def metrics(view: Any, request: Any) -> Any:
            return view.bytes(self.text(), content_type="text/plain; version=0.0.4")
        return metrics
