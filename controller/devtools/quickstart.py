"""`llmfleet quickstart`: the whole loop on an embedded broker, with a live view and a report.

    bundled Azure traces --replay--> llmfleet.requests --router + fleet simulator--> llmfleet.telemetry
        --> controller worker (windows, GH/AGH, audits) --> llmfleet.allocations --> router

Event time is the traces' own; wall time runs `pace` times faster, so a 60 s window closes
every 60/pace seconds of wall time. Everything started here is stopped on exit, also on
errors and Ctrl-C; the exit code is non-zero with a message when the run did not plan.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from schemas import AllocationEvent, AuditReport, Catalog, DemandWindow, load_catalog

from controller.worker.ingest import ticks
from controller.common.settings import Settings, Topics

log = structlog.get_logger()


@dataclass
class RunConfig:
    scale: float = 20.0          # arrival-rate multiplier on the traces
    pace: float = 12.0           # wall time runs this much faster than event time
    minutes: float = 15.0        # event-time minutes of trace replayed
    window_s: float = 60.0
    report_dir: Path = Path("llmfleet-report")
    live: bool | None = None     # None: live view when stdout is a TTY

    @classmethod
    def short(cls, report_dir: Path) -> RunConfig:
        return cls(scale=20.0, pace=15.0, minutes=7.0, report_dir=report_dir)


@dataclass
class Observed:
    windows: list[DemandWindow] = field(default_factory=list)
    events: list[AllocationEvent] = field(default_factory=list)
    audits: list[AuditReport] = field(default_factory=list)
    dlq: int = 0
    started: float = field(default_factory=time.monotonic)
    first_ts: float | None = None      # event time the replay starts at


def worker_env(s: Settings) -> dict[str, str]:
    """The LLMFLEET_* environment that reproduces `s` in a child process."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name, value in s.model_dump(exclude={"topics"}).items():
        if value is not None:
            env[f"LLMFLEET_{name.upper()}"] = json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)
    for name, value in s.topics.model_dump().items():
        env[f"LLMFLEET_TOPICS__{name.upper()}"] = value
    return env


