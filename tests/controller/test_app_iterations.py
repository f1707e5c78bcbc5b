"""The ingest decoder's "iterations" branch: accepted into the planner's accumulator, or DLQ."""
from __future__ import annotations

import asyncio
import json
import types

import pytest

from controller.worker.app import Controller
from controller.worker.windows.demand_window import new_state
from controller.common.settings import Settings

MSG = types.SimpleNamespace(topic="llmfleet.telemetry", partition=0, offset=42)
GOOD = {"kind": "iterations", "deployment": "d0", "ts": [1.0, 2.0], "chunk_tokens": [256, 0],
        "decode_batch": [3, 4], "iteration_s": [0.03, 0.02]}


@pytest.fixture(scope="module")
def controller() -> Controller:
    return Controller(Settings(bootstrap_servers="localhost:1", web_port=0))


def _decode(ctrl: Controller, value: dict) -> tuple[object, list[str]]:
    dead: list[str] = []

    async def fake_dead(raw: bytes, msg: object, reason: str, *_: object) -> None:
        dead.append(reason)

    ctrl._dead = fake_dead  # type: ignore[method-assign]
    return asyncio.run(ctrl._decode(json.dumps(value).encode(), MSG, new_state())), dead


def test_iterations_feed_the_planners_accumulator(controller: Controller) -> None:
    assert controller.planner.iteration_telemetry is controller.iterations  # type: ignore[attr-defined]
    before = controller.iterations.counts("d0")
    out, dead = _decode(controller, GOOD)
    assert out == (None, None, "default") and dead == []  # no request records, no watermark
    assert controller.iterations.counts("d0") == (before[0] + 1, before[1] + 1)


def test_bad_iterations_go_to_the_dlq(controller: Controller) -> None:
    before = controller.iterations.counts("d0")
    out, dead = _decode(controller, {**GOOD, "iteration_s": [0.03]})
    assert out[:2] == (None, None)
    assert len(dead) == 1 and "invalid telemetry" in dead[0] and "iteration_s" in dead[0]
    assert controller.iterations.counts("d0") == before
    # request telemetry still decodes as before
    (cols, wm, fleet), dead = _decode(controller, {"kind": "request", "ts": 1_700_000_005.0, "query_type": "code",
                                                   "input_tokens": 10, "output_tokens": 2})
    assert dead == [] and wm is None and list(cols[1]) == ["code"] and fleet == "default"
    # a batch of another fleet decodes with its fleet
    (cols, wm, fleet), dead = _decode(controller, {"kind": "batch", "fleet": "eu-west", "ts": [1_700_000_005.0],
                                                   "query_type": ["code"], "input_tokens": [10],
                                                   "output_tokens": [2]})
    assert dead == [] and fleet == "eu-west" and len(cols[0]) == 1
