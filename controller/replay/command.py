"""`llmfleet replay`: publish request traces to the telemetry topic of a running Kafka.

Register with `main.add_command(replay)` in controller/cli.py.
"""
from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from controller.common.settings import Settings

if TYPE_CHECKING:
    from controller.replay.replay import KeyBy

_KEY_BY: dict[str, KeyBy] = {"round-robin": "round_robin", "query-type": "query_type"}
_BUNDLED_NOTE = ("bundled trace: Azure LLM Inference Trace 2023 (excerpt), Microsoft Azure, CC BY 4.0; "
                 "attribution and changes in controller/replay/traces/README.md")


def _start(value: str) -> float | None:
    if value == "trace":
        return None
    if value == "now":
        return time.time()
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected now, trace or epoch seconds",
                                 param_hint="--start") from None


@click.command("replay")
@click.argument("traces", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--bundled", is_flag=True, help="Replay the bundled Azure 2023 code + conversation excerpt.")
@click.option("--type", "typed", multiple=True, metavar="TYPE=FILE",
              help="A trace whose requests are all of query type TYPE (repeatable).")
@click.option("--columns", metavar="SPEC", default=None,
              help="Column mapping for TRACES/--type files: ts=COL,input=COL,output=COL[,type=COL]"
                   "[,ts_format=iso|epoch]. Default: the Azure columns.")
@click.option("--rule", "rules", multiple=True, metavar="TYPE:in=MIN..MAX,out=MIN..MAX",
              help="Tag untyped requests by token lengths; first match wins (repeatable).")
@click.option("--default-type", default=None, help="With --rule: type of requests no rule matches.")
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="Arrival-rate multiplier (3.5: each request 3 or 4 times, seeded).")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Divide inter-arrival times and replay in real time over them; inf: trace time, "
                   "as fast as possible.")
@click.option("--loop", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--start", "start_at", default="now", show_default=True,
              help="Event time of the first request: now, trace (keep) or epoch seconds.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Stop after N records.")
@click.option("--skip-malformed", is_flag=True, help="Skip and count bad rows instead of failing.")
@click.option("--bootstrap-servers", default=None,
              help="Kafka to publish to [env LLMFLEET_BOOTSTRAP_SERVERS].")
@click.option("--topic", default=None, help="Telemetry topic [default: settings topics.telemetry].")
@click.option("--to-topic", "to_topic", is_flag=False, flag_value="", default=None, metavar="[TOPIC]",
              help="Load the trace into a trace topic (default settings topics.trace) and stop; "
                   "event time is stored unchanged (speed/start apply at --from-topic).")
@click.option("--from-topic", "from_topic", is_flag=False, flag_value="", default=None, metavar="[TOPIC]",
              help="Replay from a trace topic instead of files.")
@click.option("--key-by", type=click.Choice(["round-robin", "query-type"]), default="round-robin",
              show_default=True, help="Partitioning of telemetry messages.")
@click.option("--max-records", type=click.IntRange(min=1, max=100_000), default=1000, show_default=True,
              help="Records per message at most.")
