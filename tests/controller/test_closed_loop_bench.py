"""The closed-loop benchmark's harness: its quick run checks its own invariants, the reactive
baseline behaves like an HPA, and traces load through a column mapping with clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from controller.sim import closed_loop_bench as clb
from controller.replay.trace_reader import TraceError
from schemas import load_catalog


def test_quick_run_accounts_for_every_request(tmp_path, capsys) -> None:
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_closed_loop.py"
    spec = importlib.util.spec_from_file_location("bench_closed_loop", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_closed_loop"] = mod
    spec.loader.exec_module(mod)
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["invariants_ok"] and set(last["policies"]) == {"llmfleet", "oracle"}
    assert last["policies"]["oracle"]["within_slo"] > 0.99, "perfect foresight keeps the SLOs"
    assert last["policies"]["llmfleet"]["requests"] == last["requests"]
    assert list(tmp_path.glob("*.png"))


def test_cost_is_the_integral_of_replica_time() -> None:
    arr = clb.synthetic("step", minutes=4.0, low=10.0, high=40.0)
    res = clb.run_static(arr, load_catalog(), clb.BenchConfig(), peak=True)
    assert clb.check_invariants(arr, res) == []
    plan = clb._static_plan(arr, load_catalog(), clb.BenchConfig(), peak=True)
    prices = {g.id: g.price_per_hour for g in load_catalog().gpus}
    per_hour = sum(d.replicas * d.tp * d.pp * prices[d.gpu] for d in plan.deployments)
    assert res.dollars == pytest.approx(per_hour * res.hours, rel=1e-9)


def test_reactive_scales_up_at_once_and_down_after_stabilisation() -> None:
    low, high = 10.0, 80.0
    rng = np.random.default_rng(1)
    segs = [(0.0, 180.0, low), (180.0, 360.0, high), (360.0, 900.0, low)]
    ts = np.sort(np.concatenate([a + rng.random(rng.poisson(r * (b - a))) * (b - a) for a, b, r in segs]))
    n = len(ts)
    arr = clb.Arrivals("step up and down", clb.T0 + ts, np.full(n, "conversation"), np.full(n, 1155),
                       np.full(n, 211))
    res = clb.run_reactive(arr, load_catalog(), clb.BenchConfig(), clb.Reactive())
    rate = [w["dollars"] / w["hours"] for w in res.windows]
    k0 = 3  # the window the step up lands in (60 s windows)
    assert max(rate[k0:k0 + 3]) > 1.5 * rate[1], "replicas added on the step up"
    # down at 360 s: the highest recommendation of the last 300 s keeps them until ~660 s
    assert min(rate[6:10]) > 1.5 * rate[1], "no scale-down inside the stabilisation window"
    assert rate[-1] < 0.75 * max(rate[k0:k0 + 3]), "scaled down after it"
    assert clb.check_invariants(arr, res) == []


def test_jsonl_trace_with_millisecond_timestamps(tmp_path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"timestamp": 1_700_000_000_000 + 250 * k, "input_length": 100 + k,
                                     "output_length": 20}) + "\n" for k in range(40)))
    arr = clb.from_file(p, "ts=timestamp,input=input_length,output=output_length", time_unit="ms",
                        query_type="conversation")
    assert len(arr) == 40 and np.allclose(np.diff(arr.ts), 0.25) and set(arr.query_type) == {"conversation"}
    p.write_text(p.read_text() + json.dumps({"timestamp": 1_700_000_010_000, "input_length": -3,
                                             "output_length": 20}) + "\n")
    with pytest.raises(TraceError, match=r"t.jsonl:41: input_length -3"):
        clb.from_file(p, "ts=timestamp,input=input_length,output=output_length", time_unit="ms",
                      query_type="conversation")
    with pytest.raises(ValueError, match="query-type"):
        clb.from_file(p, "ts=timestamp,input=input_length,output=output_length")
