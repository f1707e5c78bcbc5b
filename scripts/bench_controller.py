#!/usr/bin/env python3
"""Controller throughput and window->event latency on the embedded broker.

1. Raw baseline: aiokafka consume + JSON decode of single-record messages (msgs/s) and of
   1000-record batch messages (records/s), measured in this run.
2. Ingest: one controller worker; a burst of batch messages is produced after the worker is
   ready; records/s = records counted in published demand windows / wall time.
3. Latency: one window of event time every 0.5 s of wall time (no backlog), demand
   alternating so that GH re-plans every window (drift detection off, so only GH runs);
   latency = allocation event received minus the window's close time at the ingest agent
   (both wall clock on this machine). p50/p99 over the windows.

The last line printed is one JSON object (records_per_s, raw_records_per_s,
p99_window_to_event_ms, ...). `--quick` finishes in under a minute.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from bench_doc import machine, md_table, update_section  # noqa: E402
from controller.broker import EmbeddedBroker  # noqa: E402
from controller.settings import Settings, Topics  # noqa: E402
from controller.topic_admin import ensure_topics  # noqa: E402
from schemas import RequestRecord, TelemetryBatch  # noqa: E402

T0 = 1_700_000_000.0
BATCH = 1000


def _batches(n: int, start: float, span: float, rate_split: tuple[float, float]) -> list[bytes]:
    """n batch messages spread over [start, start + span) of event time."""
    rng = np.random.default_rng(0)
    out = []
    per = span / n
    for k in range(n):
        ts = np.sort(start + k * per + rng.random(BATCH) * per)
        qt = np.where(rng.random(BATCH) < rate_split[0] / sum(rate_split), "code", "conversation")
        b = TelemetryBatch.model_validate({
            "producer": "bench", "ts": ts.tolist(), "query_type": qt.tolist(),
            "input_tokens": rng.integers(100, 4000, BATCH).tolist(),
            "output_tokens": rng.integers(5, 400, BATCH).tolist()})
        out.append(b.model_dump_json().encode())
    return out


async def raw_baseline(boot: str, n_single: int, n_batches: int) -> dict[str, float]:
    topic = f"raw-{uuid.uuid4().hex[:6]}"
    p = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=5, max_batch_size=1 << 20)
    await p.start()
    single = [RequestRecord(ts=T0 + i, query_type="code", input_tokens=100, output_tokens=10).model_dump_json().encode()
              for i in range(n_single)]
    for v in single:
        await p.send(topic + "-s", v)
    for v in _batches(n_batches, T0, 60, (1, 1)):
        await p.send(topic + "-b", v)
    await p.flush()
    await p.stop()
    res = {}
    for suffix, expect, per in (("-s", n_single, 1), ("-b", n_batches, BATCH)):
        c = AIOKafkaConsumer(topic + suffix, bootstrap_servers=boot, auto_offset_reset="earliest",
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
        await c.start()
        n, t = 0, None
        while n < expect:
            for msgs in (await c.getmany(timeout_ms=1000, max_records=5000)).values():
                if t is None:
                    t = time.perf_counter()
                for m in msgs:
                    json.loads(m.value)
                    n += 1
        dt = time.perf_counter() - (t or time.perf_counter())
        await c.stop()
        res["raw_msgs_per_s" if suffix == "-s" else "raw_records_per_s"] = (n * per) / max(dt, 1e-9)
    return res


def _env(boot: str, topics: Topics, window_s: float) -> dict[str, str]:
    env = {**os.environ, "LLMFLEET_BOOTSTRAP_SERVERS": boot, "LLMFLEET_CONSUMER_GROUP": f"bench-{uuid.uuid4().hex[:6]}",
           "LLMFLEET_WINDOW_S": str(window_s), "LLMFLEET_GRACE_S": "0.5", "LLMFLEET_MIN_DWELL_S": "0",
           "LLMFLEET_WEB_PORT": "0", "LLMFLEET_DRIFT_THRESHOLD": "1e9", "LLMFLEET_DRIFT_PH_LAMBDA": "1e9",
           "LLMFLEET_AUDIT_ENABLED": "false", "LLMFLEET_IDLE_S": "0.5", "PYTHONPATH": str(REPO)}
    env.update({f"LLMFLEET_TOPICS__{f.upper()}": getattr(topics, f) for f in Topics.model_fields})
    return env


async def controller_run(boot: str, n_batches: int, n_windows: int, lat_windows: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    topics = Topics(**{f: f"b{tag}.{f}" for f in Topics.model_fields})
    window_s = 10.0
    await ensure_topics(Settings(bootstrap_servers=boot, topics=topics), boot)
    log = open(Path(tempfile.gettempdir()) / f"bench-worker-{tag}.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "controller.worker"], env=_env(boot, topics, window_s),
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    prod = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=5, max_batch_size=1 << 20,
                            max_request_size=4 << 20)
    await prod.start()
    cons = AIOKafkaConsumer(topics.demand, topics.allocations, bootstrap_servers=boot,
                            auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await cons.start()
    try:
        # warm-up window so the worker has joined and planned once
        for k, v in enumerate(_batches(4, T0, window_s, (1, 1))):
            await prod.send(topics.telemetry, v, partition=k % 4)
        await prod.send_and_wait(topics.telemetry, _batches(1, T0 + window_s + 1, 1, (1, 1))[0], partition=0)
        async with asyncio.timeout(120):
            while True:
                got = await cons.getmany(timeout_ms=500)
                if any(tp.topic == topics.demand for tp in got):
                    break
        # ingest burst: n_batches messages inside windows 2..(2 + n_windows), alternating demand
        span = n_windows * window_s
        start = T0 + 2 * window_s
        values = []
        per_window = max(1, n_batches // n_windows)
        for w in range(n_windows):
            values += _batches(per_window, start + w * window_s, window_s,
                               (1, 1) if w % 2 == 0 else (1, 6))  # demand mix changes each window
        expect = len(values) * BATCH
        closer = _batches(4, start + span + 1, 1, (1, 1))
        t_start = time.perf_counter()
        for k, v in enumerate(values + closer):
            await prod.send(topics.telemetry, v, partition=k % 4)
        await prod.flush()
        counted, windows = 0, 0
        async with asyncio.timeout(300):
            while windows < n_windows:
                for tp, msgs in (await cons.getmany(timeout_ms=500)).items():
                    for m in msgs:
                        doc = json.loads(m.value)
                        if tp.topic == topics.demand and doc["window_start"] >= start:
                            counted += doc["records"]
                            windows += 1
                            t_done = time.perf_counter()
        elapsed = t_done - t_start
        # latency phase, paced: one window of event time every `pace` wall seconds, demand
        # alternating, so GH re-plans on every window close without a backlog in front of it
        lat: list[float] = []
        base = start + span + 2 * window_s
        pace = 0.5
        for w in range(lat_windows):
            for k, v in enumerate(_batches(8, base + w * window_s, window_s, (1, 1) if w % 2 == 0 else (1, 6))):
                await prod.send(topics.telemetry, v, partition=k % 4)
            await prod.flush()
            t_next = time.perf_counter() + pace
            while time.perf_counter() < t_next:
                for tp, msgs in (await cons.getmany(timeout_ms=50)).items():
                    now = time.time()
                    for m in msgs:
                        doc = json.loads(m.value)
                        if tp.topic == topics.allocations and doc.get("window_closed_at") and doc["window_end"] > base:
                            lat.append((now - doc["window_closed_at"]) * 1e3)
        return {"records": counted, "expected_records": expect, "seconds": elapsed,
                "records_per_s": counted / elapsed, "events": len(lat),
                "p50_window_to_event_ms": float(np.percentile(lat, 50)) if lat else float("nan"),
                "p99_window_to_event_ms": float(np.percentile(lat, 99)) if lat else float("nan"),
                "latencies_ms": sorted(round(v, 1) for v in lat)}
    finally:
        await cons.stop()
        await prod.stop()
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    n_batches, n_windows = (200, 10) if args.quick else (1000, 30)
    with EmbeddedBroker() as b:
        raw = asyncio.run(raw_baseline(b.bootstrap_servers, 20000 if args.quick else 50000, 100 if args.quick else 300))
        ctl = asyncio.run(controller_run(b.bootstrap_servers, n_batches, n_windows, 12 if args.quick else 40))
    res = {**ctl, **raw,
           "ingest_vs_raw_records": ctl["records_per_s"] / raw["raw_records_per_s"],
           "ingest_vs_raw_single_msgs": ctl["records_per_s"] / raw["raw_msgs_per_s"],
           "target_records_per_s": 50000, "target_p99_ms": 200}
    rows = [["controller ingest (batched, 1 worker)", f"{ctl['records_per_s']:,.0f} records/s",
             f"{ctl['records']:,} of {ctl['expected_records']:,} counted"],
            ["raw aiokafka consume + JSON decode, batches", f"{raw['raw_records_per_s']:,.0f} records/s", ""],
            ["raw aiokafka consume + JSON decode, single records", f"{raw['raw_msgs_per_s']:,.0f} msgs/s", ""],
            ["ingest / raw (batches)", f"{res['ingest_vs_raw_records']:.2f}", ""],
            ["ingest / raw (single-record msgs)", f"{res['ingest_vs_raw_single_msgs']:.2f}", "target 50,000 records/s"],
            ["window close -> allocation event p50", f"{ctl['p50_window_to_event_ms']:.0f} ms", f"{ctl['events']} events"],
            ["window close -> allocation event p99", f"{ctl['p99_window_to_event_ms']:.0f} ms", "target 200 ms, GH at catalog size"]]
    if not args.no_doc:
        update_section("controller", f"## Controller (embedded broker)\n\n`python scripts/bench_controller.py"
                       f"{' --quick' if args.quick else ''}` on {machine()}: {n_batches} batch messages of "
                       f"{BATCH} records over {n_windows} windows.\n\n" + md_table(["measure", "value", "note"], rows))
    for r in rows:
        print(f"{r[0]:<55} {r[1]:>22}  {r[2]}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
