"""Exact audits in a separate OS process, with the deadline enforced from outside.

The solver's own time limit is the first line; the process is killed at 1.1x that limit
plus a small start-up allowance if the solver overruns (HiGHS can, on large roots), and a
`no_solution` report is published instead. Nothing here blocks the event loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time

import structlog

from schemas import AuditReport, AuditRequest

from .planner import audit_plan

log = structlog.get_logger()
_STARTUP_S = 3.0  # process spawn + imports


def _die_with_parent(parent: int) -> None:
    """Runs in each audit process, so a crashed or SIGKILLed controller leaves no solver behind:
    exit at once if the worker `parent` is already gone (it died while this process started),
    else the kernel's parent-death signal, plus a watchdog thread for re-parenting."""
    if os.getppid() != parent:
        os._exit(1)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # died between the check and the prctl
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


class AuditRunner:
    def __init__(self, default_limit_s: float) -> None:
        self.default_limit_s = default_limit_s
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"),
                                                initializer=_die_with_parent, initargs=(os.getpid(),))
        return self._pool

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, req: AuditRequest) -> AuditReport:
        t0 = time.perf_counter()
        limit = req.time_limit_s * 1.1 + _STARTUP_S
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._executor(), audit_plan, req)
            return await asyncio.wait_for(fut, timeout=limit)
        except (TimeoutError, asyncio.TimeoutError):
            self._kill()
            log.warning("audit.deadline_exceeded", epoch=req.epoch, limit_s=limit)
            status = "no_solution"
        except Exception as exc:  # a crashed solver process must not stop the controller
            self._kill()
            log.error("audit.failed", epoch=req.epoch, error=repr(exc))
            status = "error"
        return AuditReport(fleet_id=req.fleet_id, epoch=req.epoch, method=req.method, status=status,
                           plan_cost=0.0, seconds=time.perf_counter() - t0, created_at=time.time())

    def close(self) -> None:
        self._kill()