async def _watch(s: Settings, obs: Observed, stop: asyncio.Event) -> None:
    t: Topics = s.topics
    c = AIOKafkaConsumer(t.demand, t.allocations, t.audits, t.dlq, bootstrap_servers=s.bootstrap_servers,
                         auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await c.start()
    try:
        while not stop.is_set():
            for tp, msgs in (await c.getmany(timeout_ms=200)).items():
                for m in msgs:
                    if tp.topic == t.demand:
                        obs.windows.append(DemandWindow.model_validate_json(m.value))
                    elif tp.topic == t.allocations:
                        obs.events.append(AllocationEvent.model_validate_json(m.value))
                    elif tp.topic == t.audits:
                        obs.audits.append(AuditReport.model_validate_json(m.value))
                    else:
                        obs.dlq += 1
    finally:
        await c.stop()


def _view(obs: Observed, replayed: int, loop_metrics: dict[str, Any]) -> Group:
    win = Table(title="demand windows (last 6)", expand=True)
    for col in ("window end", "requests", "per query type (req/s)", "SLO attainment"):
        win.add_column(col)
    for w in obs.windows[-6:]:
        slo = [d.slo_attainment for d in w.demand if d.slo_attainment is not None]
        win.add_row(time.strftime("%H:%M:%S", time.gmtime(w.window_end)), f"{w.records:,}",
                    ", ".join(f"{d.query_type} {d.arrival_rate:.1f}" for d in w.demand),
                    f"{sum(slo) / len(slo):.1%}" if slo else "-")
    ev = Table(title="plan changes (last 6)", expand=True)
    for col in ("epoch", "trigger", "method", "$/h", "GPUs by type", "solve ms"):
        ev.add_column(col)
    for e in obs.events[-6:]:
        by: dict[str, int] = {}
        for d in e.plan.deployments:
            by[d.gpu] = by.get(d.gpu, 0) + d.replicas * d.tp * d.pp
        ev.add_row(str(e.epoch), e.trigger + (" (degraded)" if e.degraded else ""), e.method,
                   f"{e.cost_per_hour:,.2f}", ", ".join(f"{g}x{n}" for g, n in sorted(by.items())) or "-",
                   f"{e.solve_seconds * 1e3:.1f}")
    gaps = [a.gap for a in obs.audits if a.gap is not None]
    sim = loop_metrics.get("sim", {}).get("outcomes", {}) if isinstance(loop_metrics.get("sim"), dict) else {}
    sim_all = loop_metrics.get("sim", {}) if isinstance(loop_metrics.get("sim"), dict) else {}
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(sim.items()))
    if sim_all.get("unroutable"):
        outcomes += f", unroutable {sim_all['unroutable']:,}"
    done = sum(sim.values())
    cost = loop_metrics.get("cost") or {}
    st = loop_metrics.get("status") or {}
    span_h = max(1e-9, (st.get("ts", 0.0) - obs.first_ts) / 3600.0) if obs.first_ts and st else None
    starting = sum(d["starting"] for d in st.get("deployments", []))
    draining = sum(d["draining"] for d in st.get("deployments", []))
    loop_line = (f"within SLO {sim.get('served', 0) / done:.1%} | fleet ${cost.get('dollars', 0.0):,.2f}"
                 + (f" (${cost.get('dollars', 0.0) / span_h:,.2f}/h)" if span_h else "")
                 + f" | GPUs started {cost.get('gpus_started', 0):.0f}, stopped {cost.get('gpus_stopped', 0):.0f}"
                 + f" | in transition: {starting} replicas starting, {draining} draining") if done else ""
    status = (f"replayed {replayed:,} requests | simulated {sum(sim.values()):,} ({outcomes}) | "
              f"windows {len(obs.windows)} | epochs {len(obs.events)} | audits {len(obs.audits)}"
              + (f" (last gap {gaps[-1]:.2%})" if gaps else "") + f" | DLQ {obs.dlq} | "
              f"{time.monotonic() - obs.started:.0f}s") + (f"\n{loop_line}" if loop_line else "")
    return Group(Panel(status, title="llmfleet quickstart"), win, ev)


def loop_notes(m: dict[str, Any], t0: float, t1: float) -> list[str]:
    """What the closed loop delivered: attainment, cost integrated over replica time, churn."""
    sim = m.get("sim", {})
    outcomes = sim.get("outcomes", {})
    n = sum(outcomes.values())
    if not n:
        return []
    cost = m.get("cost") or {}
    hours = max(1e-9, (t1 - t0) / 3600.0)
    router = m.get("router", {})
    no_plan = router.get("no_plan_rejected", 0)
    return [f"Closed loop: {outcomes.get('served', 0) / n:.1%} of {n:,} requests within SLO (TTFT and latency), "
            f"{outcomes.get('slo_missed', 0) / n:.1%} late, {outcomes.get('rejected', 0) / n:.1%} rejected "
            f"({no_plan:,} before the first plan, {sim.get('shed', 0):,} shed by deadline admission).",
            f"Fleet cost integrated over replica time (cold starts included): ${cost.get('dollars', 0.0):,.2f}, "
            f"${cost.get('dollars', 0.0) / hours:,.2f}/h; GPUs started {cost.get('gpus_started', 0):.0f}, stopped "
            f"{cost.get('gpus_stopped', 0):.0f} ({(cost.get('gpus_started', 0) + cost.get('gpus_stopped', 0)) / hours:,.0f}"
            f" switched per hour)."]


def oracle_notes(chunks: list[Any], m: dict[str, Any], cfg: RunConfig, start: float) -> list[str]:
    """The same arrivals served by the per-window perfect-foresight oracle of
    scripts/bench_closed_loop.py (warm plans, no transition cost): the yardstick for cost."""
    from controller.sim.closed_loop_bench import Arrivals, BenchConfig, run_oracle
    from controller.replay.trace_reader import Chunk

    arr = Arrivals.from_chunk("quickstart", Chunk.concat(chunks))
    if len(arr) == 0:
        return []
    oracle = run_oracle(arr, load_catalog(), BenchConfig(window_s=cfg.window_s)).summary()
    hours = max(1e-9, cfg.minutes / 60.0)
    mine = (m.get("cost") or {}).get("dollars", 0.0) / hours
    return [f"Oracle on the same arrivals (each window planned on its own demand, warm, no transition cost): "
            f"{oracle['within_slo']:.1%} within SLO at ${oracle['cost_per_hour']:,.2f}/h; the closed loop cost "
            f"{mine / max(oracle['cost_per_hour'], 1e-9):.2f}x the oracle's."]


