"""Run controller workers as real processes against a real broker, feed and read topics."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from controller.worker.ingest import ticks
from controller.common.settings import Settings, Topics
from controller.common.topic_admin import topic_partitions
from schemas import RequestRecord, TelemetryBatch

REPO = Path(__file__).resolve().parents[2]
TICK_KEY = "llmfleet-test-tick-key"  # the test workers' tick_key: only ticks signed with it count


#: the planning of these tests' expectations: a catalog startup plan, GH re-plans every window,
#: AGH on drift (tests/e2e/test_fast_path.py runs the defaults: two timescales, fast path)
LEGACY_PLANNING = {"LLMFLEET_REPLAN": "every_window", "LLMFLEET_FAST_PATH": "false",
                   "LLMFLEET_STARTUP_PLAN": "catalog", "LLMFLEET_SCALE_DOWN_DELAY_S": "0"}


class Cluster:
    """Topic names unique to one test, and the worker processes started for it."""

    def __init__(self, bootstrap: str, tmp: Path, **overrides: str) -> None:
        self.bootstrap = bootstrap
        self.tmp = tmp
        tag = uuid.uuid4().hex[:8]
        self.topics = Topics(**{f: f"t{tag}.{f}" for f in Topics.model_fields})
        self.env = {**os.environ, "LLMFLEET_BOOTSTRAP_SERVERS": bootstrap, "LLMFLEET_CONSUMER_GROUP": f"g{tag}",
                    "LLMFLEET_WINDOW_S": "10", "LLMFLEET_GRACE_S": "1", "LLMFLEET_MIN_DWELL_S": "0",
                    "LLMFLEET_WEB_PORT": "0", "LLMFLEET_AGH_DEADLINE_S": "0.2",
                    "LLMFLEET_AUDIT_TIME_LIMIT_S": "5", "LLMFLEET_IDLE_S": "0.5", "LLMFLEET_TICK_KEY": TICK_KEY,
                    "PYTHONPATH": str(REPO), **LEGACY_PLANNING}
        self.env.update({f"LLMFLEET_TOPICS__{f.upper()}": getattr(self.topics, f) for f in Topics.model_fields})
        self.env.update(overrides)
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def settings(self) -> Settings:
        return Settings(bootstrap_servers=self.bootstrap, topics=self.topics, window_s=float(self.env["LLMFLEET_WINDOW_S"]),
                        tick_key=self.env["LLMFLEET_TICK_KEY"],
                        **{k.removeprefix("LLMFLEET_").lower(): v for k, v in self.env.items()
                           if k in LEGACY_PLANNING})

    def tick(self, partition: int, wm: float) -> bytes:
        """A tick the cluster's workers accept (signed with its tick key)."""
        return ticks.make(self.env["LLMFLEET_TICK_KEY"], self.topics.telemetry, partition, wm)

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        """A worker process logging to worker<k>.log; `env` adds to or overrides the cluster's."""
        log = open(self.tmp / f"worker{len(self.procs)}.log", "wb")  # noqa: SIM115
        p = subprocess.Popen([sys.executable, "-m", "controller.worker.run"], env={**self.env, **env}, cwd=REPO,
                             stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def kill(self, p: subprocess.Popen[bytes], hard: bool = False) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def close(self) -> None:
        for p in self.procs:
            self.kill(p, hard=True)

    def logs(self) -> str:
        return "\n".join(f.read_text(errors="replace")[-3000:] for f in sorted(self.tmp.glob("worker*.log")))


def batch(t0: float, seconds: int, rates: dict[str, float], start: float = 0.0) -> list[bytes]:
    """One TelemetryBatch per event-time second with `rates` requests/s per query type."""
    out = []
    for k in range(seconds):
        recs = []
        for q, r in rates.items():
            n = int(r)
            recs += [RequestRecord(ts=t0 + start + k + i / max(n, 1), query_type=q,
                                   input_tokens=1200 if q == "code" else 800,
                                   output_tokens=30 if q == "code" else 200) for i in range(n)]
        recs.sort(key=lambda r: r.ts)
        out.append(TelemetryBatch.from_records(recs, producer="test").model_dump_json().encode())
    return out


async def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int = 4) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    try:
        for k, v in enumerate(values):
            await p.send_and_wait(topic, v, partition=k % partitions)
    finally:
        await p.stop()


async def wait_committed_past(bootstrap: str, group: str, topic: str, timeout: float = 20.0) -> dict[int, tuple[int, int]]:
    """Wait until `group` has committed, on every partition of `topic`, at least the end offset
    seen on entry. Returns the partitions still behind: {partition: (end, committed; -1: none)}.
    A consumer that dropped messages never acks them, so its commit stays behind for good."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    behind: dict[int, tuple[int, int]] = {}
    try:
        tps = await topic_partitions(c, topic)
        ends = await c.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            behind = {}
            for tp in tps:
                committed = await c.committed(tp)
                committed = -1 if committed is None else committed
                if committed < ends[tp]:
                    behind[tp.partition] = (ends[tp], committed)
            if not behind or asyncio.get_running_loop().time() > deadline:
                return behind
            await asyncio.sleep(0.5)
    finally:
        await c.stop()


async def collect(bootstrap: str, topics: list[str], done: Callable[[dict[str, list[Any]]], bool],
                  timeout: float = 60.0) -> dict[str, list[Any]]:
    c = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await c.start()
    got: dict[str, list[Any]] = {t: [] for t in topics}
    try:
        async with asyncio.timeout(timeout):
            while not done(got):
                for tp, msgs in (await c.getmany(timeout_ms=300)).items():
                    got[tp.topic] += [json.loads(m.value) for m in msgs]
    except TimeoutError:
        pass
    finally:
        await c.stop()
    return got
