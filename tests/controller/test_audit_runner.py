"""Audits run in their own process, honour an outside deadline, and never outlive the worker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from controller.worker.audit import AuditRunner
from controller.worker.planning.planner import Planner, new_planner_state
from controller.common.settings import Settings
from schemas import AuditRequest, DemandWindow, QueryDemand, load_catalog

REPO = Path(__file__).resolve().parents[2]


def _request(time_limit: float):
    pl = Planner(load_catalog(), Settings(min_dwell_s=0, agh_deadline_s=0.2, audit_time_limit_s=time_limit))
    w = DemandWindow(window_start=0, window_end=60, records=1, demand=[
        QueryDemand(query_type="code", count=600, arrival_rate=10, input_tokens_mean=2048, input_tokens_p95=4000,
                    output_tokens_mean=28, output_tokens_p95=60)])
    ev = pl.on_window(new_planner_state(), w).events[0]
    return AuditRequest(fleet_id="f", epoch=ev.epoch, instance=pl.instance_for(w), plan=ev.plan, method="milp",
                        time_limit_s=time_limit, created_at=0.0)


async def test_audit_in_a_separate_process() -> None:
    runner = AuditRunner(10.0)
    try:
        report = await runner.run(_request(10.0))
        assert report.status in ("optimal", "feasible") and report.gap is not None
        assert runner.pid is not None and runner.pid != os.getpid()
    finally:
        runner.close()


def test_audit_process_dies_with_its_worker(tmp_path: Path) -> None:
    code = ("import asyncio, os, sys, time\n"
            "from controller.worker.audit import AuditRunner\n"
            "from tests.controller.test_audit_runner import _request\n"
            "r = AuditRunner(5.0)\n"
            "asyncio.run(r.run(_request(5.0)))\n"
            "print(r.pid, flush=True)\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(p.stdout.readline())
    os.kill(child, 0)  # alive while the worker lives
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{child}/stat") as fh:
            if fh.read().split()[2] == "Z":  # zombie: dead, awaiting its reaper
                return
        time.sleep(0.2)
    raise AssertionError(f"audit process {child} outlived its killed worker")