@click.option("--slice", "slice_s", type=float, default=1.0, show_default=True,
              help="Event-time seconds per message at most.")
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: on a TTY].")
def replay(traces: tuple[Path, ...], bundled: bool, typed: tuple[str, ...], columns: str | None,
           rules: tuple[str, ...], default_type: str | None, scale: float, speed: float, loop: int,
           seed: int, start_at: str, limit: int | None, skip_malformed: bool,
           bootstrap_servers: str | None, topic: str | None, to_topic: str | None,
           from_topic: str | None, key_by: str, max_records: int, slice_s: float,
           progress: bool | None) -> None:
    """Replay request traces (Azure LLM inference CSVs, or CSV/JSONL with --columns) as telemetry.

    A running Kafka is required (for example `llmfleet broker`): pass --bootstrap-servers or
    set LLMFLEET_BOOTSTRAP_SERVERS.
    """
    from controller.replay import replay as rp
    from controller.replay import trace_reader as tr
    from controller.common.topic_admin import ensure_topics

    settings = Settings()
    bootstrap = bootstrap_servers or settings.bootstrap_servers
    if not bootstrap:
        raise click.UsageError("replay needs a running Kafka: pass --bootstrap-servers HOST:PORT or set "
                               "LLMFLEET_BOOTSTRAP_SERVERS (start one with `llmfleet broker`)")
    if to_topic is not None and from_topic is not None:
        raise click.UsageError("--to-topic and --from-topic are exclusive")
    if not (speed > 0):
        raise click.BadParameter("must be > 0 (inf: as fast as possible)", param_hint="--speed")
    telemetry = topic or settings.topics.telemetry
    pace = math.inf if math.isinf(speed) else 1.0
    ev_speed = 1.0 if math.isinf(speed) else speed
    start = _start(start_at)
    topics = settings.topics.model_copy(update={"telemetry": telemetry, **(
        {"trace": to_topic or from_topic} if (to_topic or from_topic) else {})})
    settings = settings.model_copy(update={"topics": topics})
    common: dict[str, Any] = {"max_records": max_records, "slice_s": slice_s, "progress": progress}

    try:
        if from_topic is not None:
            if traces or bundled or typed:
                raise click.UsageError("--from-topic replays the stored trace; give no trace files")
            asyncio.run(ensure_topics(settings, bootstrap))
            stats = asyncio.run(rp.replay_from_topic(
                bootstrap_servers=bootstrap, trace_topic=settings.topics.trace, topic=telemetry,
                speed=ev_speed, start=start, pace=pace, key_by=_KEY_BY[key_by], limit=limit, **common))
            click.echo(f"replayed {stats.records} records in {stats.messages} messages from "
                       f"{settings.topics.trace} to {telemetry} in {stats.wall_s:.1f} s")
            return

        cols = tr.Columns.parse(columns) if columns else tr.AZURE
        sources = [tr.TraceSource(p, columns=cols) for p in traces]
        sources += [tr.parse_type_spec(s, cols) for s in typed]
        if bundled:
            sources += tr.bundled_sources()
            click.echo(_BUNDLED_NOTE, err=True)
        if not sources:
            raise click.UsageError("no traces: give TRACE files, --type TYPE=FILE or --bundled")
        loading = to_topic is not None
        opts = tr.TraceOptions(rules=tuple(tr.parse_rule(r) for r in rules), default_type=default_type,
                               scale=scale, speed=1.0 if loading else ev_speed, loop=loop,
                               start=None if loading else start, seed=seed, limit=limit,
                               skip_malformed=skip_malformed)
        total = int(sum(tr.count_rows(s.path) for s in sources) * scale * loop)
        total = min(total, limit) if limit is not None else total
        rstats = tr.ReadStats()
        chunks = tr.read_trace(sources, opts, rstats)
        asyncio.run(ensure_topics(settings, bootstrap))
        if loading:
            stats = asyncio.run(rp.load_trace_topic(chunks, bootstrap_servers=bootstrap,
                                                    topic=settings.topics.trace, total=total, **common))
            if not stats.loaded:
                click.echo(f"trace topic {settings.topics.trace} already holds a trace; nothing written")
                return
            what = f"loaded {stats.records} records in {stats.messages} messages into {settings.topics.trace}"
        else:
            stats = asyncio.run(rp.publish(chunks, bootstrap_servers=bootstrap, topic=telemetry, pace=pace,
                                           key_by=_KEY_BY[key_by], total=total, **common))
            what = f"replayed {stats.records} records in {stats.messages} messages to {telemetry}"
        click.echo(f"{what} in {stats.wall_s:.1f} s ({stats.records_per_s:,.0f} records/s)")
        if rstats.skipped:
            click.echo(f"skipped {rstats.skipped} malformed rows, first: {rstats.errors[0]}", err=True)
    except tr.TraceError as exc:
        raise click.ClickException(str(exc)) from None
