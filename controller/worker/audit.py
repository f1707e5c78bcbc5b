"""Exact audits in a separate OS process, with the deadline enforced from outside.

One long-lived audit process per worker solves requests sent over a pipe. The deadline
(`time_limit_s` of the request) counts from the moment a ready audit process takes the
request; the process is started (imports done) in the background, at the first request and
again at once after a kill, so only an audit right after a kill waits for it.

Inside, the MILP first solves its LP relaxation and sends that back as a partial report (a
proven bound, hence the gap of the plan in force), then solves the MILP with what remains of
the limit. HiGHS can overrun its own time limit by many seconds on large roots, so the
process is killed at `KILL_AT` x the limit and the partial report is published, flagged
`deadline_hit`. A crashed solver process never stops the controller, and an audit process
never outlives its worker (parent-death signal plus a watchdog).
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import structlog

from schemas import AuditReport, AuditRequest

log = structlog.get_logger()
KILL_AT = 1.05  # x time_limit_s, measured from when the audit process takes the request


def _die_with_parent(parent: int) -> None:
    """Runs first in each audit process, so a crashed or SIGKILLed controller leaves no solver
    behind: exit at once if the worker `parent` is already gone (it died while this process
    started), else the kernel's parent-death signal, plus a watchdog thread for re-parenting."""
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


def _serve(conn: Connection, parent: int) -> None:
    """The audit process: import the solvers, say ready, then answer requests until EOF."""
    _die_with_parent(parent)
    from controller.worker.planning.planner import audit_plan

    conn.send(("ready", None))
    while True:
        try:
            raw, deadline_at = conn.recv()
        except EOFError:
            return
        req = AuditRequest.model_validate_json(raw)
        try:
            final = audit_plan(req, deadline_at,
                               on_partial=lambda r: conn.send(("partial", r.model_dump_json())))
            conn.send(("final", final.model_dump_json()))
        except Exception as exc:  # report, keep serving
            conn.send(("error", repr(exc)))


class AuditRunner:
    """Runs audit requests one at a time in a dedicated, restartable process."""

    def __init__(self, default_limit_s: float) -> None:
        self.default_limit_s = default_limit_s
        self._proc: Any = None
        self._conn: Connection | None = None
        self._ready = False
        self.kills = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(theirs, os.getpid()), name="llmfleet-audit", daemon=True)
        self._proc.start()
        theirs.close()
        self._conn = ours
        self._ready = False

    async def _recv(self, timeout: float | None) -> tuple[str, Any] | None:
        """The next message from the audit process, or None on timeout; EOFError if it died."""
        assert self._conn is not None
        conn, loop = self._conn, asyncio.get_running_loop()
        if not conn.poll():
            got = asyncio.Event()
            loop.add_reader(conn.fileno(), got.set)
            try:
                await asyncio.wait_for(got.wait(), timeout)
            except (TimeoutError, asyncio.TimeoutError):
                return None
            finally:
                loop.remove_reader(conn.fileno())
        return conn.recv()

    async def ensure_ready(self) -> None:
        """Start the audit process if needed and wait until it has imported the solvers."""
        while not self._ready:
            if self._proc is None or not self._proc.is_alive():
                self._start()
            try:
                msg = await self._recv(None)
            except (EOFError, OSError):  # died while importing: start another
                self._proc = None
                continue
            self._ready = msg is not None and msg[0] == "ready"

    async def run(self, req: AuditRequest) -> AuditReport:
        await self.ensure_ready()
        assert self._conn is not None
        t0 = time.perf_counter()
        limit = req.time_limit_s
        partial: AuditReport | None = None
        status, reason = "no_solution", "deadline"
        try:
            self._conn.send((req.model_dump_json(), time.time() + limit))
            while True:
                msg = await self._recv(max(0.0, t0 + KILL_AT * limit - time.perf_counter()))
                if msg is None:
                    break
                kind, body = msg
                if kind == "final":
                    return AuditReport.model_validate_json(body)
                if kind == "partial":
                    partial = AuditReport.model_validate_json(body)
                elif kind == "error":
                    status, reason = "error", body
                    break
        except (EOFError, OSError) as exc:  # the process died under the solver
            status, reason = "error", f"audit process died: {exc!r}"
        self._kill()
        seconds = time.perf_counter() - t0
        if reason == "deadline":
            log.warning("audit.deadline_hit", epoch=req.epoch, limit_s=limit, seconds=round(seconds, 3),
                        bound=partial.bound if partial else None)
        else:
            log.error("audit.failed", epoch=req.epoch, error=reason)
        if partial is not None and status != "error":
            return partial.model_copy(update={"seconds": seconds, "deadline_hit": True, "created_at": time.time()})
        return AuditReport(fleet_id=req.fleet_id, epoch=req.epoch, method=req.method, status=status,
                           plan_cost=0.0, seconds=seconds, deadline_hit=reason == "deadline",
                           created_at=time.time())

    def _kill(self) -> None:
        """Kill the audit process and start its successor at once (it imports in the background)."""
        self.close()
        self.kills += 1
        self._start()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5)
