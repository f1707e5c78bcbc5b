"""`llmfleet ingest prometheus`: the click command (its own process; see docs/deploy.md)."""
from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from schemas import TelemetryBatch

    from controller.common.settings import Settings
    from .loop import Counters, Ingest


@click.group("ingest")
def ingest() -> None:
    """Feed llmfleet from what a fleet already exports (telemetry batches on the telemetry topic)."""


@ingest.command("prometheus")
@click.option("--prometheus-url", default=None, metavar="URL",
              help="Poll this Prometheus server's HTTP API (instant queries of the raw vLLM histograms).")
@click.option("--scrape", "scrape", multiple=True, metavar="URL",
              help="Scrape this engine /metrics endpoint directly (repeatable); instead of --prometheus-url.")
@click.option("--mapping", "mapping_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Label mapping file (YAML/JSON, schemas/json/prom_ingest_mapping.schema.json) "
                                 "[default: deployment = model_name, query type by token length].")
@click.option("--match", "matchers", default="", metavar="MATCHERS",
              help='Extra PromQL label matchers for --prometheus-url, e.g. \'job="vllm"\'.')
@click.option("--poll-s", type=float, default=None, help="Seconds between polls [env LLMFLEET_PROM_INGEST_POLL_S: 5].")
@click.option("--polls", type=click.IntRange(min=1), default=None,
              help="Stop after this many successful polls (the first only records a baseline).")
@click.option("--bootstrap-servers", default=None, help="Kafka to publish to [env LLMFLEET_BOOTSTRAP_SERVERS].")
@click.option("--topic", default=None, help="Telemetry topic [default: settings topics.telemetry].")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve the ingest's own counters (llmfleet_prom_ingest_*) on this port [default: off].")
@click.option("--stdout", "to_stdout", is_flag=True,
              help="Print the telemetry batches as JSON lines instead of publishing them (no Kafka needed).")
def prometheus(prometheus_url: str | None, scrape: tuple[str, ...], mapping_path: Path | None, matchers: str,
               poll_s: float | None, polls: int | None, bootstrap_servers: str | None, topic: str | None,
               metrics_port: int | None, to_stdout: bool) -> None:
    """Turn vLLM's Prometheus metrics into llmfleet telemetry.

    Every poll takes, per series (deployment), the increase of vLLM's request histograms since the
    previous poll and publishes one synthesised request record per finished request, marked with
    producer "prometheus:URL" (or "scrape:URLS"). docs/deploy.md says what is exact and what is not.
    """
    from aiokafka.errors import KafkaError

    from schemas import load_catalog

    from controller.common.settings import Settings
    from .loop import Ingest
    from .mapping import MappingError, load_mapping
    from .source import PrometheusSource, ScrapeSource

    if bool(prometheus_url) == bool(scrape):
        raise click.UsageError("give either --prometheus-url URL or one or more --scrape URL")
    for url in (prometheus_url, *scrape):
        if url and not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{url!r} is not an http(s):// URL",
                                     param_hint="--prometheus-url" if url == prometheus_url else "--scrape")
    settings = Settings()
    known = {q.id for q in load_catalog(settings.catalog_path).query_types}
    try:
        mapping = load_mapping(mapping_path, known)
    except MappingError as exc:
        raise click.BadParameter(str(exc), param_hint="--mapping") from exc
    timeout = settings.prom_ingest_timeout_s
    source = PrometheusSource(prometheus_url, matchers, timeout) if prometheus_url else ScrapeSource(scrape, timeout)
    poll = poll_s if poll_s is not None else settings.prom_ingest_poll_s
    if not poll > 0:
        raise click.BadParameter("must be > 0", param_hint="--poll-s")
    ing = Ingest(source, mapping, known, poll_s=poll, backoff_max_s=settings.prom_ingest_backoff_max_s)
    bootstrap = bootstrap_servers or settings.bootstrap_servers
    if not to_stdout and not bootstrap:
        raise click.UsageError("ingest needs a running Kafka: pass --bootstrap-servers HOST:PORT or set "
                               "LLMFLEET_BOOTSTRAP_SERVERS (or --stdout to print the batches)")
    telemetry = topic or settings.topics.telemetry
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from .exporter import registry_for

        start_http_server(metrics_port, registry=registry_for(ing.counters))
    try:
        counters = asyncio.run(_run(ing, settings, bootstrap, telemetry, to_stdout, polls))
    except KeyboardInterrupt:
        sys.exit(130)
    except KafkaError as exc:
        click.echo(f"ingest failed: Kafka at {bootstrap}: {exc!r}; counters: {ing.counters.as_dict()}", err=True)
        sys.exit(1)
    click.echo(f"ingest stopped: {json.dumps(counters.as_dict())}", err=True)


async def _run(ing: Ingest, settings: Settings, bootstrap: str | None, topic: str, to_stdout: bool,
               polls: int | None) -> Counters:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if to_stdout:
        return await ing.run(_print, stop, max_polls=polls)
    from aiokafka import AIOKafkaProducer

    from controller.common.topic_admin import ensure_topics

    await ensure_topics(settings.model_copy(update={"topics": settings.topics.model_copy(
        update={"telemetry": topic})}), bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, max_request_size=settings.max_decode_bytes)
    await producer.start()
    key = ing.producer.encode()

    async def send(batch: TelemetryBatch) -> None:
        # one key: the producer's records stay in event-time order on one partition (docs/producer.md)
        await producer.send_and_wait(topic, batch.model_dump_json(exclude_none=True).encode(), key=key)

    try:
        return await ing.run(send, stop, max_polls=polls)
    finally:
        await producer.stop()


async def _print(batch: TelemetryBatch) -> None:
    sys.stdout.write(batch.model_dump_json(exclude_none=True) + "\n")
    sys.stdout.flush()
