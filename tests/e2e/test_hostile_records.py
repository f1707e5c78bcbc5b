"""One bad producer cannot wedge the worker: far-future and 1e308 timestamps, a forged tick
from 2100, lax types and one bad record inside a batch are dead-lettered one by one with
their reasons, every good record is counted, and windows keep closing afterwards."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Cluster, batch, collect, produce

pytestmark = pytest.mark.broker


async def test_hostile_records_are_dead_lettered_and_windows_keep_closing(broker: str, tmp_path: Path) -> None:
    c = Cluster(broker, tmp_path)
    try:
        t = c.topics
        t0 = math.floor((time.time() - 3600) / 10) * 10      # an hour ago, on a 10 s window
        good = batch(t0, 30, {"code": 4, "conversation": 6})   # 300 records
        mixed = {"kind": "batch", "ts": [t0 + 30 + k * 0.1 for k in range(10)],
                 "input_tokens": [100] * 10, "output_tokens": [10] * 10, "query_type": ["code"] * 10}
        mixed["ts"][3] = 4_102_444_800.0                       # the year 2100
        mixed["input_tokens"][7] = -4                          # one invalid record
        hostile = [json.dumps(mixed).encode(),
                   json.dumps({"kind": "request", "ts": 1e308, "input_tokens": 5, "output_tokens": 1}).encode(),
                   json.dumps({"kind": "request", "ts": 0, "input_tokens": 5, "output_tokens": 1}).encode(),
                   json.dumps({"kind": "request", "ts": t0 + 31, "input_tokens": "123", "output_tokens": 1}).encode(),
                   json.dumps({"kind": "tick", "wm": 4_102_444_800.0}).encode()]
        later = batch(t0, 30, {"code": 4, "conversation": 6}, start=40)
        await produce(c.bootstrap, t.telemetry, good + hostile + later)
        c.start_worker()
        expected = 300 + 8 + 300
        got = await collect(c.bootstrap, [t.demand, t.dlq],
                            lambda g: sum(w["records"] for w in g[t.demand]) >= 308 and len(g[t.dlq]) >= 6,
                            timeout=90)
        reasons = [d["reason"] for d in got[t.dlq]]
        assert any(r.startswith("record 3:") and "max_future_s" in r for r in reasons), reasons
        assert any(r.startswith("record 7 of 10") for r in reasons), reasons
        assert any("not a finite" in r or "max_future_s" in r for r in reasons if not r.startswith("record 3"))
        assert any("max_event_age_s" in r for r in reasons), reasons
        assert any("JSON integer" in r for r in reasons), reasons
        assert any(r.startswith("tick watermark") for r in reasons), reasons
        # not wedged: the windows after the hostile messages close and count every good record
        await produce(c.bootstrap, t.telemetry, [json.dumps({"kind": "tick", "wm": t0 + 200}).encode()] * 4)
        got = await collect(c.bootstrap, [t.demand], lambda g: sum(w["records"] for w in g[t.demand]) >= expected,
                            timeout=60)
        windows = got[t.demand]
        assert sum(w["records"] for w in windows) == expected, c.logs()
        assert max(w["window_end"] for w in windows) <= t0 + 200
    finally:
        c.close()
