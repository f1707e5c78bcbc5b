#!/usr/bin/env python3
"""Controller throughput and window->event latency on the embedded broker.

1. Raw baseline: aiokafka consume + JSON decode of single-record messages (msgs/s) and of
   1000-record batch messages (records/s), measured in this run.
2. Ingest: one controller worker; a burst of batch messages is produced after the worker is
   ready; records/s = records counted in published demand windows / wall time.
3. Latency: one window of event time every 0.5 s of wall time (no backlog), demand
   alternating so that GH re-plans every window (drift detection off, so only GH runs), and
   code prompts 6 % longer every 4th window, so its token bucket moves to one never compiled;
   latency = first allocation event of the window received minus the window's close time at
   the ingest agent (both wall clock on this machine). p50/p99 over the windows.
4. Where the time goes: the worker logs each published decision's stages (instance, compile,
   drift, check_plan, gh, check, agh, gate_route, event; controller/worker/planning/planner.py); their
   p50/p99/max over the latency windows are printed, and "outside on_window" is the rest of
   the latency (waiting for every partition's partial, Kafka hops, the thread hand-off).
5. Drift path, in process at catalog size: a demand step every window with drift detection
   on; the window's decision (GH, published at once) and the AGH follow-up, timed apart.

The last line printed is one JSON object (records_per_s, raw_records_per_s,
p99_window_to_event_ms, stage_ms, drift_path, ...). `--quick` finishes in under a minute.
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
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import numpy as np  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from bench_doc import machine, md_table, update_section  # noqa: E402
from controller.devtools.broker import EmbeddedBroker  # noqa: E402
from controller.common.settings import Settings, Topics  # noqa: E402
from controller.common.topic_admin import ensure_topics  # noqa: E402
from schemas import RequestRecord, TelemetryBatch  # noqa: E402

T0 = 1_700_000_000.0
BATCH = 1000
STAGES = ("instance", "compile", "drift", "check_plan", "gh", "check", "agh", "gate_route", "event", "total")


_IDS = {"on": False}  # batches carry a request_id column (the de-duplication cost run)


def _batches(n: int, start: float, span: float, rate_split: tuple[float, float],
             code_tokens: float = 1.0) -> list[bytes]:
    """n batch messages spread over [start, start + span) of event time; `code_tokens` scales
    the prompt lengths of code requests (to move its token bucket)."""
    ids = {}
    rng = np.random.default_rng(0)
    out = []
    per = span / n
    for k in range(n):
        ts = np.sort(start + k * per + rng.random(BATCH) * per)
        qt = np.where(rng.random(BATCH) < rate_split[0] / sum(rate_split), "code", "conversation")
        inp = rng.integers(100, 4000, BATCH)
        inp = np.where(qt == "code", np.round(inp * code_tokens), inp).astype(np.int64)
        if _IDS["on"]:
            ids = {"request_id": [f"{start:.0f}-{k}-{i}" for i in range(BATCH)]}
        b = TelemetryBatch.model_validate({**ids,
            "producer": "bench", "ts": ts.tolist(), "query_type": qt.tolist(),
            "input_tokens": inp.tolist(),
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
    log_path = Path(tempfile.gettempdir()) / f"bench-worker-{tag}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "controller.worker.run"], env=_env(boot, topics, window_s),
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
        # alternating, so GH re-plans on every window close without a backlog in front of it;
        # code prompts grow 6 % every 4th window: a token bucket never seen (a compile miss)
        lat: dict[float, float] = {}  # window_end -> ms to the window's first event
        base = start + span + 2 * window_s
        pace = 0.5
        for w in range(lat_windows):
            for k, v in enumerate(_batches(8, base + w * window_s, window_s, (1, 1) if w % 2 == 0 else (1, 6),
                                           code_tokens=1.06 ** (w // 4))):
                await prod.send(topics.telemetry, v, partition=k % 4)
            await prod.flush()
            t_next = time.perf_counter() + pace
            while time.perf_counter() < t_next:
                for tp, msgs in (await cons.getmany(timeout_ms=50)).items():
                    now = time.time()
                    for m in msgs:
                        doc = json.loads(m.value)
                        if tp.topic == topics.allocations and doc.get("window_closed_at") and doc["window_end"] > base:
                            lat.setdefault(doc["window_end"], (now - doc["window_closed_at"]) * 1e3)
        if lat_windows == 0:
            return {"records": counted, "expected_records": expect, "seconds": elapsed,
                    "records_per_s": counted / elapsed}
        ms = list(lat.values())
        return {"records": counted, "expected_records": expect, "seconds": elapsed,
                "records_per_s": counted / elapsed, "events": len(ms),
                "p50_window_to_event_ms": float(np.percentile(ms, 50)) if ms else float("nan"),
                "p99_window_to_event_ms": float(np.percentile(ms, 99)) if ms else float("nan"),
                "latencies_ms": sorted(round(v, 1) for v in ms), "_log": str(log_path), "_lat": lat}
    finally:
        await cons.stop()
        await prod.stop()
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()


def stage_breakdown(log_path: str, latency_ms: dict[float, float]) -> dict[str, dict[str, float]]:
    """p50/p99/max of each planning stage over the worker's window decisions for the windows
    of the latency phase (`latency_ms`: window_end -> ms), from its JSON log lines."""
    seen: dict[str, list[float]] = {}
    outside, miss_ms = [], []
    for line in Path(log_path).read_text(errors="replace").splitlines():
        if '"plan.published"' not in line:
            continue
        try:
            doc = json.loads(line[line.index("{"):])
        except ValueError:
            continue
        if doc.get("window_end") not in latency_ms or doc.get("method") != "gh":
            continue  # the latency phase's window decisions (AGH follow-ups are off the path)
        stage_ms = doc.get("stage_ms") or {}
        for k in STAGES:
            seen.setdefault(k, []).append(float(stage_ms.get(k, 0.0)))
        outside.append(latency_ms[doc["window_end"]] - float(stage_ms.get("total", 0.0)))
        if doc.get("compiled_qts"):
            miss_ms.append(latency_ms[doc["window_end"]])
    seen["outside on_window"] = outside
    seen["latency, windows with a compile miss"] = miss_ms
    return {k: {"n": len(v), "p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
                "max": float(max(v))} for k, v in seen.items() if v and max(v) > 0}


def drift_path(n_steps: int) -> dict[str, float]:
    """In process, catalog size: demand steps every window with drift on (dwell 0). The window
    decision publishes GH at once; AGH runs in the follow-up (agh_deadline_s default)."""
    from controller.worker.planning.planner import Planner, new_planner_state
    from schemas import DemandWindow, QueryDemand, load_catalog

    settings = Settings(min_dwell_s=0, audit_enabled=False, window_s=10.0, grace_s=0.5)
    planner = Planner(load_catalog(), settings)
    state = new_planner_state()
    planner.on_startup(state, settings.fleet_id, T0)
    window_ms, follow_ms, agh_events, drift_windows = [], [], 0, 0
    for w in range(n_steps):
        scale = (1.0, 4.0)[w % 2]
        demand = [QueryDemand(query_type=q, count=int(r * scale * 10), arrival_rate=r * scale,
                              input_tokens_mean=h, input_tokens_p95=2 * h, output_tokens_mean=f,
                              output_tokens_p95=2 * f)
                  for q, r, h, f in (("code", 4.0, 2048, 28), ("conversation", 9.0, 1155, 211))]
        window = DemandWindow(window_start=T0 + 10 * w, window_end=T0 + 10 * (w + 1), records=1, demand=demand)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            d = planner.on_window(state, window, time.time())
            t1 = time.perf_counter()
            if d.follow_up is None:
                continue
            drift_windows += 1
            window_ms.append((t1 - t0) * 1e3)
            f = planner.follow_up(state, d.follow_up)
        follow_ms.append((time.perf_counter() - t1) * 1e3)
        agh_events += len(f.events)
    pct = lambda v, q: float(np.percentile(v, q)) if v else float("nan")  # noqa: E731
    return {"drift_windows": drift_windows, "agh_events": agh_events,
            "window_decision_p50_ms": pct(window_ms, 50), "window_decision_p99_ms": pct(window_ms, 99),
            "agh_follow_up_p50_ms": pct(follow_ms, 50), "agh_follow_up_p99_ms": pct(follow_ms, 99),
            "agh_deadline_s": settings.agh_deadline_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    n_batches, n_windows = (200, 10) if args.quick else (1000, 30)
    with EmbeddedBroker() as b:
        raw = asyncio.run(raw_baseline(b.bootstrap_servers, 20000 if args.quick else 50000, 100 if args.quick else 300))
        ctl = asyncio.run(controller_run(b.bootstrap_servers, n_batches, n_windows, 12 if args.quick else 40))
        _IDS["on"] = True  # the same ingest burst, every record with a request_id (de-duplicated)
        ids = asyncio.run(controller_run(b.bootstrap_servers, n_batches, n_windows, 0))
        _IDS["on"] = False
    stages = stage_breakdown(ctl.pop("_log"), ctl.pop("_lat"))
    drift = drift_path(6 if args.quick else 16)
    res = {**ctl, **raw, "stage_ms": stages, "drift_path": drift,
           "ingest_vs_raw_records": ctl["records_per_s"] / raw["raw_records_per_s"],
           "ingest_vs_raw_single_msgs": ctl["records_per_s"] / raw["raw_msgs_per_s"],
           "target_records_per_s": 50000, "target_p99_ms": 200,
           "records_per_s_with_request_ids": ids["records_per_s"],
           "request_id_dedup_ratio": ids["records_per_s"] / ctl["records_per_s"]}
    rows = [["controller ingest (batched, 1 worker)", f"{ctl['records_per_s']:,.0f} records/s",
             f"{ctl['records']:,} of {ctl['expected_records']:,} counted"],
            ["controller ingest, every record with a request_id", f"{ids['records_per_s']:,.0f} records/s",
             f"{ids['records']:,} of {ids['expected_records']:,} counted; "
             f"{res['request_id_dedup_ratio']:.2f} of the run without ids"],
            ["raw aiokafka consume + JSON decode, batches", f"{raw['raw_records_per_s']:,.0f} records/s", ""],
            ["raw aiokafka consume + JSON decode, single records", f"{raw['raw_msgs_per_s']:,.0f} msgs/s", ""],
            ["ingest / raw (batches)", f"{res['ingest_vs_raw_records']:.2f}", ""],
            ["ingest / raw (single-record msgs)", f"{res['ingest_vs_raw_single_msgs']:.2f}", "target 50,000 records/s"],
            ["window close -> allocation event p50", f"{ctl['p50_window_to_event_ms']:.0f} ms", f"{ctl['events']} events"],
            ["window close -> allocation event p99", f"{ctl['p99_window_to_event_ms']:.0f} ms", "target 200 ms, GH at catalog size"]]
    stage_rows = [[k, v["n"], f"{v['p50']:.1f}", f"{v['p99']:.1f}", f"{v['max']:.1f}"] for k, v in stages.items()]
    drift_rows = [["window decision (GH, published at once)", f"{drift['window_decision_p50_ms']:.0f} ms",
                   f"{drift['window_decision_p99_ms']:.0f} ms"],
                  ["AGH follow-up (after the GH event is out)", f"{drift['agh_follow_up_p50_ms']:.0f} ms",
                   f"{drift['agh_follow_up_p99_ms']:.0f} ms"]]
    drift_note = (f"{drift['drift_windows']} drift windows, {drift['agh_events']} AGH plans published "
                  f"(agh_deadline_s {drift['agh_deadline_s']})")
    if not args.no_doc:
        update_section("controller", f"## Controller (embedded broker)\n\n`python scripts/bench_controller.py"
                       f"{' --quick' if args.quick else ''}` on {machine()}: {n_batches} batch messages of "
                       f"{BATCH} records over {n_windows} windows; latency over windows paced 0.5 s apart, GH "
                       f"re-planning each, code prompts 6 % longer every 4th window (a token bucket never "
                       f"compiled).\n\n" + md_table(["measure", "value", "note"], rows)
                       + "\n\nWhere the window -> event time goes (ms, worker log, latency-phase windows; "
                       "`total` is `Planner.on_window`):\n\n" + md_table(["stage", "n", "p50", "p99", "max"], stage_rows)
                       + f"\n\nDrift path in process at catalog size ({drift_note}):\n\n"
                       + md_table(["step", "p50", "p99"], drift_rows))
    for r in rows:
        print(f"{r[0]:<55} {r[1]:>22}  {r[2]}")
    print(f"{'stage (ms)':<40} {'n':>4} {'p50':>8} {'p99':>8} {'max':>8}")
    for r in stage_rows:
        print(f"{r[0]:<40} {r[1]:>4} {r[2]:>8} {r[3]:>8} {r[4]:>8}")
    for r in drift_rows:
        print(f"{r[0]:<55} {r[1]:>10} {r[2]:>10}  {drift_note}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