async def wait_ready(s: Settings, obs: Observed, wm: float, worker: subprocess.Popen[bytes],
                     worker_log: Path, timeout: float = 90.0) -> None:
    """Tick every telemetry partition (a watermark far before the trace) until the worker has
    joined and its ingest answers on the windows topic (with startup_plan "catalog", until it
    has published its startup plan; with "observed", the first plan follows the first traffic)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers)
    c = AIOKafkaConsumer(s.topics.windows, bootstrap_servers=s.bootstrap_servers, auto_offset_reset="earliest")
    await p.start()
    await c.start()
    try:
        deadline = time.monotonic() + timeout
        answered = False
        while not (obs.events if s.startup_plan == "catalog" else answered):
            if worker.poll() is not None:
                raise RuntimeError(f"the controller worker exited with code {worker.returncode}; log: {worker_log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the controller did not start within {timeout:g}s; log: {worker_log}")
            for part in range(s.telemetry_partitions):
                await p.send(s.topics.telemetry, ticks.make(s.tick_key, s.topics.telemetry, part, wm), partition=part)
            got = await c.getmany(timeout_ms=1000)
            answered = answered or any(got.values())
    finally:
        await c.stop()
        await p.stop()


async def run(cfg: RunConfig, console: Console) -> int:
    from controller.common.topic_admin import ensure_topics
    from controller.devtools.broker import EmbeddedBroker
    from controller.replay.replay import publish
    from controller.replay.trace_reader import TraceOptions, bundled_sources, read_trace

    catalog: Catalog = load_catalog()
    broker = EmbeddedBroker().start()
    worker: subprocess.Popen[bytes] | None = None
    stop = asyncio.Event()
    obs = Observed()
    worker_log = Path(tempfile.mkdtemp(prefix="llmfleet-quickstart-")) / "worker.log"
    try:
        s = Settings(bootstrap_servers=broker.bootstrap_servers, tick_key=secrets.token_hex(16), window_s=cfg.window_s, grace_s=5.0,
                     min_dwell_s=2 * cfg.window_s, web_port=0, audit_time_limit_s=10.0,
                     idle_s=max(0.5, cfg.window_s / cfg.pace / 2))
        await ensure_topics(s, broker.bootstrap_servers)
        with worker_log.open("wb") as fh:
            worker = subprocess.Popen([sys.executable, "-m", "controller.worker.run"], env=worker_env(s),
                                      stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        loop = _closed_loop(s, catalog, cfg)
        await loop.start()
        watcher = asyncio.create_task(_watch(s, obs, stop))
        start = time.time() - cfg.minutes * 60  # event time ends about now
        obs.first_ts = start
        await wait_ready(s, obs, start - 3600.0, worker, worker_log)
        opts = TraceOptions(scale=cfg.scale, start=start, seed=0)
        chunks = [c.take(c.ts < start + cfg.minutes * 60) for c in read_trace(bundled_sources(), opts)]
        total = sum(len(c) for c in chunks)
        replay = asyncio.create_task(publish(iter(chunks), bootstrap_servers=s.bootstrap_servers,
                                             topic=s.topics.requests, pace=cfg.pace, progress=False, total=total))
        console.print(f"[bold]llmfleet quickstart[/bold]: broker {s.bootstrap_servers}, replaying {total:,} requests "
                      f"({cfg.minutes:g} min of the Azure 2023 traces x{cfg.scale:g}) at {cfg.pace:g}x speed")
        await _follow(cfg, console, obs, loop, replay, worker, worker_log, total)
        stop.set()
        await watcher
        await loop.stop()
        return _finish(cfg, console, catalog, obs, loop, chunks, start, total, worker_log)
    finally:
        stop.set()
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(5)
        broker.stop()


def _closed_loop(s: Settings, catalog: Catalog, cfg: RunConfig) -> Any:
    """The simulated fleet behind the reference router, fed by the requests topic."""
    from controller.router.core import Router
    from controller.router.service import RouterService
    from controller.sim.fleet_sim import FleetSimulator, PerfTable
    from controller.sim.loop_service import ClosedLoop, LoopService
    from solvers.cold_start import ColdStart

    spec = catalog.to_instance().to_spec()
    # replicas start as the catalog's models load (solvers/cold_start.py); engines shed a
    # request that could no longer meet its SLO instead of queueing it (deadline admission)
    sim = FleetSimulator(PerfTable.from_instance(spec), cold_start_s=ColdStart.from_spec(spec), seed=0,
                         window_s=cfg.window_s, max_wait_s=10.0, shed_late=True)
    router = Router(fleet_id=s.fleet_id, seed=0)
    return LoopService(s.bootstrap_servers, ClosedLoop(router, sim, fleet_id=s.fleet_id),
                       s.topics.requests, s.topics.telemetry,
                       router_service=RouterService(s.bootstrap_servers, router, topic=s.topics.allocations),
                       plan_timeout_s=0.5, status_topic=s.topics.fleet_status)


async def _follow(cfg: RunConfig, console: Console, obs: Observed, loop: Any, replay: asyncio.Task[Any],
                  worker: subprocess.Popen[bytes], worker_log: Path, total: int) -> None:
    """Show the run until the replay is done and the last windows, plans and audits are in:
    a live view on a terminal, one line per allocation event otherwise."""
    async def until_done() -> None:
        while not replay.done():
            if worker.poll() is not None:
                raise RuntimeError(f"the controller worker exited with code {worker.returncode}; "
                                   f"log: {worker_log}")
            await asyncio.sleep(0.25)
        await replay
        # let the last closable windows, plans and audits arrive
        deadline = time.monotonic() + 20
        seen = -1
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            now = (len(obs.windows), len(obs.events), len(obs.audits))
            if now == seen and obs.windows:
                break
            seen = now

    task = asyncio.create_task(until_done())
    if console.is_terminal if cfg.live is None else cfg.live:
        with Live(_view(obs, 0, {}), console=console, refresh_per_second=4) as lv:
            while not task.done():
                lv.update(_view(obs, total if replay.done() else 0, loop.metrics()))
                await asyncio.sleep(0.25)
            await task
            lv.update(_view(obs, total, loop.metrics()))
        return
    last = 0
    while not task.done():
        await asyncio.sleep(0.5)
        for e in obs.events[last:]:
            console.print(f"epoch {e.epoch}: {e.trigger}/{e.method} ${e.cost_per_hour:,.2f}/h "
                          f"{sum(d.replicas * d.tp * d.pp for d in e.plan.deployments)} GPUs"
                          + (" DEGRADED" if e.degraded else ""))
        last = len(obs.events)
    await task


def _finish(cfg: RunConfig, console: Console, catalog: Catalog, obs: Observed, loop: Any, chunks: list[Any],
            start: float, total: int, worker_log: Path) -> int:
    """Write the report and print the closing figures; 1 when no plan was ever published."""
    from controller.devtools.report import write_report

    closing = [*loop_notes(loop.metrics(), start, start + cfg.minutes * 60),
               *oracle_notes(chunks, loop.metrics(), cfg, start)]
    index = write_report(cfg.report_dir, catalog, obs.windows, obs.events, obs.audits,
                         title="llmfleet quickstart: Azure 2023 traces on a simulated fleet",
                         notes=[f"Replayed {total:,} requests ({cfg.minutes:g} min of trace, rate x{cfg.scale:g}) "
                                f"at {cfg.pace:g}x wall speed; windows of {cfg.window_s:g}s event time.",
                                *closing])
    console.print(_view(obs, total, loop.metrics()))
    for line in closing:
        console.print(line)
    if not obs.events:
        console.print(f"[red]no allocation event was published[/red]; worker log: {worker_log}")
        return 1
    console.print(f"report: [bold]{index.resolve()}[/bold]")
    return 0
