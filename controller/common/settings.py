"""One settings model for every llmfleet process: environment (LLMFLEET_*) or a config file.

Built by entry points and passed down (never at import time), validated at start so a bad
value fails fast with the field named.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from solvers.methods import EXACT


class Topics(BaseSettings):
    """Kafka topic names (env: LLMFLEET_TOPICS__TELEMETRY, ...)."""

    model_config = SettingsConfigDict(frozen=True)

    telemetry: str = "llmfleet.telemetry"
    demand: str = "llmfleet.demand"
    allocations: str = "llmfleet.allocations"
    shadow_allocations: str = "llmfleet.allocations.shadow"
    audit_requests: str = "llmfleet.audit-requests"
    audits: str = "llmfleet.audits"
    dlq: str = "llmfleet.dlq"
    trace: str = "llmfleet.trace"
    windows: str = "llmfleet.windows"  # internal: per-partition window partials -> planner
    requests: str = "llmfleet.requests"  # incoming requests before routing (replay -> router)
    fleet_status: str = "llmfleet.fleet-status"  # fleets' readiness reports (schemas.FleetStatus)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMFLEET_", env_nested_delimiter="__",
                                      env_file=".env", env_ignore_empty=True, extra="ignore",
                                      frozen=True)

    bootstrap_servers: str | None = Field(
        default=None, description="Kafka bootstrap servers; None starts the embedded broker")
    fleet_id: str = Field(default="default", pattern=r"^[A-Za-z0-9_.:-]+$")
    topics: Topics = Topics()
    telemetry_partitions: int = Field(default=4, ge=1, le=1024)
    windows_partitions: int = Field(
        default=1, ge=1, le=256,
        description="partitions of the windows and audits topics: fleets are spread over them by key, "
                    "and Kafka's assignment spreads the partitions (and so the fleets' planning) over "
                    "the workers of the group; 1 plans every fleet on one leader")
    consumer_group: str = "llmfleet-controller"
    catalog_path: Path | None = Field(default=None, description="catalog folder/file; None = bundled")
    budget_per_hour: float | None = Field(default=None, gt=0, description="overrides the catalog")
    # windows
    window_s: float = Field(default=60.0, gt=0, description="tumbling window length, event time")
    grace_s: float = Field(default=10.0, ge=0, description="late events accepted this long")
    idle_s: float = Field(default=1.0, gt=0, description="wall seconds before an idle partition is ticked")
    burst_s: float = Field(
        default=10.0, ge=0, description="windows also count requests per burst_s of event time, and the "
                                        "planner sizes each query type for its busiest burst_s (its peak "
                                        "rate) rather than the window mean; 0 = plan on the mean")
    classify_rules: list[dict[str, int | str]] = Field(
        default_factory=lambda: [{"query_type": "code", "min_input": 1000, "max_output": 48}],
        description="token-length rules for requests without a query type (first match wins)")
    default_query_type: str = "conversation"
    # event-time sanity and decoding limits (controller/worker/ingest/event_time.py, docs/producer.md)
    event_time_bound_s: float = Field(
        default=3600.0, gt=0, description="a record more than this ahead of the worker's clock, or behind its "
                                          "partition's watermark, is dead-lettered; the watermark moves at most "
                                          "this far per message (unless catching up to the clock)")
    min_event_ts: float = Field(default=1_577_836_800.0, ge=0,
                                description="records before this time (default 2020-01-01) are dead-lettered")
    max_open_windows: int = Field(default=512, ge=2, description="open windows per partition; a record that "
                                                                 "would open one more is dead-lettered")
    max_decode_bytes: int = Field(default=16_777_216, ge=1024, description="largest telemetry message decoded "
                                  "(a 100,000-record batch is about 6-8 MB); larger ones are dead-lettered")
    dedup_ids: int = Field(default=100_000, ge=0, description="request_ids remembered per telemetry partition "
                           "(in worker memory); a record repeating one of them is not counted again (0: off)")
    tick_key: str | None = Field(default=None, description="HMAC key of idle-partition ticks; every worker of "
                                 "a group needs the same one (unset: a key derived from a random per-process "
                                 "secret, so only this worker's own ticks count)")
    # planning
    agh_deadline_s: float = Field(default=0.5, gt=0)
    agh_work: float | None = Field(
        default=None, gt=0, description="AGH's work budget (solvers/adaptive.py units): the same plan whatever the "
                                        "machine's load while the deadline is not hit; None: the solver's default")
    latency_headroom: float = Field(default=1.0, ge=1.0, description="plan as if every latency were this much "
                                                                    "longer (robust planning, solvers/robust.py)")
    error_margin: float = Field(default=1.0, ge=1.0, description="plan as if every model's error were this much "
                                                                 "higher")
    demand_hold_windows: int = Field(
        default=1, ge=1, le=1440, description="plan for each query type's peak rate over this many "
                                              "windows: scale up at once, down slowly (1 = last window)")
    switch_cost_per_gpu: float | None = Field(
        default=None, ge=0, description="$ per GPU started/stopped for AGH's switch cost; None: priced "
                                        "from the catalog (cold start GPU-seconds at the GPU's price + risk)")
    switch_risk_per_gpu: float = Field(default=0.5, ge=0, description="$ per GPU started for the SLO risk "
                                                                      "of a composition change")
    cold_start_engine_s: float = Field(default=64.0, ge=0, description="planner's estimate of a replica's "
                                                                       "engine start-up, s (solvers/cold_start.py)")
    cold_start_load_gbps: float = Field(default=0.9, gt=0, description="planner's estimate of weight loading, "
                                                                       "GB/s per GPU")
    replan: Literal["two_timescales", "every_window"] = Field(
        default="two_timescales", description="two_timescales: replica counts follow each window within the "
                                              "deployments in force, the composition changes only when it pays "
                                              "(controller/worker/planning/composition.py); every_window: GH re-plans freely each "
                                              "window, AGH on drift (the behaviour before)")
    composition_dwell_s: float = Field(
        default=120.0, ge=0, description="event time a composition (which deployments exist) is held at least "
                                         "before a cheaper one may replace it")
    switch_payback_s: float = Field(
        default=600.0, gt=0, description="a new composition must save its priced switch cost within this time")
    scale_down_delay_s: float = Field(
        default=300.0, ge=0, description="replicas are removed only after demand stayed lower this long "
                                         "(scale up at once)")
    fast_path: bool = Field(default=True, description="re-plan a query type inside an open window when its "
                                                      "rate outruns the plan in force (trigger burst)")
    forecast: bool = Field(default=False, description="fast path: plan a climbing rate where its linear "
                                                      "trend will be once new replicas are up (off: it did not "
                                                      "pay in bench_closed_loop, docs/benchmarks.md)")
    burst_tolerance: float = Field(default=0.1, ge=0, description="fast path: re-plan when a burst interval's "
                                                                  "rate exceeds the planned rate by this share")
    startup_plan: Literal["observed", "catalog"] = Field(
        default="observed", description="first plan from the first warm_start_s of observed traffic, or at "
                                        "once from the catalog's default rates")
    warm_start_s: float = Field(default=10.0, gt=0, description="event seconds of traffic the first plan is "
                                                               "sized on (startup_plan observed)")
    min_dwell_s: float = Field(default=120.0, ge=0, description="event time between drift re-plans")
    drift_method: Literal["page_hinkley", "cusum"] = "page_hinkley"
    drift_threshold: float = Field(default=0.25, gt=0, description="relative demand change")
    drift_ph_delta: float = Field(default=0.05, ge=0)
    drift_ph_lambda: float = Field(default=0.5, gt=0)
    observe_only: bool = Field(default=False, description="publish to the shadow topic only")
    gate_route: Literal["auto", "on", "off"] = Field(
        default="off", description="gate-and-route parameters in allocation events: auto (shared pools), on "
                                   "(every deployment) or off; off by default because the closed loop keeps fewer "
                                   "requests within SLO with them (docs/benchmarks.md, closed loop)")
    # performance model (issue 16): spec section 2 by default
    performance_model: Literal["spec", "allreduce_table"] = Field(
        default="spec", description="spec: shared/spec/model.md exactly; allreduce_table: the all-reduce "
                                    "term from each GPU's allreduce_by_tp (measured per TP degree)")
    self_calibration: bool = Field(
        default=False, description="plan with a per-(GPU, precision) speed correction learned from the "
                                   "telemetry's latencies (controller/worker/planning/self_calibration.py)")
    self_calibration_gain: float = Field(default=0.5, gt=0, le=1, description="share of the observed "
                                         "residual folded into the correction per window (smoothing)")
    self_calibration_max_factor: float = Field(default=2.0, ge=1, le=10, description="corrections stay "
                                               "within [1/max, max]")
    self_calibration_min_requests: int = Field(default=20, ge=1, description="requests a deployment needs "
                                               "in a window to count")
    # audit
    audit_enabled: bool = True
    audit_method: Literal[EXACT] = "milp"  # type: ignore[valid-type]  # the registry's exact backends
    audit_time_limit_s: float = Field(default=20.0, gt=0)
    audit_adopt_threshold: float = Field(default=0.02, ge=0, description="adopt when cheaper by this")
    audit_adopt: bool = True
    # delivery
    enable_idempotence: bool = Field(
        default=False, description="faust exactly-once: transactional, idempotent producers "
                                   "(real Kafka; the embedded broker has no InitProducerId)")
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    fetch_wait_ms: int = Field(default=20, ge=1, le=5000, description="consumer long-poll wait")
    # broker outages (controller/common/broker_watch.py)
    broker_probe_s: float = Field(default=1.0, gt=0, description="seconds between broker probes while it answers")
    broker_backoff_max_s: float = Field(default=15.0, gt=0, description="longest wait between probes while "
                                                                        "no broker answers (backoff from 0.5 s)")
    broker_recovery: Literal["restart", "off"] = Field(
        default="restart", description="when the broker comes back as another, empty cluster: re-create the "
                                       "topics, republish the plan in force at the next epoch, restart the worker")
    broker_recovery_wait_s: float = Field(default=15.0, ge=0, description="a worker that does not hold the plan "
                                          "in force waits this long for the leader's republished plan")
    # `llmfleet ingest prometheus` (controller/prom_ingest, docs/deploy.md)
    prom_ingest_poll_s: float = Field(default=5.0, gt=0, description="seconds between polls of Prometheus or "
                                      "the engines' /metrics; each poll's finished requests become one interval")
    prom_ingest_backoff_max_s: float = Field(default=60.0, gt=0, description="longest wait between retries "
                                             "while the source fails (doubling from the poll interval)")
    prom_ingest_timeout_s: float = Field(default=5.0, gt=0, description="HTTP timeout of one query or scrape")
    # web / metrics
    web_port: int = Field(default=6066, ge=0, le=65535)
    web_bind: str = Field(default="127.0.0.1", min_length=1, description="address the /metrics server listens "
                          "on; 0.0.0.0 so a Prometheus outside the pod or container can scrape it")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.agh_deadline_s >= self.window_s:
            raise ValueError(f"agh_deadline_s ({self.agh_deadline_s}) must be shorter than "
                             f"window_s ({self.window_s})")
        if self.grace_s >= self.window_s * 10:
            raise ValueError("grace_s must be less than ten windows")
        if self.burst_s > self.window_s:
            raise ValueError(f"burst_s ({self.burst_s}) must not be longer than window_s ({self.window_s})")
        return self
