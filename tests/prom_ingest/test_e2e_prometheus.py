"""End to end with the real Prometheus server: simulated vLLM engines -> Prometheus -> ingest ->
telemetry topic -> a real controller worker -> demand windows that match the simulated traffic.

Traffic: Poisson arrivals at known rates per query type (code 12/s on `llama-code`, conversation
20/s on `llama-chat`), each recorded by its engine's vLLM-named histograms at once. Prometheus
scrapes every S = 1 s; the ingest (the `llmfleet ingest prometheus` command, in its own process)
polls every P = 1 s, maps query types by model name, and serves its own counters, which Prometheus
scrapes as well.
The resolution the metrics allow, which the test asserts:
- over the run, every request is counted once, in its query type (counters are exact);
- a window's count is off at most by the requests that arrived within S + P (+0.5 s of query and
  scrape latency) of its two edges: the metrics date a request by the poll interval that first sees it;
- token means: the sum is exact, so the per-type mean is within rounding.
"""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.e2e.harness import REPO, Cluster, collect, produce
from tests.prom_ingest.fake_vllm import FakeVllm, Traffic
from tests.prometheus_server import free_port

pytestmark = pytest.mark.broker
S, P = 1.0, 1.0
EDGE_S = S + P + 0.5
RATES = {"code": 12.0, "conversation": 20.0}


async def test_prometheus_metrics_drive_the_controllers_demand_windows(
        broker: str, tmp_path: Path, prometheus_server) -> None:
    engines = {"code": FakeVllm("llama-code"), "conversation": FakeVllm("llama-chat")}
    cluster = Cluster(broker, tmp_path)
    ingest_port = free_port()  # Prometheus scrapes the ingest's own counters too
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("query_type:\n  by: model\n  values: {llama-code: code, llama-chat: conversation}\n")
    ingest: subprocess.Popen[bytes] | None = None
    try:
        prom = prometheus_server([*(e.target for e in engines.values()), f"127.0.0.1:{ingest_port}"],
                                 scrape_interval_s=S)
        await asyncio.to_thread(prom.wait_for, 'up{job="llmfleet"}', lambda r: sum(v for _, v in r) >= 2)
        cluster.start_worker()
        # the real command, publishing into the cluster's telemetry topic
        ingest = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "ingest", "prometheus", "--prometheus-url", prom.url,
             "--match", 'job="llmfleet"', "--mapping", str(mapping), "--poll-s", str(P),
             "--metrics-port", str(ingest_port)],
            env=cluster.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        await asyncio.to_thread(prom.wait_for, "llmfleet_prom_ingest_polls_total", lambda r: bool(r) and r[0][1] >= 1)
        traffic = Traffic(engines, RATES, seed=4)
        traffic.start()
        await asyncio.sleep(35)
        traffic.stop()
        truth = traffic.truth
        total = len(truth.ts)
        # the ingest's own counters, through Prometheus: every simulated request became a record
        await asyncio.to_thread(prom.wait_for, "llmfleet_prom_ingest_records_total",
                                lambda r: bool(r) and r[0][1] == total, timeout_s=30)
        ingest.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(ingest.communicate, timeout=30)
        counters = json.loads(err.decode().split("ingest stopped: ", 1)[1].splitlines()[0])
        assert ingest.returncode == 0 and counters["records"] == total and counters["source_errors"] == 0, counters
        # close every window: signed ticks past the last record on every telemetry partition
        wm = time.time() + 30
        n_part = cluster.settings.telemetry_partitions
        await produce(broker, cluster.topics.telemetry, [cluster.tick(p, wm) for p in range(n_part)],
                      partitions=n_part)
        t = cluster.topics
        got = await collect(broker, [t.demand], lambda g: sum(w["records"] for w in g[t.demand]) >= total,
                            timeout=120)
    finally:
        if ingest is not None and ingest.poll() is None:
            ingest.kill()
            ingest.wait()
        cluster.close()
        for e in engines.values():
            e.stop()
    windows = got[t.demand]
    assert sum(w["records"] for w in windows) == total, cluster.logs()
    assert sum(w["late_records"] for w in windows) == 0
    ts, qt = np.asarray(truth.ts), np.asarray(truth.query_type)
    inp = np.asarray(truth.input_tokens, dtype=float)
    for q in RATES:
        counted = {w["window_start"]: next((d for d in w["demand"] if d["query_type"] == q), None) for w in windows}
        assert sum(d["count"] for d in counted.values() if d) == (qt == q).sum()  # every request once, by type
        errors = []
        for w in windows:
            d = counted[w["window_start"]]
            n = d["count"] if d else 0
            a, b = w["window_start"], w["window_end"]
            true_n = truth.count(q, a, b)
            edge = sum(truth.count(q, e - EDGE_S, e + EDGE_S) for e in (a, b))
            assert abs(n - true_n) <= edge, (q, a - windows[0]["window_start"], n, true_n, edge)
            if true_n and a >= ts.min() and b <= ts.max():
                errors.append(abs(n - true_n) / true_n)
        print(f"{q}: {len(errors)} full windows, rate error mean {np.mean(errors):.3f} max {np.max(errors):.3f}")
        sums = sum(d["input_tokens_mean"] * d["count"] for d in counted.values() if d)
        assert sums / (qt == q).sum() == pytest.approx(inp[qt == q].mean(), rel=0.005)
