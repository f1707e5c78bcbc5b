"""faust's resume after table recovery, run on a consumer that fetches whenever it may."""
from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.tables.recovery import Recovery
from faust.types import TP
from mode.utils.queues import FlowControlQueue

from controller.common import workarounds

STREAM = TP("windows", 0)


class FetchingConsumer:
    """Just enough of faust's consumer. Whenever the stream partition is resumed and the
    fetcher gets a turn, it delivers every message from its position into the agent's queue,
    the way faust's conductor does once flow control is on; a seek awaits the broker, which
    is where a real fetch gets its turn."""

    def __init__(self, queue: FlowControlQueue, committed: int, end: int) -> None:
        self.queue, self.committed, self.end = queue, committed, end
        self.position = end  # where the last generation's fetches left it
        self.active: set[TP] = set()
        self.steps: list[str] = []

    def assignment(self) -> set[TP]:
        return {STREAM}

    def resume_partitions(self, tps: Any) -> None:
        self.active |= set(tps)
        self.steps.append("resume_partitions")

    def resume_flow(self) -> None:
        pass

    async def perform_seek(self) -> None:
        self.position = self.committed
        self.steps.append("seek")
        await asyncio.sleep(0)
        self.fetch()

    def fetch(self) -> None:
        if STREAM in self.active:
            while self.position < self.end:
                self.queue.put_nowait(self.position)
                self.position += 1


async def _complete_recovery(step: Any) -> tuple[list[int], FetchingConsumer]:
    """Run a Recovery step as after a restart: flow control already on (changelog reading
    turned it on), the stream partition paused, 8 messages from committed offset 0."""
    app = faust.App("recovery-order-test", store="memory://", autodiscover=False)
    queue: FlowControlQueue = FlowControlQueue(flow_control=app.flow_control, clear_on_resume=True)
    consumer = FetchingConsumer(queue, committed=0, end=8)
    app._consumer = consumer  # type: ignore[assignment]

    class Fetcher:
        async def maybe_start(self) -> None:
            pass

    app._fetcher = Fetcher()  # type: ignore[assignment]
    app.flow_control.resume()
    flow_resumed_at: list[int] = []
    resume = app.flow_control.resume

    def recording_resume() -> None:
        flow_resumed_at.append(len(consumer.steps))
        resume()

    app.flow_control.resume = recording_resume  # type: ignore[method-assign]
    await step(app.tables.recovery, generation_id=app.consumer_generation_id)
    consumer.steps.insert(flow_resumed_at[0], "flow_control.resume")
    consumer.fetch()  # the fetcher's next turn
    got = []
    while not queue.empty():
        got.append(queue.get_nowait())
    return got, consumer


async def test_faust_alone_loses_what_it_fetched_between_the_seek_and_the_flow_resume() -> None:
    """The race the shim exists for (faust-streaming/faust#596); if this starts failing,
    faust fixed it and the shim can go."""
    workarounds._faust_resume_streams_last()
    unpatched = Recovery.on_recovery_completed.__wrapped__  # type: ignore[attr-defined]
    got, consumer = await _complete_recovery(unpatched)
    assert consumer.steps == ["resume_partitions", "seek", "flow_control.resume"]
    assert got == [] and consumer.position == consumer.end, "fetched, then cleared from the queue"


async def test_streams_resume_after_the_queues_are_emptied_and_nothing_is_lost() -> None:
    workarounds._faust_resume_streams_last()
    for step in (Recovery.on_recovery_completed, Recovery._resume_streams):
        got, consumer = await _complete_recovery(step)
        assert consumer.steps == ["seek", "flow_control.resume", "resume_partitions"], step.__name__
        assert got == list(range(consumer.committed, consumer.end)), step.__name__


async def test_install_is_idempotent_and_an_early_return_resumes_nothing() -> None:
    workarounds._faust_resume_streams_last()
    first = Recovery.on_recovery_completed
    workarounds._faust_resume_streams_last()
    assert Recovery.on_recovery_completed is first

    async def returns_early(self: Recovery, generation_id: int = 0) -> None:
        self.app.consumer.resume_partitions({STREAM})
        raise RuntimeError("rebalancing again")

    app = faust.App("recovery-order-early", store="memory://", autodiscover=False)
    consumer = FetchingConsumer(FlowControlQueue(flow_control=app.flow_control), committed=0, end=1)
    app._consumer = consumer  # type: ignore[assignment]
    try:
        await workarounds.resume_streams_last(returns_early)(app.tables.recovery)
    except RuntimeError:
        pass
    assert consumer.active == set() and "resume_partitions" not in consumer.__dict__


async def test_a_rebalance_during_the_step_leaves_the_resume_to_its_own_recovery() -> None:
    workarounds._faust_resume_streams_last()
    app = faust.App("recovery-order-rebalance", store="memory://", autodiscover=False)
    consumer = FetchingConsumer(FlowControlQueue(flow_control=app.flow_control), committed=0, end=1)
    app._consumer = consumer  # type: ignore[assignment]

    async def rebalanced_meanwhile(self: Recovery, generation_id: int = 0) -> None:
        self.app.consumer.resume_partitions({STREAM})
        self.app.consumer_generation_id += 1  # a new rebalance began while the step awaited

    await workarounds.resume_streams_last(rebalanced_meanwhile)(app.tables.recovery)
    assert consumer.active == set(), "partitions of the old generation stay paused"
