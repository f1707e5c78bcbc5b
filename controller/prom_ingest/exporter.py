"""The ingest's own counters as Prometheus metrics (`--metrics-port`): alert on source errors and gaps."""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from .loop import Counters

_PLAIN = {  # Counters field -> (metric name without _total, help)
    "polls": ("llmfleet_prom_ingest_polls", "successful polls of the source"),
    "source_errors": ("llmfleet_prom_ingest_source_errors", "polls the source did not answer (retried with backoff)"),
    "target_failures": ("llmfleet_prom_ingest_target_failures", "engine scrapes that failed (direct scraping)"),
    "gaps": ("llmfleet_prom_ingest_gaps", "series seen again after missing one or more polls"),
    "gap_s": ("llmfleet_prom_ingest_gap_seconds", "seconds spanned by those gaps"),
    "resets": ("llmfleet_prom_ingest_counter_resets", "series whose counters dropped (engine restarts)"),
    "records": ("llmfleet_prom_ingest_records", "synthesised request records produced"),
    "batches": ("llmfleet_prom_ingest_batches", "telemetry batches produced"),
}


class CountersCollector(Collector):
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        for name, (metric, help_text) in _PLAIN.items():
            yield CounterMetricFamily(metric, help_text, value=float(getattr(self.counters, name)))
        skipped = CounterMetricFamily("llmfleet_prom_ingest_skipped_series",
                                      "series-polls skipped, by reason (docs/deploy.md)", labels=["reason"])
        for reason, n in sorted(self.counters.skipped.items()):
            skipped.add_metric([reason], float(n))
        yield skipped


def registry_for(counters: Counters) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CountersCollector(counters))
    return registry
