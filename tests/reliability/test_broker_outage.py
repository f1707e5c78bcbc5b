"""Scenario 2: the broker goes away for N seconds while two workers and a router run.

* **state kept**: a TCP proxy in front of the broker cuts every connection and refuses new
  ones (a restarted real Kafka, or a network partition, looks like this to clients). Workers
  and router must notice, retry with backoff, report the outage in metrics and logs, keep
  their plan, and resume: every record counted once, windows and epochs contiguous.
* **empty broker**: the embedded broker is stopped and a new one is started on the same
  port. It keeps nothing, so it is another cluster. The workers re-create the topics, the
  leader republishes the plan in force at the next epoch, the workers restart; the router
  keeps its plan throughout and never goes back to an older epoch; records produced after
  the recovery are all counted.
"""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from controller.worker.ingest import ticks
from controller.devtools.broker import EmbeddedBroker, free_port
from tests.e2e.harness import REPO, TICK_KEY, Cluster, batch, collect, produce
from tests.reliability.conftest import Figures, scaled
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = pytest.mark.broker
OUTAGE_S = scaled(10, 60)
RATES = {"conversation": 6.0, "code": 2.0}


def _events(path: Path, name: str) -> list[dict[str, Any]]:
    """JSON log lines of one event name."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if f'"{name}"' in line:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == name:
                out.append(rec)
    return out


def _metric(port: int, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


async def _until(pred: Any, timeout: float, what: str, logs: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


class Fleet:
    """Two workers (each with its metrics port) and a router process on one cluster."""

    def __init__(self, bootstrap: str, tmp: Path) -> None:
        # no audit adoption: a plan adopted from an audit seconds later would race the outage
        self.c = Cluster(bootstrap, tmp, LLMFLEET_BROKER_BACKOFF_MAX_S="2", LLMFLEET_BROKER_RECOVERY_WAIT_S="10",
                         LLMFLEET_AUDIT_ADOPT="false")
        self.tmp = tmp
        self.ports = [free_port(), free_port()]
        for p in self.ports:
            self.c.start_worker(LLMFLEET_WEB_PORT=str(p))
        self.router_log = tmp / "router.log"
        with open(self.router_log, "wb") as out:
            self.router = subprocess.Popen([sys.executable, "-m", "controller.cli", "router", "--cold-start", "0"],
                                           env=self.c.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    @property
    def worker_logs(self) -> list[Path]:
        return [self.tmp / f"worker{k}.log" for k in range(len(self.ports))]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for p in self.worker_logs for e in _events(p, name)]

    def router_epochs(self) -> list[int]:
        return [e["epoch"] for e in _events(self.router_log, "router.epoch_applied")]

    def logs(self) -> str:
        return self.c.logs() + "\nROUTER:\n" + self.router_log.read_text(errors="replace")[-3000:]

    def metric(self, name: str) -> list[float | None]:
        return [_metric(p, name) for p in self.ports]

    def close(self) -> None:
        if self.router.poll() is None:
            self.router.terminate()
            try:
                self.router.wait(10)
            except subprocess.TimeoutExpired:
                self.router.kill()
        self.c.close()


async def _feed(bootstrap: str, topic: str, t0: float, seconds: int, start: float) -> int:
    """Telemetry for [t0+start, t0+start+seconds) and ticks that close its windows; the count."""
    values = batch(t0, seconds, RATES, start=start)
    await produce(bootstrap, topic, values)
    await produce(bootstrap, topic, [ticks.make(TICK_KEY, topic, part, t0 + start + seconds + 5) for part in range(4)])
    return sum(len(json.loads(v)["ts"]) for v in values)


async def _settled_events(bootstrap: str, topic: str, quiet_s: float = 3.0) -> list[dict[str, Any]]:
    """The allocation events once no new one arrived for `quiet_s` (follow-ups are out)."""
    seen = -1
    while True:
        events = (await collect(bootstrap, [topic], lambda g: False, timeout=quiet_s))[topic]
        if len(events) == seen:
            return events
        seen = len(events)


async def _demand(bootstrap: str, topic: str, records: int, timeout: float) -> list[dict[str, Any]]:
    got = await collect(bootstrap, [topic], lambda g: sum(w["records"] for w in g[topic]) >= records,
                        timeout=timeout)
    return got[topic]


async def test_outage_with_state_kept(tmp_path: Path, figures: Figures) -> None:
    proxy_port = free_port()
    broker = EmbeddedBroker(advertised_port=proxy_port).start()
    proxy = TcpProxy(broker.port, proxy_port).start()
    bootstrap = f"127.0.0.1:{proxy_port}"
    f = Fleet(bootstrap, tmp_path)
    t = f.c.topics
    t0 = float(int(time.time()) // 10 * 10) - 600
    try:
        before = await _feed(bootstrap, t.telemetry, t0, 30, 0)
        got = await _demand(bootstrap, t.demand, before, timeout=90)
        assert sum(w["records"] for w in got) == before, f.logs()
        epoch_before = (await _settled_events(bootstrap, t.allocations))[-1]["epoch"]
        await _until(lambda: f.router_epochs()[-1:] == [epoch_before], 30, "the router on the last plan", f.logs)
        pids = [p.pid for p in f.c.procs]

        proxy.cut()
        cut_at = time.monotonic()
        await _until(lambda: all(v == 0.0 for v in f.metric("llmfleet_broker_up")), OUTAGE_S,
                     "llmfleet_broker_up 0 on both workers", f.logs)
        seen_down_s = time.monotonic() - cut_at
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        assert f.router_epochs()[-1] == epoch_before, "the router keeps its plan during the outage"
        proxy.resume()
        outage = time.monotonic() - cut_at

        await _until(lambda: all(v == 1.0 for v in f.metric("llmfleet_broker_up")), 30,
                     "llmfleet_broker_up 1 again", f.logs)
        after = await _feed(bootstrap, t.telemetry, t0, 30, 30)
        windows = await _demand(bootstrap, t.demand, before + after, timeout=120)
        counted = sum(w["records"] for w in windows)
        per_window = [(w["window_start"], w["records"], w["late_records"]) for w in windows]
        assert counted == before + after, f"{counted} of {before + after} records counted {per_window}\n{f.logs()}"
        starts = [w["window_start"] for w in windows]
        assert starts == sorted(set(starts)) and all(b - a == 10 for a, b in zip(starts, starts[1:])), starts
        events = (await collect(bootstrap, [t.allocations], lambda g: False, timeout=3))[t.allocations]
        epochs = [e["epoch"] for e in events]
        assert epochs == list(range(1, len(epochs) + 1)), epochs
        await _until(lambda: f.router_epochs()[-1] == epochs[-1], 30, f"the router at epoch {epochs[-1]}", f.logs)
        assert f.router_epochs() == sorted(set(f.router_epochs())), "the router never goes back"

        assert [p.pid for p in f.c.procs] == pids and all(p.poll() is None for p in f.c.procs), "no restart"
        assert not f.events("worker.restarting") and not f.events("broker.reset"), "state kept: no reset"
        assert len(f.events("broker.unreachable")) == 2 and len(f.events("broker.recovered")) == 2, f.logs()
        assert _events(f.router_log, "broker.unreachable") and _events(f.router_log, "broker.recovered")
        retries = [e["in_s"] for e in f.events("broker.retry")]
        assert max(retries) > 2 * min(retries), f"retries back off: {retries}"
        assert f.metric("llmfleet_broker_outages_total") == [1.0, 1.0]
        secs = f.metric("llmfleet_broker_outage_seconds_total")
        assert all(s is not None and 0.5 * outage <= s <= outage + 3 for s in secs), (secs, outage)

        figures.add("outage", round(outage, 1), "s", "proxy cut every connection; the broker kept its state")
        figures.add("outage noticed by both workers", f"{seen_down_s:.1f}", "s", "llmfleet_broker_up = 0")
        figures.add("outage seconds reported", " / ".join(f"{s:.1f}" for s in secs), "s",
                    "llmfleet_broker_outage_seconds_total per worker")
        figures.add("retry waits", " ".join(f"{r:g}" for r in sorted(set(retries))[:6]), "s",
                    "exponential backoff with jitter, capped (2 s in this test)")
        figures.add("records counted", f"{counted} of {before + after}", note="before and after the outage")
        figures.add("windows", len(windows), note="contiguous across the outage")
        figures.add("epochs", f"1..{epochs[-1]}", note="contiguous; router ends on the last; no restart")
    finally:
        f.close()
        proxy.close()
        broker.stop()


async def test_empty_broker_on_the_same_port(tmp_path: Path, figures: Figures) -> None:
    broker = EmbeddedBroker().start()
    bootstrap = broker.bootstrap_servers
    f = Fleet(bootstrap, tmp_path)
    t = f.c.topics
    t0 = float(int(time.time()) // 10 * 10) - 600
    second: EmbeddedBroker | None = None
    try:
        before = await _feed(bootstrap, t.telemetry, t0, 30, 0)
        assert sum(w["records"] for w in await _demand(bootstrap, t.demand, before, timeout=90)) == before, f.logs()
        last = (await _settled_events(bootstrap, t.allocations))[-1]
        await _until(lambda: f.router_epochs()[-1:] == [last["epoch"]], 30, "the router on the last plan", f.logs)

        old_cluster = broker.cluster_id
        stopped_at = time.monotonic()  # tansu stops answering at SIGTERM, seconds before it exits
        broker.stop()
        await _until(lambda: all(v == 0.0 for v in f.metric("llmfleet_broker_up")), OUTAGE_S,
                     "llmfleet_broker_up 0 on both workers", f.logs)
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
        assert f.router_epochs()[-1] == last["epoch"], "the router keeps its plan during the outage"
        second = EmbeddedBroker(port=broker.port).start()
        assert second.cluster_id != old_cluster
        outage = time.monotonic() - stopped_at

        await _until(lambda: len(f.events("worker.restarting")) == 2, 60, "both workers restarting", f.logs)
        recovered_at = time.monotonic()
        got = await collect(bootstrap, [t.allocations], lambda g: bool(g[t.allocations]), timeout=30)
        first = got[t.allocations][0]
        assert (first["epoch"], first["trigger"]) == (last["epoch"] + 1, "recovered"), first
        assert first["plan"] == last["plan"], "the plan in force is what comes back"
        await _until(lambda: f.router_epochs()[-1] == last["epoch"] + 1, 30, "the router on the republished plan",
                     f.logs)
        router_s = time.monotonic() - recovered_at
        # the restarted workers count what arrives on the new cluster
        after = await _feed(bootstrap, t.telemetry, t0, 30, 100)
        windows = await _demand(bootstrap, t.demand, after, timeout=120)
        counted = sum(w["records"] for w in windows)
        assert counted == after, f"{counted} of {after} records counted after the recovery\n{f.logs()}"
        events = (await collect(bootstrap, [t.allocations], lambda g: False, timeout=3))[t.allocations]
        epochs = [e["epoch"] for e in events]
        assert epochs == list(range(last["epoch"] + 1, last["epoch"] + 1 + len(epochs))), epochs
        await _until(lambda: f.router_epochs()[-1] == epochs[-1], 30, f"the router at epoch {epochs[-1]}", f.logs)
        applied = f.router_epochs()
        assert applied == sorted(set(applied)), f"the router never goes back: {applied}"

        assert f.router.poll() is None, "the router process survives"
        assert all(p.poll() is None for p in f.c.procs), f.logs()
        assert len(f.events("broker.reset")) >= 2 and _events(f.router_log, "broker.reset"), f.logs()
        assert len(f.events("plan.republished")) == 1, "one worker held the plan in force"
        await _until(lambda: f.metric("llmfleet_broker_resets_total") == [1.0, 1.0], 30,
                     "the reset counted by both restarted workers", f.logs)
        secs = f.metric("llmfleet_broker_outage_seconds_total")
        assert all(s is not None and 0.5 * outage <= s <= outage + 3 for s in secs), (secs, outage)

        figures.add("outage", round(outage, 1), "s", "broker stopped; a new, empty one on the same port")
        figures.add("outage seconds reported", " / ".join(f"{s:.1f}" for s in secs), "s",
                    "carried over the workers' restart")
        figures.add("plan in force", f"epoch {last['epoch']} -> {last['epoch'] + 1}", note="republished, trigger "
                    "recovered, same deployments; the router kept it throughout")
        figures.add("router on the republished plan", f"{router_s:.1f}", "s", "after both workers restarted")
        figures.add("records counted after recovery", f"{counted} of {after}")
        figures.add("epochs after recovery", f"{epochs[0]}..{epochs[-1]}", note="contiguous; router never back")
    finally:
        f.close()
        if second is not None:
            second.stop()
        broker.stop()
