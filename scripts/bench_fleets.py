#!/usr/bin/env python3
"""Many fleets planned across workers: windows planned per second and window -> event p99.

For N fleets (1, 8, 32) and one or two worker processes of one consumer group, on the embedded
broker, with the windows topic partitioned by fleet (LLMFLEET_WINDOWS_PARTITIONS, 8 here):

1. Backlog: `--windows` windows of event time for every fleet are produced at once (small
   batches, two query types whose mix changes every window, so GH re-plans each window); the
   figure is demand windows published per wall second until every fleet's windows are out.
2. Paced latency: one window of event time every `--pace` wall seconds for every fleet; per
   allocation event of a window, receipt time minus the time the ingest agent closed the window
   (`window_closed_at`); p50/p99 over all fleets' windows.

Each worker's log says which fleets it planned (its `plan.published` lines); the table shows
the split. Ratios: two workers over one at the same N (in this run). Drift detection and
audits are off so the window -> event path is GH only, as in bench_controller.py.
The last line printed is one JSON object. `--quick` runs N = 1, 8 only with fewer windows.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import numpy as np  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from rich.progress import Progress  # noqa: E402

from bench_doc import machine, md_table, update_section  # noqa: E402
from controller.common.settings import Settings, Topics  # noqa: E402
from controller.common.topic_admin import ensure_topics  # noqa: E402
from controller.devtools.broker import EmbeddedBroker  # noqa: E402
from schemas import TelemetryBatch  # noqa: E402

WINDOW_S = 10.0
TELEMETRY_PARTITIONS = 4
WINDOWS_PARTITIONS = 8
PER_BATCH = 50
NOTE = "\n\nWhat the table says. Every fleet's windows are planned (no window lost or repeated) and each fleet is planned by one worker; with two workers Kafka's assignment splits the windows partitions and with them the fleets (which fleets land together follows murmur2 of the fleet ids: 8 fleets hashed 7/1 here, 32 fleets 17/15). The second worker adds little throughput on this machine: a worker planning a backlog uses most of one core, and the embedded broker and the benchmark's producer and consumer take the rest of the two cores, so the run is bound by the machine, not by one leader. p50/p99 are the paced windows' close -> event latency; all fleets' windows close at once, so the 32-fleet latency is the queue of 32 GH plans behind one another (about 20 ms each)."


def _batch(fleet: str, start: float, span: float, share_code: float, rng: np.random.Generator) -> bytes:
    ts = np.sort(start + rng.random(PER_BATCH) * span)
    qt = np.where(rng.random(PER_BATCH) < share_code, "code", "conversation")
    return TelemetryBatch.model_validate({
        "producer": "bench_fleets", "fleet": fleet, "ts": ts.tolist(), "query_type": qt.tolist(),
        "input_tokens": rng.integers(100, 3000, PER_BATCH).tolist(),
        "output_tokens": rng.integers(5, 300, PER_BATCH).tolist()}).model_dump_json().encode()


def _window(fleets: list[str], k: int, t0: float, rng: np.random.Generator) -> list[bytes]:
    """One window of event time for every fleet: one batch per telemetry partition."""
    share = 0.5 if k % 2 == 0 else 0.15
    return [_batch(f, t0 + k * WINDOW_S + p * WINDOW_S / TELEMETRY_PARTITIONS, WINDOW_S / TELEMETRY_PARTITIONS,
                   share, rng) for f in fleets for p in range(TELEMETRY_PARTITIONS)]


def _env(boot: str, topics: Topics, group: str) -> dict[str, str]:
    env = {**os.environ, "LLMFLEET_BOOTSTRAP_SERVERS": boot, "LLMFLEET_CONSUMER_GROUP": group,
           "LLMFLEET_WINDOW_S": str(WINDOW_S), "LLMFLEET_GRACE_S": "0.5", "LLMFLEET_MIN_DWELL_S": "0",
           "LLMFLEET_WEB_PORT": "0", "LLMFLEET_DRIFT_THRESHOLD": "1e9", "LLMFLEET_DRIFT_PH_LAMBDA": "1e9",
           "LLMFLEET_AUDIT_ENABLED": "false", "LLMFLEET_IDLE_S": "0.5", "LLMFLEET_FAST_PATH": "false",
           "LLMFLEET_STARTUP_PLAN": "catalog", "LLMFLEET_REPLAN": "every_window",
           "LLMFLEET_WINDOWS_PARTITIONS": str(WINDOWS_PARTITIONS),
           "LLMFLEET_TELEMETRY_PARTITIONS": str(TELEMETRY_PARTITIONS), "PYTHONPATH": str(REPO)}
    env.update({f"LLMFLEET_TOPICS__{f.upper()}": getattr(topics, f) for f in Topics.model_fields})
    return env


async def _send_all(prod: AIOKafkaProducer, topic: str, values: list[bytes]) -> None:
    for k, v in enumerate(values):
        await prod.send(topic, v, partition=k % TELEMETRY_PARTITIONS)
    await prod.flush()


async def run(boot: str, n_fleets: int, n_workers: int, n_windows: int, lat_windows: int,
              pace: float) -> dict[str, object]:
    tag = uuid.uuid4().hex[:6]
    topics = Topics(**{f: f"f{tag}.{f}" for f in Topics.model_fields})
    s = Settings(bootstrap_servers=boot, topics=topics, windows_partitions=WINDOWS_PARTITIONS,
                 telemetry_partitions=TELEMETRY_PARTITIONS)
    await ensure_topics(s, boot)
    fleets = [f"fleet{i:02d}" for i in range(n_fleets)]
    env = _env(boot, topics, f"bench-fleets-{tag}")
    logs = [Path(tempfile.gettempdir()) / f"bench-fleets-{tag}-w{k}.log" for k in range(n_workers)]
    workers = [subprocess.Popen([sys.executable, "-m", "controller.worker.run"], env=env, cwd=REPO,
                                stdout=open(p, "wb"), stderr=subprocess.STDOUT) for p in logs]  # noqa: SIM115
    rng = np.random.default_rng(7)
    t0 = np.floor(time.time() / WINDOW_S) * WINDOW_S - 20_000.0  # well behind the clock
    prod = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=5, max_request_size=4 << 20)
    cons = AIOKafkaConsumer(topics.demand, topics.allocations, bootstrap_servers=boot,
                            auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await prod.start()
    await cons.start()
    seen: dict[str, set[float]] = {f: set() for f in fleets}
    lat: dict[tuple[str, float], float] = {}

    async def drain(until: float, phase_from: float | None = None) -> None:
        while time.perf_counter() < until:
            for tp, msgs in (await cons.getmany(timeout_ms=50)).items():
                now = time.time()
                for m in msgs:
                    doc = json.loads(m.value)
                    if tp.topic == topics.demand:
                        seen[doc["fleet_id"]].add(doc["window_end"])
                    elif phase_from is not None and doc.get("window_closed_at") and doc["window_end"] > phase_from:
                        lat.setdefault((doc["fleet_id"], doc["window_end"]), (now - doc["window_closed_at"]) * 1e3)

    try:
        # warm-up: every fleet's first window closes (the workers have joined and planned once)
        # (every telemetry partition gets records past window 0: idle ticks only advance a partition to
        # the newest watermark of its own worker's partitions)
        await _send_all(prod, topics.telemetry, _window(fleets, 0, t0, rng) + _window(fleets, 1, t0, rng))
        warm = time.perf_counter()
        deadline = warm + 240
        while not all(seen[f] for f in fleets) and time.perf_counter() < deadline:
            await drain(time.perf_counter() + 0.5)
        warm_s = time.perf_counter() - warm
        # 1. backlog
        first = 2  # window 1 went out with the warm-up
        values = [v for k in range(first, first + n_windows) for v in _window(fleets, k, t0, rng)]
        values += _window(fleets, first + n_windows, t0, rng)  # closes the last backlog window
        want = {f: {t0 + (k + 1) * WINDOW_S for k in range(first, first + n_windows)} for f in fleets}
        t_start = time.perf_counter()
        await _send_all(prod, topics.telemetry, values)
        deadline = t_start + 600
        while not all(want[f] <= seen[f] for f in fleets) and time.perf_counter() < deadline:
            await drain(time.perf_counter() + 0.2)
        backlog_s = time.perf_counter() - t_start
        planned = sum(len(want[f] & seen[f]) for f in fleets)
        # 2. paced latency
        base = first + n_windows + 1
        for k in range(base, base + lat_windows):
            await _send_all(prod, topics.telemetry, _window(fleets, k, t0, rng))
            await drain(time.perf_counter() + pace, phase_from=t0 + base * WINDOW_S)
        await drain(time.perf_counter() + 3 * pace, phase_from=t0 + base * WINDOW_S)
        ms = list(lat.values())
        split = []
        for p in logs:
            text = p.read_text(errors="replace")
            split.append(len({m.group(1) for line in text.splitlines() if "plan.published" in line
                              for m in [re.search(r'"fleet": "([^"]+)"', line)] if m}))
        return {"fleets": n_fleets, "workers": n_workers, "warmup_s": round(warm_s, 2),
                "windows_planned": planned, "windows_expected": n_fleets * n_windows,
                "backlog_s": round(backlog_s, 3), "windows_per_s": planned / backlog_s,
                "events": len(ms), "p50_ms": float(np.percentile(ms, 50)) if ms else float("nan"),
                "p99_ms": float(np.percentile(ms, 99)) if ms else float("nan"),
                "fleets_per_worker": split}
    finally:
        await cons.stop()
        await prod.stop()
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 1, 8 and fewer windows (a few minutes)")
    ap.add_argument("--fleets", type=int, nargs="*", default=None, help="fleet counts (default 1 8 32)")
    ap.add_argument("--windows", type=int, default=None, help="backlog windows per fleet")
    ap.add_argument("--pace", type=float, default=1.0, help="wall seconds per paced window")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    counts = args.fleets or ([1, 8] if args.quick else [1, 8, 32])
    n_windows = args.windows or (4 if args.quick else 8)
    lat_windows = 4 if args.quick else 8
    results = []
    with EmbeddedBroker() as b, Progress() as bar:
        task = bar.add_task("fleet configurations", total=2 * len(counts))
        for n in counts:
            for w in (1, 2):
                results.append(asyncio.run(run(b.bootstrap_servers, n, w, n_windows, lat_windows, args.pace)))
                bar.advance(task)
    by = {(r["fleets"], r["workers"]): r for r in results}
    rows = []
    for r in results:
        one = by[(r["fleets"], 1)]
        rows.append([r["fleets"], r["workers"], f"{r['windows_planned']} of {r['windows_expected']}",
                     f"{r['windows_per_s']:.1f}", f"{r['windows_per_s'] / one['windows_per_s']:.2f}",
                     f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}", r["events"],
                     "/".join(map(str, r["fleets_per_worker"]))])
    header = ["fleets", "workers", "windows planned", "windows/s", "vs 1 worker", "p50 ms", "p99 ms",
              "events", "fleets planned per worker"]
    table = md_table(header, rows)
    print(table)
    if not args.no_doc:
        update_section("fleets", f"## Many fleets across workers\n\n`python scripts/bench_fleets.py"
                       f"{' --quick' if args.quick else ''}` on {machine()} (shared with other work: "
                       f"timings vary with load): windows topic of {WINDOWS_PARTITIONS} partitions keyed by "
                       f"fleet, {TELEMETRY_PARTITIONS} telemetry partitions, {n_windows} backlog windows per "
                       f"fleet, then {lat_windows} windows paced {args.pace:g} s apart; GH only.\n\n" + table + NOTE)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
