"""How a worker recovers: a new leader re-syncs with what is published, and a worker whose broker
came back empty republishes the plan in force and restarts.

Plain async functions over aiokafka clients of their own (faust's are bound to the cluster the
worker started on); the faust app (controller/worker/app.py) decides when to call them.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, NoReturn

import structlog

from controller.common.broker_watch import CARRY_ENV, BrokerHealth
from schemas import AllocationEvent

log = structlog.get_logger()
LAST_PUBLISHED_TAIL = 512  # messages a new leader reads back to find the last epoch and window


async def last_published(bootstrap: str, topic: str, field: str, fleet_id: str) -> dict[str, Any] | None:
    """`fleet_id`'s message with the highest `field` on `topic` (None: none).

    Every partition is read: a fleet's messages share a key and so a partition, but which
    one depends on the topic's width, and a topic created by a consumer that subscribed
    before the workers (broker auto-creation) or by an operator can be wider than planned.
    Per partition it reads the last LAST_PUBLISHED_TAIL messages before the reported end,
    on to exhaustion (the embedded broker's ListOffsets(latest) can under-report the end;
    reading past it covers that), and the whole partition only when the tail holds nothing
    of this fleet. The fields read (epoch, window end) grow with the offset, so the tail
    holds the highest."""
    from aiokafka import AIOKafkaConsumer

    from controller.common.topic_admin import topic_partitions

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    best: dict[str, Any] | None = None
    try:
        tps = await topic_partitions(c, topic)
        c.assign(tps)
        ends = await c.end_offsets(tps)
        for tp in tps:
            end = ends.get(tp, 0)
            if end == 0:  # empty (even the embedded broker reports >= 1 once a batch is in)
                continue
            start = max(0, end - LAST_PUBLISHED_TAIL)
            found = await _scan_for_highest(c, tp, start, end, field, fleet_id)
            if found is None and start > 0:
                found = await _scan_for_highest(c, tp, 0, end, field, fleet_id)
            if found is not None and (best is None or float(found[field]) > float(best[field])):
                best = found
    finally:
        await c.stop()
    return best


async def _scan_for_highest(c: Any, tp: Any, start: int, end: int, field: str, fleet_id: str,
                            timeout_s: float = 30.0) -> dict[str, Any] | None:
    """Read from `start` until past `end` and a poll comes back empty (the first fetch after
    a seek can take longer than one poll)."""
    c.seek(tp, start)
    best: dict[str, Any] | None = None
    give_up = time.monotonic() + timeout_s
    while True:
        recs = await c.getmany(tp, timeout_ms=500, max_records=1000)
        if not recs.get(tp):
            if await c.position(tp) >= end or time.monotonic() > give_up:
                return best
            continue
        for m in recs[tp]:
            best = _higher(best, m.value, field, fleet_id)


def _higher(best: dict[str, Any] | None, raw: bytes, field: str, fleet_id: str) -> dict[str, Any] | None:
    try:
        ev = json.loads(raw)
        if ev.get("fleet_id") == fleet_id and ev.get(field) is not None and (
                best is None or float(ev[field]) > float(best[field])):
            return ev
    except (ValueError, TypeError, AttributeError):
        pass
    return best


def recovered_event(last: AllocationEvent, epoch_in_state: int) -> AllocationEvent:
    """The plan in force, republished at the next epoch after the broker came back empty."""
    return last.model_copy(update={
        "epoch": max(last.epoch, epoch_in_state) + 1, "trigger": "recovered", "created_at": time.time(),
        "explanation": [*last.explanation, f"republished after the broker came back empty (epoch {last.epoch})"]})


async def send_direct(bootstrap: str, max_request_size: int, topic: str, key: bytes, value: bytes) -> None:
    """Send with a fresh producer: faust's own is bound to the cluster that is gone."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=max_request_size)
    await p.start()
    try:
        await p.send_and_wait(topic, value, key=key)
    finally:
        await p.stop()


async def wait_for_plan(bootstrap: str, topic: str, fleet_id: str, timeout: float) -> bool:
    """True once the (re-created) allocations topic holds a plan of this fleet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await last_published(bootstrap, topic, "epoch", fleet_id) is not None:
            return True
        await asyncio.sleep(0.5)
    return False


def restart_worker(reason: str, health: BrokerHealth) -> NoReturn:
    """Replace this process with a fresh worker (same interpreter, same command line): the
    only clean way out of faust state that refers to a cluster that no longer exists. The
    broker counters carry over in the environment, so the outage metrics keep counting."""
    os.environ[CARRY_ENV] = health.carry()
    argv = [sys.executable, *sys.orig_argv[1:]]
    log.warning("worker.restarting", reason=reason, pid=os.getpid(), argv=argv)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execv(sys.executable, argv)
