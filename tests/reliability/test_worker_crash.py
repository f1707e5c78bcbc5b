"""Scenario 1: kill -9 the planning worker in the middle of a trace replay, then restart it.

Two workers share the group; the one that plans (the leader) is killed mid-replay of the
bundled Azure trace and restarted. Afterwards every replayed record must be in exactly one
demand window, windows must follow each other with none missing or repeated, and the
allocation epochs must run 1, 2, 3, ... with no duplicate and no gap, and the group's committed
offsets must reach the end of the telemetry and windows topics (nothing dropped in a worker).
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import REPO, Cluster, collect, produce, wait_committed_past
from tests.reliability.conftest import Figures, scaled

pytestmark = pytest.mark.broker
SPEED = 25.0  # the bundled excerpt (about 11 minutes, 6,447 requests) in about 27 s


def _leader(c: Cluster) -> int:
    for k, _ in enumerate(c.procs):
        text = (c.tmp / f"worker{k}.log").read_text(errors="replace")
        if "plan.published" in text:
            return k
    raise AssertionError("no worker has published a plan\n" + c.logs())


async def test_leader_killed_mid_replay_loses_and_repeats_nothing(broker: str, tmp_path: Path,
                                                                  figures: Figures) -> None:
    loops = int(scaled(1, 6))
    c = Cluster(broker, tmp_path)
    t = c.topics
    try:
        c.start_worker()
        c.start_worker()
        replay = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "replay", "--bundled", "--speed", str(SPEED),
             "--loop", str(loops), "--topic", t.telemetry, "--no-progress"],
            env=c.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        got = await collect(broker, [t.allocations], lambda g: len(g[t.allocations]) >= 2, timeout=60)
        assert got[t.allocations], c.logs()
        await asyncio.sleep(3)
        victim = _leader(c)
        assert replay.poll() is None, "the replay is still running when the leader dies"
        c.kill(c.procs[victim], hard=True)
        killed_at = time.monotonic()
        await asyncio.sleep(2)
        c.start_worker()  # the restarted worker rejoins the group
        out, _ = await asyncio.to_thread(replay.communicate, timeout=scaled(120, 600))
        assert replay.returncode == 0, out
        m = re.search(r"replayed (\d+) records", out)
        assert m, out
        records = int(m.group(1))
        # move every partition past the last window so everything closes
        wm = time.time() + 3000  # within event_time_bound_s of the clock
        await produce(broker, t.telemetry, [c.tick(part, wm) for part in range(4)])

        got = await collect(broker, [t.demand, t.allocations],
                            lambda g: sum(w["records"] for w in g[t.demand]) >= records,
                            timeout=scaled(90, 300))
        windows = got[t.demand]
        counted = sum(w["records"] for w in windows)
        late = sum(w["late_records"] for w in windows)
        assert (counted, late) == (records, 0), f"{counted} of {records} replayed records counted, {late} late\n{c.logs()}"
        starts = [w["window_start"] for w in windows]
        assert len(starts) == len(set(starts)), "no window published twice"
        # no window missing: each starts where the one before ended (the final tick's empty hour
        # after the replay is covered by a few empty windows and one long one, window_assembly)
        assert all(a["window_end"] == b["window_start"] for a, b in zip(windows, windows[1:])), "no window missing"
        assert all(w["window_end"] - w["window_start"] == 10 for w in windows if w["records"]), "data windows are 10 s"
        epochs = [e["epoch"] for e in got[t.allocations]]
        assert epochs == list(range(1, len(epochs) + 1)), f"epochs contiguous: {epochs}"
        recovered = [e for e in got[t.allocations] if e["created_at"] > time.time() - (time.monotonic() - killed_at)]
        assert recovered, "plans resumed after the crash"
        # nothing dropped inside the workers either: a message fetched but never processed is
        # never acked, and the group's commit would stay behind on its partition for good
        group = c.env["LLMFLEET_CONSUMER_GROUP"]
        for topic in (t.telemetry, t.windows):
            behind = await wait_committed_past(broker, group, topic, timeout=30)
            assert not behind, f"{topic}: (end, committed) by partition {behind}\n{c.logs()}"

        figures.add("replayed records", records, note=f"bundled Azure excerpt x{loops}, speed {SPEED:g}x")
        figures.add("records counted in windows", f"{counted} of {records}", note="none lost, none twice")
        figures.add("windows", len(windows), note="contiguous, none repeated")
        figures.add("allocation epochs", f"1..{epochs[-1]}", note=f"{len(epochs)} events, no gap, no duplicate")
        figures.add("epochs published after the kill", len(recovered))
    finally:
        c.close()
