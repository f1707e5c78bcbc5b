"""`llmfleet calibrate`: tables and telemetry in, a calibrated catalog out; bad input named by row and field."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.cli import main
from controller.offline.measurements import MeasurementFileError, measurements_from_telemetry, read_measurements
from schemas import RequestRecord, TelemetryBatch, load_catalog
from solvers.perf import route_times

FIELDS = ["model", "gpu", "precision", "tp", "pp", "batch", "input_tokens", "output_tokens", "ttft_s", "tpot_s",
          "latency_s"]
M = "llama-3.1-8b-instruct"


def _truth_instance() -> dict:
    inst = load_catalog().to_instance().to_spec()
    for g in inst["gpus"]:
        if g["id"] == "H100-SXM":
            g["constants"] = {"compute_efficiency": 0.55, "bandwidth_efficiency": 0.62, "step_overhead_s": 0.002}
            g["constants_by_precision"] = {}
    return inst


def _write_table(path: Path) -> None:
    inst = _truth_instance()
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for prec, tp in (("fp16", 1), ("fp16", 2)):
            for h, f in ((2048, 28), (1155, 211)):
                rt = route_times(inst, M, "H100-SXM", prec, tp, 1, h, f)
                for b in (1, 8, 32):
                    w.writerow({"model": M, "gpu": "H100-SXM", "precision": prec, "tp": tp, "pp": 1, "batch": b,
                                "input_tokens": h, "output_tokens": f, "ttft_s": rt.ttft_s if b == 1 else "",
                                "tpot_s": float(rt.tpot(b)[0]), "latency_s": float(rt.latency(b)[0])})


def test_calibrate_writes_a_catalog_that_matches_the_table(tmp_path: Path) -> None:
    table = tmp_path / "m.csv"
    _write_table(table)
    out = tmp_path / "cat"
    res = CliRunner().invoke(main, ["calibrate", str(table), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["accepted"] and report["rms_log_error_after"] < 0.01 < report["rms_log_error_before"]
    cat = load_catalog(out)
    h100 = next(g for g in cat.gpus if g.id == "H100-SXM")
    assert h100.constants.compute_efficiency == pytest.approx(0.55, rel=0.03)
    assert h100.constants.bandwidth_efficiency == pytest.approx(0.62, rel=0.03)
    assert h100.sources["constants.compute_efficiency"] == "calibrate:m.csv"
    # everything but gpus.json is copied as it was
    assert (out / "models.json").read_text() == (Path(load_catalog.__globals__["DEFAULT_CATALOG_DIR"]) /
                                                  "models.json").read_text()
    # the table view prints before/after per configuration
    res = CliRunner().invoke(main, ["calibrate", str(table)])
    assert res.exit_code == 0 and "before" in res.output and "rms log error" in res.output


def test_calibrate_refuses_a_fit_no_better_than_the_catalog(tmp_path: Path) -> None:
    table = tmp_path / "m.csv"
    _write_table(table)
    first = tmp_path / "cat"
    assert CliRunner().invoke(main, ["calibrate", str(table), "-o", str(first)]).exit_code == 0
    again = tmp_path / "again"
    res = CliRunner().invoke(main, ["calibrate", str(table), "--catalog", str(first), "-o", str(again)])
    assert res.exit_code == 1 and "refused" in res.output
    assert not again.exists()


@pytest.mark.parametrize("row,needle", [
    ({"tp": "two"}, "line 3, field tp"),
    ({"batch": "0"}, "line 3, field batch"),
    ({"ttft_s": "", "tpot_s": "", "latency_s": ""}, "line 3, field <row>"),
    ({"latency_s": "-1"}, "line 3, field latency_s"),
])
def test_bad_rows_are_named(tmp_path: Path, row: dict, needle: str) -> None:
    good = {"model": M, "gpu": "H100-SXM", "precision": "fp16", "tp": 1, "pp": 1, "batch": 1, "input_tokens": 100,
            "output_tokens": 10, "ttft_s": 0.05, "tpot_s": 0.01, "latency_s": 0.2}
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerow(good)
        w.writerow({**good, **row})
    with pytest.raises(MeasurementFileError, match=needle.replace("<", r"\<").replace(">", r"\>")):
        read_measurements(path)
    res = CliRunner().invoke(main, ["calibrate", str(path)])
    assert res.exit_code == 1 and needle in res.output


def test_json_tables_and_ms_columns(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"measurements": [
        {"model": M, "gpu": "L40S", "precision": "fp8", "tp": 4, "concurrency": 8, "input_tokens": 2048,
         "output_tokens": 28, "mean_tpot_ms": 41.7, "mean_e2el_ms": 23324.5},
        {"model": M, "gpu": "L40S", "precision": "fp8", "tp": 4, "batch": 1, "input_tokens": 2048,
         "output_tokens": 28, "ttft_ms": "x"}]}))
    with pytest.raises(MeasurementFileError, match="row 2, field ttft_s"):
        read_measurements(path)
    path.write_text(json.dumps([{"model": M, "gpu": "L40S", "precision": "fp8", "tp": 4, "concurrency": 8,
                                 "input_tokens": 2048, "output_tokens": 28, "mean_tpot_ms": 41.7}]))
    (row,) = read_measurements(path)
    assert row.batch == 8 and row.tpot_s == pytest.approx(0.0417)


def test_telemetry_becomes_measurements(tmp_path: Path) -> None:
    plan = {"deployments": [{"id": "d0", "model": M, "gpu": "H100-SXM", "precision": "fp16", "tp": 1, "pp": 1,
                             "replicas": 2}],
            "routes": [{"query_type": "code", "deployment": "d0", "fraction": 1.0}]}
    recs = [RequestRecord(ts=1020.0 + k, input_tokens=2000, output_tokens=30, ttft_s=0.07, latency_s=0.5,
                          deployment="d0") for k in range(60)]
    lines = [TelemetryBatch.from_records(recs[:30]).model_dump_json(), recs[30].model_dump_json()]
    lines += [r.model_dump_json() for r in recs[31:]]
    lines.append(RequestRecord(ts=1001.0, input_tokens=5, output_tokens=5, latency_s=1.0, deployment="zz")
                 .model_dump_json())
    path = tmp_path / "telemetry.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = measurements_from_telemetry(path, plan, slice_s=60.0)
    assert len(rows) == 1
    (r,) = rows
    # 60 requests in 60 s, 0.5 s each, over 2 replicas: 0.25 in flight per replica -> batch 1, TTFT kept
    assert (r.gpu, r.batch, r.latency_s, r.ttft_s) == ("H100-SXM", 1, pytest.approx(0.5), pytest.approx(0.07))
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    res = CliRunner().invoke(main, ["calibrate", "--telemetry", str(path), "--plan", str(tmp_path / "plan.json"),
                                    "--json"])
    assert res.exit_code in (0, 1), res.output
    assert "rms_log_error_after" in res.output
    path.write_text(lines[0] + "\n{\"kind\": \"request\", \"ts\": -1, \"input_tokens\": 1, \"output_tokens\": 1}\n")
    with pytest.raises(MeasurementFileError, match="line 2, field ts"):
        measurements_from_telemetry(path, plan)


@pytest.mark.broker
def test_calibrate_reads_the_telemetry_topic_and_the_newest_plan(broker: str, tmp_path: Path) -> None:
    """Telemetry and an allocation event on a real (embedded) broker; the plan comes from the event."""
    import asyncio
    import time

    from aiokafka import AIOKafkaProducer

    from schemas import AllocationEvent, Plan

    topic, alloc = f"cal-telemetry-{time.time_ns()}", f"cal-alloc-{time.time_ns()}"
    truth = _truth_instance()
    rt = route_times(truth, M, "H100-SXM", "fp16", 1, 1, 2000, 30)
    plan = {"deployments": [{"id": "d0", "model": M, "gpu": "H100-SXM", "precision": "fp16", "tp": 1, "pp": 1,
                             "replicas": 4}],
            "routes": [{"query_type": "code", "deployment": "d0", "fraction": 1.0}]}
    lat = float(rt.latency([1.0])[0])
    recs = [RequestRecord(ts=600.0 + k * 0.5, input_tokens=2000, output_tokens=30, ttft_s=rt.ttft_s, latency_s=lat,
                          deployment="d0") for k in range(100)]
    ev = AllocationEvent(fleet_id="calfleet", epoch=3, trigger="window", method="gh", status="feasible",
                         plan=Plan.model_validate(plan), cost_per_hour=1.0, gpu_cost_per_hour=1.0, created_at=0.0,
                         demand={"code": 1.0})
    old = AllocationEvent(fleet_id="calfleet", epoch=2, trigger="window", method="gh", status="feasible",
                          plan=Plan.model_validate({**plan, "deployments": [dict(plan["deployments"][0], id="x")],
                                                    "routes": [dict(plan["routes"][0], deployment="x")]}),
                          cost_per_hour=1.0, gpu_cost_per_hour=1.0, created_at=0.0, demand={"code": 1.0})

    async def publish() -> None:
        p = AIOKafkaProducer(bootstrap_servers=broker)
        await p.start()
        try:
            await p.send_and_wait(topic, TelemetryBatch.from_records(recs[:60]).model_dump_json().encode())
            await p.send_and_wait(topic, b'{"kind": "tick", "wm": 700.0}')
            for r in recs[60:]:
                await p.send_and_wait(topic, r.model_dump_json().encode())
            await p.send_and_wait(alloc, ev.model_dump_json().encode())
            await p.send_and_wait(alloc, old.model_dump_json().encode())
        finally:
            await p.stop()

    asyncio.run(publish())
    env = {"LLMFLEET_BOOTSTRAP_SERVERS": broker, "LLMFLEET_TOPICS__TELEMETRY": topic,
           "LLMFLEET_TOPICS__ALLOCATIONS": alloc, "LLMFLEET_FLEET_ID": "calfleet"}
    res = CliRunner().invoke(main, ["calibrate", "--from-topic", "--json"], env=env)
    assert "{" in res.output, (res.output, res.exception)
    report = json.loads(res.output[:res.output.rindex("}") + 1])
    # 100 requests of d0 (the epoch-3 plan's deployment) in one slice -> one latency and one TTFT cell
    assert report["cells"] == 2
    assert "H100-SXM" in report["gpus"]
