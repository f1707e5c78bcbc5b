"""Faust 0.15 can drop messages after table recovery; this shim reorders the resume steps.

When a worker finishes restoring its tables (or finds nothing to restore), faust's Recovery
resumes fetching from the stream partitions, seeks them to their committed offsets and only
then calls `flow_control.resume()`, which empties every agent's queue. With flow control
already on (table recovery turns it on to read the changelogs), messages fetched after the
seek reach the agents' queues in that gap and are then thrown away, while the consumer's
position is past them: the agent never sees them, and their offsets stay unacked, so the
partition's committed offset stops moving too (faust-streaming/faust#596). Measured here: a
restarted leader skipped seven of the eight messages on the windows topic that it replayed
after a crash, and lost their partial window counts.

The shim defers the stream partitions' resume until after `flow_control.resume()`: the seek
still happens while they are paused, the queues are emptied while nothing can be in them, and
fetching then starts at the committed offsets.
"""
from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.tables.recovery import Recovery

_Step = Callable[..., Awaitable[None]]


def resume_streams_last(step: _Step) -> _Step:
    """Wrap a Recovery step so the stream partitions it resumes are resumed when it returns."""
    if getattr(step, "_resumes_streams_last", False):
        return step

    @functools.wraps(step)
    async def wrapper(self: Recovery, *args: Any, **kwargs: Any) -> None:
        consumer = self.app.consumer
        generation = self.app.consumer_generation_id
        deferred: list[set[Any]] = []

        def defer(tps: Iterable[Any]) -> None:
            deferred.append(set(tps))

        consumer.resume_partitions = defer  # instance attribute: shadows the method
        try:
            await step(self, *args, **kwargs)
        finally:
            del consumer.resume_partitions
        # a step that returned early (another rebalance began) resumed nothing; and when a
        # rebalance began while the step awaited, its own recovery resumes what it assigns
        if self.app.consumer_generation_id != generation:
            return
        for tps in deferred:
            consumer.resume_partitions(tps)

    wrapper._resumes_streams_last = True  # type: ignore[attr-defined]
    return wrapper


def install() -> None:
    """Idempotent: patch both places where faust resumes streams after a rebalance."""
    Recovery.on_recovery_completed = resume_streams_last(Recovery.on_recovery_completed)  # type: ignore[method-assign]
    Recovery._resume_streams = resume_streams_last(Recovery._resume_streams)  # type: ignore[method-assign]
