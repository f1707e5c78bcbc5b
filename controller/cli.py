"""The `llmfleet` command line: thin wrappers over the packages (each command a few lines)."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from controller.common.logging_setup import configure_logging


@click.group()
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--log-json/--log-pretty", default=None, help="default: JSON unless stderr is a TTY")
def main(log_level: str, log_json: bool | None) -> None:
    """llmfleet: plan the cheapest SLO-keeping LLM serving fleet from streaming telemetry."""
    configure_logging(json=log_json, level=log_level)


@main.command()
@click.option("--port", type=int, default=9092, show_default=True, help="0 picks a free port")
@click.option("--host", default="127.0.0.1", show_default=True)
def broker(port: int, host: str) -> None:
    """Run the embedded Kafka-protocol broker (tansu, in memory) in the foreground."""
    from controller.devtools.broker import EmbeddedBroker

    b = EmbeddedBroker(port=port or None, host=host).start()
    click.echo(f"embedded broker ready: bootstrap_servers={b.bootstrap_servers} (Ctrl-C stops it)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and b.running:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()


@main.command()
@click.option("--embedded/--no-embedded", default=False,
              help="start an embedded broker when LLMFLEET_BOOTSTRAP_SERVERS is not set")
@click.option("--faust-loglevel", default="warning", show_default=True)
def worker(embedded: bool, faust_loglevel: str) -> None:
    """Run a controller worker (settings from LLMFLEET_* environment variables)."""
    from controller.common.settings import Settings
    from controller.worker.run import run_worker

    s = Settings()
    if s.bootstrap_servers or not embedded:
        run_worker(s, loglevel=faust_loglevel)
        return
    from controller.devtools.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        click.echo(f"embedded broker: {b.bootstrap_servers}", err=True)
        # the broker lives and dies with this process: nothing to recover by restarting
        run_worker(s.model_copy(update={"bootstrap_servers": b.bootstrap_servers, "broker_recovery": "off"}),
                   loglevel=faust_loglevel)


@main.command()
@click.option("--short", is_flag=True, help="a smaller run, under two minutes (what CI runs)")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("llmfleet-report"), show_default=True)
@click.option("--scale", type=float, default=None, help="arrival-rate multiplier on the traces")
@click.option("--pace", type=float, default=None, help="wall time runs this many times faster")
@click.option("--minutes", type=float, default=None, help="event-time minutes of trace to replay")
@click.option("--live/--no-live", default=None, help="live terminal view (default: on a TTY)")
def quickstart(short: bool, report_dir: Path, scale: float | None, pace: float | None,
               minutes: float | None, live: bool | None) -> None:
    """Run the whole loop on an embedded broker: replay, plan, publish, route, simulate, report."""
    import asyncio

    from rich.console import Console

    from controller.devtools.quickstart import RunConfig, run

    cfg = RunConfig.short(report_dir) if short else RunConfig(report_dir=report_dir)
    for name, value in (("scale", scale), ("pace", pace), ("minutes", minutes), ("live", live)):
        if value is not None:
            setattr(cfg, name, value)
    try:
        code = asyncio.run(run(cfg, Console()))
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # the message a newcomer sees; the trace goes to the log
        click.echo(f"quickstart failed: {exc}", err=True)
        code = 1
    sys.exit(code)


@main.group()
def schemas() -> None:
    """JSON Schemas of every message type (the contract for routers in other languages)."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def schemas_export(directory: Path) -> None:
    """Write one JSON Schema file per message type into DIRECTORY."""
    from schemas import export_schemas

    for p in export_schemas(directory):
        click.echo(str(p))


@main.command("query-types")
@click.option("--json", "as_json", is_flag=True, help="one JSON object: ids, rules, default")
def query_types(as_json: bool) -> None:
    """The query-type ids telemetry may name (from the configured catalog), and how untyped
    records are classified. A record naming any other id is dead-lettered."""
    import json

    from schemas import load_catalog

    from controller.common.settings import Settings

    s = Settings()
    ids = sorted(q.id for q in load_catalog(s.catalog_path).query_types)
    if as_json:
        click.echo(json.dumps({"query_types": ids, "classify_rules": s.classify_rules,
                               "default_query_type": s.default_query_type}))
        return
    for q in ids:
        click.echo(q)
    click.echo("untyped records (query_type absent or null), first matching rule wins:", err=True)
    for k, r in enumerate(s.classify_rules):
        click.echo(f"  rule {k}: {r}", err=True)
    click.echo(f"  otherwise (rule -1): {s.default_query_type}", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object per workaround")
def workarounds(as_json: bool) -> None:
    """The patches llmfleet applies to faust, aiokafka and the embedded broker, each with the
    defect it works around and the test that reproduces it (controller/common/workarounds.py)."""
    import dataclasses
    import json

    from controller.common import workarounds as registry

    for w in registry.REGISTRY:
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(w)))
        else:
            click.echo(f"{w.name} [{w.kind}] ({w.library})\n  defect: {w.defect}\n  without it: {w.effect}\n"
                       f"  test: {w.test}")


from controller.offline.calibrate_command import calibrate  # noqa: E402
from controller.offline.perf_command import perf  # noqa: E402
from controller.replay.command import replay  # noqa: E402
from controller.router.command import router  # noqa: E402
from controller.offline.solve_commands import check, instance, solve  # noqa: E402
from controller.prom_ingest.command import ingest  # noqa: E402
from controller.render.command import render  # noqa: E402

main.add_command(solve)
main.add_command(check)
main.add_command(instance)
main.add_command(replay)
main.add_command(router)
main.add_command(perf)
main.add_command(calibrate)
main.add_command(ingest)
main.add_command(render)


if __name__ == "__main__":
    sys.exit(main())
