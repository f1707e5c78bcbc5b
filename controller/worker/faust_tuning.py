"""Faust 0.15 builds its consumers with a hard-coded fetch_max_wait_ms=1500. The embedded
broker holds a long-poll fetch for the whole wait when the partition is empty at request
time, so every hop (telemetry -> ingest -> windows -> planner) could add up to 1.5 s of
latency. This shim hands faust's driver a consumer class with a short wait; the cost is a
fetch request every `FETCH_WAIT_MS` per idle connection, negligible on a LAN.
"""
from __future__ import annotations

import types
from typing import Any

import aiokafka
import faust.transport.drivers.aiokafka as faust_aiokafka

FETCH_WAIT_MS = 20


class LowLatencyConsumer(aiokafka.AIOKafkaConsumer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["fetch_max_wait_ms"] = FETCH_WAIT_MS
        super().__init__(*args, **kwargs)


class _AiokafkaWithLowLatencyConsumer(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        return getattr(aiokafka, name)


def install(fetch_wait_ms: int = FETCH_WAIT_MS) -> None:
    """Idempotent: point faust's driver at LowLatencyConsumer."""
    global FETCH_WAIT_MS
    FETCH_WAIT_MS = fetch_wait_ms
    if isinstance(faust_aiokafka.aiokafka, _AiokafkaWithLowLatencyConsumer):
        return
    proxy = _AiokafkaWithLowLatencyConsumer("aiokafka")
    proxy.AIOKafkaConsumer = LowLatencyConsumer  # type: ignore[attr-defined]
    faust_aiokafka.aiokafka = proxy  # type: ignore[assignment]
